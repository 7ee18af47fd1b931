"""The build's bounded-memory pieces (docs/performance.md, round 9 helper-16) give the decisions of the code they
replaced: each is compared with a plain reference on generated data."""

from __future__ import annotations

import gc
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.records import normalize_text
from curate.residency import _clean_file_mappings, drop_library_pages
from curate.steps import split as split_mod
from curate.steps.dedup import keep_order
from curate.steps.leakcheck import _equal_pairs, leak_pairs
from curate.steps.spill import TextSpill


def _keep_order_reference(origin, length, rawhash, where) -> np.ndarray:
    """keep_order as it was: every item's source string ranked up front."""
    n = len(origin)
    wrank = np.empty(n, dtype=np.int64)
    wrank[np.array(sorted(range(n), key=where.__getitem__), dtype=np.int64)] = np.arange(n)
    return np.lexsort((wrank, rawhash, -length.astype(np.int64), origin)).astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from(["a:1", "a:10", "a:9", "b:2"]),
        ),
        max_size=40,
    )
)
def test_keep_order_asks_sources_only_for_ties(items) -> None:
    origin = np.array([x[0] for x in items], dtype=np.int64)
    length = np.array([x[1] for x in items], dtype=np.int64)
    rawhash = np.array([x[2] for x in items], dtype=np.uint64)
    where = [x[3] for x in items]
    asked: list[int] = []

    def of(p: int) -> str:
        asked.append(p)
        return where[p]

    got = keep_order(origin, length, rawhash, of)
    assert got.tolist() == _keep_order_reference(origin, length, rawhash, where).tolist()
    assert keep_order(origin, length, rawhash, where).tolist() == got.tolist()
    key = list(zip(origin.tolist(), length.tolist(), rawhash.tolist()))
    assert all(key.count(key[p]) > 1 for p in asked)  # only tied items' sources were read


# ---------------------------------------------------------------- the split's texts on disk (steps.spill)

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30) | st.sampled_from(
    ["", "a", "\ud800 lone", "日本語", "x" * 5000]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, max_size=60), st.randoms(use_true_random=False), st.integers(1, 7))
def test_spill_gives_back_every_text_put_in_any_order(items, rnd, chunk) -> None:
    spill = TextSpill(len(items))
    order = list(range(len(items)))
    rnd.shuffle(order)
    for a in range(0, len(order), chunk):
        part = order[a : a + chunk]
        spill.put(part, [items[i] for i in part])
    assert [spill[i] for i in range(len(items))] == items
    assert spill.many(list(range(len(items)))[::-1]) == items[::-1]
    again = pickle.loads(pickle.dumps(spill))  # (a task shipped to another machine: the bytes travel)
    assert [again[i] for i in range(len(items))] == items
    spill.close()
    again.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "hello", "", "ß"]), max_size=50))
def test_codes_of_spilled_keys_are_the_codes_of_the_texts(keys) -> None:
    got = split_mod._codes_of_keys(
        np.frombuffer(b"".join(split_mod._ekey(k) for k in keys), dtype=np.uint64).reshape(-1, 2)
    )
    assert got.tolist() == split_mod._codes(list(keys)).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.integers(0, 40))
def test_equal_pairs_are_every_train_x_heldout_pair_of_equal_keys(vals, nt) -> None:
    nt = min(nt, len(vals))
    keys = np.array([[v % 2, v] for v in vals], dtype=np.uint64).reshape(-1, 2)
    got = sorted(map(tuple, _equal_pairs(keys, nt).tolist())) if len(vals) else []
    want = sorted((i, k) for i in range(nt) for k in range(nt, len(vals)) if vals[i] == vals[k])
    assert got == want


turn_lists = st.lists(
    st.sampled_from(["reset my password", "where is my order 123", "hi", "日本語のテキスト"]), max_size=3
)


@settings(max_examples=60, deadline=None)
@given(st.lists(turn_lists, min_size=1, max_size=25), st.lists(turn_lists, min_size=1, max_size=25))
def test_leak_pairs_read_on_demand_equal_the_brute_force(train, test) -> None:
    norm = [tuple(normalize_text(t) for t in ts) for ts in train]
    held = [tuple(normalize_text(t) for t in ts) for ts in test]
    reads: list[int] = []

    class Lazy(list):  # items made on demand, counted
        def __getitem__(self, k):
            reads.append(k)
            return super().__getitem__(k)

    got = leak_pairs(Lazy(norm), Lazy(held), 0.8)
    assert got == leak_pairs(norm, held, 0.8, brute=True)
    assert reads  # (read through the sequence, not copied out of it)


