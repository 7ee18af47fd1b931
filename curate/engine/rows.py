"""The build's rows (`Row`): a record as a place in a JSONL file plus a few keys, or a row wrapping its record, and
every value a step derives from one (content id, texts, keys, export rows), equal to what the record path derives
from the record (tests/engine/test_compact.py). `curate.engine.compact` reads and validates inputs into rows.

    row = row_of(record)          # a slow row
    text = user_text(row)         # == record.user_text()

Every row is a place in a JSONL file (`src`, line `at`): a native input line, or a line of the build's
`RecordStore` (curate's own unlinked temp file). A record the record path made (any other format, or a native
line the fast read declined) is stored there as the native line the native reader turns back into that very
record (checked when it is stored: `settle`), and is then a fast row like any native line; a record no native
line gives back (tools, annotations, a negative example, a prompt) is stored as its JSON and is a *record row*:
`facts` holds what the steps ask of it without the record (priority, flags, coverage cells, origin), `rec` reads
it back (~45 us). Either way the process holds ~200 bytes a row, not a record's ~3.4 KB of pydantic objects.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter

from curate.engine.store import HeldLine, Input, RecordStore, _ChunkKeys, _line_starts  # noqa: F401 (re-exported)
from curate.records import CheckResult, PreferenceRecord, Record, SFTRecord, normalize_text
from curate.steps.export import lineage_json, system_turn
from curate.steps.validate import is_unlabeled_prompt

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord

NONE_FILE = "<none>"
_SFT_KEYS = frozenset(("messages", "category", "tags", "violates"))
_PREF_KEYS = frozenset(("prompt", "chosen", "rejected", "category", "tags", "violates"))
_EMPTY: tuple[str, ...] = ()
_NO_TAGS: frozenset[str] = frozenset()


class Facts(NamedTuple):
    """What the steps ask of a record row without its record (shared: one object per distinct value)."""

    priority: int  # dedup's keep priority (steps.dedup.keep_priority)
    negative: bool  # a negative SFT example (pairing)
    prompt: bool  # an unlabeled prompt (validate.is_unlabeled_prompt)
    hits: tuple[tuple[str, str], ...]  # its coverage cells (steps.coverage.record_hits)
    origin: tuple[str, str, str, str]  # records.record_origin
    labeled: bool  # non-empty labels
    plain: bool  # its export row has a fast row's shape (no tools; role + string content turns)


_FACTS: dict[Facts, Facts] = {}


def record_facts(rec: Rec, spec: Any, rules: Sequence[Any] | None = None) -> Facts:
    from curate.records import record_origin
    from curate.steps.coverage import record_hits
    from curate.steps.dedup import keep_priority as of_record

    f = Facts(
        of_record(rec),
        isinstance(rec, SFTRecord) and rec.is_negative,
        is_unlabeled_prompt(rec),
        tuple(record_hits(spec, rec, list(rules) if rules is not None else None)),
        record_origin(rec),
        bool(rec.labels),
        plain_record(rec),
    )
    got = _FACTS.get(f)
    if got is None:
        if len(_FACTS) > 50_000:
            return f
        got = _FACTS[f] = f
    return got


def plain_record(rec: Any) -> bool:
    """A record whose export row has a fast row's shape: no tools, every turn role + string content only."""
    if getattr(rec, "tools", None) is not None:
        return False
    if rec.kind == "preference":
        turns = (*rec.prompt, *rec.chosen, *rec.rejected)
    else:
        turns = rec.conversation()
    return all(
        type(m.content) is str and not m.tool_calls and not m.name and not m.tool_call_id for m in turns
    )


_RECORD = TypeAdapter(Record)


