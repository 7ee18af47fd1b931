"""Compact rows: the build's records as a place in a JSONL file plus a few keys, pydantic models only where needed.

    from curate.engine.compact import read_validate_rows
    rows = list(read_validate_rows(paths, ctx=ctx, spec=spec, lengths=lengths, max_tokens=1024))

A `Row` is either *fast* (`rec is None`): one line of a native JSONL file whose shape is the plain one (only
`messages`, or `prompt` + `chosen` + `rejected`, of `{role, content}` turns, plus `category` / `tags` /
`violates`), that read and validate accept as it is (well formed, every automatic rule passes or skips, fits
`max_tokens`, not a negative SFT example, not marked held-out); it keeps its content id, category, tags,
violates and rule statuses, and where the line is (file, line number); every later step re-reads the line
(`os.pread` at the line's offset) and re-derives what it needs (~2 us a line). Or *slow* (`rec` set): anything
else went through the record path (`curate.steps.read` + `curate.steps.validate`, one record at a time, in input
order), so its quarantine rows, reason codes and fields are those of that path, and the row wraps the pydantic
record it gave.

Every derived value of a fast row equals the one the record path computes from the record it would have built
(content id, response / user text, dedup and prompt texts, prompt key, length estimate, export rows);
`materialize(row)` builds that record when a step needs one (a pair partner, a quarantine row), and
tests/engine/test_compact.py compares the two on example data, and whole builds byte for byte.

A native file of `POOL_MIN_LINES` lines or more is read on a fork pool (`pool_workers()`: CURATE_WORKERS, else
the cores `os.sched_getaffinity` allows; 1 turns it off; also off while other threads run): each worker takes
chunks of `POOL_CHUNK` lines (one `pread` per chunk) and sends back, per line, the fast row's fields (kind,
content id, category, tags, violates, rule statuses, length) or None; the build process walks the lines in
order as `iter_jsonl` does, turns the verdicts into rows and sends the declined lines through the record path,
so rows, quarantine rows, counters and lengths are those of the serial read (tests compare whole builds).
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from curate.engine.pool import env_workers, fork_safe, worker_init
from curate.readers.common import ROLES
from curate.readers.containers import container_of, iter_units
from curate.readers.guard import dup_suspect
from curate.readers.shapes import detect_shape
from curate.records import CheckResult, PreferenceRecord, SFTRecord, normalize_text
from curate.steps.base import RunContext
from curate.steps.export import lineage_json, system_turn
from curate.steps.pairs import pair_of, partner_index
from curate.steps.validate import HELDOUT_TAG, LengthCounter, is_unlabeled_prompt
from curate.steps.validate import validate as _validate

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord
NONE_FILE = "<none>"
_SFT_KEYS = frozenset(("messages", "category", "tags", "violates"))
_PREF_KEYS = frozenset(("prompt", "chosen", "rejected", "category", "tags", "violates"))
_EMPTY: tuple[str, ...] = ()
_NO_TAGS: frozenset[str] = frozenset()

__all__ = ["Checker", "Row", "materialize", "read_validate_rows", "row_of"]


class Input:
    """An input JSONL file held open for the build: its descriptor and the byte offset of every line start.

    Fast rows re-read their line with one `os.pread` (not through an mmap: mapped pages would count in the
    process's resident memory). `close()` when the build is done.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.fd = os.open(path, os.O_RDONLY)
        self.starts = _line_starts(self.fd)

    def line(self, no: int) -> bytes:
        a, b = self.starts[no - 1], self.starts[no]
        data = os.pread(self.fd, b - a, a)
        if no == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _line_starts(fd: int, chunk: int = 1 << 24) -> array:
    """Offsets of each line's first byte, plus the file size at the end (lines split at b"\\n", like a binary file's
    iteration)."""
    import numpy as np

    out = array("q", [0])
    pos = 0
    while True:
        data = os.pread(fd, chunk, pos)
        if not data:
            break
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + (pos + 1)
        out.frombytes(nl.astype(np.int64).tobytes())
        pos += len(data)
    if out[-1] != pos:
        out.append(pos)  # the last line has no newline
    return out


class Row:
    """One record between the build's steps (see the module doc)."""

    __slots__ = (
        "category",
        "file",
        "fmt",
        "id",
        "keys",
        "kind",
        "line",
        "rec",
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
        self.rec = rec
        self.keys = keys  # the _ChunkKeys holding split_keys(self), made by the read's workers (taken by
        # split_keys_all)

    def where(self) -> str:
        if self.rec is not None:
            return self.rec.source.where()
        return f"{self.file}:{self.line}" if self.line else self.file

    def obj(self) -> dict[str, Any]:
        """The line's JSON object (fast rows)."""
        return orjson.loads(self.src.line(self.line))  # type: ignore[union-attr]


def row_of(rec: Rec) -> Row:
    """A slow row wrapping a record."""
    return Row(
        rec.kind,
        rec.id,
        None,
        rec.source.file or NONE_FILE,
        rec.source.line or 0,
        rec.source.format or "",
        rec.category,
        rec.tags,
        rec.violates,
        None,
        rec,
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
    if row.rec is not None:
        return row.rec.response_text()
    obj = obj if obj is not None else row.obj()
    return (obj["messages"] if row.kind == "sft" else obj["chosen"])[-1]["content"]


def user_text(row: Row, obj: dict[str, Any] | None = None) -> str:
    if row.rec is not None:
        return row.rec.user_text()
    obj = obj if obj is not None else row.obj()
    msgs = obj["messages"] if row.kind == "sft" else obj["prompt"]
    return "\n".join([m["content"] for m in msgs if m["role"] == "user"])


def user_turns(row: Row, obj: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The contents of a row's user turns (what the leakage check compares)."""
    if row.rec is not None:
        return tuple(m.content for m in row.rec.prompt_messages() if m.role == "user")
    obj = obj if obj is not None else row.obj()
    return tuple(m["content"] for m in _prompt_msgs(row, obj) if m["role"] == "user")


def user_turns_all(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """`user_turns` of each row, nearby lines read with one `pread` (`read_objs`)."""
    return [user_turns(r, o) for r, o in zip(rows, read_objs(rows))]


def _prompt_msgs(row: Row, obj: dict[str, Any]) -> list[dict[str, str]]:
    if row.kind == "sft":
        return obj["messages"][:-1]  # a fast SFT row ends with the assistant turn
    return obj["prompt"]


def prompt_key(row: Row, obj: dict[str, Any] | None = None) -> str:
    """== curate.steps.pairs.record_prompt_key(record)."""
    if row.rec is not None:
        from curate.steps.pairs import record_prompt_key

        return record_prompt_key(row.rec)
    obj = obj if obj is not None else row.obj()
    parts: list[str] = []
    for m in _prompt_msgs(row, obj):
        if m["role"] != "system":
            parts += (m["role"], normalize_text(m["content"]))
    return _digest_norm(parts)


def split_keys(row: Row, obj: dict[str, Any] | None = None) -> tuple[str, str]:
    """(normalized user text, prompt key) of a row, from one parse and one normalization per user turn: what the
    split reads. (For ASCII turns the normal form of the turns joined by newlines is their normal forms joined by
    spaces; other text is normalized whole.) `obj`: the row's line already parsed."""
    if row.rec is not None:
        from curate.steps.pairs import record_prompt_key

        return normalize_text(row.rec.user_text()), record_prompt_key(row.rec)
    return _keys_of(row.kind, obj if obj is not None else row.obj())


def split_keys_all(rows: Sequence[Row], mapper: Any = None) -> Iterator[tuple[str, str]]:
    """`split_keys` of each row, in order: the keys the read's workers made where a row has them (taken: the row
    no longer holds them), the rest on the fork pool (`pool_map`), or `mapper.pool_map` when given."""
    missing = [r for r in rows if r.keys is None]
    made = iter((mapper.pool_map if mapper else pool_map)(split_keys, missing)) if missing else iter(())
    for r in rows:
        ck = r.keys
        if ck is None:
            yield next(made)
        else:
            r.keys = None
            yield ck.get(r.line)


class _ChunkKeys:
    """The split's keys of the fast lines of one chunk of a file, as made by a read worker: the normalized user
    texts joined in one str (with offsets) and the 16-char prompt keys joined in another. Rows share it (no
    string per row while dedup runs); the strings are cut out when the split asks (`get`)."""

    __slots__ = ("first", "offsets", "prompt_keys", "texts")

    def __init__(self, first: int, payload: tuple[str, array, str]) -> None:
        self.first = first
        self.texts, self.offsets, self.prompt_keys = payload

    def get(self, line: int) -> tuple[str, str]:
        i = line - self.first
        return self.texts[self.offsets[i] : self.offsets[i + 1]], self.prompt_keys[16 * i : 16 * i + 16]


def _prompt_turns(kind: str, obj: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """(role, normalized content) of a fast row's prompt turns but the system turn, and its normalized user text
    (== user_text): each turn normalized once. (For ASCII turns the normal form of the turns joined by newlines is
    their normal forms joined by spaces; other text is normalized whole.)"""
    prompt = obj["messages"][:-1] if kind == "sft" else obj["prompt"]  # == _prompt_msgs
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
    if row.rec is not None:
        from curate.steps.dedup import record_messages

        return (*record_messages(row.rec), row.category + "\x1f" + ",".join(row.tags))
    obj = obj if obj is not None else row.obj()
    meta = row.category + "\x1f" + ",".join(row.tags)
    if row.kind == "sft":
        return obj["messages"], None, meta
    return obj["prompt"], obj["chosen"], meta


def keep_priority(row: Row) -> int:
    if row.rec is not None:
        from curate.steps.dedup import keep_priority as of_record

        return of_record(row.rec)
    return 1  # a fast row has no annotation, labels or generator: imported


def source_file(row: Row) -> str:
    return row.file if row.rec is None else (row.rec.source.file or NONE_FILE)


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

    if row.rec is not None:
        return of_record(row.rec, spec, sft_format, counting)
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

    if row.rec is not None:
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

    def statuses(self, response: str, user: str, category: str, tags: tuple[str, ...]) -> tuple[str, ...]:
        return self._statuses(response, user, category, frozenset(tags) if tags else _NO_TAGS)

    def results(self, response: str, user: str, category: str, tags: tuple[str, ...]) -> list[CheckResult]:
        return self._check_response(
            self.spec, response, user_text=user, category=category, tags=tags, rules=self.rules
        )


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

    def fast(
        self, kind: str, obj: dict[str, Any], cat: str, tags: tuple[str, ...], violates: tuple[str, ...]
    ) -> tuple[tuple[str, ...], int] | None:
        """(rule statuses, length) when validate passes the record on unchanged but for checks and spec."""
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
            if not violates:  # the rejected side's failures fill violates: the record path does it
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
    opened: list[Input] | None = None,
    validate_fn: Any = None,
    fast: bool = True,
    strict: bool = False,
) -> Iterator[Row]:
    """read_inputs + validate as rows, in input order; same counters, quarantine rows and lengths as those steps.

    The native JSONL files read as fast rows are held open: they are appended to `opened`; close them (`Input.close`)
    when the rows are no longer used. `validate_fn` is the engine's validate step for what is not a fast row
    (default `curate.steps.validate.validate`; `curate.engine.validate_step("ray")` for Ray); `fast=False` reads
    every file through it whole (Ray's batches); `strict`: a file of no detectable format raises InputError
    (`curate.steps.read.read_inputs`)."""
    import curate.steps.split as split_mod
    from curate.steps.read import STEP, _read_file

    checker = checker or Checker(spec)
    validate = validate_fn or _validate
    val = _Validator(spec, ctx, lengths, max_tokens, checker)
    spec_ref = spec.ref
    done = 0
    keys_lines = 0  # lines of the files whose workers make the split's keys
    if not fast:  # one stream of every file through the validate step (one Ray job)
        from itertools import chain

        stream = chain.from_iterable(
            _read_file(p, ctx, spec_ref, format, mapping or None, strict=strict) for p in paths
        )
        for rec in validate(stream, spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens):
            done += 1
            yield row_of(rec)
        ctx.report(STEP, done, done)
        return
    for path in paths:
        fname = str(path)
        native = fast and not mapping and format in (None, "native") and container_of(path) == "jsonl"
        detected = format is None
        if native and format is None:
            native = _detected_native(path)
        if not native:
            for rec in validate(
                _read_file(path, ctx, spec_ref, format, mapping or None, strict=strict),
                spec=spec,
                ctx=ctx,
                lengths=lengths,
                max_tokens=max_tokens,
            ):
                done += 1
                yield row_of(rec)
            continue
        log.info("reading %s (jsonl, native, compact rows)", fname)
        src = Input(path)
        if opened is not None:
            opened.append(src)
        pending: list[tuple[int, Any, Any]] = []  # units for the record path, in order

        def slow(
            units: list[tuple[int, Any, Any]], path: Path = path, detected: bool = detected
        ) -> Iterator[Row]:
            for rec in validate(
                _read_file(path, ctx, spec_ref, "native", None, units=iter(units), detected=detected),
                spec=spec,
                ctx=ctx,
                lengths=lengths,
                max_tokens=max_tokens,
            ):
                yield row_of(rec)

        n_fast = 0
        fmt = "native"
        nworkers = pool_workers()
        lines = len(src.starts) - 1
        pooled = nworkers >= 2 and lines >= POOL_MIN_LINES and val.system_prompt is not None and _fork_safe()
        # the workers also make the split's keys while the texts the split would hold stay few (split.HOLD_TEXTS)
        val.keep_keys = pooled and keys_lines + lines <= split_mod.HOLD_TEXTS
        keys_lines += lines if val.keep_keys else 0
        units = _pooled_units(path, src, val, nworkers) if pooled else iter_units(path, "jsonl")
        statuses: dict[tuple[str, ...], tuple[str, ...]] = {}
        sizes = lengths.lengths
        for line, obj, raw in units:
            if raw is FAST or type(raw) is _ChunkKeys:  # pool workers' verdicts of lines line, line + 1, ...:
                if (
                    pending
                ):  # (kind, id, category, tags, violates, statuses, size); their chunk's keys or FAST
                    yield from slow(pending)
                    pending = []
                keys = None if raw is FAST else raw
                for kind, rid, cat, tags, violates, st, size in obj:
                    sizes[rid] = size
                    yield Row(
                        kind,
                        rid,
                        src,
                        fname,
                        line,
                        fmt,
                        _share(cat),
                        _share(tags) if tags else _EMPTY,
                        _share(violates) if violates else _EMPTY,
                        statuses.setdefault(st, st),
                        None,
                        keys,
                    )
                    line += 1
                n_fast += len(obj)
                before, done = done, done + len(obj)
                if done // 2000 != before // 2000:
                    ctx.report(STEP, done, None)
                continue
            if pooled:  # the worker declined this line (or it is not an object): the record path
                pending.append((line, obj, raw))
                if len(pending) >= 256:
                    yield from slow(pending)
                    pending = []
                continue
            if type(obj) is dict:
                shape = _fast_shape(obj)
                if shape is not None and dup_suspect(
                    obj, raw
                ):  # #16: a duplicate key? the record path decides
                    shape = None
                if shape is not None:
                    kind, cat, tags, violates = shape
                    got = val.fast(kind, obj, cat, tags, violates)
                    if got is not None:
                        if pending:
                            yield from slow(pending)
                            pending = []
                        st, size = got
                        rid = content_id(kind, obj)
                        lengths.lengths[rid] = size
                        n_fast += 1
                        done += 1
                        if done % 2000 == 0:
                            ctx.report(STEP, done, None)
                        yield Row(kind, rid, src, fname, line, fmt, _share(cat), tags, violates, st, None)
                        continue
            pending.append((line, obj, raw))
            if len(pending) >= 256:
                yield from slow(pending)
                pending = []
        if pending:
            yield from slow(pending)
        ctx.count("in:" + fname, n_fast)  # _read_file counted the units it read
        ctx.count("read:out:" + fname, n_fast)
        ctx.report(STEP, done, None)
    ctx.report(STEP, done, done)


# ---------------------------------------------------------------- read + validate on a fork pool

FAST = object()  # marks a unit of pool verdicts (see _pooled_units)
POOL_MIN_LINES = 8_192  # below this a native file is read serially (a fork + pipes cost ~30-50 ms)
POOL_CHUNK = 4_096  # lines per task
_POOL: tuple[Any, ...] | None = None  # (Input, _Validator) inherited by the forked workers


def pool_workers() -> int:
    """Processes for the compact read: CURATE_WORKERS, else the cores this process may run on (1: no pool)."""
    env = env_workers()
    if env is not None:
        return env
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - no affinity on this platform
        return os.cpu_count() or 1


def _fork_safe() -> bool:
    """`fork` exists and no other thread runs here (`engine.pool.fork_safe`; tests patch this name)."""
    return fork_safe()


_NO_KEY = "0" * 16


def _fast_chunk(
    bounds: tuple[int, int],
) -> tuple[list[tuple[Any, ...] | None], tuple[str, array, str] | None]:
    """In a worker: for lines a+1..b, the fast verdict of each (None: not an object, or not a fast row), and with
    `keep_keys` the split's keys of the fast lines (a `_ChunkKeys` payload), else None."""
    assert _POOL is not None
    src, val = _POOL
    a, b = bounds
    starts = src.starts
    base = starts[a]
    data = os.pread(src.fd, starts[b] - base, base)
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    out: list[tuple[Any, ...] | None] = []
    append = out.append
    norms: list[str] = []  # with val.keep_keys: the split's keys of the lines up to the last fast one
    pks: list[str] = []
    for no in range(a + 1, b + 1):
        raw = data[starts[no - 1] - base : starts[no] - base]
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
        shape = _fast_shape(obj)
        if shape is None or dup_suspect(obj, raw):  # #16: a duplicate key? the record path decides
            append(None)
            continue
        kind, cat, tags, violates = shape
        got = val.fast(kind, obj, cat, tags, violates)
        if got is None:
            append(None)
            continue
        if not val.keep_keys:
            append((kind, content_id(kind, obj), cat, tags, violates, got[0], got[1]))
            continue
        rid, (norm, pk) = _id_and_keys(kind, obj)
        append((kind, rid, cat, tags, violates, got[0], got[1]))
        while len(norms) < no - a - 1:  # lines before this one that are not fast
            norms.append("")
            pks.append(_NO_KEY)
        norms.append(norm)
        pks.append(pk)
    if not val.keep_keys:
        return out, None
    offsets = array("q", [0])
    total = 0
    for t in norms:
        total += len(t)
        offsets.append(total)
    return out, ("".join(norms), offsets, "".join(pks))


def _ordered(pool: Any, fn: Any, tasks: list[Any], ahead: int) -> Iterator[Any]:
    """`pool.imap(fn, tasks)` with at most `ahead` tasks in flight or waiting to be taken (imap would run through
    all of them and queue their results here when this process is the slower one: memory)."""
    from collections import deque

    waiting: deque[Any] = deque()
    it = iter(tasks)
    for t in it:
        waiting.append(pool.apply_async(fn, (t,)))
        if len(waiting) >= ahead:
            break
    while waiting:
        got = waiting.popleft().get()
        t = next(it, None)
        if t is not None:
            waiting.append(pool.apply_async(fn, (t,)))
        yield got


def _pooled_verdicts(src: Input, val: _Validator, workers: int) -> Iterator[tuple[int, list[Any], Any]]:
    """(first line number - 1, verdicts, the chunk's `_ChunkKeys` or FAST) per chunk of the file, in order, from
    `workers` forked processes."""
    global _POOL
    n = len(src.starts) - 1
    bounds = [(a, min(n, a + POOL_CHUNK)) for a in range(0, n, POOL_CHUNK)]
    _POOL = (src, val)
    try:
        with multiprocessing.get_context("fork").Pool(
            min(workers, len(bounds)), initializer=worker_init
        ) as pool:
            _POOL = None
            for (a, _), (got, keys) in zip(bounds, _ordered(pool, _fast_chunk, bounds, 2 * workers)):
                yield a, got, FAST if keys is None else _ChunkKeys(a + 1, keys)
    finally:
        _POOL = None


_MAP: tuple[Any, ...] | None = None  # (function, items) inherited by pool_map's forked workers


def pool_map(
    fn: Any, items: Sequence[Any], *, min_items: int | None = None, chunk: int | None = None
) -> Iterator[Any]:
    """`map(fn, items)`, in order, on a fork pool when there are `min_items` (default `POOL_MIN_LINES`) items or
    more and `pool_workers()` >= 2; `fn` must depend on its item alone (the workers see the items as they were at
    the fork) and return something picklable."""
    if not use_pool(len(items), min_items):
        return map(fn, items)
    return _pool_map(fn, items, pool_workers(), chunk or POOL_CHUNK)


def use_pool(n: int, min_items: int | None = None) -> bool:
    """Whether `pool_map` over `n` items forks: `min_items` (default `POOL_MIN_LINES`) or more, `pool_workers()`
    >= 2 and no other thread running."""
    return n >= (POOL_MIN_LINES if min_items is None else min_items) and pool_workers() >= 2 and _fork_safe()


def _pool_map(fn: Any, items: Sequence[Any], workers: int, chunk: int) -> Iterator[Any]:
    global _MAP
    n = len(items)
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    _MAP = (fn, items)
    try:
        with multiprocessing.get_context("fork").Pool(
            min(workers, len(bounds)), initializer=worker_init
        ) as pool:
            _MAP = None
            for got in _ordered(pool, _map_chunk, bounds, 2 * workers):
                yield from got
    finally:
        _MAP = None


def _map_chunk(bounds: tuple[int, int]) -> list[Any]:
    assert _MAP is not None
    fn, items = _MAP
    return [fn(items[i]) for i in range(*bounds)]


def _pooled_units(path: Path, src: Input, val: _Validator, workers: int) -> Iterator[tuple[int, Any, Any]]:
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
    chunks = _pooled_verdicts(src, val, workers)
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


def _detected_native(path: Path) -> bool:
    """True when read would detect the native format for this JSONL file (its first recognisable object)."""
    seen = 0
    for _, obj, _ in iter_units(path, "jsonl"):
        if isinstance(obj, dict):
            seen += 1
            shape = detect_shape(obj)
            if shape is not None:
                return shape == "native"
            if seen >= 100:
                return False
    return False


def materialize(row: Row, spec: Any, checker: Checker | None = None) -> Rec:
    """The record the record path has for this row after validate (checks and spec set)."""
    if row.rec is not None:
        return row.rec
    rec = materialize_plain(row, spec)
    checker = checker or Checker(spec)
    checks = tuple(checker.results(rec.response_text(), rec.user_text(), rec.category, rec.tags))
    return rec.model_copy(update={"checks": checks})


def materialize_plain(row: Row, spec: Any) -> Rec:
    """The record read gives for this row (before validate)."""
    from curate.readers.shapes import convert_native

    return convert_native(row.obj(), {"file": row.file, "line": row.line, "format": row.fmt}, spec.ref)


def release_memory() -> None:
    """Give the C heap's free memory back to the system (glibc `malloc_trim`; nothing elsewhere).

    Between the build's steps the freed arrays and texts of the step before stay in the process otherwise (glibc
    raises its mmap threshold after the first big free, so later big blocks come from the heap and are not
    unmapped when freed): measured ~1.2 KB a record after dedup, which the split's peak then stacks on."""
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and hasattr(libc, "malloc_trim"):
                _TRIM = libc.malloc_trim
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


# ---------------------------------------------------------------- the steps after validate, over rows


class RowAccess:
    """What `curate.steps.dedup.dedup` reads of a row (its `access=`), plus two optional hooks dedup uses when
    present: `texts` (many rows' dedup texts, their lines read in bulk) and `map` (dedup's chunked tasks on the
    fork pool)."""

    kind = staticmethod(lambda r: r.kind)
    priority = staticmethod(keep_priority)
    where = staticmethod(lambda r: r.where())
    file = staticmethod(source_file)

    @staticmethod
    def messages(rows: Sequence[Row]) -> list[Any]:
        """`dedup_messages` of each row, each fast row's line parsed once and nearby lines read with one `pread`
        (`read_objs`)."""
        return [dedup_messages(r, o) for r, o in zip(rows, read_objs(rows))]

    @staticmethod
    def map(fn: Any, tasks: Sequence[Any], work: int) -> Iterator[Any]:
        """`fn(task, threads)` for each task, in order: on a fork pool (`pool_workers()` processes, each task's
        MinHash on one thread: threads=1) when the tasks read `POOL_MIN_LINES` rows or more, else here with
        threads=None. `fn` must depend on its task and on what this process holds at the fork alone.

        Unlike `pool_map` (2 tasks a worker in flight), 8 tasks a worker are queued: dedup's results are small
        (~100 bytes a row, ~0.8 MB a task), and a worker then rarely waits for a slower one's task (a busy
        machine) while tasks are left; the results waiting for their turn stay bounded."""
        workers = pool_workers()
        if workers < 2 or work < POOL_MIN_LINES or len(tasks) < 2 or not _fork_safe():
            return (fn(t, None) for t in tasks)

        def dedup_task(task: Any) -> Any:
            return fn(task, 1)

        return RowAccess.eager_pool_map(dedup_task, tasks, workers)

    @staticmethod
    def eager_pool_map(fn: Any, tasks: Sequence[Any], workers: int) -> Iterator[Any]:
        """`map(fn, tasks)` in order on a fork pool of `workers`, 8 tasks a worker queued."""
        global _MAP
        _MAP = (fn, tasks)
        try:
            with multiprocessing.get_context("fork").Pool(
                min(workers, len(tasks)), initializer=worker_init
            ) as pool:
                _MAP = None
                for got in _ordered(pool, _map_chunk, [(k, k + 1) for k in range(len(tasks))], 8 * workers):
                    yield from got
        finally:
            _MAP = None


class LocalMapper:
    """The local engine's runner of the build's chunked per-record tasks: fork pools (`RowAccess.map`,
    `pool_map`). `curate.engine.ray_map.RayMapper` has the same methods and runs the same tasks on Ray."""

    access = RowAccess
    spool = True  # the export's pooled batches come back through /dev/shm files (export.Spool)
    pool_map = staticmethod(pool_map)
    use_pool = staticmethod(use_pool)
    turns_all = staticmethod(lambda rows: user_turns_all(rows))

    def share(self, rows: Sequence[Row]) -> None:
        """Nothing to do: forked workers see the rows as they are."""

    def close(self) -> None:
        """Nothing to stop: each pool ends with its map."""


_NEAR_LINES = 4  # read_objs: lines at most this far apart are read with one pread


def read_objs(rows: Sequence[Row]) -> list[dict[str, Any] | None]:
    """The JSON objects of the rows' lines (`Row.obj()` of each fast row; None for a slow row), reading every
    run of nearby lines of a file (gaps of < `_NEAR_LINES` lines) with one `pread` instead of one per line."""
    out: list[dict[str, Any] | None] = [None] * len(rows)
    by_src: dict[int, list[tuple[int, int]]] = {}
    for k, r in enumerate(rows):
        if r.rec is None:
            by_src.setdefault(id(r.src), []).append((r.line, k))
    loads = orjson.loads
    for got in by_src.values():
        got.sort()
        src = rows[got[0][1]].src
        assert src is not None
        starts, fd = src.starts, src.fd
        s, m = 0, len(got)
        while s < m:
            e = s + 1
            while e < m and got[e][0] - got[e - 1][0] <= _NEAR_LINES:
                e += 1
            base = starts[got[s][0] - 1]
            data = os.pread(fd, starts[got[e - 1][0]] - base, base)
            for no, k in got[s:e]:
                raw = data[starts[no - 1] - base : starts[no] - base]
                if no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                out[k] = loads(raw)
            s = e
    return out


def is_negative_sft(row: Row) -> bool:
    return row.rec is not None and isinstance(row.rec, SFTRecord) and row.rec.is_negative


def is_prompt_row(row: Row) -> bool:
    """An unlabeled prompt (`validate.is_unlabeled_prompt`; a fast row always has its answer)."""
    return row.rec is not None and is_unlabeled_prompt(row.rec)


def make_pairs_rows(rows: list[Row], spec: Any, checker: Checker) -> tuple[list[Row], list[Row], int]:
    """`curate.steps.pairs.make_pairs` over rows: (rows with the new pairs, unpaired negatives, pairs made)."""
    if not any(is_negative_sft(r) for r in rows):
        return rows, [], 0
    from collections import defaultdict

    good: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.kind == "sft" and not is_negative_sft(r) and not is_prompt_row(r):  # (a prompt has no answer)
            good[prompt_key(r)].append(r)
    for lst in good.values():
        lst.sort(key=lambda r: r.id)
    out: list[Row] = []
    unpaired: list[Row] = []
    paired = 0
    for r in rows:
        if not is_negative_sft(r):
            out.append(r)
            continue
        rec = r.rec
        assert isinstance(rec, SFTRecord)
        key = prompt_key(r)
        candidates = good.get(key)
        if not candidates:
            unpaired.append(r)
            continue
        partner = materialize(candidates[partner_index(rec.id, len(candidates))], spec, checker)
        assert isinstance(partner, SFTRecord)
        out.append(row_of(pair_of(rec, partner)))
        paired += 1
    return out, unpaired, paired


def row_hits(spec: Any, checker: Checker) -> Any:
    """The `hits` function of `compute_coverage` for rows (== record_hits of their records)."""
    from curate.steps.coverage import NEGATIVE, record_hits

    def hits(row: Row, rules: list[Any]) -> list[tuple[str, str]]:
        if row.rec is not None:
            return record_hits(spec, row.rec, rules)
        cat = row.category
        st = row.statuses or ()
        if row.kind == "sft":
            want = "fail" if cat == NEGATIVE else "pass"
            return [(cat, r.id) for r, s in zip(rules, st) if s == want]
        out = [(cat, r.id) for r, s in zip(rules, st) if s == "pass"] if cat != NEGATIVE else []
        obj = row.obj()
        rej = checker.statuses(obj["rejected"][-1]["content"], user_text(row, obj), cat, row.tags)
        return out + [(NEGATIVE, r.id) for r, s in zip(rules, rej) if s == "fail"]

    return hits


def lineage(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """== records.lineage_counts of the records (a fast row is a native line, imported as it is)."""
    from curate.records import lineage_counts, record_origin

    return lineage_counts(
        (r.fmt or "native", "", "", "as imported") if r.rec is None else record_origin(r.rec) for r in rows
    )


def coverage(spec: Any, rows: Iterable[Row], split_of: Any, checker: Checker) -> Any:
    """`compute_coverage(spec, records, split_of=...)` over rows: fast SFT rows are counted by (category, rule
    statuses, split), the rest one by one (a pair's rejected side is checked here)."""
    from collections import Counter, defaultdict

    from curate.steps.coverage import coverage_from_counts

    rules = spec.automatic_rules()
    hits = row_hits(spec, checker)
    counts: Counter[tuple[str, str]] = Counter()
    cell_splits: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    cat_counts: Counter[str] = Counter()
    cat_splits: dict[str, Counter[str]] = defaultdict(Counter)
    groups: Counter[tuple[str, tuple[str, ...], str]] = Counter()
    total = 0
    for row in rows:
        total += 1
        split = split_of(row)
        if row.rec is None and row.kind == "sft":
            groups[(row.category, row.statuses or (), split)] += 1
            continue
        cat_counts[row.category] += 1
        cat_splits[row.category][split] += 1
        for key in hits(row, rules):
            counts[key] += 1
            cell_splits[key][split] += 1
    from curate.steps.coverage import NEGATIVE

    for (cat, st, split), n in groups.items():
        cat_counts[cat] += n
        cat_splits[cat][split] += n
        want = "fail" if cat == NEGATIVE else "pass"
        for r, s in zip(rules, st):
            if s == want:
                counts[(cat, r.id)] += n
                cell_splits[(cat, r.id)][split] += n
    return coverage_from_counts(
        spec, rules, counts, cell_splits, cat_counts, cat_splits, total, with_splits=True
    )
