"""Read input files of many formats into curate records; every raw unit is accounted for.

    >>> from curate.steps.base import RunContext
    >>> from curate.steps.read import read_inputs
    >>> ctx = RunContext()
    >>> records = list(read_inputs(["chat.jsonl", "alpaca.json"], ctx=ctx))          # doctest: +SKIP
    >>> ctx.counters["in:chat.jsonl"] == ctx.counters["read:out:chat.jsonl"] + ctx.per_file_quarantined["chat.jsonl"]
    True                                                                                # doctest: +SKIP

Accounting (what `curate build` proves): every raw unit read from a file counts `ctx.count("in:" + file)` and
either becomes exactly one record (counted `read:out:<file>`) or exactly one quarantine row (step "read", with a
stable reason code and a detail that starts with `file:line`). `file` is `str(path)` of the data file; a folder
input is expanded to its data files first (`expand_inputs`), each counted under its own path.

Formats (`FORMATS`, the names `--format` takes) are described in `curate.readers.shapes`; the file container
(JSONL, JSON, CSV/TSV, Parquet, Arrow) comes from the extension and content (`curate.readers.containers`). Without
a format, each file's format is detected from its first recognisable object and applied to the whole file; a
unit that does not fit it is quarantined (unknown_shape ...), but plain texts and chats may share a file: a
`text` unit in a file of another format, or a unit of another format in a `text` file, is read as what it is.

Streaming: JSONL, CSV, Parquet and Arrow are read unit by unit (bounded memory). A JSON file (an array) is loaded
whole: memory is a few times the file size; convert big JSON arrays to JSONL.

Field mapping: `mapping={"instruction": "question", "output": "answer"}` renames source fields (the values) to
canonical names (the keys) in every object, before detection and conversion.

Reason codes of this step: bad_json, bad_encoding, python_literal, broken_line, not_an_object, bad_csv_row,
unknown_shape, missing_field, bad_field, empty_turn, bad_role, bad_tool_call, unsupported_content,
no_assistant_turn, prompt_mismatch, missing_chosen, missing_rejected, bad_transcript, unlabeled_pair,
cancelled_annotation, unannotated, no_text_data, unknown_format (every unit of a file whose format cannot be
detected, unless `strict=True`: then the read stops with InputError).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import InputError
from curate.readers.common import Reject
from curate.readers.containers import InputPath, container_of, expand_inputs, iter_units
from curate.readers.guard import unit_fault
from curate.readers.shapes import CONVERTERS, SHAPES, detect_shape
from curate.records import PreferenceRecord, SFTRecord, Source

if TYPE_CHECKING:
    from curate.spec import Spec
    from curate.steps.base import RunContext

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = SHAPES
STEP = "read"
_PEEK = 100  # objects looked at to detect a file's format
_PROGRESS_EVERY = 2000

__all__ = ["FORMATS", "detect_format", "expand_inputs", "map_hint", "read_inputs"]


def _apply_mapping(obj: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    out = dict(obj)
    for canonical, column in mapping.items():
        if column in out and column != canonical:
            out[canonical] = out.pop(column)
    return out


_MAX_SEEN = (
    10_000  # units held for replay while detecting; past it the file is read again from its start (#16)
)


def _detect(
    units: Iterator[tuple[int, Any, Any]], path: Path, mapping: dict[str, str] | None
) -> tuple[str | None, list[tuple[int, Any, Any]] | None]:
    """(format or None, the units looked at, to be replayed; None when there were too many to hold: read the file
    again instead: a file of millions of bad lines must not be held in memory)."""
    seen: list[tuple[int, Any, Any]] | None = []
    objects = 0
    for unit in units:
        if seen is not None:
            seen.append(unit)
            if len(seen) > _MAX_SEEN:
                seen = None
        obj = unit[1]
        if isinstance(obj, dict):
            objects += 1
            shape = detect_shape(_apply_mapping(obj, mapping) if mapping else obj)
            if shape is not None:
                return shape, seen
            if objects >= _PEEK:
                break
    if objects == 0:
        return None, seen
    first = next((u[1] for u in seen or [] if isinstance(u[1], dict)), None) or _first_object(path)
    raise _Undetected(
        seen,
        f"{path}: cannot tell the format; fields found: {', '.join(map(str, list(first)[:20]))}; "
        f"map them to ours, e.g. {map_hint(first)}, or pass --format NAME "
        f"({', '.join(FORMATS)})",
    )


def _first_object(path: Path) -> dict[str, Any]:
    return next((u[1] for u in iter_units(path, container_of(path)) if isinstance(u[1], dict)), {})


class _Undetected(InputError):
    """No known format in a file's first objects; carries the units looked at (to quarantine them; None: too many
    were looked at, read the file again)."""

    def __init__(self, seen: list[tuple[int, Any, Any]] | None, message: str) -> None:
        super().__init__(message)
        self.seen = seen


def _detect_seen(err: InputError) -> list[tuple[int, Any, Any]] | None:
    return err.seen if isinstance(err, _Undetected) else []


def _quarantine_file(
    path: Path, units: Iterator[tuple[int, Any, Any]], ctx: RunContext, why: str
) -> Iterator[SFTRecord | PreferenceRecord]:
    """Every unit of a file of no detectable format, quarantined (reason unknown_format; a unit that is not even
    an object keeps its own reason): the other inputs of the build go on."""
    fname = str(path)
    n = 0
    first_line: int | None = None
    log.info("%s (its units are quarantined as unknown_format; --strict stops instead)", why)
    try:
        for line, obj, original in units:
            n += 1
            if isinstance(obj, Reject):
                reason, detail = obj.reason, obj.detail
            else:
                reason = "unknown_format"
                if first_line is None:
                    first_line, detail = line, why.split(": ", 1)[1]
                else:
                    detail = f"this file's format could not be detected (see line {first_line})"
            ctx.quarantine(
                step=STEP,
                reason=reason,
                detail=f"{fname}:{line}: {detail}",
                source=Source(file=fname, line=line),
                original=_original(original),
            )
    finally:
        ctx.count("in:" + fname, n)
        ctx.count("read:out:" + fname, 0)
    return
    yield


_PROMPT_NAMES = (
    "question",
    "query",
    "input",
    "instruction",
    "request",
    "ticket",
    "user",
    "human",
    "prompt_text",
    "message",
    "body",
    "text",
    "content",
    "q",
)
_ANSWER_NAMES = (
    "answer",
    "response",
    "output",
    "reply",
    "assistant",
    "gpt",
    "target",
    "label_text",
    "solution",
    "a",
    "bot",
)
_CHAT_NAMES = ("dialog", "dialogue", "conversation", "chat", "turns", "history", "thread")


def map_hint(obj: dict[str, Any]) -> str:
    """A ready-to-paste `--map OURS=THEIRS ...` for an object of no known format, guessed from its field names:
    a list of turns -> messages; else a question-like and an answer-like string field -> prompt and completion."""
    keys = [str(k) for k in obj]
    low = {k.lower(): k for k in keys}

    def pick(names: tuple[str, ...], kind: type | tuple[type, ...], exclude: str | None = None) -> str | None:
        for name in names:
            for lk, k in low.items():
                if (
                    k != exclude
                    and (lk == name or lk.startswith(name) or lk.endswith(name))
                    and isinstance(obj.get(k), kind)
                ):
                    return k
        return None

    chat = pick(_CHAT_NAMES, list)
    if chat is not None:
        return f"--map messages={chat}"
    strings = [k for k in keys if isinstance(obj.get(k), str | dict)]  # a JSON answer in a CSV cell is a dict
    prompt = pick(_PROMPT_NAMES, str) or (strings[0] if strings else "THEIR_PROMPT_FIELD")
    answer = pick(_ANSWER_NAMES, (str, dict), exclude=prompt) or next(
        (k for k in strings if k != prompt), "THEIR_ANSWER_FIELD"
    )
    return f"--map prompt={prompt} --map completion={answer}"


def detect_format(
    path: str | os.PathLike[str], mapping: dict[str, str] | None = None, *, default: str | None = None
) -> str:
    """The format name of a file (or of a folder's first data file), from its first recognisable object.

    Raises InputError when the file has objects but none of a known format. A file with no readable object at
    all (empty, or only malformed lines: read_inputs quarantines them) gives `default`, or raises when None.
    """
    files = expand_inputs([path])
    f = files[0]
    if isinstance(f, InputPath):
        return f.format
    shape, _ = _detect(iter_units(f, container_of(f)), f, mapping)
    if shape is None:
        if default is not None:
            return default
        raise InputError(f"{f}: no readable JSON object or row to detect the format from")
    return shape


def read_inputs(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    ctx: RunContext,
    spec: Spec | None = None,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
) -> Iterator[SFTRecord | PreferenceRecord]:
    """Yield records from the input files, quarantining every unit that cannot become one (see module doc).

    Raises InputError for a whole-file problem (missing file, unknown format name); a file of no detectable
    format is quarantined unit by unit (unknown_format), or with `strict=True` (`curate build --strict`,
    `curate import --strict`) raises InputError.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if format is not None and format not in CONVERTERS:
        raise InputError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    spec_ref = spec.ref if spec is not None else None
    done = 0
    for path in expand_inputs(list(paths)):
        for rec in _read_file(path, ctx, spec_ref, format, mapping or None, strict=strict):
            done += 1
            if done % _PROGRESS_EVERY == 0:
                ctx.report(STEP, done, None)
            yield rec
    ctx.report(STEP, done, done)


def _original(original: Any) -> Any:
    if isinstance(original, bytes):
        return original.decode("utf-8", "replace").rstrip("\r\n")
    return original


def _read_file(
    path: Path,
    ctx: RunContext,
    spec_ref: str | None,
    format: str | None,
    mapping: dict[str, str] | None,
    *,
    units: Iterator[tuple[int, Any, Any]] | None = None,
    detected: bool | None = None,
    strict: bool = False,
) -> Iterator[SFTRecord | PreferenceRecord]:
    """The records of one file. `units` (with `format` and `detected`): read only these units of the file, as
    they would be read in the whole file (the compact build hands over the lines it does not take itself).
    `strict`: a file whose format cannot be detected raises InputError instead of being quarantined."""
    fname = str(path)
    if format is None and isinstance(path, InputPath):
        format = path.format
    if units is None:
        container = container_of(path)
        units = iter_units(path, container)
        shape = format
        detected = format is None
        if shape is None:
            try:
                shape, seen = _detect(units, path, mapping)
            except InputError as err:
                if strict:
                    raise
                again = _detect_seen(err)
                yield from _quarantine_file(
                    path,
                    chain(again, units) if again is not None else iter_units(path, container),
                    ctx,
                    str(err),
                )
                return
            units = chain(seen, units) if seen is not None else iter_units(path, container)
        log.info("reading %s (%s, %s)", fname, container, shape or "no objects")
    else:
        shape = format
        detected = bool(detected)
    convert = CONVERTERS[shape] if shape else None
    # with a detected format, an object of no known shape is unknown_shape (a Label Studio task file may hold
    # bare data objects: that converter judges every object itself)
    guard = detected and shape not in ("label_studio", "label_studio_min")
    in_key, out_key = "in:" + fname, "read:out:" + fname
    n_in = n_out = 0

    def reject(rej: Reject, line: int, original: Any) -> None:
        src = Source(**rej.source) if rej.source else Source(file=fname, line=line, format=shape)
        ctx.quarantine(
            step=STEP,
            reason=rej.reason,
            detail=f"{fname}:{line}: {rej.detail}",
            source=src,
            original=_original(original),
        )

    try:
        for line, obj, original in units:
            n_in += 1
            if not isinstance(obj, Reject):
                obj = unit_fault(obj, original) or obj  # too deep, huge number, NaN, duplicate key (#16)
            if isinstance(obj, Reject):
                reject(obj, line, original)
                continue
            if convert is None:  # cannot happen: a dict unit means a shape was detected
                reject(Reject("unknown_shape", "no format"), line, original)
                continue
            if mapping:
                obj = _apply_mapping(obj, mapping)
            own = detect_shape(obj) if guard else None
            if guard and own is None:
                keys = ", ".join(sorted(obj)[:12])
                reject(
                    Reject("unknown_shape", f"not a {shape} object, nor any known format (keys: {keys})"),
                    line,
                    original,
                )
                continue
            unit_shape = shape
            if own != shape and "text" in (own, shape) and guard:  # a corpus of plain texts and chats: each
                unit_shape = own  # line read as what it is (a detected format only; --format stays strict)
            source = {"file": fname, "line": line, "format": unit_shape}
            try:
                out = (convert if unit_shape == shape else CONVERTERS[unit_shape])(obj, source, spec_ref)
            except Reject as rej:
                reject(rej, line, original)
                continue
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
                reject(
                    Reject("bad_field", f"not a valid {shape} object ({type(err).__name__}: {err})"),
                    line,
                    original,
                )
                continue
            if isinstance(out, list):
                if not out:
                    reject(
                        Reject("no_text_data", f"nothing to import from this {shape} object"), line, original
                    )
                    continue
                n_in += len(out) - 1  # one raw object holding several units
                for item in out:
                    if isinstance(item, Reject):
                        reject(item, line, original)
                    else:
                        n_out += 1
                        yield item
                continue
            n_out += 1
            yield out
    finally:
        ctx.count(in_key, n_in)
        ctx.count(out_key, n_out)
    log.info("read %s: %d units, %d records, %d quarantined", fname, n_in, n_out, n_in - n_out)
