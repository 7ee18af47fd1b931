"""Near-duplicate detection: MinHash over character shingles, LSH banding, verified candidates.

    >>> from curate.near import NearIndex
    >>> idx = NearIndex(threshold=0.8)
    >>> idx.add("a", "How do I reset my password? I forgot it yesterday.")
    >>> idx.query("how do i reset my password?  I forgot it yesterday!")
    [('a', 0.98)]

How it works, and what the numbers mean:
- Texts are normalized (`curate.records.normalize_text`: NFKC, casefold, collapsed whitespace), cut into
  character `ngram`-shingles (code points), and each shingle is hashed to 64 bits (a polynomial over the code
  points, then a mixer). The MinHash signature takes, for each of `num_perm` multiply-shift hash functions,
  the minimum over the shingles (32-bit values). Everything is deterministic across processes and machines.
- LSH banding: the signature is cut into `bands` bands of `rows` values; two texts sharing one band are
  candidates. `(bands, rows)` are chosen from the threshold (`lsh_params`) so that texts whose verified score
  is at the threshold become candidates with probability > 0.99.
- Candidates are VERIFIED with a similarity score: the normalized Indel similarity of the two normalized texts
  (`rapidfuzz.fuzz.ratio / 100`, 1 - edits/total length). Only pairs with score >= threshold are returned, so the
  LSH step can only cost recall, never precision. A 600-character text with 12 edited words scores ~0.9.
  Unrelated texts of similar length score ~0.4-0.55, so thresholds below ~0.6 group loosely related texts.

Two ways in: the incremental `NearIndex` (add/query, used by split grouping, held-out freeze and leakage) and
the bulk `near_pairs(texts)` (all verified pairs among many texts at once, used by dedup; sort-based, with no
Python dict per band, so memory stays near `bands * 4` bytes per text).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from curate.records import normalize_text

__all__ = ["NearIndex", "exact_key", "lsh_params", "near_groups", "near_pairs", "signatures", "similarity"]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_POLY = np.uint64(0x100000001B3)  # FNV-64 prime as the polynomial base


def exact_key(text: str) -> str:
    """The exact-duplicate key: sha256 (hex, 32 chars) of `normalize_text(text)`."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def similarity(a: str, b: str, *, normalized: bool = False) -> float:
    """The verification score in [0, 1]: normalized Indel similarity of the normalized texts."""
    if not normalized:
        a, b = normalize_text(a), normalize_text(b)
    return fuzz.ratio(a, b) / 100.0