# ---------------------------------------------------------------- shared-library pages (curate.residency)

_SMAPS = """\
7f0000000000-7f0000010000 r-xp 00000000 08:01 1234 /venv/lib/libllvmlite.so
Rss:                  40 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000010000-7f0000020000 r--p 00010000 08:01 1234 /venv/lib/libllvmlite.so
Rss:                  16 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
7f0000020000-7f0000030000 rw-p 00020000 08:01 1234 /venv/lib/libllvmlite.so
Rss:                  16 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000030000-7f0000040000 r--p 00000000 08:01 99 /usr/lib/locale/C.utf8/LC_CTYPE
Rss:                  16 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000040000-7f0000050000 r--p 00000000 00:00 0 
Rss:                  16 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000050000-7f0000060000 r--p 00000000 08:01 77 /venv/lib/python3.11/site-packages/numpy/_core/x.cpython-311.so
Rss:                   0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000060000-7f0000070000 r--p 00000000 08:01 78 /venv/lib/libarrow.so.2600
Rss:                   4 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
"""


def test_only_clean_read_only_library_mappings_are_given_back() -> None:
    # not: RELRO (private dirty), writable data, other files, anonymous memory, mappings with nothing resident
    assert _clean_file_mappings(_SMAPS) == [
        (0x7F0000000000, 0x7F0000010000),
        (0x7F0000060000, 0x7F0000070000),
    ]


def test_code_runs_the_same_after_its_pages_are_given_back() -> None:
    from curate.minhash import BandSketch

    sketch = BandSketch(0.8)
    texts = ["how do i reset my password?", "where is my order 12345", "日本語のテキスト"]
    before = sketch.bands32_of(texts)
    assert drop_library_pages() > 0
    assert (sketch.bands32_of(texts) == before).all()
    assert drop_library_pages() >= 0


# ---------------------------------------------------------------- the split's keys the read's workers make


@settings(max_examples=150, deadline=None)
@given(st.lists(texts, min_size=1, max_size=20), st.integers(1, 1000))
def test_chunk_keys_on_disk_give_the_keys_held_in_memory(norms, first) -> None:
    from array import array

    from curate.engine.rows import _ChunkKeys
    from curate.steps.dedup_keys import TextSpool

    offsets = array("q", [0])
    for t in norms:
        offsets.append(offsets[-1] + len(t))
    pks = "".join(f"{k:016x}" for k in range(len(norms)))
    held = _ChunkKeys(first, ("".join(norms), offsets, pks))
    spool = TextSpool()
    spool.append(b"something before")
    on_disk = _ChunkKeys(first, ("".join(norms), array("q", offsets), pks), spool)
    assert on_disk.texts == ""  # (nothing held but offsets)
    for line in range(first, first + len(norms)):
        assert on_disk.get(line) == held.get(line)
    spool.close()


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 300),
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 10_000), max_size=80),
    st.sampled_from([4096, 1 << 16, 8 << 20]),
    st.booleans(),
)
def test_row_file_gives_back_every_row_put_in_any_order(n, rnd, picks, span, resident) -> None:
    """spill.RowFile (dedup's part band keys and slot digests, on disk or under the budget in memory): rows put in
    chunks of any order read back as the in-memory array's rows, any order and repeats, whatever span of the file
    one read maps at a time; on disk, the pages it touched are not left resident."""
    from curate.steps.spill import RowFile

    ref = np.random.default_rng(rnd.randrange(1 << 30)).integers(0, 1 << 16, size=(n, 2, 64), dtype=np.uint16)
    f = RowFile(n, (2, 64), np.uint16, resident=resident)
    assert f.resident is resident
    f.SPAN = span
    order = list(range(n))
    rnd.shuffle(order)
    while order:
        k = rnd.randint(1, 40)
        pos, order = np.array(order[:k], dtype=np.int64), order[k:]
        f.put(pos, ref[pos])
    idx = np.array([p % n for p in picks], dtype=np.int64)
    got = f.take(idx)
    assert got.shape == (len(idx), 2, 64) and got.dtype == np.uint16
    assert np.array_equal(got, ref[idx])
    assert np.array_equal(f.take(np.arange(n)), ref)
    if not resident:
        assert _resident_pages(f) == 0
    f.close()


