"""Read + validate's per-record pieces, shared by the build process and the fork pool's workers: which native
lines are fast rows as they are (`_fast_shape`, `_Validator.fast`), and what the build keeps of a record the record
path passed (`settle`: a fast row on a `RecordStore` line, or a record row), made into rows here (`_Settler`) from
what the workers send (`_RecordPath`, `_Lines`). `curate.engine.compact.read_validate_rows` drives them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from curate.engine.lanes import LANES, lane_native
from curate.engine.rows import (
    _EMPTY,
    _PREF_KEYS,
    _SFT_KEYS,
    NONE_FILE,
    Checker,
    RecordStore,
    Row,
    content_id,
    estimate,
)
from curate.readers.common import ROLES
from curate.readers.guard import dup_suspect, line_fault
from curate.readers.shapes import SHAPES, detect_shape
from curate.records import PreferenceRecord, SFTRecord, normalize_text
from curate.steps.base import RunContext
from curate.steps.validate import HELDOUT_TAG, LengthCounter
from curate.steps.validate import validate as _validate

Rec = SFTRecord | PreferenceRecord

# ---------------------------------------------------------------- read + validate


def _plain(msgs: Any) -> bool:
    """A non-empty list of {role, content} dicts: a known role, non-blank string content, nothing else."""
    if type(msgs) is not list or not msgs:
        return False
    for m in msgs:
        if type(m) is not dict or len(m) != 2:
            return False
        c = m.get("content")
        if type(c) is not str or m.get("role") not in ROLES or not c or c.isspace():
            return False
    return True


_SHARED: dict[Any, Any] = {}  # one object per distinct category string and tags / violates tuple


def _share(v: Any) -> Any:
    got = _SHARED.get(v)
    if got is None:
        if len(_SHARED) > 50_000:  # free-form tags: stop sharing rather than grow without bound
            return v
        got = _SHARED[v] = v
    return got


def _strs(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return _EMPTY
    if type(v) is list and all(type(x) is str for x in v):
        return _share(tuple(v)) if v else _EMPTY
    return None


def _fast_shape(obj: dict[str, Any]) -> tuple[str, str, tuple[str, ...], tuple[str, ...]] | None:
    """(kind, category, tags, violates) when read would accept `obj` as it is (a native file), else None."""
    cat = obj.get("category", "typical")
    if type(cat) is not str or not cat:
        return None
    if "category" in obj and obj["category"] is None:
        return None
    tags = _strs(obj.get("tags")) if "tags" in obj else _EMPTY
    violates = _strs(obj.get("violates")) if "violates" in obj else _EMPTY
    if (
        tags is None
        or violates is None
        or ("tags" in obj and obj["tags"] is None)
        or ("violates" in obj and obj["violates"] is None)
    ):
        return None
    if "messages" in obj:
        if not obj.keys() <= _SFT_KEYS:
            return None
        msgs = obj["messages"]
        if not _plain(msgs):
            return None
        # validate's structure: a leading system turn at most, a user turn before the answer, ends with the answer
        if msgs[-1]["role"] != "assistant":
            return None
        prompt = msgs[:-1]
        if not any(m["role"] == "user" for m in prompt):
            return None
        if any(m["role"] == "system" for m in prompt[1:]):
            return None
        return "sft", cat, tags, violates
    if "chosen" in obj:
        if not obj.keys() <= _PREF_KEYS or "prompt" not in obj or "rejected" not in obj:
            return None
        prompt, chosen, rejected = obj["prompt"], obj["chosen"], obj["rejected"]
        if not (_plain(prompt) and _plain(chosen) and _plain(rejected)):
            return None
        if any(m["role"] != "assistant" for m in chosen) or any(m["role"] != "assistant" for m in rejected):
            return None
        if not any(m["role"] == "user" for m in prompt) or any(m["role"] == "system" for m in prompt[1:]):
            return None
        if [normalize_text(m["content"]) for m in chosen] == [normalize_text(m["content"]) for m in rejected]:
            return None  # chosen_equals_rejected: the record path quarantines it
        return "preference", cat, tags, violates
    return None


_OPENAI_ACTIVE = frozenset(("labels", "tools", "kind", "checks", "source", "chosen", "rejected"))


def lane_shape(
    obj: dict[str, Any], raw: bytes, lane: str
) -> tuple[str, str, tuple[str, ...], tuple[str, ...]] | None:
    """`_fast_shape` of a line of a file of format `lane` ("native" or "openai"), or None when the record path
    must read it. An OpenAI line qualifies when the OpenAI reader makes of it exactly the record the native reader
    makes of its `messages` / `category` / `tags` / `violates` alone: it is an OpenAI object by itself
    (`detect_shape`), the guard finds no fault (`line_fault`: `unit_fault` as the read applies it), and it has no key either
    reader acts on beyond those (labels, tools, a native record's keys: `_OPENAI_ACTIVE`); other keys (`id`,
    `metadata`, ...) the OpenAI reader drops. Every value of its row then comes from the line as for a native one
    (`materialize` reads it back through `convert_native`, which hands an object with `messages` and none of
    those keys to the OpenAI reader)."""
    if lane == "native":
        shape = _fast_shape(obj)
        if shape is not None and dup_suspect(obj, raw):  # #16: a duplicate key? the record path decides
            return None
        return shape
    if "messages" not in obj or not obj.keys().isdisjoint(_OPENAI_ACTIVE):
        return None
    if detect_shape(obj) != "openai" or line_fault(obj, raw) is not None:
        return None
    return _fast_shape({k: v for k, v in obj.items() if k in _SFT_KEYS})


class _Validator:
    """validate() for fast rows; anything it is not sure of goes to the record path."""

    def __init__(
        self, spec: Any, ctx: RunContext, lengths: LengthCounter, max_tokens: int | None, checker: Checker
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.lengths = lengths
        self.limit = max_tokens if max_tokens is not None else spec.export.max_tokens
        self.checker = checker
        self.auto_ids = {r.id for r in spec.automatic_rules()}
        self.all_ids = {r.id for r in spec.rules}
        self.system_prompt = lengths.system_prompt if lengths.tokenizer is None else None
        self.keep_keys = False  # the pool workers also make the split's keys (Row.keys)
        self.dedup: Any = None  # dedup's KeySketches: the pool workers also make dedup's keys (Row.dkeys)
        self.spool: Any = None  # (their texts: a dedup_keys.TextSpool)

    def fast(
        self,
        kind: str,
        obj: dict[str, Any],
        cat: str,
        tags: tuple[str, ...],
        violates: tuple[str, ...],
        filled: bool = False,
    ) -> tuple[tuple[str, ...], int] | None:
        """(rule statuses, length) when validate passes the record on unchanged but for checks and spec (and for a
        pair's `violates`, when `filled`: `obj` and `violates` hold what validate fills in, `_RecordPath.lane`)."""
        if HELDOUT_TAG in tags or self.system_prompt is None:
            return None
        if violates and not all(v in self.all_ids for v in violates):
            return None
        if kind == "sft":
            if (
                cat == "negative" or violates
            ):  # a negative example: the record path fills violates or quarantines
                return None
            msgs = obj["messages"]
            user = "\n".join([m["content"] for m in msgs if m["role"] == "user"])
            st = self.checker.statuses(msgs[-1]["content"], user, cat, tags)
            if "fail" in st:
                return None
            size = estimate(msgs, self.system_prompt)
        else:
            if (
                not violates and not filled
            ):  # the rejected side's failures fill violates: the record path does it
                return None
            prompt = obj["prompt"]
            user = "\n".join([m["content"] for m in prompt if m["role"] == "user"])
            st = self.checker.statuses(obj["chosen"][-1]["content"], user, cat, tags)
            if "fail" in st:
                return None
            size = max(
                estimate(prompt + obj["chosen"], self.system_prompt),
                estimate(prompt + obj["rejected"], self.system_prompt),
            )
        if self.limit and size > self.limit:
            return None
        return st, size


# ---------------------------------------------------------------- a validated record as a row


def _native_obj(rec: Rec) -> dict[str, Any] | None:
    """The native line that may give `rec` back (settle checks that it does), or None when none can: a record
    with tools, labels, a negative example, a prompt, a turn with more than a role and a string content."""
    if rec.tools is not None or rec.labels:
        return None
    if isinstance(rec, SFTRecord):
        if rec.is_negative or rec.prompt or rec.completion:
            return None
        turns = rec.messages
        if not all(type(m.content) is str and not (m.tool_calls or m.name or m.tool_call_id) for m in turns):
            return None
        obj: dict[str, Any] = {"messages": [{"role": m.role, "content": m.content} for m in turns]}
    else:
        sides = (rec.prompt, rec.chosen, rec.rejected)
        for turns in sides:
            if not all(
                type(m.content) is str and not (m.tool_calls or m.name or m.tool_call_id) for m in turns
            ):
                return None
        obj = {
            key: [{"role": m.role, "content": m.content} for m in turns]
            for key, turns in zip(("prompt", "chosen", "rejected"), sides)
        }
    if rec.category != "typical":
        obj["category"] = rec.category
    if rec.tags:
        obj["tags"] = list(rec.tags)
    if rec.violates:
        obj["violates"] = list(rec.violates)
    return obj


def settle(
    rec: Rec, spec: Any, rule_ids: tuple[str, ...], rules: Sequence[Any], native: bool = True
) -> tuple:
    """What the build keeps of a record validate passed: (kind, id, file, line, format, category, tags, violates,
    statuses, facts, line bytes for the RecordStore or None, the record held or None).

    A fast row (`facts` None) when the native reader gives this very record back from a line (`_native_obj`, read
    back and compared here: the check makes every later value of the row equal the record's, as for a native
    input line), no rule fails, and `native`; else a record row stored as its JSON (held when its JSON does not
    give it back). One function for the serial read and the pool's workers."""
    from curate.engine.rows import record_facts, record_json
    from curate.readers.shapes import convert_native

    src = rec.source
    file, line, fmt = src.file or NONE_FILE, src.line or 0, src.format or ""
    head = (rec.kind, rec.id, file, line, fmt, rec.category, rec.tags, rec.violates)
    obj = _native_obj(rec) if native else None
    if obj is not None and _fast_shape(obj) is not None:
        st = tuple(c.status for c in rec.checks)
        if "fail" not in st and tuple(c.rule for c in rec.checks) == rule_ids:
            data = orjson.dumps(obj)
            try:
                back = convert_native(
                    orjson.loads(data), {"file": file, "line": line, "format": fmt}, spec.ref
                )
            except Exception:  # noqa: BLE001 - not given back: a record row
                back = None
            if back is not None and back == rec.model_copy(update={"checks": ()}):
                return (*head, st, None, data, None)
    data = record_json(rec)
    return (*head, None, record_facts(rec, spec, rules), data, rec if data is None else None)


class _Settler:
    """Turns `settle` outcomes into rows in this process: their lines appended to the store, shared values
    shared."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.statuses: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.facts: dict[Any, Any] = {}

    def row(self, out: tuple) -> Row:
        """The row of a `settle` outcome (its line appended to the store)."""
        kind, rid, file, line, fmt, cat, tags, violates, st, facts, data, held = out
        src = self.store if data is not None else None
        at = self.store.add(data) if data is not None else 0
        row = self.fast(kind, rid, src, file, line, fmt, cat, tags, violates, st, None, at=at)
        row._rec = held
        row.facts = None if facts is None else self.facts.setdefault(facts, facts)
        return row

    def fast(
        self,
        kind: str,
        rid: str,
        src: Any,
        file: str,
        line: int,
        fmt: str,
        cat: str,
        tags: tuple[str, ...],
        violates: tuple[str, ...],
        st: tuple[str, ...] | None,
        keys: Any = None,
        at: int | None = None,
    ) -> Row:
        """A row at line `at` (default `line`) of `src`, its file name, format, category, tags, violates and statuses
        shared (a pool worker's outcomes arrive with a string of each per line: ~80 bytes a row)."""
        return Row(
            kind,
            rid,
            src,
            _share(file),
            line,
            _share(fmt),
            _share(cat),
            _share(tags) if tags else _EMPTY,
            _share(violates) if violates else _EMPTY,
            None if st is None else self.statuses.setdefault(st, st),
            None,
            keys,
            at=at,
        )


class _RecordPath:
    """The record path (read's converter + validate) over units of one file, and `settle` of what it passes:
    run by the pool's workers on the lines they do not take as fast rows, and here on the rest."""

    def __init__(
        self,
        path: Path,
        shape: str | None,
        detected: bool,
        mapping: dict[str, str] | None,
        spec: Any,
        lengths: LengthCounter,
        limit: int | None,
        native: bool,
    ) -> None:
        self.path, self.shape, self.detected, self.mapping = path, shape, detected, mapping
        self.spec, self.lengths, self.limit, self.native = spec, lengths, limit, native
        rules = spec.automatic_rules()
        self.rules = rules
        self.rule_ids = tuple(r.id for r in rules)

    def settle(self, rec: Rec) -> tuple:
        return settle(rec, self.spec, self.rule_ids, self.rules, self.native)

    def lane(
        self, unit: tuple[int, Any, Any], val: _Validator, made: list[Any] | None = None
    ) -> tuple[tuple, int] | None:
        """(the `settle` outcome, length) of a line that takes a lane (`lanes.lane_native`) and that `val.fast`
        passes: the fast row `settle` makes of the record the record path makes of the line (the native object
        stored), with the `violates` validate fills in for a pair (the rejected side's failing rules); else None.
        `made`: (line, kind, native object, category, tags) of the row is appended to it (dedup's fused keys)."""
        no, obj, raw = unit
        got = lane_native(obj, raw, self.shape, self.detected)  # type: ignore[arg-type]
        if got is None:
            return None
        kind, native = got
        shape = _fast_shape(native)
        if shape is None:
            return None
        _, cat, tags, violates = shape
        filled = kind == "preference" and not violates
        if filled:  # validate: a pair without violates gets the rules its rejected answer fails
            user = "\n".join([m["content"] for m in native["prompt"] if m["role"] == "user"])
            st = val.checker.statuses(native["rejected"][-1]["content"], user, cat, tags)
            broken = tuple(r for r, s in zip(self.rule_ids, st) if s == "fail")
            if broken:
                native["violates"] = list(broken)
                violates = _share(broken)
        passed = val.fast(kind, native, cat, tags, violates, filled)
        if passed is None:
            return None
        if made is not None:
            made.append((no, kind, native, cat, tags))
        head = (kind, content_id(kind, native), str(self.path), no, self.shape, cat, tags, violates)
        return (*head, passed[0], None, orjson.dumps(native), None), passed[1]

    def lines(
        self, units: list[tuple[int, Any, Any]], val: _Validator | None = None, made: list[Any] | None = None
    ) -> dict[int, _Lines]:
        """In a worker: each unit's outcomes (one unit a line: shapes whose object is one record), by line; with
        `val`, a line that takes a lane (`lane`, which appends to `made`) is settled without the record path."""
        from curate.steps.read import STEP, _read_file

        got: dict[int, _Lines] = {}
        if val is not None and self.native and not self.mapping and self.shape in LANES:
            rest = []
            for unit in units:
                row = self.lane(unit, val, made)
                if row is None:
                    rest.append(unit)
                else:
                    got[unit[0]] = ln = _Lines()
                    ln.rows.append(row)
                    ln.lane = True
            if not rest:
                return got
            units = rest
        wctx = RunContext(quarantined=defaultdict(list))  # rows kept here, in memory, to send back
        cur: list[_Lines] = []
        seen: dict[str, int] = {}

        def close() -> None:  # the outcomes of the unit last pulled are complete
            if cur:
                ln = cur.pop()
                for step, rows in wctx.quarantined.items():
                    k = seen.get(step, 0)
                    if len(rows) > k:
                        ln.quarantine += [(step, r) for r in rows[k:]]
                        seen[step] = len(rows)
                ln.n_out = 1 - sum(1 for step, _ in ln.quarantine if step == STEP)

        def feed() -> Iterator[tuple[int, Any, Any]]:
            for unit in units:
                close()
                cur.append(got.setdefault(unit[0], _Lines()))
                yield unit
            close()

        recs = _read_file(
            self.path, wctx, self.spec.ref, self.shape, self.mapping, units=feed(), detected=self.detected
        )
        for rec in _validate(recs, spec=self.spec, ctx=wctx, lengths=self.lengths, max_tokens=self.limit):
            cur[-1].rows.append((self.settle(rec), self.lengths.lengths[rec.id]))
        return got


class _Lines:
    """One line's outcomes from a pool worker: settled rows with their lengths, quarantine rows (step, row), and
    the records the read made of it (`read:out`)."""

    __slots__ = ("lane", "n_out", "quarantine", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[tuple, int]] = []
        self.quarantine: list[tuple[str, dict[str, Any]]] = []
        self.n_out = 1
        self.lane = False  # its row is a lane's (`_RecordPath.lane`): the chunk's split keys hold its keys

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as a plain tuple (a slotted object's default pickling costs ~10 us a line more)."""
        return _lines, (self.rows, self.quarantine, self.n_out, self.lane)


def _lines(
    rows: list[tuple[tuple, int]], quarantine: list[tuple[str, dict[str, Any]]], n_out: int, lane: bool
) -> _Lines:
    ln = _Lines()
    ln.rows, ln.quarantine, ln.n_out, ln.lane = rows, quarantine, n_out, lane
    return ln


_POOLED_SHAPES = frozenset(SHAPES) - {"seed_tasks", "label_studio", "label_studio_min"}  # one record a unit
