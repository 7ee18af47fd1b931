"""Near-duplicate detection: MinHash over character shingles, LSH banding, verified candidates.

    >>> from curate.near import NearIndex
    >>> idx = NearIndex(threshold=0.8)
    >>> idx.add("a", "How do I reset my password? I forgot it yesterday.")
    >>> idx.query("how do i reset my password?  I forgot it yesterday!")
    [('a', 0.98)]

How it works, and what the numbers mean:
- Texts are normalized (`curate.records.normalize_text`: NFKC, casefold, collapsed whitespace), cut into
  character `ngram`-shingles (code points), and each shingle is hashed to 64 bits (a polynomial over the code
  points, then a mixer). The signature is a one-permutation MinHash with optimal densification (`num_perm`
  bins of 32-bit minima; see `_minhash_numpy`): slot-wise agreement estimates Jaccard like classic MinHash,
  at one hash per shingle instead of `num_perm`. A numba kernel computes it; measured here on 600-character
  texts, one busy core: ~57-66k texts/s, vs classic 128-permutation MinHash in numba ~30-40k/s, rensa
  (Rust, fed Python shingle lists) ~9k/s, datasketch ~0.8k/s. Deterministic across processes and machines.
  (Later: the kernel's minimum updates made branch-free, and ASCII texts packed as bytes by the compiled
  normalizer (`normalize_ascii_packed`): the kernel alone ~3.2 us a 540-character text with the common-shingle
  table, ~2.1 us without, on one core (CPU time, the 210k benchmark workload), ~1.6x the branchy version.)
- LSH banding: the signature is cut into `bands` bands of `rows` values; two texts sharing one band are
  candidates. `(bands, rows)` are chosen from the threshold (`lsh_params`) so that a pair at the Jaccard
  that usually goes with the threshold's verified score is a candidate with probability >= 0.95 (a 12-word
  edit of a 600-character text, score ~0.9, Jaccard ~0.75: > 0.999 at the default 0.8).
- Bulk paths leave boilerplate out: shingles in more than 1% of the texts (`common_shingles`, e.g. a JSON
  answer skeleton every record shares) do not enter the signatures, else unrelated templated texts share a
  Jaccard of 0.2-0.3 and half of all pairs become candidates.
- Candidates are VERIFIED with a similarity score: the normalized Indel similarity of the two normalized texts
  (`rapidfuzz.fuzz.ratio / 100`, 1 - edits/total length). Only pairs with score >= threshold are returned, so
  the LSH step can only cost recall, never precision. A 600-character text with 12 edited words scores ~0.9.
  Unrelated texts of similar length score ~0.4-0.55, so thresholds below ~0.6 group loosely related texts.

Ways in: the incremental `NearIndex` (add/query, add_many/query_many, from_items; used by split grouping,
held-out freeze and leakage), the bulk `near_pairs(texts)` (all verified pairs among many texts, one sort per
band, no Python dict per band) and `near_groups` (connected components, for the splitter); `BandSketch` +
`candidate_pairs` + `verify_pairs` are the pieces, for callers that stream their texts (curate.steps.dedup).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from curate.records import normalize_text
from curate.relation import is_short, skeleton, text_score

log = logging.getLogger(__name__)

__all__ = [
    "BandSketch",
    "NearIndex",
    "candidate_pairs",
    "candidate_pairs_counted",
    "common_shingles",
    "exact_key",
    "lsh_params",
    "near_groups",
    "near_pairs",
    "near_pairs_lazy",
    "scored_pairs",
    "signatures",
    "similarity",
    "verify_pairs",
]

_POLY = np.uint64(0x100000001B3)  # FNV-64 prime as the polynomial base


def exact_key(text: str) -> str:
    """The exact-duplicate key: sha256 (hex, 32 chars) of `normalize_text(text)`."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def similarity(a: str, b: str, *, normalized: bool = False) -> float:
    """The verification score in [0, 1]: normalized Indel similarity of the normalized texts."""
    if not normalized:
        a, b = normalize_text(a), normalize_text(b)
    return fuzz.ratio(a, b) / 100.0


def _probe_table(num_perm: int, tries: int = 32, seed: int = 1) -> np.ndarray:
    """(num_perm, tries) bins an empty bin borrows from, in order (optimal densification's probe sequence)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.integers(0, num_perm, size=(num_perm, tries), dtype=np.int64)


def _shingle_hashes(norm: str, ngram: int) -> np.ndarray:
    """64-bit hashes of the character n-grams of an already normalized text (reference implementation).

    h = sum_k (c_k + 1) * POLY^(n-1-k) mod 2^64 over the n code points, then murmur3's fmix64.
    The empty text has one shingle, the code point 0.
    """
    cps = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if cps.size == 0:
        cps = np.zeros(1, dtype=np.uint64)
    n = min(ngram, cps.size)
    m = cps.size - n + 1
    with np.errstate(over="ignore"):
        h = np.zeros(m, dtype=np.uint64)
        for k in range(n):
            h = h * _POLY + cps[k : k + m] + np.uint64(1)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h


STOP_BITS = 20  # the common-shingle table: 2^20 one-byte slots indexed by the low bits of a shingle hash


def _drop_common(shingles: np.ndarray, stop: np.ndarray | None) -> np.ndarray:
    """Shingles whose slot in `stop` is set are left out, unless that leaves none."""
    if stop is None:
        return shingles
    keep = stop[(shingles & np.uint64(stop.size - 1)).astype(np.int64)] == 0
    return shingles[keep] if keep.any() else shingles


def _minhash_numpy(shingles: np.ndarray, num_perm: int, probes: np.ndarray) -> np.ndarray:
    """One-permutation MinHash with optimal densification (reference implementation of the kernel).

    Each shingle hash picks a bin from its high 32 bits (bin = (hi * num_perm) >> 32) and competes with its
    low 32 bits for that bin's minimum. An empty bin j copies the value of the first non-empty bin in its
    probe sequence `probes[j]` (then, if all probes are empty, of the next non-empty bin after j, circularly).
    Shrivastava, "Optimal Densification for Fast and Accurate Minwise Hashing", ICML 2017: two signatures
    agree in a slot with probability equal to the Jaccard similarity, like classic MinHash, at 1/num_perm of
    the cost.
    """
    bins = ((shingles >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)
    vals = (shingles & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    mins = np.full(num_perm, 0xFFFFFFFF, dtype=np.uint32)
    filled = np.zeros(num_perm, dtype=bool)
    np.minimum.at(mins, bins.astype(np.int64), vals)
    filled[bins.astype(np.int64)] = True
    out = mins.copy()
    for j in np.flatnonzero(~filled):
        for k in probes[j]:
            if filled[k]:
                out[j] = mins[k]
                break
        else:
            for d in range(1, num_perm):
                k = (j + d) % num_perm
                if filled[k]:
                    out[j] = mins[k]
                    break
    return out


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for a verified-score threshold.

    The verified score (Indel similarity) is higher than the shingle Jaccard the LSH sees: on ~600-char texts,
    score s corresponds to Jaccard ~ 1 - 2.5 (1 - s). We pick the largest `rows` (fewest false candidates)
    whose banding still makes a pair at that Jaccard a candidate with probability >= 0.95 (>= 0.99 a little
    above).
    """
    j_lo = min(0.95, max(0.3, 1.0 - 2.5 * (1.0 - threshold)))
    for rows in range(8, 0, -1):
        bands = num_perm // rows
        if bands < 1:
            continue
        if 1.0 - (1.0 - j_lo**rows) ** bands >= 0.95:
            return bands, rows
    return num_perm, 1


