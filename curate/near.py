"""Candidate pairs for near-duplicate and leakage decisions, and their verification under `curate.relation`.

    >>> from curate.near import text_pairs
    >>> texts = ["how do i reset my password?", "how do i reset my password", "what are your hours?"]
    >>> text_pairs(len(texts), texts.__getitem__, 0.8)
    [(0, 1, 1.0)]

The build's dedup (`curate.steps.dedup`), split (`curate.steps.split`) and leakage check
(`curate.steps.leakcheck`) find candidates here and let `curate.relation` decide:
- `candidate_pairs_counted`: pairs sharing an LSH band (`curate.minhash.BandSketch`), with how many bands they
  share; bounded work in large buckets (templated text); `over_floor`: the pairs whose MinHash slots agree in at
  least `minhash.agreement_floor` (templated letters share most 5-grams, so nearly every pair of them shares a
  band; the floor keeps the ones alike enough to be near twins, a function of the pair). Passed as `floor=`, a
  compiled kernel (`minhash_kernels._band_pairs_kernel`) makes each band's pairs and tests the floor as it meets
  them, so only the pairs over it are counted: the same pairs, counts and order as the numpy reference testing it
  on the distinct pairs (`keep=`; tests/test_near_floor.py compares them on generated band matrices);
- `curate.near_short`: the strict short-text rule's candidates (`skeleton_keys` / `key_pairs`: every pair the rule
  can merge shares a key, so LSH loses no short pair) and `ShortSketches`, which rules out LSH candidates of two
  short texts the rule cannot join;
- `cap_candidates`: at most `MAX_VERIFY` candidates per record (those sharing the most bands), the documented
  bound on work (docs/contracts.md);
- `text_pairs` / `scored_pairs`: verified pairs of plain texts, chunked for an engine's task runner.

The incremental `NearIndex` and the older bulk helpers (`near_pairs`, `near_groups`) are in `curate.near_index`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeGuard

import numpy as np

from curate.minhash import BandSketch, _threads, agreement_floor, pack_ascii, slot_agreement
from curate.minhash_kernels import _numba

if _numba is not None:
    from curate.minhash_kernels import _band_order_kernel, _band_pairs_kernel
else:  # pragma: no cover - numba is a dependency; the numpy path tests the floor as `keep`
    _band_order_kernel = _band_pairs_kernel = None
from curate.near_chars import CharBound, CharRows
from curate.near_short import SHORT_CHARS, Keyed, ShortSketches, key_pairs, skeleton_keys
from curate.near_verify import VERIFY_CHUNK, ScoredPairs, scored_pairs  # noqa: F401 (re-exported)
from curate.relation import has_cjk, is_short, text_score
from curate.residency import trim_heap

log = logging.getLogger(__name__)


SMALL_BUCKET = 32  # buckets up to this size pair every two members
WINDOW = 4  # in a larger bucket a member meets its WINDOW nearest neighbours in the order of its other bands


def candidate_pairs_counted(
    bh: np.ndarray,
    *,
    small: int = SMALL_BUCKET,
    window: int = WINDOW,
    floor: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    report: Callable[[int, int], None] | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unique (i, j), i < j, pairs sharing a band, and per pair how many bands it shares (more shared bands, more
    alike: what `cap_candidates` ranks by). `report(bands done, bands)`, when given, is called after each band.

    `floor(i, j)` then `keep(i, j)`, when given, say which pairs (two index arrays) to keep: tests of the two texts
    alone (`floor`: the slot-agreement floor, `over_floor`; `keep`: dedup's `parts_meet`). The result is then that
    of the call without them, less the pairs they reject; pairs are tested as they are folded, so memory follows
    the pairs kept, not the pairs met (templated text meets millions of unrelated pairs; docs/contracts.md). The
    shared-band counts stay the rank (a member of a large bucket meets the bucket's first members in every band, so
    they outrank its other twins and a family of hundreds of twins still collapses to one). A `floor` that is a
    `SlotFloor` (what `over_floor` returns) is tested in a compiled kernel as each band's pairs are met
    (`minhash_kernels._band_pairs_kernel`), so that only the pairs over it are counted and folded (on templated
    text ~250 pairs a record are met and 99.9% of them are under the floor), with its `parts` test when it has one
    (dedup's `parts_meet` as a `PartsTest`: short prompts with templated answers meet ~200 pairs a record over the
    floor that it rejects); the same pairs and counts as `keep=floor` (a test of the pair alone gives the same
    answer for each time it is met; tests compare the two, `test_fused_floor_equals_the_numpy_reference`); `threads` (None: `minhash._threads(n)`) bands are made at a
    time (the compiled sort and kernel release the GIL), each band's kept pairs folded in band order. Any other
    `floor` (e.g. `dedup_keys.floor_test` over rows on disk) is tested as `keep` is, on the distinct pairs of each
    fold.

    Bounded work on any data: a bucket of up to `small` members pairs all of them; in a larger bucket (templated
    text: thousands of records sharing a band) the members are sorted by their next three bands' hashes and each
    meets its `window` next members in that order (near twins agree on most bands and sit side by side) and the
    bucket's `window` lowest indices (the first in keep order), so the pairs per band stay <= n * max(2 * window,
    small) instead of growing with the square of the bucket. (A pair in a
    large bucket whose other bands differ can be missed in that band; it still meets in the bands it shares.)"""
    n, bands = bh.shape
    if n < 2:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    fused = _floored(floor, n, small, window) if _fusable(floor) else None
    if floor is not None and fused is None:
        keep = floor if keep is None else _both(floor, keep)
    col32 = bh if bh.dtype == np.uint32 else (bh >> np.uint64(32)).astype(np.uint32)
    idx = np.arange(n, dtype=np.int64)
    test = None if keep is None else (lambda u: keep(u // n, u % n))
    folds = _Folds(_MERGE_CODES if keep is None and fused is None else _MERGE_CODES // 4, test)
    if fused is not None:
        for band, parts in enumerate(
            _floored_bands(col32, fused, _threads(n) if threads is None else threads)
        ):
            if report is not None and band:
                report(band, bands)
            folds.add(parts)
        return folds.result(n)
    for band in range(bands):
        if report is not None and band:
            report(band, bands)
        others = [col32[:, (band + k) % bands] for k in (3, 2, 1)] if bands > 1 else []
        order = np.lexsort((idx, *others, col32[:, band]))
        folds.add(_band_codes(order, col32[order, band], small, window))
    return folds.result(n)


def _band_order(col32: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, key): `np.lexsort((idx, *others, col32[:, band]))` of `candidate_pairs_counted` (by the band's key,
    then the next three bands' keys, then index) and the band's keys in that order, by a compiled radix sort
    (`minhash_kernels._band_order_kernel`; tests compare it with the lexsort)."""
    return _band_order_kernel(np.ascontiguousarray(col32, np.uint32), band)


def _band_codes(order: np.ndarray, key: np.ndarray, small: int, window: int) -> list[np.ndarray]:
    """The pair codes (min * n + max) one band emits (`candidate_pairs_counted`'s rule), from the band's sort of
    the n records (`order`) and their keys in that order: the numpy reference of `_band_pairs_kernel`."""
    n = len(order)
    codes: list[np.ndarray] = []
    same = key[1:] == key[:-1]
    if not same.any():
        return codes
    run_id = np.concatenate(([0], np.cumsum(~same)))
    run_size = np.bincount(run_id)[run_id]
    big = np.flatnonzero(run_size > small)
    if big.size:  # every member of a large bucket also meets the bucket's `window` lowest indices (the first
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
    return codes


_FLOORED_CHUNK = 1 << 18  # codes over the floor `_band_pairs_kernel` writes at a time (2 MB)


def _floored(
    floor: SlotFloor, n: int, small: int, window: int
) -> Callable[[np.ndarray, np.ndarray], Iterator[np.ndarray]]:
    """`codes(order, key)`: `_band_codes(order, key, small, window)` less the codes under `floor`, in chunks of at
    most `_FLOORED_CHUNK` codes (the compiled kernel: no array of the codes met)."""
    words, at_least = _words(floor.digest, int(floor.floor))
    exempt = (
        np.zeros(n, dtype=np.bool_) if floor.exempt is None else np.ascontiguousarray(floor.exempt, np.bool_)
    )
    if len(words) < n or len(exempt) < n:
        raise ValueError(f"a SlotFloor of {len(words)} digests and {len(exempt)} flags for {n} records")
    pt = floor.parts
    # (the kernel's types either way, one compiled kernel: one-row arrays where there is no test; one sketch row
    # means "no sketch test" to the kernel)
    parts = (np.zeros(1, np.int64), np.zeros(1, np.uint8), np.zeros((1, 2, 1), np.uint16))
    sketch = (np.zeros((1, 2), np.int32), np.zeros((1, 2, 1), np.uint32))
    cb = floor.chars  # (one row: no character-count test)
    chars = (np.zeros(1, np.int64), np.zeros((1, 1, 1), np.uint8), np.zeros((1, 1), np.int64), 0.0)
    if cb is not None:
        if len(cb.rows) < n:
            raise ValueError(f"a CharBound of {len(cb.rows)} rows for {n} records")
        chars = (
            np.ascontiguousarray(cb.rows if len(cb.rows) > 1 else np.r_[cb.rows, -1], np.int64),
            np.ascontiguousarray(cb.counts, np.uint8),
            np.ascontiguousarray(cb.lengths, np.int64),
            float(cb.threshold),
        )
    if pt is not None:
        if len(pt.items) < n:
            raise ValueError(f"a PartsTest of {len(pt.items)} items for {n} records")
        parts = (
            np.ascontiguousarray(pt.items, np.int64),
            np.ascontiguousarray(pt.flags, np.uint8),
            np.ascontiguousarray(pt.part_bands, np.uint16),
        )
        if pt.sk_len is not None:
            sketch = (np.ascontiguousarray(pt.sk_len, np.int32), np.ascontiguousarray(pt.sk_crc, np.uint32))
            if len(sketch[0]) < 2:  # (a real one-row sketch, doubled)
                sketch = (np.concatenate((sketch[0], sketch[0])), np.concatenate((sketch[1], sketch[1])))

    def codes(order: np.ndarray, key: np.ndarray) -> Iterator[np.ndarray]:
        out = np.empty(max(_FLOORED_CHUNK, small, 2 * window + 1), dtype=np.int64)  # (one a call: threads)
        order, key = np.ascontiguousarray(order, np.int64), np.ascontiguousarray(key)
        at = 0
        while at < n:
            wrote, at = _band_pairs_kernel(
                order,
                key,
                small,
                window,
                words,
                at_least,
                exempt,
                int(floor.cross),
                pt is not None,
                *parts,
                *sketch,
                *chars,
                at,
                out,
            )
            if wrote:
                yield out[:wrote].copy()

    return codes


def _floored_bands(
    col32: np.ndarray, codes: Callable[[np.ndarray, np.ndarray], Iterator[np.ndarray]], threads: int
) -> Iterator[list[np.ndarray]]:
    """The codes over the floor of each band (`_floored`'s `codes` of the band's order), in band order, made
    `threads` bands at a time (at most `threads` bands' codes held beside the one being folded)."""
    bands = col32.shape[1]

    def one(band: int) -> list[np.ndarray]:
        return list(codes(*_band_order(col32, band)))

    if threads <= 1 or bands == 1:
        yield from map(one, range(bands))
        return
    try:
        with ThreadPoolExecutor(min(threads, bands)) as pool:
            pending = deque(pool.submit(one, band) for band in range(min(threads, bands)))
            ahead = len(pending)  # the next band to submit
            for _ in range(bands):
                got = pending.popleft().result()
                if ahead < bands:
                    pending.append(pool.submit(one, ahead))
                    ahead += 1
                yield got
    finally:  # what the threads freed stays in their own glibc arenas otherwise (+20 MB resident after a 200k
        trim_heap()  # templated call, and so in the stages after it)


def _words(digest: np.ndarray, floor: int) -> tuple[np.ndarray, int]:
    """(the digest rows as uint64 words, the floor over them): rows padded with 0 bytes to a whole word, each pad
    byte one more slot that always agrees (so one more to the floor)."""
    pad = -digest.shape[1] % 8
    if pad:
        digest = np.concatenate((digest, np.zeros((len(digest), pad), dtype=np.uint8)), axis=1)
    return np.ascontiguousarray(digest).view(np.uint64), floor + pad


def _fusable(floor: Any) -> TypeGuard[SlotFloor]:
    """Whether `floor` is tested in `_band_pairs_kernel`: a `SlotFloor` of uint8 slots, at most 2040 a row."""
    parts = floor.parts if isinstance(floor, SlotFloor) else None
    return (
        _band_pairs_kernel is not None
        and isinstance(floor, SlotFloor)
        and floor.digest.dtype == np.uint8
        and floor.digest.ndim == 2
        and floor.digest.shape[1] <= 2040
        and (parts is None or (isinstance(parts.part_bands, np.ndarray) and parts.part_bands.ndim == 3))
    )


# candidate_pairs_counted folds its pair codes into (distinct, count) past this many (a quarter with a test: the
# fold is where pairs are dropped, or the codes held are those over the floor already), so memory follows the
# distinct pairs kept
_MERGE_CODES = 4_000_000


class _Folds:
    """Pair codes folded into (distinct codes, counts) as they come (`add`), each fold's distinct codes tested with
    `test` (codes -> bools), when given; the folds merged when they outgrow what is merged (n log n in all)."""

    def __init__(self, fold_at: int, test: Callable[[np.ndarray], np.ndarray] | None) -> None:
        self.fold_at, self.test = fold_at, test
        self.codes: list[np.ndarray] = []
        self.held = 0
        self.folded: list[tuple[np.ndarray, np.ndarray]] = []  # (distinct codes, counts) of each fold, tested
        self.merged: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, codes: list[np.ndarray]) -> None:
        self.codes += codes
        self.held += sum(len(c) for c in codes)
        if self.held > self.fold_at:  # fold repeats as we go: memory ~ distinct pairs (kept)
            self.folded.append(_fold(self.codes, self.test))
            self.codes, self.held = [], 0
            if sum(len(u) for u, _ in self.folded) > max(
                self.fold_at, len(self.merged[0]) if self.merged else 0
            ):
                self.merged = _combine(self.merged, self.folded)
                self.folded = []

    def result(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(pairs (k, 2) int64 in code order, counts) of all codes added."""
        if self.codes:
            self.folded.append(_fold(self.codes, self.test))
        merged = _combine(self.merged, self.folded)
        if merged is None:
            return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
        u, counts = merged
        return np.stack((u // n, u % n), axis=1).astype(np.int64), counts.astype(np.int64)


def _combine(
    merged: tuple[np.ndarray, np.ndarray] | None, parts: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct codes, summed counts) of `merged` and the (codes, counts) `parts`."""
    parts = ([merged] if merged is not None else []) + parts
    if len(parts) <= 1:
        return parts[0] if parts else None
    uu, inv = np.unique(np.concatenate([u for u, _ in parts]), return_inverse=True)
    weights = np.concatenate([c for _, c in parts])
    return uu, np.bincount(inv.reshape(-1), weights=weights, minlength=len(uu)).astype(np.int64)


def _fold(
    codes: list[np.ndarray], keep: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(distinct codes, how often each was seen) of `codes`, those `keep` says yes to."""
    u, c = np.unique(np.concatenate(codes), return_counts=True)
    if keep is not None:
        ok = keep(u)
        u, c = u[ok], c[ok]
    return u, c.astype(np.int64)


class PartsTest(NamedTuple):
    """Dedup's `parts_meet` over arrays in memory, a test of the pair alone: records i and j are rows `items[i]`,
    `items[j]` of the part arrays. `flags` (uint8 a row): bit 1 the prompt is short, bit 2 the answer; `part_bands`
    ((rows, 2, w) uint16): each part's permissive band keys; a part long in both records needs one equal band key.
    `sk_len` ((rows, 2) int32, -1 where the part is long) and `sk_crc` ((rows, 2, pieces) uint32): a part short in
    both needs equal token counts and at most one piece different (`relation.strict_may_match`); None: no such
    test. `__call__` is the numpy reference of `minhash_kernels._parts_ok`."""

    items: np.ndarray
    flags: np.ndarray
    part_bands: np.ndarray
    sk_len: np.ndarray | None = None
    sk_crc: np.ndarray | None = None

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        x, y = self.items[i], self.items[j]
        pb = self.part_bands
        return parts_agree(self.flags[x] | self.flags[y], pb, x, pb, y, self.sk_len, self.sk_crc, x, y)


def parts_agree(
    either: np.ndarray,
    px: np.ndarray,
    bx: np.ndarray,
    py: np.ndarray,
    by: np.ndarray,
    sk_len: np.ndarray | None,
    sk_crc: np.ndarray | None,
    sx: np.ndarray,
    sy: np.ndarray,
) -> np.ndarray:
    """`PartsTest` of pairs whose flags or'ed are `either`, part band keys px[bx] and py[by], and (when `sk_len`
    is not None) skeleton sketches at rows sx and sy: one function for `PartsTest` and dedup's `parts_meet`
    (whose rows may be read from disk per chunk)."""
    keep = np.ones(len(either), dtype=bool)
    for part, bit in ((0, 1), (1, 2)):
        judged = (either & bit) == 0
        if judged.any():
            meet = (px[bx, part] == py[by, part]).any(axis=1)
            keep &= ~judged | meet
        if sk_len is not None:
            lx, ly = sk_len[sx, part], sk_len[sy, part]
            both = (lx >= 0) & (ly >= 0)  # short in both records: the strict rule judges them
            if both.any():
                differ = (sk_crc[sx, part] != sk_crc[sy, part]).sum(axis=1)  # type: ignore[index]
                keep &= ~both | ((lx == ly) & (differ <= 1))
    return keep


class SlotFloor(NamedTuple):
    """A `floor` test for `candidate_pairs_counted` (`over_floor` makes it): the pairs (i, j) whose MinHash slot
    digests (`BandSketch.bands32_of(..., digest=)`, an (n, num_perm) uint8 array) agree in at least `floor` slots
    (`minhash.agreement_floor`), or one of which is `exempt` (a bool per text, or None: no text); and, with
    `parts`, that pass it too (dedup's `parts_meet`, tested in the same kernel as the floor). With `cross` >= 0,
    only pairs of one record below `cross` and one not (the leakage check: training texts first, and only a training
    x held-out pair can be a leak). With `chars`, an exempt pair of two texts with a row there must pass that
    `near_chars.CharBound` (two long CJK texts: an exact bound of their Indel similarity)."""

    digest: np.ndarray
    floor: int
    exempt: np.ndarray | None = None
    parts: PartsTest | None = None
    cross: int = -1
    chars: CharBound | None = None

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        ok = slot_agreement(self.digest, i, j) >= self.floor
        if self.exempt is not None:
            free = self.exempt[i] | self.exempt[j]
            ok |= free
            if self.chars is not None and free.any():
                ok[free] = self.chars(i[free], j[free])
        if self.cross >= 0:
            ok &= (i < self.cross) != (j < self.cross)
        if self.parts is not None and ok.any():
            ok[ok] = self.parts(i[ok], j[ok])
        return ok


def _both(
    first: Callable[[np.ndarray, np.ndarray], np.ndarray],
    then: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The test `first(i, j)` and then `then` of the pairs it keeps."""

    def test(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        ok = first(i, j)
        ok[ok] = then(i[ok], j[ok])
        return ok

    return test


def over_floor(
    digest: np.ndarray, floor: int, exempt: np.ndarray | None = None, chars: CharBound | None = None
) -> SlotFloor:
    """A `floor` test for `candidate_pairs_counted`: the pairs (i, j) whose MinHash slot digests
    (`BandSketch.bands32_of(..., digest=)`) agree in at least `floor` slots (`minhash.agreement_floor`), or one of
    which is `exempt` (a bool per text: those holding CJK characters, `relation.has_cjk`, whose near copies differ
    in single characters and share too few 5-grams for the floor: 2 changed characters of a 20-character Chinese
    text: Indel 0.9, 33 of 128 slots agree), and then, where both have a row of `chars`, pass that bound (two
    long CJK texts: `near_chars.CharBound`)."""
    free = exempt if exempt is not None and exempt.any() else None
    return SlotFloor(digest, floor, free, chars=chars if free is not None else None)


# ---------------------------------------------------------------- candidates for the strict (short-text) rule
# and the verified pairs of plain texts under curate.relation's contract

MAX_VERIFY = 64  # candidates verified per text at most (those sharing the most LSH bands), see cap_candidates


def cap_candidates(cand: np.ndarray, counts: np.ndarray, n: int, limit: int) -> np.ndarray:
    """At most `limit` candidates per record: a pair stays when it is among the `limit` pairs sharing the most
    bands of EITHER member (ties to the lower index). Bounds verification on templated data."""
    if len(cand) <= limit:
        return cand
    per = np.bincount(cand.ravel(), minlength=n)
    if per.max() <= limit:
        return cand
    keep = np.zeros(len(cand), dtype=bool)
    cand = cand.astype(np.int64, copy=False)
    rank = _dense_rank(np.asarray(counts, dtype=np.int64))  # 0: the most bands
    nbits, rbits = max(1, (n - 1).bit_length()), max(1, int(rank.max()).bit_length())
    for col in (0, 1):
        if 2 * nbits + rbits <= 63:  # one int64 key, the same order as the lexsort below (~3x faster)
            key = (cand[:, col] << (nbits + rbits)) | (rank << nbits) | cand[:, 1 - col]
            o = np.argsort(key)
            del key
        else:
            o = np.lexsort((cand[:, 1 - col], rank, cand[:, col]))
        member = cand[o, col]
        starts = np.r_[0, np.flatnonzero(member[1:] != member[:-1]) + 1]
        pos_in = np.arange(len(o)) - np.repeat(starts, np.diff(np.r_[starts, len(o)]))
        keep[o[pos_in < limit]] = True
    return cand[keep]


def _dense_rank(counts: np.ndarray) -> np.ndarray:
    """0 for the largest value of `counts`, 1 for the next distinct one, ... (int64)."""
    lo = int(counts.min())
    if int(counts.max()) - lo < 1 << 22:
        present = np.bincount(counts - lo) > 0
        desc = np.cumsum(present[::-1]) - 1  # dense rank from the top, indexed from the largest value down
        return desc[::-1][counts - lo].astype(np.int64)
    _, inv = np.unique(-counts, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def text_pairs(
    n: int,
    norm_of: Callable[[int], str],
    threshold: float,
    *,
    num_perm: int = 128,
    ngram: int = 5,
    max_verify: int = MAX_VERIFY,
    runner: Callable[..., Iterable[Any]] | None = None,
    norms_of: Callable[[list[int]], list[str]] | None = None,
    report: Callable[[str, int, int], None] | None = None,
) -> ScoredPairs:
    """All pairs (i, j, score), i < j, of `n` normalized texts (`norm_of(i)`) that `relation.text_score` calls
    similar at `threshold`, found by LSH (no corpus frequency filter; a pair agreeing in fewer than
    `minhash.agreement_floor` MinHash slots is not verified) plus skeleton keys for short texts, each text meeting
    at most `max_verify` candidates (the ones sharing the most bands). Texts are made on demand. `runner`: an
    engine's task runner for the verification (`scored_pairs`). `norms_of(idx)`, when given, is `[norm_of(i) for
    i in idx]` in one call (texts read back from a `steps.spill.TextSpill`): each chunk of the MinHash pass and
    each verification task then asks for its texts once. `report(stage, done, total)`, when given, hears of each
    part as it ends: "near:sketch" (texts), "near:candidates" (bands), "near:verify" (candidate pairs)."""
    if n < 2:
        return ScoredPairs.empty()
    say = report if report is not None else (lambda stage, done, total: None)
    sketch = BandSketch(threshold, num_perm, ngram)
    bands = np.empty((n, sketch.bands), dtype=np.uint32)
    digest = np.empty((n, num_perm), dtype=np.uint8)  # each text's MinHash slots (low bytes): for the floor
    short = np.zeros(n, dtype=bool)  # is_short of each text, worked out once (not twice per candidate pair)
    cjk = np.zeros(n, dtype=bool)  # texts the floor leaves alone (`over_floor`)
    counted = CharRows()  # (long CJK texts: their character counts, `near_chars.CharBound`)
    keyed = Keyed()
    strict = ShortSketches()  # (two short texts the strict rule cannot match are no candidates)
    for a in range(0, n, sketch.CHUNK):
        span = range(a, min(n, a + sketch.CHUNK))
        chunk = norms_of(list(span)) if norms_of is not None else [norm_of(k) for k in span]
        packed = pack_ascii(chunk)
        dg = digest[a : a + len(chunk)]
        bands[a : a + len(chunk)] = (
            sketch.bands32_packed(*packed, digest=dg)
            if packed is not None
            else sketch.bands32_of(chunk, digest=dg)
        )
        for k, t in enumerate(chunk):
            cjk[a + k] = has_cjk(t)
            if is_short(t):
                short[a + k] = True
                if len(t) < SHORT_CHARS:
                    keyed.add(a + k, skeleton_keys([t]))
        strict.add(a, chunk, short[a : a + len(chunk)].tolist())
        counted.add(a, chunk, cjk[a : a + len(chunk)] & ~short[a : a + len(chunk)])
        say("near:sketch", a + len(chunk), n)
    cand, counts = candidate_pairs_counted(
        bands,
        floor=over_floor(digest, agreement_floor(threshold, num_perm), cjk, counted.bound(n, threshold)),
        keep=strict.meet(),
        report=lambda done, total: say("near:candidates", done, total),
    )
    del bands, digest, cjk, counted
    extra = key_pairs(keyed, np.arange(n, dtype=np.int64))
    if len(extra):
        cand = np.concatenate([cand, extra])
        counts = np.concatenate([counts, np.full(len(extra), 1 << 20, dtype=np.int64)])
        cand, at = np.unique(cand, axis=0, return_index=True)
        counts = counts[at]
    cand = cap_candidates(cand, counts, n, max_verify)
    flag = short.tolist()
    del short
    verified = (lambda done: say("near:verify", done, len(cand))) if report is not None else None
    if norms_of is None:
        return scored_pairs(
            cand,
            lambda i, j: text_score(norm_of(i), norm_of(j), threshold, flag[i] or flag[j]),
            runner,
            report=verified,
        )

    def per_task(pairs: list[tuple[int, int]]) -> Callable[[int, int], float]:
        need = sorted({q for pair in pairs for q in pair})
        got = dict(zip(need, norms_of(need)))
        return lambda i, j: text_score(got[i], got[j], threshold, flag[i] or flag[j])

    return scored_pairs(cand, per_task=per_task, runner=runner, report=verified)


__all__ = [
    "MAX_VERIFY",
    "SMALL_BUCKET",
    "WINDOW",
    "ScoredPairs",
    "SlotFloor",
    "candidate_pairs_counted",
    "cap_candidates",
    "over_floor",
    "scored_pairs",
    "text_pairs",
]
