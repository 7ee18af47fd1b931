"""MinHash signatures of normalized texts and their LSH band keys: the hashing half of near-duplicate detection.

    >>> from curate.minhash import BandSketch
    >>> sketch = BandSketch(0.8)
    >>> sketch.bands32_of(["how do i reset my password?"]).shape[0]
    1

- Texts are normalized (`curate.records.normalize_text`: NFKC, casefold, collapsed whitespace), cut into
  character `ngram`-shingles (code points), and each shingle is hashed to 64 bits (a polynomial over the code
  points, then a mixer). The signature is a one-permutation MinHash with optimal densification (`num_perm`
  bins of 32-bit minima; see `_minhash_numpy`): slot-wise agreement estimates Jaccard like classic MinHash,
  at one hash per shingle instead of `num_perm`. A numba kernel computes it (`curate.minhash_kernels` holds the
  compiled kernels; their numpy twins are here); measured here on 600-character texts, one busy core: ~57-66k
  texts/s, vs classic 128-permutation MinHash in numba ~30-40k/s, rensa (Rust, fed Python shingle lists) ~9k/s,
  datasketch ~0.8k/s. Deterministic across processes and machines.
  (Later: the kernel's minimum updates made branch-free, and ASCII texts packed as bytes by the compiled
  normalizer (`normalize_ascii_packed`): the kernel alone ~3.2 us a 540-character text with the common-shingle
  table, ~2.1 us without, on one core (CPU time, the 210k benchmark workload), ~1.6x the branchy version.)
- LSH banding: the signature is cut into `bands` bands of `rows` values; two texts sharing one band are
  candidates. `(bands, rows)` are chosen from the threshold (`lsh_params`) so that a pair at the Jaccard
  that usually goes with the threshold's verified score is a candidate with probability >= 0.95 (a 12-word
  edit of a 600-character text, score ~0.9, Jaccard ~0.75: > 0.999 at the default 0.8).
- `BandSketch` computes band keys in bounded chunks (the build's dedup, split and leakage check);
  `common_shingles` (boilerplate shingles left out of signatures) serves `curate.near_index` only: the build
  uses no corpus frequency filter (a decision about two records never depends on the others).

Which pairs become candidates and how they are verified: `curate.near`; what a duplicate is: `curate.relation`.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence

import numpy as np

from curate.minhash_kernels import _numba
from curate.records import normalize_text

# the compiled kernels (curate.minhash_kernels); the numpy versions here compute the same values (tests compare)
if _numba is not None:
    from curate.minhash_kernels import (
        _agreement_kernel,
        _band_order_kernel,
        _band_pairs_kernel,
        _band_top_kernel,
        _count_kernel,
        _minhash_kernel,
        _normalize_ascii_kernel,
    )

log = logging.getLogger(__name__)

_POLY = np.uint64(0x100000001B3)  # FNV-64 prime as the polynomial base


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


def usual_jaccard(threshold: float) -> float:
    """The shingle Jaccard that usually goes with a verified score at `threshold` (~600-character texts, word
    edits: J ~ 1 - 2.5 (1 - score)), clipped to [0.3, 0.95]: what `lsh_params` and `agreement_floor` are made for."""
    return min(0.95, max(0.3, 1.0 - 2.5 * (1.0 - threshold)))


def agreement_floor(threshold: float, num_perm: int, miss: float = 0.01) -> int:
    """The fewest agreeing slots (of `num_perm`) an LSH candidate needs to be verified: the largest k such that a
    pair at the usual Jaccard of `threshold` (`usual_jaccard`) has fewer than k agreeing slots with probability
    <= `miss` (slots agree independently with probability J; binomial tail, exact). 51 of 128 at 0.8 (J 0.5: the
    bands find such a pair with p 0.996, bands and floor with 0.988).

    Pairs further apart than the usual Jaccard are the ones LSH already misses more often (the bands are made for
    p >= 0.95 at it); the floor drops most of them, and on templated text (a small vocabulary: unrelated texts at
    J 0.2-0.45) nearly every candidate (docs/contracts.md, "Candidates and their bounds", for what it costs)."""
    import math

    j = usual_jaccard(threshold)
    tail = 0.0
    for k in range(num_perm + 1):  # tail = P(X < k) before the term for k is added
        term = math.comb(num_perm, k) * j**k * (1.0 - j) ** (num_perm - k)
        if tail + term > miss:
            return k
        tail += term
    return num_perm


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for a verified-score threshold.

    The verified score (Indel similarity) is higher than the shingle Jaccard the LSH sees: on ~600-char texts,
    score s corresponds to Jaccard ~ 1 - 2.5 (1 - s). We pick the largest `rows` (fewest false candidates)
    whose banding still makes a pair at that Jaccard a candidate with probability >= 0.95 (>= 0.99 a little
    above).
    """
    j_lo = usual_jaccard(threshold)
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