def _band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(..., bands) uint64 hashes of each band of (..., num_perm) uint32 signatures."""
    s = sig[..., : bands * rows].astype(np.uint64).reshape(*sig.shape[:-1], bands, rows)
    with np.errstate(over="ignore"):
        h = np.full(s.shape[:-1], 0xCBF29CE484222325, dtype=np.uint64)
        for r in range(rows):
            h = (h ^ s[..., r]) * _POLY
        h ^= h >> np.uint64(29)
    return h


try:  # the compiled kernel; the numpy version above computes the same values (tests compare them)
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a dependency; this keeps the module importable without it
    _numba = None

if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _minhash_kernel(cps, offsets, ngram, probes, stop, out):  # pragma: no cover - compiled
        """The compiled twin of `_shingle_hashes` + `_drop_common` + `_minhash_numpy`, for a packed batch.

        `stop` is the common-shingle table (a power-of-two size; size 1 means no filtering).
        """
        P = out.shape[1]
        smask = np.uint64(stop.shape[0] - 1)
        use_stop = stop.shape[0] > 1
        T = probes.shape[1]
        poly = np.uint64(0x100000001B3)
        one = np.uint64(1)
        s32 = np.uint64(32)
        s33 = np.uint64(33)
        m1 = np.uint64(0xFF51AFD7ED558CCD)
        m2 = np.uint64(0xC4CEB9FE1A85EC53)
        lo32 = np.uint64(0xFFFFFFFF)
        uP = np.uint64(P)
        mins = np.empty(P, dtype=np.uint32)
        filled = np.empty(P, dtype=np.uint8)
        for r in range(offsets.shape[0] - 1):
            lo = offsets[r]
            ln = offsets[r + 1] - lo
            if ln == 0:
                n = 1
                m = 1
            else:
                n = min(ngram, ln)
                m = ln - n + 1
            top = one
            for k in range(n - 1):
                top = top * poly
            for attempt in range(2):  # attempt 1 (no filtering) only when every shingle was common
                filtering = use_stop and attempt == 0
                for j in range(P):
                    mins[j] = np.uint32(0xFFFFFFFF)
                    filled[j] = 0
                any_kept = np.uint8(0)
                # rolling polynomial hash: the same value as the sum formula, mod 2^64
                h = np.uint64(0)
                for k in range(n):
                    c = np.uint64(0) if ln == 0 else np.uint64(cps[lo + k])
                    h = h * poly + c + one
                for i in range(m):
                    if i > 0:
                        h = (
                            (h - (np.uint64(cps[lo + i - 1]) + one) * top) * poly
                            + np.uint64(cps[lo + i + n - 1])
                            + one
                        )
                    x = h
                    x ^= x >> s33
                    x *= m1
                    x ^= x >> s33
                    x *= m2
                    x ^= x >> s33
                    # branch-free (the compares are unpredictable; ~1.6x faster than `if ...: continue` and a
                    # conditional store): a common shingle competes as 0xFFFFFFFF (never lowers a minimum) and
                    # fills nothing
                    j = ((x >> s32) * uP) >> s32
                    v = np.uint32(x & lo32)
                    if filtering:
                        keep = np.uint8(1) - np.uint8(stop[x & smask] != 0)
                        v = v | (np.uint32(keep) - np.uint32(1))
                    else:
                        keep = np.uint8(1)
                    mj = mins[j]
                    mins[j] = min(mj, v)
                    filled[j] |= keep
                    any_kept |= keep
                if any_kept or not filtering:
                    break
            for j in range(P):
                if filled[j]:
                    out[r, j] = mins[j]
                    continue
                done = False
                for t in range(T):
                    k = probes[j, t]
                    if filled[k]:
                        out[r, j] = mins[k]
                        done = True
                        break
                if not done:
                    for d in range(1, P):
                        k = (j + d) % P
                        if filled[k]:
                            out[r, j] = mins[k]
                            break


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _count_kernel(cps, offsets, ngram, counts):  # pragma: no cover - compiled
        """Add 1 to counts[hash & mask] for every shingle of every text (document frequency, roughly)."""
        mask = np.uint64(counts.shape[0] - 1)
        poly = np.uint64(0x100000001B3)
        one = np.uint64(1)
        s33 = np.uint64(33)
        m1 = np.uint64(0xFF51AFD7ED558CCD)
        m2 = np.uint64(0xC4CEB9FE1A85EC53)
        for r in range(offsets.shape[0] - 1):
            lo = offsets[r]
            ln = offsets[r + 1] - lo
            if ln == 0:
                continue
            n = min(ngram, ln)
            top = one
            for k in range(n - 1):
                top = top * poly
            h = np.uint64(0)
            for k in range(n):
                h = h * poly + np.uint64(cps[lo + k]) + one
            for i in range(ln - n + 1):
                if i > 0:
                    h = (
                        (h - (np.uint64(cps[lo + i - 1]) + one) * top) * poly
                        + np.uint64(cps[lo + i + n - 1])
                        + one
                    )
                x = h
                x ^= x >> s33
                x *= m1
                x ^= x >> s33
                x *= m2
                x ^= x >> s33
                counts[x & mask] += 1


def common_shingles(
    norms: Sequence[str], ngram: int = 5, *, share: float = 0.01, sample: int = 10000, min_texts: int = 1000
) -> np.ndarray | None:
    """The common-shingle table for `norms`: slots of shingles found in more than `share` of the texts.

    Counted on up to `sample` evenly spaced texts. Boilerplate shared by many texts (a JSON answer skeleton, a
    greeting) would otherwise make unrelated texts LSH candidates (a Jaccard of 0.2-0.3 collides often) and
    the verification quadratic. Returns None (no filtering) for fewer than `min_texts` texts.
    """
    n = len(norms)
    if n < min_texts or share <= 0:
        return None
    step = max(1, n // sample)
    picked = [norms[i] for i in range(0, n, step)][:sample]
    counts = np.zeros(1 << STOP_BITS, dtype=np.uint32)
    if _numba is not None:
        cps, offsets = _pack(picked)
        _count_kernel(cps, offsets, ngram, counts)
    else:  # pragma: no cover - numba is a dependency
        for t in picked:
            np.add.at(counts, (_shingle_hashes(t, ngram) & np.uint64(counts.size - 1)).astype(np.int64), 1)
    limit = max(10.0, share * len(picked))
    stop = (counts > limit).astype(np.uint8)
    log.debug("near: %d common shingle slots (share > %.3f of %d texts)", int(stop.sum()), share, len(picked))
    return stop if stop.any() else None


if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
    def _band_hash(sig, i, b, rows):  # pragma: no cover - compiled
        """`_band_hashes(sig)[i, b]`: FNV over the band's rows, then one xorshift (both kernels below)."""
        h = np.uint64(0xCBF29CE484222325)
        for r in range(rows):
            h = (h ^ np.uint64(sig[i, b * rows + r])) * np.uint64(0x100000001B3)
        return h ^ (h >> np.uint64(29))

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _composite_kernel(sig, bands, rows, out):  # pragma: no cover - compiled
        """The compiled twin of `_band_hashes(sig) << 6 | band` for (n, num_perm) signatures."""
        s6 = np.uint64(6)
        for i in range(sig.shape[0]):
            for b in range(bands):
                out[i, b] = (_band_hash(sig, i, b, rows) << s6) | np.uint64(b)

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _band_top_kernel(sig, bands, rows, out):  # pragma: no cover - compiled
        """The compiled twin of `_band_hashes(sig) >> 32` into a uint32 (n, bands) `out`."""
        s32 = np.uint64(32)
        for i in range(sig.shape[0]):
            for b in range(bands):
                out[i, b] = np.uint32(_band_hash(sig, i, b, rows) >> s32)