def _perm_params(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(1, 2**63 - 1, size=num_perm, dtype=np.uint64) | np.uint64(1)  # odd multipliers
    b = rng.integers(0, 2**63 - 1, size=num_perm, dtype=np.uint64)
    return a, b


def _shingle_hashes(norm: str, ngram: int) -> np.ndarray:
    """64-bit hashes of the character n-grams of an already normalized text (unique values)."""
    cps = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if cps.size == 0:
        cps = np.zeros(1, dtype=np.uint64)
    n = min(ngram, cps.size)
    m = cps.size - n + 1
    with np.errstate(over="ignore"):
        h = np.zeros(m, dtype=np.uint64)
        for k in range(n):
            h = h * _POLY + cps[k:k + m] + np.uint64(1)
        # murmur3 fmix64
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h


def _minhash_numpy(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signature: for each hash function i, min over shingles of ((a_i * x + b_i) mod 2^64) >> 32."""
    with np.errstate(over="ignore"):
        vals = (a[:, None] * shingles[None, :] + b[:, None]) >> np.uint64(32)
    return vals.min(axis=1).astype(np.uint32)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for a verified-score threshold.

    The verified score (Indel similarity) is higher than the shingle Jaccard the LSH sees: on ~600-char texts,
    score s corresponds to Jaccard ~ 1 - 2.5 (1 - s). We pick the largest `rows` (fewest false candidates) whose
    banding still makes a pair at that Jaccard a candidate with probability >= 0.95 (>= 0.99 a little above).
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


class _Hasher:
    """Shared shingling + MinHash state for one (num_perm, ngram) setting."""

    def __init__(self, num_perm: int, ngram: int, seed: int = 1) -> None:
        if num_perm < 1 or ngram < 1:
            raise ValueError("num_perm and ngram must be >= 1")
        self.num_perm = num_perm
        self.ngram = ngram
        self.a, self.b = _perm_params(num_perm, seed)

    def signature_normalized(self, norm: str) -> np.ndarray:
        return _minhash_numpy(_shingle_hashes(norm, self.ngram), self.a, self.b)

    def signatures_normalized(self, norms: Sequence[str]) -> np.ndarray:
        out = np.empty((len(norms), self.num_perm), dtype=np.uint32)
        for i, t in enumerate(norms):
            out[i] = self.signature_normalized(t)
        return out


def signatures(texts: Sequence[str], *, num_perm: int = 128, ngram: int = 5) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures of the normalized texts."""
    return _Hasher(num_perm, ngram).signatures_normalized([normalize_text(t) for t in texts])


class NearIndex:
    """An incremental near-duplicate index: `add(key, text)`, then `query(text)` -> verified matches.

    `threshold` is the verified similarity (see `similarity`) a match must reach; `num_perm` the MinHash size;
    `ngram` the shingle length in characters. Keys are any hashables; adding a key twice replaces nothing,
    it adds a second entry (use distinct keys).
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, *,
                 bands: int | None = None, rows: int | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self._hasher = _Hasher(num_perm, ngram)
        if bands is None or rows is None:
            bands, rows = lsh_params(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands * rows = {bands * rows} exceeds num_perm = {num_perm}")
        self.bands, self.rows = bands, rows
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
        self._keys: list[Hashable] = []
        self._texts: list[str] = []

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
        return self._hasher.signature_normalized(normalize_text(text))

    def _bands_of(self, norm: str) -> list[int]:
        return [int(x) for x in _band_hashes(self._hasher.signature_normalized(norm), self.bands, self.rows)]

    def add(self, key: Hashable, text: str) -> None:
        norm = normalize_text(text)
        slot = len(self._keys)
        self._keys.append(key)
        self._texts.append(norm)
        for bucket, h in zip(self._buckets, self._bands_of(norm)):
            bucket.setdefault(h, []).append(slot)

    def candidates(self, text: str) -> list[Hashable]:
        """Keys sharing at least one LSH band with `text` (unverified), in insertion order."""
        return [self._keys[s] for s in self._candidate_slots(normalize_text(text))]

    def _candidate_slots(self, norm: str) -> list[int]:
        slots: set[int] = set()
        for bucket, h in zip(self._buckets, self._bands_of(norm)):
            hit = bucket.get(h)
            if hit:
                slots.update(hit)
        return sorted(slots)

    def query(self, text: str, threshold: float | None = None) -> list[tuple[Any, float]]:
        """Verified matches `[(key, score)]` with score >= threshold, best first (ties: insertion order).

        Scores are rounded to 4 decimals. `threshold` may be raised per query (lowering it below the index's
        threshold is allowed but loses LSH recall).
        """
        t = self.threshold if threshold is None else threshold
        norm = normalize_text(text)
        cutoff = t * 100.0
        out = []
        for s in self._candidate_slots(norm):
            score = fuzz.ratio(norm, self._texts[s], score_cutoff=cutoff)
            if score >= cutoff and score > 0:
                out.append((s, round(score / 100.0, 4)))
        out.sort(key=lambda p: (-p[1], p[0]))
        return [(self._keys[s], sc) for s, sc in out]


def near_pairs(texts: Sequence[str], *, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5,
               normalized: bool = False) -> list[tuple[int, int, float]]:
    """All verified near pairs `(i, j, score)` with i < j among `texts`, sorted by (i, j).

    Sort-based LSH: per band, sort the band hashes and pair the members of each run of equal hashes.
    """
    norms = list(texts) if normalized else [normalize_text(t) for t in texts]
    n = len(norms)
    if n < 2:
        return []
    hasher = _Hasher(num_perm, ngram)
    bands, rows = lsh_params(threshold, num_perm)
    sigs = hasher.signatures_normalized(norms)
    bh = _band_hashes(sigs, bands, rows)
    cand = _candidate_pairs(bh)
    return _verify(norms, cand, threshold)


def _candidate_pairs(bh: np.ndarray) -> np.ndarray:
    """Unique (i, j), i < j, pairs sharing a band hash; bh is (n, bands). Returns (k, 2) int64, sorted."""
    n, bands = bh.shape
    chunks = []
    for band in range(bands):
        col = bh[:, band]
        order = np.argsort(col, kind="stable")
        sc = col[order]
        same = sc[1:] == sc[:-1]
        if not same.any():
            continue
        # runs of equal hashes: pair every member with every later member of its run
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        lengths = np.diff(np.concatenate((starts, [n])))
        for st, ln in zip(starts[lengths > 1], lengths[lengths > 1]):
            members = np.sort(order[st:st + ln])
            ii, jj = np.triu_indices(ln, k=1)
            chunks.append(np.stack((members[ii], members[jj]), axis=1))
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks).astype(np.int64)
    return np.unique(pairs, axis=0)


def _verify(norms: Sequence[str], cand: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    cutoff = threshold * 100.0
    out = []
    for i, j in cand.tolist():
        score = fuzz.ratio(norms[i], norms[j], score_cutoff=cutoff)
        if score >= cutoff and score > 0:
            out.append((i, j, round(score / 100.0, 4)))
    return out


def near_groups(keys_texts: Iterable[tuple[Hashable, str]], threshold: float = 0.5, *,
                num_perm: int = 128, ngram: int = 5) -> dict[Any, Any]:
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


def _jaccard_floor(threshold: float) -> float:  # kept for callers who want the LSH's own view
    return min(0.95, max(0.3, 1.0 - 2.5 * (1.0 - threshold)))


def _candidate_probability(j: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - math.pow(j, rows)) ** bands