def test_row_files_stay_in_memory_while_they_fit_the_budget(monkeypatch) -> None:
    """A RowFile is resident while the resident RowFiles open at once, itself included, fit `RowFile.RESIDENT`;
    closing one gives its bytes back to the budget."""
    from curate.steps.spill import RowFile

    monkeypatch.setattr(RowFile, "RESIDENT", 35_000)
    monkeypatch.setattr(RowFile, "_held", 0)
    held = 0
    a = RowFile(200, (128,), np.uint8)  # 25.6 KB: fits
    b = RowFile(100, (128,), np.uint8)  # 12.8 KB more: over
    c = RowFile(50, (128,), np.uint8)  # 6.4 KB more: fits (b is on disk, it holds none of the budget)
    assert (a.resident, b.resident, c.resident) == (True, False, True)
    assert RowFile._held == held + 250 * 128
    a.close()
    d = RowFile(200, (128,), np.uint8)
    assert d.resident and RowFile._held == held + 250 * 128
    for f in (b, c, d):
        f.close()
    assert RowFile._held == held
    e = RowFile(200, (128,), np.uint8)  # dropped without close (a step that raised): its bytes come back too
    assert e.resident and RowFile._held == held + 200 * 128
    del e
    gc.collect()
    assert RowFile._held == held


def _resident_pages(f) -> int:
    """Resident pages of the RowFile's mapping (mincore would say the page cache; this asks the page tables)."""
    import ctypes
    import mmap

    start = ctypes.addressof(ctypes.c_char.from_buffer(f._mm))
    with open("/proc/self/smaps") as fh:
        lines = fh.read().splitlines()
    for k, line in enumerate(lines):
        head = line.split()[0]
        if "-" in head and int(head.split("-")[0], 16) == start:
            for more in lines[k + 1 :]:
                if more.startswith("Rss:"):
                    return int(more.split()[1]) * 1024 // mmap.PAGESIZE
    raise AssertionError("mapping not found")


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60), st.integers(0, 400), st.randoms(use_true_random=False))
def test_parts_meet_and_the_floor_read_from_disk_equal_the_arrays(n, m, rnd) -> None:
    """dedup's candidate tests with the part band keys and slot digests in RowFiles (on disk or resident) give the
    decisions of the same tests over the in-memory arrays (near.over_floor, parts_meet with an ndarray)."""
    from curate.minhash import agreement_floor
    from curate.near import over_floor
    from curate.steps.dedup import parts_meet
    from curate.steps.dedup_keys import floor_test
    from curate.steps.spill import RowFile

    g = np.random.default_rng(rnd.randrange(1 << 30))
    pb = g.integers(0, 3, size=(n, 2, 64), dtype=np.uint16)  # (few values: parts meet and miss both)
    dig = g.integers(0, 2, size=(n, 128), dtype=np.uint8)
    flags = g.integers(0, 4, size=n, dtype=np.uint8)
    cjk = g.random(n) < 0.1
    sk = (g.integers(-1, 3, size=(n, 2), dtype=np.int32), g.integers(0, 2, size=(n, 2, 4), dtype=np.uint32))
    items = g.permutation(n).astype(np.int64)  # local index -> row
    i, j = g.integers(0, n, size=m), g.integers(0, n, size=m)
    resident = rnd.random() < 0.5
    fp, fd = (
        RowFile(n, (2, 64), np.uint16, resident=resident),
        RowFile(n, (128,), np.uint8, resident=resident),
    )
    fp.put(np.arange(n), pb)
    fd.put(np.arange(n), dig)
    cand = np.stack((i, j), axis=1).astype(np.int64)
    assert np.array_equal(parts_meet(cand, items, fp, flags, sk), parts_meet(cand, items, pb, flags, sk))
    floor = agreement_floor(0.8, 128)
    want = over_floor(dig[items], floor, cjk[items])(i, j)
    assert np.array_equal(floor_test(fd, items, floor, cjk[items])(i, j), want)
    fp.close(), fd.close()