def _threads(n: int) -> int:
    """Threads for a batch of n texts: CURATE_THREADS, else all cores; 1 for small batches."""
    if n < 4096:
        return 1
    env = os.environ.get("CURATE_THREADS")
    return max(1, int(env)) if env and env.isdigit() else max(1, min(os.cpu_count() or 1, 8))


_ASCII_SPACE = np.zeros(256, dtype=np.uint8)  # 1 for what `str.split()` splits on in ASCII: 9-13, 28-31, 32
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 1
_ASCII_LOWER = np.arange(256, dtype=np.uint8)  # A-Z lowered (`str.lower` / casefold of ASCII)
_ASCII_LOWER[65:91] += 32

if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _normalize_ascii_kernel(src, offsets, dst, dst_off, space_t, lower_t):  # pragma: no cover - compiled
        """`normalize_text` of packed ASCII texts: lowered, runs of whitespace made one space, none at either end.

        Branch-free: every byte writes a space slot and a char slot and advances over what it keeps (a slot not
        kept is overwritten by the next write, or lies past the text's end offset). `dst` as long as `src`."""
        w = 0
        for r in range(offsets.shape[0] - 1):
            dst_off[r] = w
            started = 0  # a kept char was written
            pending = 0  # whitespace seen after a kept char, not yet written
            for p in range(offsets[r], offsets[r + 1]):
                c = src[p]
                ws = space_t[c]
                keep = 1 - ws
                dst[w] = 32
                w += pending & keep
                dst[w] = lower_t[c]
                w += keep
                pending = (pending | started) & ws
                started |= keep
        dst_off[offsets.shape[0] - 1] = w


