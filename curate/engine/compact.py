"""Compact rows: the build's records as a place in a JSONL file plus a few keys, pydantic models only where needed.

    from curate.engine.compact import read_validate_rows
    rows = list(read_validate_rows(paths, ctx=ctx, spec=spec, lengths=lengths, max_tokens=1024))

A `Row` is either *fast*: one line of a native JSONL file whose shape is the plain one (only `messages`, or
`prompt` + `chosen` + `rejected`, of `{role, content}` turns, plus `category` / `tags` / `violates`), that read and
validate accept as it is (well formed, every automatic rule passes or skips, fits `max_tokens`, not a negative SFT
example, not marked held-out), or such a line `settle` wrote into the build's `RecordStore` for a record of any
other format when the native reader gives that record back from it; it keeps its content id, category, tags,
violates and rule statuses, and where it came from (file, line); every later step re-reads the line (`os.pread`)
and re-derives what it needs (~2 us a line). Or a *record row*: a record no native line gives back, stored as its
JSON (`Row.rec` reads it back) with the `Facts` the steps ask of it. Anything that is not a fast input line went
through the record path (`curate.steps.read` + `curate.steps.validate`, in input order), so its quarantine rows,
reason codes and fields are those of that path.

Every derived value of a fast row equals the one the record path computes from the record it would have built
(content id, response / user text, dedup and prompt texts, prompt key, length estimate, export rows);
`materialize(row)` builds that record when a step needs one (a pair partner, a quarantine row), and
tests/engine/test_compact.py compares the two on example data, real fixtures and generated records, and whole
builds byte for byte.

A native file of `POOL_MIN_LINES` lines or more is read on a fork pool (`pool_workers()`: CURATE_WORKERS, else
the cores `os.sched_getaffinity` allows; 1 turns it off; also off while other threads run): each worker takes
chunks of `POOL_CHUNK` lines (one `pread` per chunk) and sends back, per line, the fast row's fields (kind,
content id, category, tags, violates, rule statuses, length), or what the record path made of an object line it
declined (`_Lines`: settled rows, quarantine rows, the read's count), or None, and for its fast lines the split's
keys and dedup's (`dedup_keys.item_keys`, when the build passes `dedup_keys`); a JSONL file of any other
one-record-a-unit format is read the same way, every object line through the record path in the workers. The
build process walks the lines in order as `iter_jsonl` does, turns the verdicts into rows and sends what is left
(lines that are not an object on their own) through the record path here, so rows, quarantine rows, counters and
lengths are those of the serial read (tests compare whole builds). What a worker makes of a chunk is one function,
`curate.engine.chunks.chunk_verdicts`; on the Ray engine (`read_validate_rows(mapper=)`) the same chunks are Ray
tasks whatever the file's size (`ray_map.RayMapper.read_chunks`: this process sends each its chunk's bytes), so
both engines read with one path and hold the same rows.

The pools' settings (`POOL_MIN_LINES`, `POOL_CHUNK`, `pool_workers()`) and what the steps after validate run on
them over rows (`pool_map`, `RowAccess`, `LocalMapper`, `split_keys_all`) are in `curate.engine.local_map`.
"""

from __future__ import annotations

import logging
import multiprocessing
from array import array
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from curate.engine import local_map  # the pools' settings, read when used (tests patch them there)
from curate.engine.chunks import chunk_verdicts, sendable
from curate.engine.lanes import LANES
from curate.engine.local_map import _ordered
from curate.engine.pool import worker_init
from curate.engine.row_steps import coverage, lineage, make_pairs_rows, row_hits  # noqa: F401 (re-exported)
from curate.engine.rows import (  # noqa: F401 (re-exported: the build and tests read them as compact.*)
    _EMPTY,
    _PREF_KEYS,
    _SFT_KEYS,
    NONE_FILE,
    Checker,
    Input,
    RecordStore,
    Row,
    _ChunkKeys,
    _id_and_keys,
    _keys_of,
    content_id,
    dedup_item,
    dedup_messages,
    dpo_row,
    estimate,
    is_negative_sft,
    is_prompt_row,
    keep_priority,
    materialize,
    materialize_plain,
    one_user_turn,
    prompt_key,
    read_objs,
    response_text,
    row_of,
    sft_row,
    source_file,
    split_keys,
    user_text,
    user_turns,
    user_turns_all,
)
from curate.errors import InputError
from curate.readers.containers import container_of, iter_units
from curate.records import PreferenceRecord, SFTRecord
from curate.residency import drop_library_pages, trim_heap
from curate.steps.base import RunContext
from curate.steps.dedup_keys import ChunkDedup, Keys, KeySketches, TextSpool
from curate.steps.dedup_keys import warm as warm_keys
from curate.steps.validate import LengthCounter
from curate.steps.validate import validate as _validate

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord

from curate.engine.settle import (  # noqa: F401 (re-exported: tests read them as compact.*)
    _POOLED_SHAPES,
    _fast_shape,
    _Lines,
    _native_obj,
    _RecordPath,
    _Settler,
    _share,
    _Validator,
    lane_shape,
    settle,
)


def read_validate_rows(
    paths: Sequence[Path],
    *,
    ctx: RunContext,
    spec: Any,
    lengths: LengthCounter,
    max_tokens: int | None,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    checker: Checker | None = None,
    opened: list[Any] | None = None,
    validate_fn: Any = None,
    fast: bool = True,
    strict: bool = False,
    store: RecordStore | None = None,
    dedup_keys: KeySketches | None = None,
    spool: TextSpool | None = None,
    mapper: Any = None,
) -> Iterator[Row]:
    """read_inputs + validate as rows, in input order; same counters, quarantine rows and lengths as those steps.

    The native JSONL files read as fast rows, and the `RecordStore` of the rest (`store`, else a new one), are
    appended to `opened`; close them when the rows are no longer used. `validate_fn` is the engine's validate step
    (default `curate.steps.validate.validate`; `curate.engine.validate_step("ray")` for Ray); `fast=False` reads
    every file through it whole, every record a record row (Ray's batches; its workers have no store); `strict`: a
    file of no detectable format raises InputError (`curate.steps.read.read_inputs`).

    A JSONL file of `POOL_MIN_LINES` lines or more, of a format whose object is one record, is read on a fork pool
    whatever its format: the workers take a native line that is a fast row as it is, and run the record path
    (`_RecordPath`) on any other object line; this process walks the lines in order, makes the rows and takes
    the quarantine rows and counts, so everything is as the serial read gives it.

    With `dedup_keys` (dedup's settings) and `spool`, the pool's workers also make dedup's keys of the fast lines
    they take (`dedup_keys.item_keys`, the texts appended to `spool`): the rows hold them (`Row.dkeys`) until dedup
    takes them (`RowAccess.fused`), so dedup's key pass reads none of those rows again.

    `mapper` (the Ray engine's `ray_map.RayMapper`): the same chunks of those files are read + validated by Ray
    tasks instead of a fork pool, whatever the file's size (one path: the same verdicts, rows and keys)."""
    import curate.steps.split as split_mod
    from curate.steps.read import STEP, _detect, _read_file

    checker = checker or Checker(spec)
    validate = validate_fn or _validate
    val = _Validator(spec, ctx, lengths, max_tokens, checker)
    if store is None:
        store = RecordStore()
        if opened is not None:
            opened.append(store)
    settler = _Settler(store)
    limit = val.limit
    spec_ref = spec.ref
    done = 0
    keys_lines = 0  # lines of the files whose workers make the split's keys
    key_spool: TextSpool | None = None  # their normalized user texts (`_ChunkKeys`)

    def serial(recs: Iterator[Rec], rp: _RecordPath) -> Iterator[Row]:
        for rec in validate(recs, spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens):
            yield settler.row(rp.settle(rec))

    if not fast:  # one stream of every file through the validate step (one Ray job)
        from itertools import chain

        stream = chain.from_iterable(
            _read_file(p, ctx, spec_ref, format, mapping or None, strict=strict) for p in paths
        )
        rp = _RecordPath(Path("."), None, False, None, spec, lengths, limit, native=False)
        for row in serial(stream, rp):
            done += 1
            yield row
        ctx.report(STEP, done, done)
        return
    for path in paths:
        fname = str(path)
        fmt0 = format if format is not None else getattr(path, "format", None)
        jsonl = container_of(path) == "jsonl"
        shape: str | None = fmt0
        if jsonl and shape is None:
            try:
                shape, _ = _detect(iter_units(path, "jsonl"), path, mapping or None)
            except InputError:
                shape = None  # the serial read quarantines the file (or raises, strict)
        native = not mapping and shape == "native" and jsonl
        # the workers take as fast rows the lines of a native file, or of an OpenAI file, that read + validate
        # take as they are (`settle.lane_shape`), and run the record path on every other object line
        lane = (
            ("native" if native else "openai" if shape == "openai" and not mapping else None)
            if jsonl
            else None
        )
        src = Input(path) if jsonl and shape in _POOLED_SHAPES else None
        lines = len(src.starts) - 1 if src is not None else 0
        nworkers = local_map.pool_workers()
        pooled = (
            src is not None
            and val.system_prompt is not None
            and (
                (mapper is not None and lines > 0)
                or (nworkers >= 2 and lines >= local_map.POOL_MIN_LINES and local_map._fork_safe())
            )
        )
        # lanes of other formats (engine/lanes.py): in the workers, or here on a file too small for the pool
        laned = src is not None and not mapping and shape in LANES and val.system_prompt is not None
        if not native and not pooled and not laned:  # the record path, serially
            if src is not None:
                src.close()
            rp = _RecordPath(path, fmt0, fmt0 is None, mapping or None, spec, lengths, limit, native=True)
            for row in serial(_read_file(path, ctx, spec_ref, format, mapping or None, strict=strict), rp):
                done += 1
                yield row
            continue
        assert src is not None
        if opened is not None:
            opened.append(src)
        log.info("reading %s (jsonl, %s, %s)", fname, shape, "fork pool" if pooled else "compact rows")
        rp = _RecordPath(path, shape, fmt0 is None, mapping or None, spec, lengths, limit, native=True)
        pending: list[tuple[int, Any, Any]] = []  # units for the record path here, in order

        def slow(
            units: list[tuple[int, Any, Any]], rp: _RecordPath = rp, shape: Any = shape
        ) -> Iterator[Row]:
            yield from serial(
                _read_file(
                    rp.path, ctx, spec_ref, shape, rp.mapping, units=iter(units), detected=rp.detected
                ),
                rp,
            )

        n_fast = n_in = n_out = 0
        fmt = lane or "native"
        # the workers also make the split's keys while the texts the split would hold stay few (split.HOLD_TEXTS)
        lanes = lane is not None or laned  # fast rows as they are, or lanes' rows (engine/lanes.py)
        val.keep_keys = lanes and pooled and keys_lines + lines <= split_mod.HOLD_TEXTS
        val.dedup = dedup_keys if lanes and pooled and spool is not None else None
        val.spool = spool
        keys_lines += lines if val.keep_keys else 0
        if val.keep_keys and key_spool is None:  # (the split's keys' texts: on disk, not a str per chunk)
            key_spool = TextSpool()
            if opened is not None:
                opened.append(key_spool)
        val.key_spool = key_spool  # type: ignore[attr-defined]
        units = (
            _pooled_units(path, src, val, rp, lane, nworkers, mapper) if pooled else iter_units(path, "jsonl")
        )
        sizes = lengths.lengths
        same_int = {}.setdefault  # (lengths repeat: each value one object)
        for line, obj, raw in units:
            if raw is FAST or type(raw) is _Made:  # pool verdicts of lines line, line + 1, ...: fast rows
                if pending:  # (kind, id, category, tags, violates, statuses, size), what the workers made of
                    yield from slow(pending)  # their chunk (_Made) or FAST; or a line's record-path outcomes
                    pending = []  # (_Lines)
                keys, dkeys = (None, None) if raw is FAST else (raw.keys, raw.dkeys)
                for v in obj:
                    if type(v) is _Lines:
                        n_in += 1
                        n_out += v.n_out
                        for step, qrow in v.quarantine:
                            ctx.add_quarantine_row(step, qrow)
                        for out, size in v.rows:
                            sizes[out[1]] = same_int(size, size)
                            done += 1
                            row = settler.row(out)
                            row.dkeys = dkeys  # (a lane row's keys; none for the record path's: -1)
                            if v.lane:
                                row.keys = keys  # (a lane row's split keys, when the workers make them)
                            yield row
                        line += 1
                        continue
                    kind, rid, cat, tags, violates, st, size = v
                    sizes[rid] = same_int(size, size)  # (one int object a length: 28 bytes a record less)
                    n_fast += 1
                    done += 1
                    row = settler.fast(kind, rid, src, fname, line, fmt, cat, tags, violates, st, keys)
                    row.dkeys = dkeys
                    yield row
                    line += 1
                if done // 2000 != (done - len(obj)) // 2000:
                    ctx.report(STEP, done, None)
                continue
            if pooled or not (
                native or laned
            ):  # not an object on its own line (or a worker left it): the record path here
                pending.append((line, obj, raw))
                if len(pending) >= 256:
                    yield from slow(pending)
                    pending = []
                continue
            if type(obj) is dict:  # (no pool) a fast row as it is, or a lane's row, as the workers make them
                shape_ = lane_shape(obj, raw, lane) if lane is not None else None
                got = val.fast(shape_[0], obj, *shape_[1:]) if shape_ is not None else None
                made = rp.lane((line, obj, raw), val) if got is None and laned else None
                if got is not None or made is not None:
                    if pending:
                        yield from slow(pending)
                        pending = []
                    n_fast += 1
                    done += 1
                    if done % 2000 == 0:
                        ctx.report(STEP, done, None)
                    if made is not None:
                        sizes[made[0][1]] = made[1]
                        yield settler.row(made[0])
                        continue
                    kind, cat, tags, violates = shape_  # type: ignore[misc]
                    st, size = got  # type: ignore[misc]
                    rid = content_id(kind, obj)
                    sizes[rid] = size
                    yield Row(kind, rid, src, fname, line, fmt, _share(cat), tags, violates, st, None)
                    continue
            pending.append((line, obj, raw))
            if len(pending) >= 256:
                yield from slow(pending)
                pending = []
        if pending:
            yield from slow(pending)
        ctx.count("in:" + fname, n_fast + n_in)  # _read_file counted the units it read
        ctx.count("read:out:" + fname, n_fast + n_out)
        ctx.report(STEP, done, None)
    ctx.report(STEP, done, done)