class Row:
    """One record between the build's steps (see the module doc)."""

    __slots__ = (
        "_rec",
        "at",
        "category",
        "dkeys",
        "facts",
        "file",
        "fmt",
        "id",
        "keys",
        "kind",
        "line",
        "src",
        "statuses",
        "tags",
        "violates",
    )

    def __init__(
        self,
        kind: str,
        id: str,
        src: Input | None,
        file: str,
        line: int,
        fmt: str,
        category: str,
        tags: tuple[str, ...],
        violates: tuple[str, ...],
        statuses: tuple[str, ...] | None,
        rec: Rec | None,
        keys: _ChunkKeys | None = None,
        *,
        at: int | None = None,
        facts: Facts | None = None,
    ) -> None:
        self.kind = kind
        self.id = id
        self.src = src
        self.file = file
        self.line = line
        self.fmt = fmt
        self.category = category
        self.tags = tags
        self.violates = violates
        self.statuses = statuses
        self._rec = rec
        self.at = line if at is None else at  # the line of `src` that holds this row
        self.facts = facts  # set on record rows (and only on them)
        self.keys = keys  # the _ChunkKeys holding split_keys(self), made by the read's workers (taken by
        # split_keys_all)
        self.dkeys: Any = (
            None  # the dedup_keys.ChunkDedup holding dedup's keys of this row, made by the read's
        )
        # workers (taken by dedup: RowAccess.fused)

    @property
    def is_record(self) -> bool:
        """A record row (see the module doc): its values come from its record."""
        return self.facts is not None

    @property
    def rec(self) -> Rec | None:
        """A record row's record (read back from the store, or held), else None."""
        if self._rec is not None:
            return self._rec
        if self.facts is None:
            return None
        return _RECORD.validate_json(self.src.line(self.at))  # type: ignore[union-attr]

    def where(self) -> str:
        """== the record's `source.where()` (a record row from a file needs no record for it)."""
        if self.facts is not None and self.file == NONE_FILE:
            return self.rec.source.where()  # type: ignore[union-attr]
        return f"{self.file}:{self.line}" if self.line else self.file

    def obj(self) -> dict[str, Any]:
        """The line's JSON object (fast rows)."""
        return orjson.loads(self.src.line(self.at))  # type: ignore[union-attr]

    def __reduce__(self) -> Any:
        """Pickled (for another process that has not the store, nor the input file: a Ray worker) with its record,
        not its place in the store; a plain-line row with its line's bytes (`store.HeldLine`). The read's keys
        (`keys`, `dkeys`) stay here: they refer to this process's spool files."""
        if self.facts is None:
            line = self.src.line(self.at)  # type: ignore[union-attr]
            return (
                _unpickle_line_row,
                (self.kind, self.id, self.file, self.line, self.fmt, self.category, self.tags, self.violates)
                + (self.statuses, line),
            )
        return (
            _unpickle_row,
            (
                self.kind,
                self.id,
                self.file,
                self.line,
                self.fmt,
                self.category,
                self.tags,
                self.violates,
                self.rec,
                self.facts,
            ),
        )


def _unpickle_line_row(*a: Any) -> Row:
    kind, id, file, line, fmt, category, tags, violates, statuses, data = a
    return Row(kind, id, HeldLine(data), file, line, fmt, category, tags, violates, statuses, None, at=1)


def _unpickle_row(*a: Any) -> Row:
    kind, id, file, line, fmt, category, tags, violates, rec, facts = a
    return Row(kind, id, None, file, line, fmt, category, tags, violates, None, rec, facts=facts)


def record_json(rec: Rec) -> bytes | None:
    """The record's JSON, as a record row stores it, when reading it back gives the record (else None: held)."""
    data = rec.model_dump_json().encode()
    return data if _RECORD.validate_json(data) == rec else None


def row_of(rec: Rec, spec: Any, store: RecordStore | None = None, rules: Sequence[Any] | None = None) -> Row:
    """A record row of `rec`: stored (as its JSON) in `store` when given and its JSON gives it back, else held."""
    at = 0
    held: Rec | None = rec
    data = record_json(rec) if store is not None else None
    if data is not None:
        at, held = store.add(data), None  # type: ignore[union-attr]
    return Row(
        rec.kind,
        rec.id,
        store if held is None else None,
        rec.source.file or NONE_FILE,
        rec.source.line or 0,
        rec.source.format or "",
        rec.category,
        rec.tags,
        rec.violates,
        None,
        held,
        at=at,
        facts=record_facts(rec, spec, rules),
    )


# ---------------------------------------------------------------- derived values of fast rows (== the records')


def _conv(obj: dict[str, Any]) -> list[dict[str, str]]:
    return obj["messages"]


def _digest_norm(parts: list[str]) -> str:
    """== records._digest(raw parts) given the parts already normalized (one sha256 call instead of 2 per part)."""
    parts.append("")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def content_id(kind: str, obj: dict[str, Any]) -> str:
    """== SFTRecord/PreferenceRecord.content_id() of the record built from `obj` (roles are lowercase ASCII
    without spaces, so the role tags are their own normal form)."""
    parts: list[str] = []
    if kind == "sft":
        for m in obj["messages"]:
            if m["role"] != "system":
                parts += ("m:" + m["role"], normalize_text(m["content"]))
        return _digest_norm(parts)
    for m in obj["prompt"]:
        if m["role"] != "system":
            parts += ("p:" + m["role"], normalize_text(m["content"]))
    for tag, key in (("c:", "chosen"), ("r:", "rejected")):
        for m in obj[key]:
            parts += (tag + m["role"], normalize_text(m["content"]))
    return _digest_norm(parts)