def normalize_ascii_packed(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """`[normalize_text(t) for t in texts]` packed for the kernels, when every text is ASCII: (uint8 code points,
    (n+1,) int64 offsets) -- ~10x faster than `normalize_text` one text at a time, and no string per text; None
    when a text is not ASCII (or numba is missing): use `normalize_text`."""
    if _numba is None:  # pragma: no cover - numba is a dependency
        return None
    packed = pack_ascii(texts)
    return None if packed is None else normalize_packed(*packed)


def pack_ascii(texts: Sequence[str], chunk: int = 8192) -> tuple[np.ndarray, np.ndarray] | None:
    """The texts packed one byte a char (uint8, (n+1,) int64 offsets) when every one is ASCII, else None. Made
    `chunk` texts at a time into one preallocated buffer: no joined copy of all the texts (a joined str and its
    encoding held ~2 bytes a char more at once: ~130 MB for 180k user texts)."""
    if not all(map(str.isascii, texts)):  # (O(1) a text: CPython keeps the flag)
        return None
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    buf = np.empty(int(offsets[-1]), dtype=np.uint8)
    for a in range(0, len(texts), chunk):
        part = "".join(texts[a : a + chunk]).encode("ascii")
        buf[offsets[a] : offsets[a] + len(part)] = np.frombuffer(part, dtype=np.uint8)
    return buf, offsets


def normalize_packed(src: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`normalize_text` of each ASCII text src[offsets[i]:offsets[i+1]] (uint8), packed the same way. Needs
    numba."""
    dst = np.empty(src.size, dtype=np.uint8)
    dst_off = np.empty(offsets.shape[0], dtype=np.int64)
    _normalize_ascii_kernel(src, offsets, dst, dst_off, _ASCII_SPACE, _ASCII_LOWER)
    return dst[: dst_off[-1]], dst_off


def unpack(buf: np.ndarray, offsets: np.ndarray) -> list[str]:
    """The ASCII texts of a packed buffer, as strings."""
    raw = buf.tobytes().decode("ascii")
    at = offsets.tolist()
    return [raw[x:y] for x, y in itertools.pairwise(at)]


def warm_kernels() -> None:
    """Load (or, the first time on a machine, compile) the kernels a dedup task runs, here: a fork pool started
    after this inherits them, instead of each worker loading or compiling its own copy at once."""
    if _numba is None:  # pragma: no cover - numba is a dependency
        return
    packed = normalize_ascii_packed(["warm up", "the kernels"])
    assert packed is not None
    sketch = BandSketch(0.8)
    sketch.bands32_packed(*packed, threads=1)
    sketch.stop = np.zeros(1 << STOP_BITS, dtype=np.uint8)
    sketch.bands32_packed(*packed, threads=1)
    sketch.bands32_of(["warm up", "the kernels"], threads=1)


def normalize_many(texts: Sequence[str]) -> list[str]:
    """`[normalize_text(t) for t in texts]`, through the ASCII kernel when every text is ASCII."""
    packed = normalize_ascii_packed(texts)
    if packed is None:
        return [normalize_text(t) for t in texts]
    return unpack(*packed)


def _pack(norms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of all texts in one uint32 array, plus (n+1,) offsets."""
    if len(norms) == 1:
        cps = np.frombuffer(norms[0].encode("utf-32-le"), dtype=np.uint32)
        return cps, np.array([0, cps.size], dtype=np.int64)
    lengths = np.fromiter((len(t) for t in norms), dtype=np.int64, count=len(norms))
    offsets = np.zeros(len(norms) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    cps = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32)
    return cps, offsets


class _Hasher:
    """Shared shingling + MinHash state for one (num_perm, ngram) setting."""

    def __init__(self, num_perm: int, ngram: int, seed: int = 1) -> None:
        if num_perm < 1 or ngram < 1:
            raise ValueError("num_perm and ngram must be >= 1")
        self.num_perm = num_perm
        self.ngram = ngram
        self.probes = _probe_table(num_perm, seed=seed)

    def signature_normalized(self, norm: str) -> np.ndarray:
        if _numba is not None:
            return self.signatures_normalized([norm])[0]
        return _minhash_numpy(_shingle_hashes(norm, self.ngram), self.num_perm, self.probes)

    _NO_STOP = np.zeros(1, dtype=np.uint8)

    def signatures_normalized(
        self,
        norms: Sequence[str],
        *,
        kernel: str = "auto",
        stop: np.ndarray | None = None,
        threads: int | None = None,
    ) -> np.ndarray:
        """(n, num_perm) uint32 signatures; kernel "numba" (compiled) or "numpy" (same values, slower).

        `stop`: a common-shingle table (`common_shingles`); those shingles are left out of the signatures.
        `threads`: kernel threads for this batch (None: `_threads(n)`; a forked pool worker passes 1).
        """
        out = np.empty((len(norms), self.num_perm), dtype=np.uint32)
        if kernel == "numpy" or (kernel == "auto" and _numba is None):
            for i, t in enumerate(norms):
                out[i] = _minhash_numpy(
                    _drop_common(_shingle_hashes(t, self.ngram), stop), self.num_perm, self.probes
                )
            return out
        if _numba is None:
            raise RuntimeError("numba is not installed")
        cps, offsets = _pack(norms)
        return self.signatures_packed(cps, offsets, stop=stop, threads=threads, out=out)

    def signatures_packed(
        self,
        cps: np.ndarray,
        offsets: np.ndarray,
        *,
        stop: np.ndarray | None = None,
        threads: int | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """`signatures_normalized` of texts already packed: their code points in one array (uint32, or uint8
        for ASCII texts: `normalize_ascii_packed`) and (n+1,) int64 offsets. Needs numba."""
        n = offsets.shape[0] - 1
        if out is None:
            out = np.empty((n, self.num_perm), dtype=np.uint32)
        stop_table = self._NO_STOP if stop is None else stop
        threads = _threads(n) if threads is None else max(1, threads)
        if threads <= 1 or n < 2:
            _minhash_kernel(cps, offsets, self.ngram, self.probes, stop_table, out)
            return out
        # the kernel releases the GIL: one slice of the batch per thread
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, n, threads + 1).astype(np.int64)
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda k: _minhash_kernel(
                        cps,
                        offsets[bounds[k] : bounds[k + 1] + 1],
                        self.ngram,
                        self.probes,
                        stop_table,
                        out[bounds[k] : bounds[k + 1]],
                    ),
                    range(threads),
                )
            )
        return out


