"""Split: deterministic, stratified, group-aware train/test, with a frozen held-out set and a leakage report.

    >>> from curate.steps.split import split, HeldoutLock
    >>> res = split(records, spec=spec, ctx=ctx, lock=HeldoutLock.load("out/x/v1/heldout.lock"))  # doctest: +SKIP
    >>> res.train, res.test, res.leakage.as_dict(), res.lock.as_dict()

How records are assigned:
- Groups: records whose prompts are equal (normalized prompt turns, or the same user text) or near-duplicates
  (`relation.text_score` of the user texts >= `near_threshold`, via `curate.near.text_pairs`), continuations and
  prefix leaks (`relation.leak_score`) form one group. A group goes to one side as a whole, so a paraphrase
  cluster never straddles train and held-out (and a DPO pair never lands on the other side from its SFT answer).
- The lock (`heldout.lock` of the previous build) wins first: a group holding a locked held-out id or prompt, or
  a user text near a locked held-out prompt, goes to held-out; a group holding a record that was in training
  (`train_ids` / `train_prompt_keys`) stays in training. A new record that joins both (near-duplicate of held-out
  AND of training data) is quarantined as `heldout_prompt`: placing it either way would leak.
- The free groups: within each stratum (the values of `spec.split.stratify` fields of the group's first record,
  e.g. its category) groups are ordered by sha256(seed, group key) and taken into held-out until the stratum's
  share (`spec.split.heldout`) is reached. Same data, same seed -> same split, on any machine.
- Leakage: exact (same normalized user text) and near (>= `near_threshold`) matches between the train and held-out
  user texts; after the split above it is empty, and the build fails if it is not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.near import ScoredPairs, text_pairs
from curate.records import PreferenceRecord, SFTRecord, normalize_text
from curate.spec import Spec
from curate.steps.base import RunContext
from curate.steps.heldout import HeldoutLock, _sorted, _sorted_union, _SortedSet
from curate.steps.leakcheck import Leakage, repair_leakage
from curate.steps.pairs import record_prompt_key
from curate.steps.spill import SPILL_CHUNK, Lazy, SpilledTurns, TextSpill, packed, spill_turns

log = logging.getLogger(__name__)
STEP = "split"
Rec = SFTRecord | PreferenceRecord


# ---------------------------------------------------------------- leakage


@dataclass
class SplitResult:
    train: list[Rec]
    test: list[Rec]
    lock: HeldoutLock
    leakage: Leakage
    groups: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": len(self.train),
            "test": len(self.test),
            "groups": self.groups,
            "leakage": self.leakage.as_dict(),
        }


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def stratum(rec: Rec, fields: Sequence[str]) -> tuple[str, ...]:
    """The values of the stratify fields: a record attribute (category, kind ...) or a label."""
    vals = []
    for f in fields:
        v = getattr(rec, f, None)
        if v is None:
            v = rec.labels.get(f)
        vals.append(str(v) if not isinstance(v, (list, tuple)) else ",".join(map(str, v)))
    return tuple(vals)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def split(
    records: Iterable[Rec],
    *,
    spec: Spec,
    ctx: RunContext,
    lock: HeldoutLock | None = None,
    near_threshold: float = 0.8,
    heldout: float | None = None,
    seed: int | None = None,
    links: Iterable[tuple[str, str]] = (),
) -> SplitResult:
    """Split records into train and held-out (see the module doc): `split_rows` over records (one implementation)."""
    if heldout is not None or seed is not None:
        new = spec.split.model_copy(
            update={k: v for k, v in (("heldout", heldout), ("seed", seed)) if v is not None}
        )
        spec = spec.model_copy(update={"split": new})
    return split_rows(
        records,
        spec=spec,
        ctx=ctx,
        keys=lambda r: (normalize_text(r.user_text()), record_prompt_key(r)),
        text=lambda r: r.user_text(),
        record=lambda r: r,
        lock=lock,
        near_threshold=near_threshold,
        links=links,
        turns=lambda rs: [[m.content for m in r.prompt_messages() if m.role == "user"] for r in rs],
    )


_ROW_FIELDS = ("category", "kind", "tags", "violates", "id")
HOLD_TEXTS = (
    250_000  # up to this many rows the read's workers make the split's keys (compact.read_validate_rows)
)


def split_rows(
    rows: Iterable[Any],
    *,
    spec: Spec,
    ctx: RunContext,
    keys: Callable[[Any], tuple[str, str]],
    text: Callable[[Any], str],
    record: Callable[[Any], Rec],
    lock: HeldoutLock | None = None,
    near_threshold: float = 0.8,
    release: Callable[[], None] | None = None,
    keys_all: Callable[[list[Any]], Iterable[tuple[str, str]]] | None = None,
    texts_all: Callable[[list[Any]], Iterable[str]] | None = None,
    links: Iterable[tuple[str, str]] = (),
    turns: Callable[[list[Any]], list[Sequence[str]]] | None = None,
    runner: Callable[..., Iterable[Any]] | None = None,
) -> SplitResult:
    """`split` over the compact build's rows (`curate.engine.compact`), with one near-pair pass.

    `keys_all(rows)`, when given, yields `keys(row)` for each of the (sorted) rows, in order (the compact build
    maps them on its fork pool, `local_map.pool_map`); `texts_all(rows)`, likewise, `text(row)` of each (the
    held-out rows' user texts, for the lock).

    The same groups, sides, lock and quarantine rows as `split` over the records the rows stand for; `record(row)`
    gives that record where one is needed (a quarantine row, a stratify field other than category, kind, tags,
    violates or id); `keys(row)` gives (normalized user text, prompt key), `text(row)` the user text. The
    normalized texts and user turns go to spill files (`steps.spill`: 16 bytes a row in memory, not a str) and are
    read back by the near-pair pass and the leakage check. `release()`, when given, is called before the near-pair
    pass (the compact build gives back freed heap memory there). `links`: id pairs that must share a group
    (dedup's continuations); `turns(rows)`: each row's user turns (prefix leaks, the leakage check). `runner`: the
    engine's task runner for the verification of the near pairs and of the leakage check (`near.scored_pairs`).

    The decisions are made on arrays (`_split_arrays`): the per-row work is one dict look-up per key, the
    grouping, ranking and stratified fill are vectorized.

    Leakage: after the assignment `repair_leakage` checks every held-out item (and the previous lock's prompts)
    against every training item with its own blocking (`curate.steps.leakcheck`) and moves a leaking training
    twin out; `res.leakage` says what it found.
    """
    recs = sorted(rows, key=lambda r: r.id)
    fields = spec.split.stratify

    def text_of(i: int) -> str:
        return text(recs[i])

    n = len(recs)
    # per row: the 16-byte key of its normalized user text (`_ekey`) and its prompt key; the texts themselves go to
    # a spill file (`steps.spill`), read back where the near pairs and the leakage check need them
    norms = TextSpill(n)
    ukey = np.empty((n, 2), dtype=np.uint64)
    pkeys: list[Any] = [None] * n
    order = range(n) if keys_all is None else _memory_order(recs)
    got = map(keys, recs) if keys_all is None else keys_all([recs[i] for i in order])
    buf: tuple[list[int], list[str], list[bytes]] = ([], [], [])

    def flush() -> None:
        norms.put(buf[0], buf[1])
        ukey[buf[0]] = np.frombuffer(b"".join(buf[2]), dtype=np.uint64).reshape(-1, 2)
        for part in buf:
            part.clear()

    one_turn = np.zeros(n, dtype=bool)  # rows whose user turns are known to be (norm,): not read again below
    for i, kk in zip(order, got):
        norm, pk = kk[0], kk[1]
        one_turn[i] = len(kk) > 2  # (a third value: the read's workers saw one user turn, `_ChunkKeys.get`)
        pkeys[i] = pk
        buf[0].append(i)
        buf[1].append(norm)
        buf[2].append(_ekey(norm))
        if len(buf[0]) == SPILL_CHUNK:
            flush()
    if buf[0]:
        flush()
    del got, order
    ucode = _codes_of_keys(ukey)
    pcode = _codes(pkeys)
    pkeys = packed(pkeys)  # (one bytes blob and its offsets: ~24 bytes a row, not a str and a list slot)

    def near(lock_norms: list[str], rep_idx: list[int]) -> ScoredPairs:
        if release is not None:
            release()
        nl = len(lock_norms)

        def norm_of(k: int) -> str:
            return lock_norms[k] if k < nl else norms[rep_idx[k - nl]]

        return text_pairs(
            nl + len(rep_idx),
            norm_of,
            near_threshold,
            runner=runner,
            norms_of=lambda ks: [norm_of(k) for k in ks],
            report=lambda stage, done, total: ctx.report(f"{STEP}:{stage}", done, total),
        )

    def texts_of(idx: list[int]) -> Iterable[str]:
        if texts_all is None:
            return map(text_of, idx)
        return _in_memory_order([recs[i] for i in idx], texts_all)

    links = list(links)
    linked = {x for ab in links for x in ab}
    pos = {r.id: i for i, r in enumerate(recs) if r.id in linked}
    link_idx = [(pos[a], pos[b]) for a, b in links if a in pos and b in pos]
    del pos, linked
    # every row's normalized user turns, read once: the prefix links below and the leakage check after the split
    turns_of = spill_turns(
        recs, turns or (lambda rs: [(text(r),) for r in rs]), ukey, norms, _ekey, normalize_text, one_turn
    )
    ukey = ukey[:0]  # (no longer needed)
    link_idx += _prefix_links(n, turns_of, near_threshold)
    (res, make_lock), (side_of, *_) = _split_arrays(
        recs,
        ucode,
        pcode,
        pkeys,
        texts_of,
        lambda roots, codes: _strata(recs, roots, fields, record, codes),
        lambda i: record(recs[i]),
        near,
        spec=spec,
        ctx=ctx,
        lock=lock,
        near_threshold=near_threshold,
        links=link_idx,
    )
    del pkeys, ucode, pcode
    train_i = np.flatnonzero(side_of == _TRAIN)  # (res.train and res.test are these rows, in this order)
    test_i = np.flatnonzero(side_of == _TEST)
    del side_of
    res.leakage, gone = repair_leakage(
        res,
        Lazy(len(train_i), lambda k: turns_of(int(train_i[k]))),
        Lazy(len(test_i), lambda k: turns_of(int(test_i[k]))),
        record,
        ctx=ctx,
        threshold=near_threshold,
        frozen=lock.prompts if lock is not None else (),
        runner=runner,
    )
    turns_of.close()
    # the new lock, made after the leakage check: its sets of ids and prompt keys and the held-out texts are not
    # held while the check runs (at 2M records they were ~250 MB of its peak)
    res.lock = make_lock(gone)
    norms.close()
    ctx.report(STEP, 3, 3)
    return res


def _prefix_links(n: int, turns_of: SpilledTurns, threshold: float) -> list[tuple[int, int]]:
    """Pairs of items one of which has several user turns and the two are a leak by `relation.leak_score`
    (typically a question and the same question with a follow-up): one split group, so the leakage check after
    the split has nothing to move. `turns_of(i)`: item i's normalized user turns. Candidates: similar first user
    turns (`near.text_pairs`)."""
    from curate.relation import leak_score

    multi = turns_of.multi
    if not multi.any():
        return []
    out = []
    for i, j, _ in text_pairs(n, turns_of.first, threshold):
        if (multi[i] or multi[j]) and leak_score(turns_of(i), turns_of(j), threshold):
            out.append((i, j))
    return out


def _memory_order(items: list[Any]) -> list[int]:
    """The items' indices in memory (address) order: the order to hand them to forked workers in (a worker
    touching an item writes its reference count: nearby items share the pages it then copies; ~20% of the split
    keys' worker CPU at 180k rows)."""
    return np.argsort(np.fromiter(map(id, items), dtype=np.uint64, count=len(items)), kind="stable").tolist()


def _in_memory_order(items: list[Any], fn_all: Callable[[list[Any]], Iterable[Any]]) -> list[Any]:
    """`list(fn_all(items))`, asked for in `_memory_order`: the same results, in the items' order."""
    order = _memory_order(items)
    out: list[Any] = [None] * len(items)
    for i, one in zip(order, fn_all([items[i] for i in order])):
        out[i] = one
    return out


def _codes(keys: list[Any]) -> np.ndarray:
    """Codes of equal keys, numbered in order of first appearance (a dict built in one C call: the first index of
    each key, as the later ones are overwritten by the earlier)."""
    n = len(keys)
    first = dict(zip(reversed(keys), range(n - 1, -1, -1)))
    firsts = np.fromiter(map(first.__getitem__, keys), dtype=np.int64, count=n)
    return np.unique(firsts, return_inverse=True)[1].reshape(-1).astype(np.int64, copy=False)


def _codes_of_keys(keys: np.ndarray) -> np.ndarray:
    """`_codes` of keys given as rows of an (n, 2) uint64 array (each a 16-byte `_ekey`): the same codes."""
    n = len(keys)
    if not n:
        return np.empty(0, dtype=np.int64)
    o = np.lexsort((np.arange(n), keys[:, 1], keys[:, 0]))
    ks = keys[o]
    new = np.ones(n, dtype=bool)
    new[1:] = (ks[1:] != ks[:-1]).any(axis=1)
    firsts = np.empty(n, dtype=np.int64)
    firsts[o] = o[np.flatnonzero(new)][np.cumsum(new) - 1]  # (o ascends within a run: its first is its least)
    return np.unique(firsts, return_inverse=True)[1].reshape(-1).astype(np.int64, copy=False)


def _strata(
    recs: list[Any],
    roots: np.ndarray,
    fields: Sequence[str],
    record: Callable[[Any], Rec],
    codes: dict[tuple[str, ...], int],
) -> list[int]:
    """The code in `codes` (new strata get the next one) of each root row's `stratum` (of the row's record where a
    field is not one of the row's own)."""
    if not all(f in _ROW_FIELDS for f in fields):
        out = []
        for i in roots.tolist():
            r = recs[i]
            rec = getattr(r, "rec", r)
            st = stratum(rec if rec is not None else record(r), fields)
            out.append(codes.setdefault(st, len(codes)))
        return out
    if len(fields) == 1:  # one field: a str value is its own stratum
        f = fields[0]
        of_value: dict[Any, int] = {}
        out = []
        for i in roots.tolist():
            v = getattr(recs[i], f, None)
            c = of_value.get(v) if type(v) is str else None
            if c is None:
                c = codes.setdefault(stratum(recs[i], fields), len(codes))
                if type(v) is str:
                    of_value[v] = c
            out.append(c)
        return out
    return [codes.setdefault(stratum(recs[i], fields), len(codes)) for i in roots.tolist()]


def _min_roots(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest index of each item's connected component over the edges (a[k], b[k]) (what `_UnionFind`,
    which always keeps the smaller root, gives): hook roots onto smaller roots, then jump pointers, until every
    edge joins equal labels."""
    lab = np.arange(n, dtype=np.int64)
    while a.size:
        la, lb = lab[a], lab[b]
        diff = la != lb
        if not diff.any():
            break
        a, b, la, lb = a[diff], b[diff], la[diff], lb[diff]
        np.minimum.at(lab, np.maximum(la, lb), np.minimum(la, lb))
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    return lab


_FREE, _TRAIN, _TEST, _MIXED = 0, 1, 2, 3


def _rank_order(group: np.ndarray, rank: np.ndarray, root: np.ndarray) -> np.ndarray:
    """The order of items by (group, rank, root), rank = the (4, n) words of a sha256 digest, most significant
    first: sorted on the first word, and on all four only when two items of a group share it."""
    order = np.lexsort((root, rank[0], group))
    g, r0 = group[order], rank[0][order]
    if order.size > 1 and ((g[1:] == g[:-1]) & (r0[1:] == r0[:-1])).any():
        order = np.lexsort((root, rank[3], rank[2], rank[1], rank[0], group))
    return order


def _split_arrays(
    recs: list[Any],
    ucode: np.ndarray,
    pcode: np.ndarray,
    pkeys: list[str],
    texts_of: Callable[[list[int]], Iterable[str]],
    strata_of: Callable[[np.ndarray, dict[tuple[str, ...], int]], list[int]],
    record_of: Callable[[int], Rec],
    near: Callable[[list[str], list[int]], ScoredPairs],
    *,
    spec: Spec,
    ctx: RunContext,
    lock: HeldoutLock | None,
    near_threshold: float,
    links: Sequence[tuple[int, int]] = (),
) -> tuple[SplitResult, tuple[Any, ...]]:
    """`_split` on arrays: items sorted by id, `ucode[i]` the code of item i's normalized user text and
    `pcode[i]` of its prompt key (codes given in order of first appearance), `texts_of(idx)` the user texts of
    items idx (in order), `strata_of(roots, codes)` the code of each root item's stratum in `codes` (new strata
    added). The same sides, lock, quarantine rows (in the same order) and groups.

    Also gives (side per item as an int8 array: 1 train, 2 test, 0 quarantined; the near pairs over lock prompts
    + distinct user texts; the item index of each distinct text; the number of lock prompts; ucode)."""
    share = spec.split.heldout
    seed = spec.split.seed
    n = len(recs)
    idx = np.arange(n, dtype=np.int64)
    rep = (
        np.unique(ucode, return_index=True)[1] if n else np.empty(0, dtype=np.int64)
    )  # first item of each text
    pfirst = np.unique(pcode, return_index=True)[1] if n else np.empty(0, dtype=np.int64)
    same_u = rep[ucode] != idx
    same_p = pfirst[pcode] != idx
    edges_a = [idx[same_p], idx[same_u], np.array([a for a, _ in links], dtype=np.int64)]
    edges_b = [pfirst[pcode[same_p]], rep[ucode[same_u]], np.array([b for _, b in links], dtype=np.int64)]
    rep_idx = rep.tolist()
    lock = lock or HeldoutLock()
    lock_prompts = list(lock.prompts)
    nl = len(lock_prompts)
    near_lock: list[int] = []
    pairs = ScoredPairs.empty()
    if len(rep_idx) + nl > 1:
        pairs = near([normalize_text(t) for t in lock_prompts], rep_idx)
        if len(pairs):
            pa, pb = pairs.i, pairs.j
            inner = pa >= nl
            edges_a.append(rep[pa[inner] - nl])
            edges_b.append(rep[pb[inner] - nl])
            to_lock = ~inner & (pb >= nl)
            near_lock = rep[pb[to_lock] - nl].tolist()
    ctx.report(STEP, 1, 3)

    root_of = _min_roots(n, np.concatenate(edges_a), np.concatenate(edges_b))
    del edges_a, edges_b, same_u, same_p
    sizes = np.bincount(root_of, minlength=n)
    roots = np.flatnonzero(sizes)  # one per group, ascending

    side = np.zeros(n, dtype=np.int8)  # per root
    dropped: list[int] = []
    ids: list[str] | None = None
    if lock.ids or lock.prompt_keys or lock.train_ids or lock.train_prompt_keys or near_lock:
        ids = [r.id for r in recs]
        l_ids, l_pk, t_ids, t_pk = lock.ids, lock.prompt_keys, lock.train_ids, lock.train_prompt_keys
        locked = np.fromiter((i in l_ids or p in l_pk for i, p in zip(ids, pkeys)), dtype=bool, count=n)
        trained = np.fromiter((i in t_ids or p in t_pk for i, p in zip(ids, pkeys)), dtype=bool, count=n)
        g_locked = np.zeros(n, dtype=bool)
        g_locked[root_of[locked]] = True
        g_locked[root_of[np.asarray(near_lock, dtype=np.int64)]] = (
            True  # a text near a locked prompt: all locked
        )
        g_trained = np.zeros(n, dtype=bool)
        g_trained[root_of[trained]] = True
        side[g_locked & g_trained] = _MIXED
        side[g_locked & ~g_trained] = _TEST
        side[~g_locked & g_trained] = _TRAIN
        if (side == _MIXED).any():  # quarantine the new members of mixed groups: by group, then by index
            mem = np.flatnonzero(side[root_of] == _MIXED)
            mem = mem[np.argsort(root_of[mem], kind="stable")]
            for i in mem.tolist():
                if ids[i] not in l_ids and ids[i] not in t_ids:
                    dropped.append(i)
                    ctx.quarantine(
                        step=STEP,
                        reason="heldout_prompt",
                        record=record_of(i),
                        detail="near-duplicate of both held-out and training data; either side would leak",
                    )
        del locked, trained, g_locked, g_trained

    # free groups: stratified, hash-ordered (by sha256(seed, prompt key of the root), then root)
    st_of: dict[tuple[str, ...], int] = {}
    scode = np.asarray(strata_of(roots, st_of), dtype=np.int64).reshape(-1)
    ns = len(st_of)
    gsize = sizes[roots]
    gside = side[roots]
    total = np.bincount(scode, weights=gsize, minlength=ns).astype(np.int64)
    is_test = gside == _TEST
    taken = np.bincount(scode[is_test], weights=gsize[is_test], minlength=ns).astype(np.int64).tolist()
    free = np.flatnonzero(gside == _FREE)  # positions in roots
    prefix = f"{seed}\x1f".encode()
    sha = hashlib.sha256
    digests = b"".join([sha(prefix + pkeys[r].encode()).digest() for r in roots[free].tolist()])
    rank = np.frombuffer(digests, dtype=">u8").reshape(-1, 4).astype(np.uint64).T.copy()  # 4 native columns
    order = _rank_order(scode[free], rank, roots[free])
    fpos = free[order]  # free groups by stratum, then rank
    fst = scode[fpos]
    fsize = gsize[fpos]
    bounds = np.flatnonzero(np.diff(fst)) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), fpos.size]
    gets = np.full(fpos.size, _TRAIN, dtype=np.int8)
    for a, b in zip(starts, ends):
        if a == b:
            continue
        st = int(fst[a])
        room = round(share * int(total[st])) - taken[st]
        # the greedy fill (a group goes to test when it still fits): a prefix fits whole, then only groups no
        # larger than the room left can, and the room only shrinks
        csum = np.cumsum(fsize[a:b])
        k = int(np.searchsorted(csum, room, side="right"))
        gets[a : a + k] = _TEST
        room -= int(csum[k - 1]) if k else 0
        if room > 0 and a + k < b:
            rest = np.flatnonzero(fsize[a + k : b] <= room) + a + k
            for j in rest.tolist():
                sz = int(fsize[j])
                if sz <= room:
                    gets[j] = _TEST
                    room -= sz
                    if room <= 0:
                        break
    gside[fpos] = gets
    if not (gside == _TEST).any() and roots.size > 1 and free.size:
        # a tiny dataset whose strata all round to zero: hold out the first free group (if it is not the only one)
        first = _rank_order(np.zeros(free.size, dtype=np.int64), rank, roots[free])[0]
        gside[free[first]] = _TEST
    side[roots] = gside
    ctx.report(STEP, 2, 3)

    side_of = side[root_of]
    mixed = np.flatnonzero(side_of == _MIXED)
    if mixed.size:  # old records stay where they were; the new ones were quarantined above
        assert ids is not None
        l_ids = lock.ids
        side_of[mixed] = np.fromiter(
            (_TEST if ids[i] in l_ids else _TRAIN for i in mixed.tolist()), dtype=np.int8, count=mixed.size
        )
    if dropped:
        side_of[np.asarray(dropped, dtype=np.int64)] = 0
    n_groups = int(roots.size)
    del root_of, sizes, side, roots
    # recs are sorted by id: the sides come out sorted by id
    train_i = np.flatnonzero(side_of == _TRAIN)
    test_i = np.flatnonzero(side_of == _TEST)
    train = [recs[i] for i in train_i.tolist()]
    test = [recs[i] for i in test_i.tolist()]
    old = lock

    def make_lock(gone: set[str]) -> HeldoutLock:
        """The new held-out lock: this split's sides joined to the old lock's; `gone`, training ids the leakage
        check moved out, left out of the training ids (their prompt keys stay)."""
        tr, te = train_i.tolist(), test_i.tolist()
        train_ids = _sorted_union([recs[i].id for i in tr], old.train_ids)  # (ids in id order: sorted)
        if gone:
            train_ids = _SortedSet([x for x in _sorted(train_ids) if x not in gone])
        return HeldoutLock(
            spec=spec.name,
            ids=_sorted_union([recs[i].id for i in te], old.ids),
            prompt_keys={pkeys[i] for i in te} | old.prompt_keys,
            prompts=sorted(set(texts_of(te)) | set(old.prompts)),
            train_ids=train_ids,
            train_prompt_keys={pkeys[i] for i in tr} | old.train_prompt_keys,
        )

    res = SplitResult(
        train=train, test=test, lock=old, leakage=Leakage(threshold=near_threshold), groups=n_groups
    )
    return (res, make_lock), (side_of, pairs, rep, nl, ucode)


def _ekey(norm: str) -> bytes:
    """`exact_key` of a normalized text, as 16 bytes."""
    return hashlib.sha256(norm.encode("utf-8")).digest()[:16]


# ---------------------------------------------------------------- any two datasets (curate leakage A B)


__all__ = [
    "HeldoutLock",
    "SplitResult",
    "split",
    "split_rows",
    "stratum",
]