def response_text(row: Row, obj: dict[str, Any] | None = None) -> str:
    if row.facts is not None:
        return row.rec.response_text()  # type: ignore[union-attr]
    obj = obj if obj is not None else row.obj()
    return (obj["messages"] if row.kind == "sft" else obj["chosen"])[-1]["content"]


def user_text(row: Row, obj: dict[str, Any] | None = None) -> str:
    if row.facts is not None:
        return row.rec.user_text()  # type: ignore[union-attr]
    obj = obj if obj is not None else row.obj()
    msgs = obj["messages"] if row.kind == "sft" else obj["prompt"]
    return "\n".join([m["content"] for m in msgs if m["role"] == "user"])


def user_turns(row: Row, obj: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The contents of a row's user turns (what the leakage check compares)."""
    if row.facts is not None:
        return tuple(m.content for m in row.rec.prompt_messages() if m.role == "user")  # type: ignore[union-attr]
    obj = obj if obj is not None else row.obj()
    return tuple(m["content"] for m in _prompt_msgs(row.kind, obj) if m["role"] == "user")


def user_turns_all(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """`user_turns` of each row, nearby lines read with one `pread` (`read_objs`)."""
    return [user_turns(r, o) for r, o in zip(rows, read_objs(rows))]


def prompt_key(row: Row, obj: dict[str, Any] | None = None) -> str:
    """== curate.steps.pairs.record_prompt_key(record)."""
    if row.facts is not None:
        from curate.steps.pairs import record_prompt_key

        return record_prompt_key(row.rec)  # type: ignore[arg-type]
    obj = obj if obj is not None else row.obj()
    parts: list[str] = []
    for m in _prompt_msgs(row.kind, obj):
        if m["role"] != "system":
            parts += (m["role"], normalize_text(m["content"]))
    return _digest_norm(parts)


def split_keys(row: Row, obj: dict[str, Any] | None = None) -> tuple[str, str]:
    """(normalized user text, prompt key) of a row, from one parse and one normalization per user turn: what the
    split reads. (For ASCII turns the normal form of the turns joined by newlines is their normal forms joined by
    spaces; other text is normalized whole.) `obj`: the row's line already parsed."""
    if row.facts is not None:
        from curate.steps.pairs import record_prompt_key

        rec = row.rec
        return normalize_text(rec.user_text()), record_prompt_key(rec)  # type: ignore[union-attr,arg-type]
    return _keys_of(row.kind, obj if obj is not None else row.obj())


def _prompt_turns(kind: str, obj: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """(role, normalized content) of a fast row's prompt turns but the system turn, and its normalized user text
    (== user_text): each turn normalized once. (For ASCII turns the normal form of the turns joined by newlines is
    their normal forms joined by spaces; other text is normalized whole.)"""
    prompt = _prompt_msgs(kind, obj)
    turns: list[tuple[str, str]] = []
    users: list[str] = []
    ascii_only = True
    for m in prompt:
        role = m["role"]
        if role != "system":
            c = m["content"]
            norm = normalize_text(c)
            turns.append((role, norm))
            if role == "user":
                users.append(norm)
                ascii_only = ascii_only and c.isascii()
    if ascii_only:  # (a fast SFT row's user turns are all in its prompt: the last turn is the answer)
        return turns, " ".join(users)
    return turns, normalize_text("\n".join([m["content"] for m in prompt if m["role"] == "user"]))


def _keys_of(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """split_keys of a fast row's object: (normalized user text, prompt key)."""
    turns, user = _prompt_turns(kind, obj)
    return user, _digest_norm([x for role, norm in turns for x in (role, norm)])


def one_user_turn(kind: str, obj: dict[str, Any]) -> bool:
    """Whether a fast row's prompt holds exactly one user turn: its user turns are then `(its normalized user
    text,)` (`split_keys`' first key; `steps.spill.spill_turns` need not read the line again)."""
    return sum(m["role"] == "user" for m in _prompt_msgs(kind, obj)) == 1


def _prompt_msgs(kind: str, obj: dict[str, Any]) -> list[dict[str, str]]:
    """A fast row's prompt turns: an SFT row's messages but the last (its answer), a preference row's prompt."""
    return obj["messages"][:-1] if kind == "sft" else obj["prompt"]


def _id_and_keys(kind: str, obj: dict[str, Any]) -> tuple[str, tuple[str, str]]:
    """(content_id(kind, obj), _keys_of(kind, obj)) of a fast row's object, normalizing each turn once."""
    turns, user = _prompt_turns(kind, obj)
    tag = "m:" if kind == "sft" else "p:"
    id_parts = [x for role, norm in turns for x in (tag + role, norm)]
    if kind == "sft":
        last = obj["messages"][-1]  # the answer: an assistant turn
        id_parts += ("m:" + last["role"], normalize_text(last["content"]))
    else:
        for t, key in (("c:", "chosen"), ("r:", "rejected")):
            for m in obj[key]:
                id_parts += (t + m["role"], normalize_text(m["content"]))
    return _digest_norm(id_parts), (user, _digest_norm([x for role, norm in turns for x in (role, norm)]))


def dedup_messages(row: Row, obj: dict[str, Any] | None = None) -> tuple[Any, Any, str]:
    """(turns, chosen or None, meta) of a row: what `curate.steps.dedup` compares (== its `_Access.messages`)."""
    if row.facts is not None:
        from curate.steps.dedup import record_messages

        return (*record_messages(row.rec), row.category + "\x1f" + ",".join(row.tags))  # type: ignore[arg-type]
    return dedup_item(row.kind, obj if obj is not None else row.obj(), row.category, row.tags)


def dedup_item(kind: str, obj: dict[str, Any], category: str, tags: tuple[str, ...]) -> tuple[Any, Any, str]:
    """`dedup_messages` of a fast row, from its line's object, kind, category and tags (the read's workers call it
    for the keys they make)."""
    meta = category + "\x1f" + ",".join(tags)
    if kind == "sft":
        return obj["messages"], None, meta
    return obj["prompt"], obj["chosen"], meta


def keep_priority(row: Row) -> int:
    if row.facts is not None:
        return row.facts.priority
    return 1  # a fast row has no annotation, labels or generator: imported


def source_file(row: Row) -> str:
    return row.file  # a record row's: its source file, or NONE_FILE


def estimate(messages: Iterable[dict[str, str]], system_prompt: str) -> int:
    """== LengthCounter._estimate over plain messages (no tool calls)."""
    chars = turns = 0
    has_system = False
    for m in messages:
        turns += 1
        has_system = has_system or m["role"] == "system"
        chars += len(m["content"])
    if system_prompt and not has_system:
        chars += len(system_prompt)
        turns += 1
    return math.ceil(chars / 4) + 4 * turns


def _trl(messages: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The TRL turns of a fast row's plain messages (exactly `role` and `content`): a parsed turn whose keys are
    in that order already is one (it is used as it is: the row's object is parsed for this call alone)."""
    return [m if next(iter(m)) == "role" else {"role": m["role"], "content": m["content"]} for m in messages]


def sft_row(row: Row, spec: Any, sft_format: str, counting: frozenset[str] = frozenset()) -> dict[str, Any]:
    """== curate.steps.export.sft_row(record, spec, sft_format, counting)."""
    from curate.steps.export import sft_row as of_record

    if row.facts is not None:
        return of_record(row.rec, spec, sft_format, counting)  # type: ignore[arg-type]
    obj = row.obj()
    if row.kind == "sft":
        conv = obj["messages"]
        prompt, completion = conv[:-1], conv[-1:]
    else:
        prompt, completion = obj["prompt"], obj["chosen"]
    if sft_format == "prompt-completion":
        out: dict[str, Any] = {
            "prompt": _system_turn(spec, prompt) + _trl(prompt),
            "completion": _trl(completion),
        }
    elif sft_format == "messages":
        out = {"messages": _system_turn(spec, prompt) + _trl(prompt) + _trl(completion)}  # no system turn in
        # completion: a fast SFT row's answer is an assistant turn, a pair's chosen side only assistant turns
    else:  # the record path raises the error
        return of_record(materialize_plain(row, spec), spec, sft_format, counting)
    out["id"] = row.id
    out["lineage"] = lineage_json({"file": row.file, "line": row.line}, None, spec, counting)
    return out


def _system_turn(spec: Any, messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """== the system turn export._system prepends: [export.system_turn(spec), shared by all rows] or []."""
    turn = system_turn(spec)
    if turn is not None and not any(m["role"] == "system" for m in messages):
        return [turn]
    return []


def dpo_row(row: Row, spec: Any, counting: frozenset[str] = frozenset()) -> dict[str, Any]:
    """== curate.steps.export.dpo_row(record, spec, counting)."""
    from curate.steps.export import dpo_row as of_record

    if row.facts is not None:
        return of_record(row.rec, spec, counting)  # type: ignore[arg-type]
    obj = row.obj()
    return {
        "prompt": _system_turn(spec, obj["prompt"]) + _trl(obj["prompt"]),
        "chosen": _trl(obj["chosen"]),
        "rejected": _trl(obj["rejected"]),
        "id": row.id,
        "lineage": lineage_json({"file": row.file, "line": row.line}, None, spec, counting),
    }


# ---------------------------------------------------------------- the checks


class Checker:
    """The spec's automatic rules over one response: per rule "pass" / "fail" / "skip", as a shared tuple.

    `curate.checks.compiled` (the rules compiled once per spec; the same verdicts as `check_response`) decides;
    `results()` gives the full CheckResult list (`check_response`), for the records that need one.
    """

    def __init__(self, spec: Any) -> None:
        from curate.checks import check_response
        from curate.checks.compiled import compile_rules

        self.spec = spec
        self.rules = spec.automatic_rules()
        self._check_response = check_response
        self._statuses = compile_rules(spec, self.rules).statuses

    def __reduce__(self) -> Any:
        """Pickled as its spec (a Ray task's): the rules compiled again there (a compiled schema does not pickle)."""
        return (Checker, (self.spec,))

    def statuses(self, response: str, user: str, category: str, tags: tuple[str, ...]) -> tuple[str, ...]:
        return self._statuses(response, user, category, frozenset(tags) if tags else _NO_TAGS)

    def results(self, response: str, user: str, category: str, tags: tuple[str, ...]) -> list[CheckResult]:
        return self._check_response(
            self.spec, response, user_text=user, category=category, tags=tags, rules=self.rules
        )


def materialize(row: Row, spec: Any, checker: Checker | None = None) -> Rec:
    """The record the record path has for this row after validate (checks and spec set)."""
    if row.facts is not None:
        return row.rec  # type: ignore[return-value]
    rec = materialize_plain(row, spec)
    checker = checker or Checker(spec)
    checks = tuple(checker.results(rec.response_text(), rec.user_text(), rec.category, rec.tags))
    return rec.model_copy(update={"checks": checks})


def materialize_plain(row: Row, spec: Any) -> Rec:
    """The record read gives for this row (before validate)."""
    from curate.readers.shapes import convert_native

    return convert_native(row.obj(), {"file": row.file, "line": row.line, "format": row.fmt}, spec.ref)


_NEAR_LINES = 4  # read_objs: lines at most this far apart are read with one pread


def read_objs(rows: Sequence[Row]) -> list[dict[str, Any] | None]:
    """The JSON objects of the rows' lines (`Row.obj()` of each fast row; None for a slow row), reading every
    run of nearby lines of a file (gaps of < `_NEAR_LINES` lines) with one `pread` instead of one per line."""
    out: list[dict[str, Any] | None] = [None] * len(rows)
    by_src: dict[int, list[tuple[int, int]]] = {}
    for k, r in enumerate(rows):
        if r.facts is None:
            by_src.setdefault(id(r.src), []).append((r.at, k))
    loads = orjson.loads
    for got in by_src.values():
        got.sort()
        src = rows[got[0][1]].src
        assert src is not None
        starts, span = src.starts, src.span
        s, m = 0, len(got)
        while s < m:
            e = s + 1
            while e < m and got[e][0] - got[e - 1][0] <= _NEAR_LINES:
                e += 1
            base = starts[got[s][0] - 1]
            data = span(base, starts[got[e - 1][0]])
            for no, k in got[s:e]:
                raw = data[starts[no - 1] - base : starts[no] - base]
                if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                out[k] = loads(raw)
            s = e
    return out


def is_negative_sft(row: Row) -> bool:
    return row.facts is not None and row.facts.negative


def is_prompt_row(row: Row) -> bool:
    """An unlabeled prompt (`validate.is_unlabeled_prompt`; a fast row always has its answer)."""
    return row.facts is not None and row.facts.prompt


__all__ = ["Checker", "Input", "Row", "materialize", "materialize_plain", "row_of"]