def slot_agreement(digest: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each pair (a[k], b[k]) of rows of `digest` ((n, num_perm) uint8: the low byte of each MinHash slot,
    `BandSketch.bands32_of(..., digest=)`), how many slots agree (int16). Two texts at Jaccard J agree in a slot
    with probability J + (1 - J) / 256 (the low byte of two different minima collides 1 time in 256)."""
    out = np.empty(len(a), dtype=np.int16)
    if _numba is None:  # pragma: no cover - numba is a dependency
        for s in range(0, len(a), 65536):
            out[s : s + 65536] = (digest[a[s : s + 65536]] == digest[b[s : s + 65536]]).sum(axis=1)
        return out
    _agreement_kernel(digest, np.ascontiguousarray(a, np.int64), np.ascontiguousarray(b, np.int64), out)
    return out


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
    digest = np.empty((2, sketch.hasher.num_perm), dtype=np.uint8)
    sketch.bands32_of(["warm up", "the kernels"], threads=1, digest=digest)
    slot_agreement(digest, np.zeros(1, np.int64), np.ones(1, np.int64))
    # (near.candidate_pairs_counted's floored pairs: the types it passes)
    _band_order_kernel(np.zeros((2, 3), np.uint32), 0)
    _band_pairs_kernel(
        np.arange(2, dtype=np.int64),
        np.zeros(2, np.uint32),
        32,
        4,
        digest.view(np.uint64),
        51,
        np.zeros(2, np.bool_),
        -1,
        True,
        np.arange(2, dtype=np.int64),
        np.zeros(2, np.uint8),
        np.zeros((2, 2, 1), np.uint16),
        np.zeros((2, 2), np.int32),
        np.zeros((2, 2, 1), np.uint32),
        np.zeros(2, np.int64),
        np.zeros((2, 1, 128), np.uint8),
        np.zeros((2, 1), np.int64),
        0.8,
        0,
        np.empty(16, np.int64),
    )
    from curate.residency import drop_library_pages

    drop_library_pages()  # (LLVM's code, mapped to load the kernels, is not run again: curate.residency)


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
        self,
        cps: np.ndarray,
        offsets: np.ndarray,
        *,
        threads: int | None = None,
        digest: np.ndarray | None = None,
    ) -> np.ndarray:
        """`bands32_of` of packed normalized texts (see `_Hasher.signatures_packed`). Needs numba."""
        n = offsets.shape[0] - 1
        out = np.empty((n, self.bands), dtype=np.uint32)
        for a in range(0, n, self.CHUNK):
            b = min(n, a + self.CHUNK)
            sig = self.hasher.signatures_packed(cps, offsets[a : b + 1], stop=self.stop, threads=threads)
            _band_top_kernel(sig, self.bands, self.rows, out[a:b])
            if digest is not None:
                digest[a:b] = sig.astype(np.uint8)  # (the low byte of each slot)
        return out

    def bands32_of(
        self, norms: Sequence[str], *, threads: int | None = None, digest: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, bands) uint32: the top 32 bits of `bands_of(norms)` (all `candidate_pairs` reads; half the memory),
        from a compiled kernel (the numpy path of `bands_of` cost ~4 us a text). `digest`, when given, an
        (n, num_perm) uint8 array, receives the low byte of every MinHash slot (`slot_agreement`)."""
        out = np.empty((len(norms), self.bands), dtype=np.uint32)
        for a in range(0, len(norms), self.CHUNK):
            sig = self.hasher.signatures_normalized(
                norms[a : a + self.CHUNK], stop=self.stop, threads=threads
            )
            if _numba is None:  # pragma: no cover - numba is a dependency
                out[a : a + sig.shape[0]] = _band_hashes(sig, self.bands, self.rows) >> np.uint64(32)
            else:
                _band_top_kernel(sig, self.bands, self.rows, out[a : a + sig.shape[0]])
            if digest is not None:
                digest[a : a + sig.shape[0]] = sig.astype(np.uint8)  # (the low byte of each slot)
        return out


__all__ = [
    "BandSketch",
    "agreement_floor",
    "common_shingles",
    "lsh_params",
    "normalize_ascii_packed",
    "normalize_many",
    "pack_ascii",
    "signatures",
    "slot_agreement",
    "usual_jaccard",
    "warm_kernels",
]
