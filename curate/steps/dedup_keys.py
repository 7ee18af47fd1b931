"""Dedup's key pass: what `curate.steps.dedup` needs of each item before it looks at any pair, made by one function
(`item_keys`) wherever it runs.

    ks = KeySketches(0.8)
    keys = item_keys([(turns, None, "typical\\x1f")], ks)   # one chunk of items: arrays, positions 0..m-1

It runs in dedup's own chunked tasks (over items read back from their rows), or in the compact read's pool workers
while they hold each line parsed (`curate.engine.compact`: *fused* keys), so that the build process does not read
a row again for them. Per item, the same values either way (a function of the item and the settings alone; tests
compare the two):
- the exact key (`relation.turn_digests`' last, 64 bits), the raw hash (sha256 of turns, chosen turns and
  category + tags), the compared text's length;
- the compared text's LSH band keys (top 32 bits) and the low byte of each MinHash slot (the slot-agreement floor),
  each part's permissive band keys (low 16 bits, `dedup.parts_meet`), whether it holds CJK;
- skeleton keys of a short text, each short part's skeleton sketch, the keys of its strict prefixes and of its
  first turn (continuations), the turn markers inside its turns;
- its compared parts (normalized prompt and response, shortness flags): appended to a `TextSpool`, an unlinked
  temporary file the verification reads back (`TextStore`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from curate.minhash import BandSketch, warm_kernels
from curate.near import over_floor
from curate.near_chars import PART_BUCKETS, CharBound, part_counts
from curate.near_short import SHORT_CHARS, Keyed, skeleton_keys
from curate.relation import (
    SKETCH_PARTS,
    Compared,
    compared,
    has_cjk,
    turn_digests,
    turn_markers,
    view,
)
from curate.skeleton_kernel import sketches
from curate.steps.spill import RowFile

Msgs = Sequence[Mapping[str, Any]]
PART_THRESHOLD = 0.5  # each part's band keys for `parts_meet`: 64 bands of 2 MinHash rows (lsh_params(0.5))


class KeySketches:
    """The MinHash settings of a key pass: the compared text's bands at `near_threshold` (none: exact keys only)
    and each part's at `PART_THRESHOLD`. `params` names them (fused keys made under other settings are not used)."""

    def __init__(self, near_threshold: float | None, num_perm: int = 128, ngram: int = 5) -> None:
        self.params = (near_threshold, num_perm, ngram)
        self.num_perm = num_perm
        self.sketch = BandSketch(near_threshold, num_perm, ngram) if near_threshold is not None else None
        self.parts = BandSketch(PART_THRESHOLD, num_perm, ngram) if self.sketch is not None else None
        self.width = self.sketch.bands if self.sketch is not None else 0
        self.pwidth = self.parts.bands if self.parts is not None else 0
        self.slots = num_perm if self.sketch is not None else 0


