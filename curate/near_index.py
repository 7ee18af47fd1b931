"""An incremental near-duplicate index and bulk helpers over plain texts (expand's novelty check, benchmarks).

    >>> from curate.near_index import NearIndex
    >>> idx = NearIndex(threshold=0.8)
    >>> idx.add("a", "How do I reset my password? I forgot it yesterday.")
    >>> idx.query("how do i reset my password?  I forgot it yesterday!")
    [('a', 0.98)]

Candidates share an LSH band of `curate.minhash` signatures and are VERIFIED with the normalized Indel
similarity of the two normalized texts (`rapidfuzz.fuzz.ratio / 100`): only pairs with score >= threshold
come back, so the LSH step can only cost recall. Bulk paths (`near_pairs`, `near_groups`) leave shingles
found in more than 1% of the texts out of the signatures (`common_shingles`). The build does not use these:
its decisions are `curate.relation`'s, on candidates from `curate.near`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from curate.minhash import (
    BandSketch,
    _band_hashes,
    _Hasher,
    _threads,
    common_shingles,
    lsh_params,
)
from curate.minhash_kernels import _composite_kernel, _numba
from curate.records import normalize_text

log = logging.getLogger(__name__)


def exact_key(text: str) -> str:
    """The exact-duplicate key: sha256 (hex, 32 chars) of `normalize_text(text)`."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def similarity(a: str, b: str, *, normalized: bool = False) -> float:
    """The verification score in [0, 1]: normalized Indel similarity of the normalized texts."""
    if not normalized:
        a, b = normalize_text(a), normalize_text(b)
    return fuzz.ratio(a, b) / 100.0


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


__all__ = [
    "MAX_RUN",
    "NearIndex",
    "candidate_pairs",
    "exact_key",
    "near_groups",
    "near_pairs",
    "near_pairs_lazy",
    "similarity",
    "verify_pairs",
]