# ---------------------------------------------------------------- read + validate on a fork pool

FAST = object()  # marks a unit of pool verdicts (see _pooled_units)
_POOL: tuple[Any, ...] | None = (
    None  # (Input, _Validator, _RecordPath or None, lane) inherited by the workers
)


def _fast_chunk(
    bounds: tuple[int, int],
) -> tuple[list[Any], tuple[str, array, str] | None, tuple[Keys, list[int]] | None]:
    """In a worker: for lines a+1..b, the verdict of each: a native fast row's fields, or (with a `_RecordPath`)
    the record path's outcomes of an object line (`_Lines`), else None (not an object on its own line, or left
    to the build process); with `keep_keys` the split's keys of the fast lines (a `_ChunkKeys` payload); with
    `val.dedup` dedup's keys of the fast lines (`dedup_keys.item_keys`) and which lines they are (line a+1+j)."""
    assert _POOL is not None
    src, val, rp, lane = _POOL
    return chunk_verdicts(val, rp, lane, bounds[0], *src.chunk(*bounds))


def _pooled_verdicts(
    src: Input, val: _Validator, rp: _RecordPath | None, lane: str | None, workers: int, mapper: Any = None
) -> Iterator[tuple[int, list[Any], Any]]:
    """(first line number - 1, verdicts, the chunk's `_Made`: the split's `_ChunkKeys` and dedup's `ChunkDedup` of
    its fast lines, when the workers made them) per chunk of the file, in order, from `workers` forked processes,
    or from Ray tasks (`mapper`: a `ray_map.RayMapper`, which sends each task its chunk's bytes). Dedup's texts go
    to `val.spool` here, as the chunks come."""
    global _POOL
    n = len(src.starts) - 1
    bounds = [(a, min(n, a + local_map.POOL_CHUNK)) for a in range(0, n, local_map.POOL_CHUNK)]
    if val.dedup is not None:
        warm_keys()  # (the workers inherit the kernels instead of each loading them)
    if mapper is not None:
        yield from _made(
            val, bounds, mapper.read_chunks(partial(chunk_verdicts, *sendable(val, rp), lane), src, bounds)
        )
        return
    _POOL = (src, val, rp, lane)
    try:
        with multiprocessing.get_context("fork").Pool(
            min(workers, len(bounds)), initializer=worker_init
        ) as pool:
            _POOL = None
            yield from _made(val, bounds, _ordered(pool, _fast_chunk, bounds, 2 * workers))
    finally:
        _POOL = None


