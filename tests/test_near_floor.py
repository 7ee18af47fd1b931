"""`near.candidate_pairs_counted(floor=SlotFloor)`, the compiled kernel that tests the slot-agreement floor as each
band's pairs are met (`minhash_kernels._band_pairs_kernel`), gives exactly the pairs, counts and order of the numpy
reference that tests it on the distinct pairs of each fold (`keep=`), on generated band matrices: small and large
buckets, ties, one band, n < 2, exempt rows, floors from below 0 to above the slot count, rows whose slots are not
a whole number of words, and chunks and folds small enough that the kernel goes on inside a bucket."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from curate import near


@st.composite
def band_matrices(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """(band keys (n, bands), slot digests (n, slots) uint8, floor, exempt flags or None): few distinct keys (large
    buckets, ties on every band) and few distinct slot values (agreement spread around any floor)."""
    n = draw(st.integers(0, 90))
    bands = draw(st.integers(1, 5))
    keys = draw(st.integers(1, 12))
    bh = draw(arrays(np.uint32, (n, bands), elements=st.integers(0, keys - 1)))
    scale = draw(st.sampled_from([1, 2047, 1 << 21, 0x9E3779B1]))  # (keys spread over every 11-bit digit)
    bh = (bh.astype(np.uint64) * np.uint64(scale) % np.uint64(1 << 32)).astype(np.uint32)
    if draw(st.booleans()):  # 64-bit band keys: the top 32 bits are the key (`bh >> 32`)
        bh = (bh.astype(np.uint64) << np.uint64(32)) | draw(arrays(np.uint64, (n, bands)))
    slots = draw(st.sampled_from([1, 3, 8, 13, 16, 128]))
    digest = draw(arrays(np.uint8, (n, slots), elements=st.integers(0, draw(st.integers(0, 3)))))
    floor = draw(st.integers(-1, slots + 9))
    exempt = draw(st.none() | arrays(np.bool_, (n,), elements=st.booleans()))
    return bh, digest, floor, exempt


@settings(max_examples=400, deadline=None)
@given(
    band_matrices(),
    st.integers(0, 9),
    st.integers(0, 5),
    st.sampled_from([1, 7, 1 << 18]),
    st.sampled_from([3, 50, 4_000_000]),
    st.booleans(),
    st.sampled_from([1, 2, 3]),
    st.integers(-1, 95),
)
def test_fused_floor_equals_the_numpy_reference(
    case: tuple[np.ndarray, np.ndarray, int, np.ndarray | None],
    small: int,
    window: int,
    chunk: int,
    merge: int,
    rest: bool,
    threads: int,
    cross: int,
) -> None:
    bh, digest, floor, exempt = case
    test = near.SlotFloor(
        digest, floor, exempt, cross=cross
    )  # (cross >= 0: pairs of one index below it only)
    # a further test of the pair (dedup's parts_meet)
    then = (lambda i, j: (i * 7 + j) % 3 != 0) if rest else None

    def reference(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        ok = test(i, j)
        return ok & then(i, j) if then is not None else ok

    heard: dict[str, list[tuple[int, int]]] = {"fused": [], "numpy": []}
    with mock.patch.object(near, "_FLOORED_CHUNK", chunk), mock.patch.object(near, "_MERGE_CODES", merge):
        got = near.candidate_pairs_counted(
            bh,
            small=small,
            window=window,
            floor=test,
            keep=then,
            report=lambda *a: heard["fused"].append(a),
            threads=threads,
        )
        want = near.candidate_pairs_counted(
            bh, small=small, window=window, keep=reference, report=lambda *a: heard["numpy"].append(a)
        )
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert got[0].dtype == got[1].dtype == np.int64 and got[0].shape == (len(got[1]), 2)
    assert heard["fused"] == heard["numpy"]
    if cross >= 0:  # exactly the pairs across `cross` of the call without it, with their counts
        whole = near.candidate_pairs_counted(
            bh, small=small, window=window, floor=test._replace(cross=-1), keep=then, threads=threads
        )
        across = (whole[0][:, 0] < cross) != (whole[0][:, 1] < cross)
        assert np.array_equal(got[0], whole[0][across]) and np.array_equal(got[1], whole[1][across])


def test_a_floor_of_zero_keeps_every_pair_met_and_over_floor_is_fused() -> None:
    """At floor 0 the kernel emits every pair the numpy rule meets, each as often (all counts equal); `over_floor`
    makes a `SlotFloor` (exempt flags none of which is set: none), which the kernel takes."""
    rng = np.random.default_rng(5)
    bh = rng.integers(0, 6, size=(400, 4), dtype=np.uint32)  # buckets of ~70: the large-bucket rule
    digest = rng.integers(0, 256, size=(400, 128), dtype=np.uint8)
    full = near.candidate_pairs_counted(bh)
    test = near.over_floor(digest, 0, np.zeros(400, dtype=bool))
    assert isinstance(test, near.SlotFloor) and test.exempt is None and near._fusable(test)
    got = near.candidate_pairs_counted(bh, floor=test)
    assert np.array_equal(got[0], full[0]) and np.array_equal(got[1], full[1])
    assert len(full[0]) > 0 and full[1].max() > 1
    never = near.candidate_pairs_counted(bh, floor=near.over_floor(digest, 129))
    assert never[0].shape == (0, 2) and never[1].shape == (0,)


def test_a_floor_that_is_not_a_slot_floor_is_tested_like_keep() -> None:
    """Any other `floor` callable (rows read from disk, `dedup_keys.floor_test`) is tested as `keep` is."""
    rng = np.random.default_rng(6)
    bh = rng.integers(0, 9, size=(200, 3), dtype=np.uint32)
    digest = rng.integers(0, 2, size=(200, 16), dtype=np.uint8)
    slot = near.over_floor(digest, 9)

    def plain(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return slot(i, j)

    got = near.candidate_pairs_counted(bh, floor=plain)
    want = near.candidate_pairs_counted(bh, floor=slot)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and len(got[0])


@settings(max_examples=200, deadline=None)
@given(band_matrices(), st.data())
def test_band_order_is_the_lexsort(case: tuple[np.ndarray, np.ndarray, int, np.ndarray | None], data) -> None:
    """`_band_order` (a compiled radix sort) is the reference's lexsort: by the band's key, the next three bands'
    keys, then index (ties everywhere: few distinct keys), with the band's keys in that order."""
    bh = case[0]
    if len(bh) < 2:
        return
    col32 = bh if bh.dtype == np.uint32 else (bh >> np.uint64(32)).astype(np.uint32)
    n, bands = col32.shape
    band = data.draw(st.integers(0, bands - 1))
    others = [col32[:, (band + k) % bands] for k in (3, 2, 1)] if bands > 1 else []
    want = np.lexsort((np.arange(n, dtype=np.int64), *others, col32[:, band]))
    order, key = near._band_order(col32, band)
    assert np.array_equal(order, want) and np.array_equal(key, col32[want, band])