class Keys(NamedTuple):
    """The keys of one chunk of m items (item k of the chunk: row k; positions in the lists: k)."""

    ek: np.ndarray  # (m,) uint64 exact keys
    raw: np.ndarray  # (m,) uint64 raw hashes
    length: np.ndarray  # (m,) int64 compared text lengths
    bands: np.ndarray  # (m, width) uint32
    skel: tuple[np.ndarray, np.ndarray]  # (k, skeleton key) of each key: int64 and uint64 arrays
    pre: tuple[np.ndarray, np.ndarray]  # (k, key of a strict prefix of 2+ turns): int64 and uint64 arrays
    marks: list[tuple[int, list[str]]]  # (k, turn markers found)
    texts: tuple[
        bytes, np.ndarray, np.ndarray, np.ndarray
    ]  # compared parts: bytes, ends, response starts, flags
    first: np.ndarray  # (m,) uint64 the one-turn prefix key of a conversation of 2+ turns, else 0
    part_bands: np.ndarray  # (m, 2, pwidth) uint16
    digest: np.ndarray  # (m, slots) uint8 MinHash slots' low bytes
    sk_len: np.ndarray  # (m, 2) int32 skeleton_sketch token count of each short part (-1: long)
    sk_crc: np.ndarray  # (m, 2, SKETCH_PARTS) uint32
    cjk: np.ndarray  # (m,) bool


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def item_keys(
    got: Sequence[tuple[Msgs, Msgs | None, str]], ks: KeySketches, threads: int | None = None
) -> Keys:
    """The keys of items given as (turns, chosen turns or None, meta = category and tags), as `dedup`'s access
    reads them. `threads`: the MinHash kernel's (None: its default; a pool worker passes 1)."""
    m = len(got)
    sketch, parts = ks.sketch, ks.parts
    ek: list[int] = []  # (per item; arrays once the loop is done)
    raw: list[int] = []
    texts = []
    prompts: list[str] = []
    answers: list[str] = []
    skel = Keyed()
    pre_k: list[int] = []  # (k, key) of each strict prefix of 2+ turns (arrays once the loop is done: a
    pre_h: list[int] = []  # multi-turn chat has several, ~120 bytes each as a tuple of ints)
    marks: list[tuple[int, list[str]]] = []
    blob: list[bytes] = []
    ends: list[int] = []
    cuts: list[int] = []
    flags: list[int] = []
    first: list[int] = []  # the one-turn prefix key of a conversation of 2+ turns, else 0
    short: list[tuple[int, int]] = []  # (item, part) of each short part
    short_texts: list[str] = []
    end = 0
    from_bytes, dumps, sort_keys = int.from_bytes, orjson.dumps, orjson.OPT_SORT_KEYS
    for k, (msgs, chosen, meta) in enumerate(got):
        found = turn_markers(list(msgs) + list(chosen or ()))
        if found:
            marks.append((k, found))
        v = view(msgs, chosen)
        digests = turn_digests(v)  # (the last is exact_key's; the others the strict prefixes')
        ek.append(from_bytes(digests[-1][:8], "big"))  # == int(exact_key(v)[:16], 16)
        raw.append(_h64(dumps([msgs, chosen, meta], option=sort_keys, default=str)))
        t = v.text
        texts.append(t)
        c = compared(v)
        prompts.append(c[0])
        answers.append(c[1])
        if c[2]:
            if len(t) < SHORT_CHARS:
                skel.add(k, skeleton_keys([v.prompt, v.response]))
            for part in (0, 1):
                if c[2] & (1 << part):
                    short.append((k, part))
                    short_texts.append(c[part])
        pb, rb = c[0].encode("utf-8"), c[1].encode("utf-8")
        blob += (pb, rb)
        cuts.append(end + len(pb))
        end += len(pb) + len(rb)
        ends.append(end)
        flags.append(c[2])
        if len(digests) > 1:
            for d in digests[1:-1]:  # prefixes of 2+ turns
                pre_k.append(k)
                pre_h.append(from_bytes(d[:8], "big"))
            first.append(from_bytes(digests[0][:8], "big"))
        else:
            first.append(0)
    skn = np.full((m, 2), -1, dtype=np.int32)  # skeleton_sketch of each short part (-1: a long part)
    skc = np.zeros((m, 2, SKETCH_PARTS), dtype=np.uint32)
    if short:  # (`skeleton_kernel.sketches`: skeleton_sketch of each, the ASCII texts in one compiled call)
        at = np.array(short, dtype=np.int64)
        got = sketches(short_texts)
        skn[at[:, 0], at[:, 1]] = [x[0] for x in got]
        skc[at[:, 0], at[:, 1]] = [x[1] for x in got]
    dg = np.empty((m, ks.slots), dtype=np.uint8)  # MinHash slots (low bytes)
    cjk = np.fromiter(map(has_cjk, texts), dtype=bool, count=m)  # (the floor leaves these alone)
    bd = (
        sketch.bands32_of(texts, threads=threads, digest=dg)
        if sketch is not None
        else np.empty((m, 0), np.uint32)
    )
    pp = np.empty((m, 2, ks.pwidth), dtype=np.uint16)  # each part's permissive band keys (low 16 bits)
    if parts is not None and m:
        pp[:, 0] = parts.bands32_of(prompts, threads=threads) & np.uint32(0xFFFF)
        pp[:, 1] = parts.bands32_of(answers, threads=threads) & np.uint32(0xFFFF)
    return Keys(
        np.array(ek, dtype=np.uint64),
        np.array(raw, dtype=np.uint64),
        np.fromiter(map(len, texts), dtype=np.int64, count=m),
        bd,
        tuple(a.copy() for a in skel.arrays()),
        (np.array(pre_k, dtype=np.int64), np.array(pre_h, dtype=np.uint64)),
        marks,
        (
            b"".join(blob),
            np.array(ends, dtype=np.int64),
            np.array(cuts, dtype=np.int64),
            np.array(flags, dtype=np.uint8),
        ),
        np.array(first, dtype=np.uint64),
        pp,
        dg,
        skn,
        skc,
        cjk,
    )