def signatures(texts: Sequence[str], *, num_perm: int = 128, ngram: int = 5) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures of the normalized texts."""
    return _Hasher(num_perm, ngram).signatures_normalized([normalize_text(t) for t in texts])


class NearIndex:
    """An incremental near-duplicate index: `add(key, text)`, then `query(text)` -> verified matches.

    `threshold` is the verified similarity (see `similarity`) a match must reach; `num_perm` the MinHash size;
    `ngram` the shingle length in characters. Keys are any hashables; adding a key twice does not replace the
    first entry, it adds a second one (use distinct keys). `stop` is an optional common-shingle table
    (`common_shingles`) for templated texts; `NearIndex.from_items` builds one from the texts it indexes.

    Batch forms are much faster than loops: `add_many(items)`, `query_many(texts)`.

    Storage: per band, the (band, hash) keys live in sorted numpy arrays arranged in levels of doubling size
    (a log-structured merge), plus a small dict for the newest entries; about bands * 16 bytes per text, plus
    the normalized text itself (kept to verify candidates).
    """

    _PENDING_MAX = 256  # texts kept in the dict level before they are sorted into a level array

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        ngram: int = 5,
        *,
        bands: int | None = None,
        rows: int | None = None,
        stop: np.ndarray | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self._hasher = _Hasher(num_perm, ngram)
        if bands is None or rows is None:
            bands, rows = lsh_params(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands * rows = {bands * rows} exceeds num_perm = {num_perm}")
        if bands > 64:
            raise ValueError(f"at most 64 bands, got {bands}")
        self.bands, self.rows = bands, rows
        self.stop = stop
        self._keys: list[Hashable] = []
        self._texts: list[str] = []
        self._levels: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted composite keys, slots)
        self._pending: dict[int, list[int]] = {}
        self._pending_n = 0

    @classmethod
    def from_items(
        cls, items: Iterable[tuple[Hashable, str]], threshold: float = 0.8, **kwargs: Any
    ) -> NearIndex:
        """An index over `items` (key, text), leaving out shingles common to > 1% of them (>= 1000 texts)."""
        items = list(items)
        norms = [normalize_text(t) for _, t in items]
        ngram = kwargs.get("ngram", 5)
        idx = cls(threshold, stop=common_shingles(norms, ngram), **kwargs)
        idx._add_normalized([k for k, _ in items], norms)
        return idx

    @property
    def num_perm(self) -> int:
        return self._hasher.num_perm

    @property
    def ngram(self) -> int:
        return self._hasher.ngram

    def __len__(self) -> int:
        return len(self._keys)

    def signature(self, text: str) -> np.ndarray:
        """The (num_perm,) uint32 MinHash signature of the normalized text."""
        return self._hasher.signatures_normalized([normalize_text(text)], stop=self.stop)[0]

    def _composite(self, norms: Sequence[str]) -> np.ndarray:
        """(n, bands) uint64 keys: the band hash with the band number in its low 6 bits."""
        sig = self._hasher.signatures_normalized(norms, stop=self.stop)
        if _numba is None:  # pragma: no cover - numba is a dependency
            bh = _band_hashes(sig, self.bands, self.rows)
            return (bh << np.uint64(6)) | np.arange(self.bands, dtype=np.uint64)
        out = np.empty((sig.shape[0], self.bands), dtype=np.uint64)
        _composite_kernel(sig, self.bands, self.rows, out)
        return out

    # ---------------------------------------------------------------- adding

    def add(self, key: Hashable, text: str) -> None:
        self._add_normalized([key], [normalize_text(text)])

    def add_many(self, items: Iterable[tuple[Hashable, str]]) -> None:
        """Add (key, text) pairs in one batch (one kernel call)."""
        items = list(items)
        self._add_normalized([k for k, _ in items], [normalize_text(t) for _, t in items])

    def _add_normalized(self, keys: list[Hashable], norms: list[str]) -> None:
        if not keys:
            return
        comp = self._composite(norms)
        first = len(self._keys)
        self._keys.extend(keys)
        self._texts.extend(norms)
        if len(keys) >= self._PENDING_MAX:
            slots = np.repeat(np.arange(first, first + len(keys), dtype=np.int64), self.bands)
            self._push_level(comp.reshape(-1), slots)
            return
        pending = self._pending
        for r, row in enumerate(comp.tolist()):
            slot = first + r
            for h in row:
                hit = pending.get(h)
                if hit is None:
                    pending[h] = [slot]
                else:
                    hit.append(slot)
        self._pending_n += len(keys)
        if self._pending_n >= self._PENDING_MAX:
            ks = np.fromiter((h for h, ss in self._pending.items() for _ in ss), dtype=np.uint64)
            ss = np.fromiter((s for ss in self._pending.values() for s in ss), dtype=np.int64)
            self._pending.clear()
            self._pending_n = 0
            self._push_level(ks, ss)

    def _push_level(self, keys: np.ndarray, slots: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        level = (keys[order], slots[order])
        while self._levels and self._levels[-1][0].size <= 2 * level[0].size:
            k0, s0 = self._levels.pop()
            k = np.concatenate((k0, level[0]))
            s = np.concatenate((s0, level[1]))
            order = np.argsort(k, kind="stable")
            level = (k[order], s[order])
        self._levels.append(level)

    # ---------------------------------------------------------------- querying

    def _slots_for(self, comp_row: np.ndarray) -> list[int]:
        found: set[int] = set()
        for keys, slots in self._levels:
            lo = np.searchsorted(keys, comp_row, side="left")
            hi = np.searchsorted(keys, comp_row, side="right")
            for b in np.flatnonzero(hi > lo).tolist():
                found.update(slots[lo[b] : hi[b]].tolist())
        if self._pending:
            get = self._pending.get
            for h in comp_row.tolist():
                hit = get(h)
                if hit:
                    found.update(hit)
        return sorted(found)

    def candidates(self, text: str) -> list[Hashable]:
        """Keys sharing at least one LSH band with `text` (unverified), in insertion order."""
        comp = self._composite([normalize_text(text)])[0]
        return [self._keys[s] for s in self._slots_for(comp)]

    def query(self, text: str, threshold: float | None = None) -> list[tuple[Any, float]]:
        """Verified matches `[(key, score)]` with score >= threshold, best first (ties: insertion order).

        Scores are rounded to 4 decimals. `threshold` may be raised per query (lowering it below the index's
        threshold is allowed but loses LSH recall).
        """
        return self.query_many([text], threshold)[0]

    def query_many(
        self, texts: Sequence[str], threshold: float | None = None
    ) -> list[list[tuple[Any, float]]]:
        """`query` for many texts at once (one kernel call); one result list per text, in order."""
        t = self.threshold if threshold is None else threshold
        cutoff = t * 100.0
        norms = [normalize_text(x) for x in texts]
        if not norms:
            return []
        comp = self._composite(norms)
        results = []
        for norm, row in zip(norms, comp):
            out = []
            for s in self._slots_for(row):
                score = fuzz.ratio(norm, self._texts[s], score_cutoff=cutoff)
                if score >= cutoff and score > 0:
                    out.append((s, round(score / 100.0, 4)))
            out.sort(key=lambda p: (-p[1], p[0]))
            results.append([(self._keys[s], sc) for s, sc in out])
        return results


def near_pairs(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    normalized: bool = False,
    common: float = 0.01,
) -> list[tuple[int, int, float]]:
    """All verified near pairs `(i, j, score)` with i < j among `texts`, sorted by (i, j).

    Sort-based LSH: per band, sort the band hashes and pair the members of each run of equal hashes.
    Shingles found in more than `common` of the texts (boilerplate) are left out of the signatures when there
    are 1000 texts or more (`common_shingles`; 0 turns it off); scores are always verified on the full texts.
    """
    norms = list(texts) if normalized else [normalize_text(t) for t in texts]
    if len(norms) < 2:
        return []
    sketch = BandSketch(threshold, num_perm, ngram, stop=common_shingles(norms, ngram, share=common))
    cand = candidate_pairs(sketch.bands_of(norms))
    return verify_pairs(norms.__getitem__, cand, threshold)


def near_pairs_lazy(
    n: int,
    norm_of: Callable[[int], str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    common: float = 0.01,
) -> list[tuple[int, int, float]]:
    """`near_pairs(texts, normalized=True)` over `n` normalized texts made on demand by `norm_of(i)`: the same
    pairs, without holding the texts (memory: 4 bytes per LSH band per text; texts are made ~2-3 times)."""
    if n < 2:
        return []

    class _Texts(Sequence[str]):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: Any) -> Any:
            if isinstance(i, slice):
                return [norm_of(k) for k in range(*i.indices(n))]
            return norm_of(i)

    texts = _Texts()
    sketch = BandSketch(threshold, num_perm, ngram, stop=common_shingles(texts, ngram, share=common))
    bands = np.empty((n, sketch.bands), dtype=np.uint32)  # the top 32 bits: all candidate_pairs reads
    for a in range(0, n, sketch.CHUNK):
        chunk = texts[a : a + sketch.CHUNK]
        bands[a : a + len(chunk)] = sketch.bands32_of(chunk)
    cand = candidate_pairs(bands)
    del bands
    return verify_pairs(norm_of, cand, threshold)


class BandSketch:
    """LSH band keys of normalized texts, computed in bounded chunks: the bulk path behind `near_pairs`.

    sketch = BandSketch(0.8, stop=common_shingles(sample_norms))
    keys = sketch.bands_of(norms)            # (n, bands) uint64, chunk by chunk
    pairs = verify_pairs(norms.__getitem__, candidate_pairs(keys), 0.8)
    """

    CHUNK = 8192  # texts per kernel call: bounds the UTF-32 staging copy to ~CHUNK * 4 * text length bytes

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, *, stop: np.ndarray | None = None
    ) -> None:
        self.threshold = threshold
        self.hasher = _Hasher(num_perm, ngram)
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self.stop = stop

    def bands_of(self, norms: Sequence[str], *, threads: int | None = None) -> np.ndarray:
        """(n, bands) uint64 band hashes (`threads`: see `_Hasher.signatures_normalized`)."""
        out = np.empty((len(norms), self.bands), dtype=np.uint64)
        for a in range(0, len(norms), self.CHUNK):
            sig = self.hasher.signatures_normalized(
                norms[a : a + self.CHUNK], stop=self.stop, threads=threads
            )
            out[a : a + sig.shape[0]] = _band_hashes(sig, self.bands, self.rows)
        return out

    def bands32_packed(
        self, cps: np.ndarray, offsets: np.ndarray, *, threads: int | None = None
    ) -> np.ndarray:
        """`bands32_of` of packed normalized texts (see `_Hasher.signatures_packed`). Needs numba."""
        n = offsets.shape[0] - 1
        out = np.empty((n, self.bands), dtype=np.uint32)
        for a in range(0, n, self.CHUNK):
            b = min(n, a + self.CHUNK)
            sig = self.hasher.signatures_packed(cps, offsets[a : b + 1], stop=self.stop, threads=threads)
            _band_top_kernel(sig, self.bands, self.rows, out[a:b])
        return out

    def bands32_of(self, norms: Sequence[str], *, threads: int | None = None) -> np.ndarray:
        """(n, bands) uint32: the top 32 bits of `bands_of(norms)` (all `candidate_pairs` reads; half the memory),
        from a compiled kernel (the numpy path of `bands_of` cost ~4 us a text)."""
        out = np.empty((len(norms), self.bands), dtype=np.uint32)
        for a in range(0, len(norms), self.CHUNK):
            sig = self.hasher.signatures_normalized(
                norms[a : a + self.CHUNK], stop=self.stop, threads=threads
            )
            if _numba is None:  # pragma: no cover - numba is a dependency
                out[a : a + sig.shape[0]] = _band_hashes(sig, self.bands, self.rows) >> np.uint64(32)
            else:
                _band_top_kernel(sig, self.bands, self.rows, out[a : a + sig.shape[0]])
        return out


MAX_RUN = 256  # pair a bucket member with at most this many later members (guards against huge buckets)


def candidate_pairs(bh: np.ndarray, max_run: int = MAX_RUN, *, threads: int | None = None) -> np.ndarray:
    """Unique (i, j), i < j, pairs sharing a band hash; bh is (n, bands). Returns (k, 2) int64, sorted.

    `bh` may be uint64 band hashes or uint32 (their top 32 bits, half the memory): only those bits are used.

    Vectorized per band: sort the hashes (stable, so members of a bucket stay in index order) and pair each
    position with the next d = 1, 2, ... positions while they are in the same bucket. A bucket larger than
    `max_run` + 1 is only paired within a window of `max_run` (logged): its members still chain together.
    The bands are independent: `threads` (None: `_threads(n)`) take them in turns (numpy releases the GIL).
    """
    n, bands = bh.shape
    idx = np.arange(n, dtype=np.uint64)

    def band_codes(band: int) -> tuple[list[np.ndarray], bool]:
        return _band_codes(bh[:, band], idx, n, max_run)

    threads = _threads(n) if threads is None else max(1, threads)
    if threads > 1 and bands > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, bands)) as pool:
            per_band = list(pool.map(band_codes, range(bands)))
    else:
        per_band = [band_codes(band) for band in range(bands)]
    codes = [c for got, _ in per_band for c in got]
    truncated = sum(t for _, t in per_band)
    if truncated:
        log.info("near: %d band(s) had buckets over %d members; paired within a window", truncated, max_run)
    if not codes:
        return np.empty((0, 2), dtype=np.int64)
    u = np.unique(np.concatenate(codes))
    return np.stack((u // n, u % n), axis=1)


SMALL_BUCKET = 32  # buckets up to this size pair every two members
WINDOW = 4  # in a larger bucket a member meets its WINDOW nearest neighbours in the order of its other bands


def candidate_pairs_counted(
    bh: np.ndarray, *, small: int = SMALL_BUCKET, window: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Unique (i, j), i < j, pairs sharing a band, and per pair how many bands it shares (more shared bands, more
    alike: what `cap_candidates` ranks by).

    Bounded work on any data: a bucket of up to `small` members pairs all of them; in a larger bucket (templated
    text: thousands of records sharing a band) the members are sorted by their next three bands' hashes and each
    meets its `window` next members in that order (near twins agree on most bands and sit side by side) and the
    bucket's `window` lowest indices (the first in keep order), so the pairs per band stay <= n * max(2 * window,
    small) instead of growing with the square of the bucket. (A pair in a
    large bucket whose other bands differ can be missed in that band; it still meets in the bands it shares.)"""
    n, bands = bh.shape
    if n < 2:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    col32 = bh if bh.dtype == np.uint32 else (bh >> np.uint64(32)).astype(np.uint32)
    idx = np.arange(n, dtype=np.int64)
    codes: list[np.ndarray] = []
    merged: tuple[np.ndarray, np.ndarray] | None = None
    for band in range(bands):
        others = [col32[:, (band + k) % bands] for k in (3, 2, 1)] if bands > 1 else []
        order = np.lexsort((idx, *others, col32[:, band]))
        key = col32[order, band]
        same = key[1:] == key[:-1]
        if not same.any():
            continue
        run_id = np.concatenate(([0], np.cumsum(~same)))
        run_size = np.bincount(run_id)[run_id]
        big = np.flatnonzero(run_size > small)
        if (
            big.size
        ):  # every member of a large bucket also meets the bucket's `window` lowest indices (the first
            # in keep order: the ones that are kept), so a family of near twins collapses to one
            members = order[big]
            rid = run_id[big]
            o2 = np.lexsort((members, rid))
            members, rid = members[o2], rid[o2]
            first = np.concatenate(([True], rid[1:] != rid[:-1]))
            start = np.maximum.accumulate(np.where(first, np.arange(len(rid)), 0))
            for t in range(window):
                q = start + t
                ok = (q < len(rid)) & (q < np.arange(len(rid)))
                ok[ok] &= rid[q[ok]] == rid[ok]
                if not ok.any():
                    break
                a, b = members[q[ok]], members[ok]
                codes.append(np.minimum(a, b) * n + np.maximum(a, b))
        hit = np.flatnonzero(same)
        for d in range(1, max(small, window) + 1):
            if d > 1:
                hit = hit[hit + d < n]
                hit = hit[run_id[hit + d] == run_id[hit]]
            if d > window:
                hit = hit[run_size[hit] <= small]
            if hit.size == 0:
                break
            a, b = order[hit], order[hit + d]
            codes.append(np.minimum(a, b) * n + np.maximum(a, b))
        if sum(len(c) for c in codes) > _MERGE_CODES:  # fold repeats as we go: memory ~ distinct pairs
            merged = _merge_counts(merged, codes)
            codes = []
    merged = _merge_counts(merged, codes)
    if merged is None:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    u, counts = merged
    return np.stack((u // n, u % n), axis=1).astype(np.int64), counts.astype(np.int64)


_MERGE_CODES = 4_000_000  # candidate_pairs_counted folds its pair codes into (distinct, count) past this many


def _merge_counts(
    merged: tuple[np.ndarray, np.ndarray] | None, codes: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct codes, how often each was seen) of `merged` plus the new `codes`."""
    if not codes:
        return merged
    u, c = np.unique(np.concatenate(codes), return_counts=True)
    if merged is None:
        return u, c.astype(np.int64)
    both = np.concatenate([merged[0], u])
    weights = np.concatenate([merged[1], c])
    uu, inv = np.unique(both, return_inverse=True)
    return uu, np.bincount(inv.reshape(-1), weights=weights, minlength=len(uu)).astype(np.int64)


def _band_codes(col: np.ndarray, idx: np.ndarray, n: int, max_run: int) -> tuple[list[np.ndarray], bool]:
    """`candidate_pairs` of one band column: (pair codes i * n + j, whether a bucket was cut to the window)."""
    # the top 32 bits of the band hash with the index below them: one plain sort groups each bucket and
    # keeps its members in index order (rarer 32-bit collisions only add candidates; scores are verified)
    if col.dtype == np.uint32:
        high = col.astype(np.uint64) << np.uint64(32)
    else:
        high = col & np.uint64(0xFFFFFFFF00000000)
    packed = np.sort(high | idx)
    top = packed >> np.uint64(32)
    same = top[1:] == top[:-1]
    if not same.any():
        return [], False
    members = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    run_id = np.concatenate(([0], np.cumsum(~same)))
    # positions p with p + d in the same bucket: for d > 1 a subset of those for d - 1 (buckets are runs), so
    # each step filters the last step's hits instead of comparing the whole column again
    codes = []
    hit = np.flatnonzero(same)
    for d in range(1, max_run + 1):
        if d > 1:
            hit = hit[hit + d < n]
            hit = hit[run_id[hit + d] == run_id[hit]]
        if hit.size == 0:
            return codes, False
        codes.append(members[hit] * n + members[hit + d])
    return codes, True


def verify_pairs(
    norm_of: Callable[[int], str], cand: np.ndarray, threshold: float
) -> list[tuple[int, int, float]]:
    """Candidate pairs (k, 2) -> verified `(i, j, score)`, score >= threshold; `norm_of(i)` gives text i."""
    cutoff = threshold * 100.0
    out = []
    for i, j in cand.tolist():
        score = fuzz.ratio(norm_of(i), norm_of(j), score_cutoff=cutoff)
        if score >= cutoff and score > 0:
            out.append((i, j, round(score / 100.0, 4)))
    return out


def near_groups(
    keys_texts: Iterable[tuple[Hashable, str]], threshold: float = 0.5, *, num_perm: int = 128, ngram: int = 5
) -> dict[Any, Any]:
    """Connected components of verified near pairs: `{key: group_key}`, group_key = the group's first key.

    Every key is in the result (a singleton maps to itself). For the splitter: members of one group must land
    in the same split. Groups are transitive (a~b, b~c puts a, b, c together).
    """
    items = list(keys_texts)
    keys = [k for k, _ in items]
    pairs = near_pairs([t for _, t in items], threshold=threshold, num_perm=num_perm, ngram=ngram)
    parent = list(range(len(items)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the root is always the earliest member
    return {keys[i]: keys[find(i)] for i in range(len(items))}


# ---------------------------------------------------------------- candidates for the strict (short-text) rule
# and the verified pairs of plain texts under curate.relation's contract

MAX_VERIFY = 64  # candidates verified per text at most (those sharing the most LSH bands), see cap_candidates


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def skeleton_keys(parts: Sequence[str]) -> list[int]:
    """Keys two items share whenever `relation.text_score`'s strict rule could call each of their parts (e.g.
    prompt and response, normalized) similar: the skeleton of all parts, and for each short part the same with one
    word (4+ letters, the only kind a typo may change) masked but its first letter. Exact candidates: the strict
    rule loses no pair to LSH."""
    sk = [skeleton(p) for p in parts]

    def key(tag: bytes, toks: list[list[str]]) -> int:
        return _h64(tag + "\x1e".join("\x1f".join(t) for t in toks).encode("utf-8", "surrogatepass"))

    keys = [key(b"s", sk)]
    for side, toks in enumerate(sk):
        if not is_short(parts[side]):
            continue
        for k, tok in enumerate(toks):
            if len(tok) >= 4 and tok.isalpha():
                masked = [list(t) for t in sk]
                masked[side][k] = tok[0] + "\x00"
                keys.append(key(b"m", masked))
    return keys


def key_pairs(keyed: list[tuple[int, int]], local: np.ndarray, max_run: int = 16) -> np.ndarray:
    """Candidate pairs (i < j, local indices) of items sharing a key: each member of a key's group is paired with
    the group's first `max_run` members (lowest index: the first in keep order), so a group of any size costs at
    most `max_run` pairs a member and every member meets the ones that would be kept."""
    if not keyed:
        return np.empty((0, 2), dtype=np.int64)
    pos = np.array([p for p, _ in keyed], dtype=np.int64)
    key = np.array([h for _, h in keyed], dtype=np.uint64)
    loc = local[pos]
    ok = loc >= 0
    loc, key = loc[ok], key[ok]
    if len(loc) < 2:
        return np.empty((0, 2), dtype=np.int64)
    o = np.lexsort((loc, key))
    loc, key = loc[o], key[o]
    m = len(loc)
    new = np.concatenate(([True], key[1:] != key[:-1]))
    start = np.maximum.accumulate(np.where(new, np.arange(m), 0))
    at = np.arange(m)
    out = []
    for t in range(max_run):
        q = start + t
        ok = q < at
        if not ok.any():
            break
        a, b = loc[q[ok]], loc[at[ok]]
        out.append(np.stack((np.minimum(a, b), np.maximum(a, b)), axis=1))
    if not out:
        return np.empty((0, 2), dtype=np.int64)
    got = np.unique(np.concatenate(out), axis=0)
    return got[got[:, 0] != got[:, 1]]


def cap_candidates(cand: np.ndarray, counts: np.ndarray, n: int, limit: int) -> np.ndarray:
    """At most `limit` candidates per record: a pair stays when it is among the `limit` pairs sharing the most
    bands of EITHER member (ties to the lower index). Bounds verification on templated data."""
    if len(cand) <= limit:
        return cand
    per = np.bincount(cand.ravel(), minlength=n)
    if per.max() <= limit:
        return cand
    keep = np.zeros(len(cand), dtype=bool)
    for col in (0, 1):
        o = np.lexsort((cand[:, 1 - col], -counts, cand[:, col]))
        member = cand[o, col]
        starts = np.r_[0, np.flatnonzero(member[1:] != member[:-1]) + 1]
        pos_in = np.arange(len(o)) - np.repeat(starts, np.diff(np.r_[starts, len(o)]))
        keep[o[pos_in < limit]] = True
    return cand[keep]


SHORT_CHARS = 400  # skeleton keys are made for texts shorter than this with a short part


def text_pairs(
    n: int,
    norm_of: Callable[[int], str],
    threshold: float,
    *,
    num_perm: int = 128,
    ngram: int = 5,
    max_verify: int = MAX_VERIFY,
    runner: Callable[..., Iterable[Any]] | None = None,
) -> list[tuple[int, int, float]]:
    """All pairs (i, j, score), i < j, of `n` normalized texts (`norm_of(i)`) that `relation.text_score` calls
    similar at `threshold`, found by LSH (no corpus frequency filter) plus skeleton keys for short texts, each text
    meeting at most `max_verify` candidates (the ones sharing the most bands). Texts are made on demand. `runner`: an
    engine's task runner for the verification (`scored_pairs`)."""
    if n < 2:
        return []
    sketch = BandSketch(threshold, num_perm, ngram)
    bands = np.empty((n, sketch.bands), dtype=np.uint32)
    keyed: list[tuple[int, int]] = []
    for a in range(0, n, sketch.CHUNK):
        chunk = [norm_of(k) for k in range(a, min(n, a + sketch.CHUNK))]
        packed = pack_ascii(chunk)
        bands[a : a + len(chunk)] = (
            sketch.bands32_packed(*packed) if packed is not None else sketch.bands32_of(chunk)
        )
        for k, t in enumerate(chunk):
            if len(t) < SHORT_CHARS and is_short(t):
                keyed += [(a + k, h) for h in skeleton_keys([t])]
    cand, counts = candidate_pairs_counted(bands)
    del bands
    extra = key_pairs(keyed, np.arange(n, dtype=np.int64))
    if len(extra):
        cand = np.concatenate([cand, extra])
        counts = np.concatenate([counts, np.full(len(extra), 1 << 20, dtype=np.int64)])
        cand, at = np.unique(cand, axis=0, return_index=True)
        counts = counts[at]
    cand = cap_candidates(cand, counts, n, max_verify)
    return scored_pairs(cand, lambda i, j: text_score(norm_of(i), norm_of(j), threshold), runner)


VERIFY_CHUNK = 8_192  # candidate pairs a verification task scores (scored_pairs)


def scored_pairs(
    cand: Any, score: Callable[[int, int], float], runner: Callable[..., Iterable[Any]] | None = None
) -> list[tuple[int, int, float]]:
    """(i, j, score(i, j)) of each candidate pair (an (m, 2) array or a list of pairs) whose score is above 0, in
    candidate order. `runner(fn, tasks, work)`, when given, runs the chunks of `VERIFY_CHUNK` pairs (an engine's
    runner: `compact.RowAccess.map`'s fork pool, `ray_map.RayMapper.map`); `score` must then depend on what this
    process holds alone. Same pairs either way."""

    def task(bounds: tuple[int, int], threads: int | None = None) -> list[tuple[int, int, float]]:
        part = cand[bounds[0] : bounds[1]]
        out = []
        for i, j in part.tolist() if not isinstance(part, list) else part:
            s = score(i, j)
            if s > 0:
                out.append((i, j, s))
        return out

    tasks = [(a, min(len(cand), a + VERIFY_CHUNK)) for a in range(0, len(cand), VERIFY_CHUNK)]
    parts = (
        runner(task, tasks, 2 * len(cand)) if runner is not None and len(tasks) else (task(t) for t in tasks)
    )
    return [p for part in parts for p in part]