@st.composite
def parts_tests(draw: st.DrawFn, n: int) -> near.PartsTest:
    """A `near.PartsTest` for n records over m >= n rows (items: n distinct rows in any order), few distinct band
    keys and sketch pieces (parts meet and miss), short and long parts in every mix, with or without sketches."""
    m = n + draw(st.integers(0, 5))
    items = np.array(draw(st.permutations(range(m)))[:n], dtype=np.int64)
    flags = draw(arrays(np.uint8, (m,), elements=st.integers(0, 3)))
    width = draw(st.integers(1, 4))
    part_bands = draw(arrays(np.uint16, (m, 2, width), elements=st.integers(0, draw(st.integers(0, 3)))))
    if not draw(st.booleans()):
        return near.PartsTest(items, flags, part_bands)
    pieces = draw(st.integers(1, 4))
    sk_len = draw(arrays(np.int32, (m, 2), elements=st.integers(-1, 2)))
    sk_crc = draw(arrays(np.uint32, (m, 2, pieces), elements=st.integers(0, 2)))
    return near.PartsTest(items, flags, part_bands, sk_len, sk_crc)


def _parts_brute(pt: near.PartsTest, i: int, j: int) -> bool:
    """dedup's parts rule for one pair, written out: a part long in both records shares a band key; a part short in
    both has equal token counts and at most one sketch piece different."""
    a, b = int(pt.items[i]), int(pt.items[j])
    for part in (0, 1):
        long_in_both = not (int(pt.flags[a]) | int(pt.flags[b])) & (part + 1)
        if long_in_both and not any(x == y for x, y in zip(pt.part_bands[a, part], pt.part_bands[b, part])):
            return False
        if pt.sk_len is not None and pt.sk_len[a, part] >= 0 and pt.sk_len[b, part] >= 0:
            differ = sum(int(x != y) for x, y in zip(pt.sk_crc[a, part], pt.sk_crc[b, part]))
            if pt.sk_len[a, part] != pt.sk_len[b, part] or differ > 1:
                return False
    return True