def continuations(
    prefixes: tuple[np.ndarray, np.ndarray], ekeys: np.ndarray, alive: np.ndarray
) -> list[tuple[int, int]]:
    """(pos, other) for each alive item `pos` whose exact key is the key of a prefix of alive item `other`
    (`prefixes`: positions and prefix keys), by pos, then in the prefixes' order; `alive` by position."""
    ok = alive[prefixes[0]]
    pp, hh = prefixes[0][ok], prefixes[1][ok]
    o = np.argsort(hh, kind="stable")
    pp, hh = pp[o], hh[o]
    cand = np.flatnonzero(alive)
    ek = ekeys[cand]
    lo, hi = np.searchsorted(hh, ek, "left"), np.searchsorted(hh, ek, "right")
    has = hi > lo
    return [
        (pos, other)
        for pos, a, b in zip(cand[has].tolist(), lo[has].tolist(), hi[has].tolist())
        for other in pp[a:b].tolist()
    ]


def warm() -> None:
    """Load (or compile) the kernels `item_keys` runs, here, before a fork pool starts: the workers inherit them
    (`minhash.warm_kernels` and the skeleton sketches' kernel)."""
    warm_kernels()
    sketches(["warm up", "the kernels"])


class TextSpool:
    """An unlinked temporary file that compared texts are appended to (the OS page cache holds them, not the heap;
    forked workers share the descriptor). One spool may serve the read's fused keys and dedup's own key pass."""

    def __init__(self) -> None:
        self._fh = tempfile.TemporaryFile(prefix="curate-texts-")  # noqa: SIM115 (closed by close())
        self.fd = self._fh.fileno()
        self.end = 0

    def append(self, blob: bytes) -> int:
        """Where `blob` now starts in the file."""
        at = self.end
        os.pwrite(self.fd, blob, at)
        self.end += len(blob)
        return at

    def close(self) -> None:
        self._fh.close()


