"""What the read's workers make of one chunk of a JSONL file's lines, on a fork pool or on Ray: one function.

    verdicts, keys, dedup = chunk_verdicts(val, rp, lane, a, starts, data)

`curate.engine.compact` runs it in its fork pool's workers (`_fast_chunk`: each worker reads its chunk's bytes
from the inherited descriptor) and, on the Ray engine, in Ray tasks (`ray_map.RayMapper.read_chunks`: the build
process sends each task its chunk's bytes, and `sendable` copies the validator and the record path for them). The
same lines give the same verdicts, the same split keys and the same dedup keys on either engine.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import orjson

from curate.engine.rows import _id_and_keys, _keys_of, content_id, dedup_item, one_user_turn
from curate.engine.settle import _RecordPath, _Validator, lane_shape
from curate.steps.base import RunContext
from curate.steps.dedup_keys import Keys, item_keys
from curate.steps.validate import LengthCounter

_NO_KEY = "0" * 16

__all__ = ["chunk_verdicts", "sendable"]


def chunk_verdicts(
    val: _Validator, rp: _RecordPath | None, lane: str | None, a: int, starts: Sequence[int], data: bytes
) -> tuple[list[Any], tuple[str, array, str, bytes] | None, tuple[Keys, list[int]] | None]:
    """`_fast_chunk` of lines a+1..a+len(starts)-1, whose bytes are `data` (the file from `starts[0]` to
    `starts[-1]`, the lines' offsets): in a forked worker (which reads them), or in a Ray task (which is sent
    them, `ray_map.RayMapper.read_chunks`)."""
    ks = val.dedup
    items: list[Any] = []  # with ks: the fast lines' dedup items, and their places in the chunk
    places: list[int] = []
    b = a + len(starts) - 1
    base = starts[0]
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    out: list[Any] = []
    append = out.append
    norms: list[str] = []  # with val.keep_keys: the split's keys of the lines up to the last fast one
    pks: list[str] = []
    # with val.keep_keys: 1 where a fast line's prompt has one user turn (rows.one_user_turn)
    ones = bytearray()
    slow: list[tuple[int, Any, Any]] = []  # object lines for the record path
    for no in range(a + 1, b + 1):
        raw = data[starts[no - 1 - a] - base : starts[no - a] - base]
        if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            obj = loads(raw)
        except JSONDecodeError:
            append(None)
            continue
        if type(obj) is not dict:
            append(None)
            continue
        got = None
        shape = lane_shape(obj, raw, lane) if lane is not None else None
        if shape is not None:
            kind, cat, tags, violates = shape
            got = val.fast(kind, obj, cat, tags, violates)
        if got is None:
            append(None)
            if rp is not None:
                slow.append((no, obj, raw))
            continue
        if ks is not None:
            items.append(dedup_item(kind, obj, cat, tags))
            places.append(no - a - 1)
        if not val.keep_keys:
            append((kind, content_id(kind, obj), cat, tags, violates, got[0], got[1]))
            continue
        rid, (norm, pk) = _id_and_keys(kind, obj)
        append((kind, rid, cat, tags, violates, got[0], got[1]))
        while len(norms) < no - a - 1:  # lines before this one that are not fast
            norms.append("")
            pks.append(_NO_KEY)
            ones.append(0)
        norms.append(norm)
        pks.append(pk)
        ones.append(one_user_turn(kind, obj))
    if slow:
        made: list[Any] | None = [] if ks is not None or val.keep_keys else None
        for no, lines in rp.lines(slow, val, made).items():
            out[no - a - 1] = lines
        for no, kind, obj, cat, tags in made or ():  # the lane rows' keys too (their stored objects)
            j = no - a - 1
            if ks is not None:
                items.append(dedup_item(kind, obj, cat, tags))
                places.append(j)
            if val.keep_keys:
                while len(norms) <= j:  # (a lane row's line is not a fast one: no key of it yet)
                    norms.append("")
                    pks.append(_NO_KEY)
                    ones.append(0)
                norms[j], pks[j] = _keys_of(kind, obj)
                ones[j] = one_user_turn(kind, obj)
    dd = (item_keys(items, ks, 1), places) if items else None
    if not val.keep_keys:
        return out, None, dd
    offsets = array("q", [0])
    total = 0
    for t in norms:
        total += len(t)
        offsets.append(total)
    return out, ("".join(norms), offsets, "".join(pks), bytes(ones)), dd


def sendable(val: _Validator, rp: _RecordPath | None) -> tuple[_Validator, _RecordPath | None]:
    """Copies of the read's validator and record path for a Ray task (pickled once a file): what a forked worker
    inherits, less this process's counters, lengths and spool files (a worker's are its own, as in a fork)."""
    import copy

    v = copy.copy(val)
    v.ctx, v.lengths, v.spool = RunContext(), LengthCounter(val.spec), None
    v.key_spool = None  # type: ignore[attr-defined]
    if rp is not None:
        rp = copy.copy(rp)
        rp.lengths = LengthCounter(rp.spec, rp.lengths.tokenizer)
    return v, rp