@settings(max_examples=300, deadline=None)
@given(band_matrices(), st.data(), st.integers(0, 9), st.integers(0, 5), st.sampled_from([1, 7, 1 << 18]))
def test_parts_in_the_kernel_equal_the_numpy_reference_and_the_rule(
    case: tuple[np.ndarray, np.ndarray, int, np.ndarray | None], data, small: int, window: int, chunk: int
) -> None:
    """dedup's parts test passed with the floor (`SlotFloor(parts=)`) is tested in the kernel as pairs are met: the
    same pairs and counts as the numpy reference on the distinct pairs of each fold, and each pair's decision is
    the rule written out per pair (`_parts_brute`); `steps.dedup.parts_meet` gives the same decisions."""
    from curate.steps.dedup import parts_meet

    bh, digest, floor, exempt = case
    pt = data.draw(parts_tests(len(bh)))
    test = near.SlotFloor(digest, floor, exempt, pt)
    assert near._fusable(test)
    with mock.patch.object(near, "_FLOORED_CHUNK", chunk):
        got = near.candidate_pairs_counted(bh, small=small, window=window, floor=test, threads=1)
    want = near.candidate_pairs_counted(bh, small=small, window=window, keep=test)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    met = near.candidate_pairs_counted(
        bh, small=small, window=window, floor=near.SlotFloor(digest, floor, exempt)
    )
    pairs = met[0]
    brute = np.array([_parts_brute(pt, int(i), int(j)) for i, j in pairs], dtype=bool)
    assert np.array_equal(pt(pairs[:, 0], pairs[:, 1]), brute)
    sk = None if pt.sk_len is None else (pt.sk_len, pt.sk_crc)
    assert np.array_equal(parts_meet(pairs, pt.items, pt.part_bands, pt.flags, sk), brute)
    assert np.array_equal(got[0], pairs[brute]) and np.array_equal(got[1], met[1][brute])


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(2, 40), st.integers(1, 6))
def test_capping_only_cross_pairs_keeps_every_cross_pair_the_cap_over_all_kept(
    data, n: int, limit: int
) -> None:
    """The leakage check meets only training x held-out pairs (`SlotFloor.cross`): the cap over those alone keeps
    every cross pair the cap over all pairs kept (a text's cross candidates rank as they did among all of its
    candidates, with fewer above them), so the check finds a superset of the leaks it found before."""
    pairs = data.draw(
        st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] < p[1]))
    )
    cand = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    counts = np.array(
        data.draw(st.lists(st.integers(1, 5), min_size=len(cand), max_size=len(cand))), dtype=np.int64
    )
    nt = data.draw(st.integers(0, n))
    across = (cand[:, 0] < nt) != (cand[:, 1] < nt)
    before = {
        tuple(p) for p in near.cap_candidates(cand, counts, n, limit).tolist() if (p[0] < nt) != (p[1] < nt)
    }
    after = {tuple(p) for p in near.cap_candidates(cand[across], counts[across], n, limit).tolist()}
    assert before <= after