class TextStore:
    """The compared parts (`relation.compared`: normalized prompt and response, shortness flags) of every item of a
    dedup kind, made once by the key pass and read back by the verification tasks (which used to rebuild a record's
    view for every task that met it, 4 times a record on average). Per item this process holds 25 bytes of offsets
    and flags; the texts are in a `TextSpool` (its own, or one shared with the read's fused keys)."""

    def __init__(self, n: int, spool: TextSpool | None = None) -> None:
        self._own = spool is None
        self.spool = TextSpool() if spool is None else spool
        self.start = np.zeros(n, dtype=np.int64)
        self.cut = np.zeros(n, dtype=np.int64)  # where the response's bytes begin
        self.end = np.zeros(n, dtype=np.int64)
        self.flags = np.zeros(n, dtype=np.uint8)

    def add(
        self, pos: np.ndarray, blob: bytes, ends: np.ndarray, cuts: np.ndarray, flags: np.ndarray
    ) -> None:
        """Items `pos` (in the blob's order): their texts' bytes back to back, and where in the blob each one ends
        and its response begins (`Keys.texts`)."""
        at = self.spool.append(blob)
        starts = np.empty(len(ends), dtype=np.int64)
        starts[:1] = 0
        starts[1:] = ends[:-1]
        self.put(pos, at + starts, at + cuts, at + ends, flags)

    def put(
        self, pos: np.ndarray, start: np.ndarray, cut: np.ndarray, end: np.ndarray, flags: np.ndarray
    ) -> None:
        """Items `pos`, whose texts are in the spool already at [start, end), the response from `cut`."""
        self.start[pos], self.cut[pos], self.end[pos], self.flags[pos] = start, cut, end, flags

    def get(self, k: int) -> Compared:
        a, c, b = int(self.start[k]), int(self.cut[k]), int(self.end[k])
        data = os.pread(self.spool.fd, b - a, a)
        return data[: c - a].decode("utf-8"), data[c - a :].decode("utf-8"), int(self.flags[k])

    def close(self) -> None:
        """Closes the spool when it is this store's own."""
        if self._own:
            self.spool.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with a task for another machine (`curate.engine.ray_map`): the texts travel as bytes and land
        in a new temporary file there."""
        data = os.pread(self.spool.fd, self.spool.end, 0)
        return (TextStore._of, (data, self.start, self.cut, self.end, self.flags))

    @classmethod
    def _of(
        cls, data: bytes, start: np.ndarray, cut: np.ndarray, end: np.ndarray, flags: np.ndarray
    ) -> TextStore:
        store = cls(0)
        store.start, store.cut, store.end, store.flags = start, cut, end, flags
        store.spool.append(data)
        return store


class ChunkDedup:
    """The fused keys of the fast lines of one chunk of a file, made by a read worker (`item_keys`), their compared
    texts already in the read's `TextSpool`. Rows share it (`Row.dkeys`) until dedup takes their keys; the fast
    line `line` is item `index[line - first]` (-1: a line that is not a fast row)."""

    __slots__ = ("dims", "first", "index", "kat", "keys", "params", "spool", "start")

    def __init__(
        self, first: int, lines: int, js: Sequence[int], keys: Keys, params: tuple, spool: TextSpool
    ) -> None:
        self.first = first
        self.index = np.full(lines, -1, dtype=np.int32)
        self.index[np.asarray(js, dtype=np.int64)] = np.arange(len(js), dtype=np.int32)
        blob, ends, cuts, flags = keys.texts
        at = spool.append(blob)
        start = np.empty(len(ends), dtype=np.int64)
        start[:1] = 0
        start[1:] = ends[:-1]
        self.start = at + start  # the texts' offsets in the spool (ends and cuts made absolute in keys.texts)
        # the slot digests and part band keys (384 bytes an item, read by dedup only for candidate pairs) go to the
        # spool too, after the texts: a chunk held from the read to dedup keeps the other keys only
        dg, pb = np.ascontiguousarray(keys.digest), np.ascontiguousarray(keys.part_bands)
        self.kat = spool.append(dg.tobytes() + pb.tobytes())
        self.dims = (dg.shape[1:], dg.dtype, pb.shape[1:], pb.dtype)
        self.keys = keys._replace(
            texts=(b"", at + ends, at + cuts, flags),
            digest=np.empty((0, *dg.shape[1:]), dtype=dg.dtype),
            part_bands=np.empty((0, *pb.shape[1:]), dtype=pb.dtype),
        )
        self.params = params
        self.spool = spool

    def spilled(self) -> tuple[np.ndarray, np.ndarray]:
        """(slot digests, part band keys) of the chunk's items, read back from the spool."""
        m = len(self.keys.ek)
        dshape, dtype, pshape, ptype = self.dims
        nd = m * int(np.prod(dshape, dtype=np.int64)) * np.dtype(dtype).itemsize
        npb = m * int(np.prod(pshape, dtype=np.int64)) * np.dtype(ptype).itemsize
        data = os.pread(self.spool.fd, nd + npb, self.kat)
        dg = np.frombuffer(data, dtype=dtype, count=nd // np.dtype(dtype).itemsize).reshape(m, *dshape)
        pb = np.frombuffer(data, dtype=ptype, offset=nd).reshape(m, *pshape)
        return dg, pb

    def item(self, line: int) -> int:
        """The item of the fast line `line` (-1: none)."""
        i = line - self.first
        return int(self.index[i]) if 0 <= i < len(self.index) else -1


PAIR_CHUNK = 16_384  # candidate pairs whose rows are read from a `RowFile` at a time (2 x 16k rows: a few MB)


def char_bound(store: TextStore, items: np.ndarray, cjk: np.ndarray, threshold: float) -> CharBound | None:
    """The `near_chars.CharBound` of dedup's items `items` (local index -> position in `store`): a row for each
    CJK item (`cjk`, by local index) whose prompt and response are both long (flags 0: `text_score` is their Indel
    similarity, and a near twin needs both at `threshold`), the counts of each part, read back from the store in
    chunks; None when no item has one (no CJK text: nothing read, nothing held)."""
    sel = np.flatnonzero(cjk & (store.flags[items] == 0))
    if not len(sel):
        return None
    rows = np.full(len(items), -1, dtype=np.int64)
    rows[sel] = np.arange(len(sel))
    counts, lengths = [], []
    for a in range(0, len(sel), 8192):
        got = [store.get(int(q)) for q in items[sel[a : a + 8192]].tolist()]
        every = np.ones((len(got), 2), dtype=bool)
        c, n = part_counts([[g[0] for g in got], [g[1] for g in got]], every, PART_BUCKETS)
        counts.append(c)
        lengths.append(n)
    return CharBound(rows, np.concatenate(counts), np.concatenate(lengths), threshold)


def floor_test(
    digest: RowFile, items: np.ndarray, floor: int, exempt: np.ndarray, chars: CharBound | None = None
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """`near.over_floor(digest[items], floor, exempt, chars)`, a RowFile on disk read per chunk of pairs:
    the same test of the same rows (pairs of local indices; `items` maps them to rows of `digest`). A resident
    RowFile's rows are tested in place (no copy when `items` are its first rows in order): a `near.SlotFloor`,
    which `near.candidate_pairs_counted(floor=)` tests in its kernel as pairs are met. Rows on disk (past
    `RowFile.RESIDENT`: ~1M records) are not read into memory for the kernel, which reads every row in every band:
    they are tested on the distinct pairs of each fold, read per chunk as before."""
    if digest.resident:
        n = len(items)
        first = n <= len(digest) and bool((items == np.arange(n)).all())
        return over_floor(digest.rows[:n] if first else digest.rows[items], floor, exempt, chars)

    def test(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        out, step = np.empty(len(i), dtype=bool), digest.chunk(2 * PAIR_CHUNK) // 2
        for a in range(0, len(i), step):
            both = np.concatenate((i[a : a + step], j[a : a + step]))
            m = len(both) // 2
            rows, k = digest.take(items[both]), np.arange(m, dtype=np.int64)
            cb = None if chars is None else chars._replace(rows=chars.rows[both])
            out[a : a + m] = over_floor(rows, floor, exempt[both], cb)(k, k + m)
        return out

    return test


class KeyTable:
    """The keys of every item of one dedup kind (n items, by position), filled chunk by chunk (`put`)."""

    def __init__(self, n: int, ks: KeySketches, spool: TextSpool | None = None) -> None:
        self.ekeys = np.empty(n, dtype=np.uint64)
        self.rawh = np.empty(n, dtype=np.uint64)
        self.length = np.empty(n, dtype=np.int64)
        self.bands = np.empty((n, ks.width), dtype=np.uint32)
        # (read only for candidate pairs, `dedup.parts_meet` and the slot floor: on disk past the RowFile budget)
        self.digest = RowFile(n, (ks.slots,), np.uint8)
        self.part_bands = RowFile(n, (2, ks.pwidth), np.uint16)
        self.cjk = np.zeros(n, dtype=bool)
        self.sk_len = np.empty((n, 2), dtype=np.int32)
        self.sk_crc = np.empty((n, 2, SKETCH_PARTS), dtype=np.uint32)
        self.firsts = np.zeros(n, dtype=np.uint64)
        self.skel = Keyed()
        self._pre: list[tuple[np.ndarray, np.ndarray]] = []  # (positions, prefix keys) of each chunk
        self.prefixes = (np.empty(0, np.int64), np.empty(0, np.uint64))  # all of them, by position (`done`)
        self.marked: list[tuple[int, list[str]]] = []
        # (closed after the near step, or when collected)
        self.store = TextStore(n, spool) if ks.sketch is not None else None

    def put(
        self, pos: np.ndarray, keys: Keys, sel: np.ndarray | None = None, chunk: ChunkDedup | None = None
    ) -> None:
        """Items `pos` take the keys of the chunk's items `sel` (default: all, in order); `chunk`: fused keys,
        whose texts are in the spool already."""

        def of(a: np.ndarray) -> np.ndarray:
            return a if sel is None else a[sel]

        self.ekeys[pos], self.rawh[pos], self.length[pos] = of(keys.ek), of(keys.raw), of(keys.length)
        self.bands[pos], self.firsts[pos] = of(keys.bands), of(keys.first)
        digest, part_bands = (keys.digest, keys.part_bands) if chunk is None else chunk.spilled()
        self.digest.put(pos, of(digest))
        self.sk_len[pos], self.sk_crc[pos], self.cjk[pos] = of(keys.sk_len), of(keys.sk_crc), of(keys.cjk)
        self.part_bands.put(pos, of(part_bands))
        at = np.full(len(keys.ek), -1, dtype=np.int64)  # chunk item -> position
        at[np.arange(len(keys.ek)) if sel is None else sel] = pos
        spos = at[keys.skel[0]]
        self.skel.extend(spos[spos >= 0], keys.skel[1][spos >= 0])
        ppos = at[keys.pre[0]]
        self._pre.append((ppos[ppos >= 0], keys.pre[1][ppos >= 0]))
        self.marked += [(int(at[k]), found) for k, found in keys.marks if at[k] >= 0]
        if self.store is None:
            return
        _, ends, cuts, flags = keys.texts
        if chunk is None:
            self.store.add(pos, *keys.texts)
        else:
            self.store.put(pos, of(chunk.start), of(cuts), of(ends), of(flags))

    def done(self) -> None:
        """After the last `put`: the lists in position order (as one pass in order makes them)."""
        self.skel.sort()
        if self._pre:
            pos = np.concatenate([p for p, _ in self._pre])
            keys = np.concatenate([h for _, h in self._pre])
            o = np.argsort(pos, kind="stable")
            self.prefixes = (pos[o], keys[o])
        self._pre = []
        self.marked.sort(key=lambda t: t[0])