def _made(
    val: _Validator, bounds: list[tuple[int, int]], verdicts: Iterator[Any]
) -> Iterator[tuple[int, list[Any], Any]]:
    """`_pooled_verdicts` of the chunks' verdicts (`chunk_verdicts`), in order."""
    for (a, b), (got, keys, dd) in zip(bounds, verdicts):
        if keys is None and dd is None:
            yield a, got, FAST
            continue
        ck = None if keys is None else _ChunkKeys(a + 1, keys, getattr(val, "key_spool", None))
        dk = None
        if dd is not None:
            dk = ChunkDedup(a + 1, b - a, dd[1], dd[0], val.dedup.params, val.spool)
        yield a, got, _Made(ck, dk)


class _Made:
    """What the read's workers made of one chunk's fast lines besides their verdicts: the split's keys
    (`_ChunkKeys` or None) and dedup's (`dedup_keys.ChunkDedup` or None); each fast row of the chunk refers to
    both (`Row.keys`, `Row.dkeys`)."""

    __slots__ = ("dkeys", "keys")

    def __init__(self, keys: _ChunkKeys | None, dkeys: ChunkDedup | None) -> None:
        self.keys, self.dkeys = keys, dkeys


def _pooled_units(
    path: Path,
    src: Input,
    val: _Validator,
    rp: _RecordPath | None,
    lane: str | None,
    workers: int,
    mapper: Any = None,
) -> Iterator[tuple[int, Any, Any]]:
    """`iter_jsonl(path)`'s units, but lines a worker found fast come as `(first line number, their verdicts, their
    chunk's _ChunkKeys or FAST)`
    (consecutive lines: a whole chunk when all its lines are fast, else one line), without their bytes (never
    read here). The lines are walked exactly as iter_jsonl walks them (a line that does not parse may join the
    lines after it), so the units and their order are iter_jsonl's; a worker's verdict depends on its line's bytes
    alone (a fast line parses to an object on its own)."""
    from curate.readers.containers import _slow_line

    n = len(src.starts) - 1
    if n == 0:
        return
    chunks = _pooled_verdicts(src, val, rp, lane, workers, mapper)
    cur: list[Any] = []
    lo = hi = 0  # cur holds the verdicts of lines lo+1..hi
    mark: Any = FAST  # their chunk's keys, or FAST

    def verdict(no: int) -> Any:  # line numbers asked for only grow
        nonlocal cur, lo, hi, mark
        while no > hi:
            lo, cur, mark = next(chunks)
            hi = lo + len(cur)
        return cur[no - lo - 1]

    loads, JSONDecodeError, line = orjson.loads, orjson.JSONDecodeError, src.line
    nxt = 1  # the next line not yet taken
    pending: list[tuple[int, bytes]] = []  # lines taken and given back, the next one last

    def pull() -> tuple[int, bytes] | None:
        nonlocal nxt
        if pending:
            return pending.pop()
        if nxt > n:
            return None
        nxt += 1
        return nxt - 1, line(nxt - 1)

    def push(items: list[tuple[int, bytes]]) -> None:
        pending.extend(reversed(items))

    try:
        while pending or nxt <= n:
            if pending:
                no, raw = pending.pop()
                got = verdict(no)
                if got is not None:
                    yield no, (got,), mark
                else:
                    yield from _slow_line(no, raw, pull, push)
                continue
            no = nxt
            got = verdict(no)
            if no == lo + 1 and None not in cur:  # a whole chunk of fast lines: one unit
                nxt = hi + 1
                yield no, cur, mark
                continue
            nxt += 1
            if got is not None:
                yield no, (got,), mark
                continue
            raw = line(no)
            try:
                obj = loads(raw)
            except JSONDecodeError:
                yield from _slow_line(no, raw, pull, push)
                continue
            if type(obj) is dict:
                yield no, obj, raw
            else:
                yield from _slow_line(no, raw, pull, push)
    finally:
        chunks.close()


def release_memory() -> None:
    """Give the C heap's free memory back to the system (`residency.trim_heap`: glibc `malloc_trim`; nothing
    elsewhere), and the resident pages of shared-library code (`residency.drop_library_pages`: ~190 MB mapped by the
    end of a build's read, most of them LLVM's, run only while numba loads the kernels).

    Between the build's steps the freed arrays and texts of the step before stay in the process otherwise (glibc
    raises its mmap threshold after the first big free, so later big blocks come from the heap and are not
    unmapped when freed): measured ~1.2 KB a record after dedup, which the split's peak then stacks on."""
    trim_heap()
    drop_library_pages()


__all__ = ["Checker", "Row", "materialize", "read_validate_rows", "row_of"]
