"""File containers -> raw units: `(line, obj_or_Reject, original)`, one per unit, never raising on a bad unit.

- JSONL: streamed line by line (bytes, orjson). Blank lines are not units. A line that fails to parse is a
  `Reject`: bad_encoding (not UTF-8), python_literal (a Python dict repr), broken_line (a JSON object split over
  physical lines by a raw newline inside a string: the unit spans lines N..M and is quarantined as one), bad_json.
  A line holding a JSON array or scalar is not_an_object.
- JSON: the whole file is loaded (memory ~ a few times the file size; fine for the JSON arrays people publish, use
  JSONL for big data). A top-level array yields its elements, each with the line where it starts; a top-level
  object is one unit. A syntax error mid-array yields the elements before it and one bad_json unit for the rest.
- CSV/TSV: streamed row by row (csv module); the line is the row's first physical line; cells that hold JSON lists
  or objects (messages, chosen ...) are parsed; undecodable bytes make that row bad_encoding.
- Parquet: streamed batch by batch (pyarrow row groups); Arrow IPC files (datasets.save_to_disk) batch by batch.
  Their "line" is the 1-based row number.
- A folder (Hugging Face dataset folder or plain data folder) is expanded to its data files (`expand_inputs`).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from curate.errors import InputError
from curate.readers import guard
from curate.readers.common import Reject

Unit = tuple[int, Any, Any]  # (line, dict | other JSON value | Reject, original text/JSON for quarantine)

CONTAINERS = ("jsonl", "json", "csv", "parquet", "arrow")
_EXT = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
# Files inside a dataset folder that are metadata, not data.
_FOLDER_META = {"dataset_info.json", "state.json", "dataset_dict.json", "manifest.json", "heldout.lock"}
_PY_LITERAL = re.compile(rb"^\s*[\[{]\s*'|:\s*(True|False|None)\s*[,}]")
_MAX_JOIN = 8  # physical lines a broken line may span
_CSV_FIELD_LIMIT = 1 << 30


class InputPath(type(Path())):  # type: ignore[misc]
    """A data file given with its format (`--input chats.jsonl:sharegpt`, or `data: [chats.jsonl:sharegpt]` in a
    spec): opens as the file, reads as `path:format` (the name the build counts it under), and carries `.format`,
    which the reader uses instead of detecting one."""

    def __new__(cls, path: str | os.PathLike[str], fmt: str) -> InputPath:
        self = super().__new__(cls, path)
        self.format = fmt
        return self

    def __init__(
        self, path: str | os.PathLike[str], fmt: str
    ) -> None:  # Python 3.12+ calls __init__ with args
        try:
            super().__init__(path)
        except TypeError:  # Python 3.11: object.__init__
            pass
        self.format = fmt

    def __str__(self) -> str:
        return f"{super().__str__()}:{self.format}"

    def __fspath__(self) -> str:
        return super().__str__()

    def __repr__(self) -> str:
        return f"InputPath({super().__str__()!r}, {self.format!r})"


def split_format(arg: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """(path, format or None) of an input argument: `file.jsonl:sharegpt` names a format for that file (when
    no file has the whole name). Raises InputError for an unknown format name after an existing path."""
    if isinstance(arg, InputPath):
        return Path(os.fspath(arg)), arg.format
    s = os.fspath(arg)
    if ":" not in s or os.path.exists(s):
        return Path(s), None
    head, _, tail = s.rpartition(":")
    if not head or "/" in tail or "\\" in tail:
        return Path(s), None
    from curate.readers.shapes import SHAPES

    if tail not in SHAPES:
        if os.path.exists(head):
            raise InputError(
                f"{s}: unknown format {tail!r} after the file name; use one of: {', '.join(SHAPES)}"
            )
        return Path(s), None
    return Path(head), tail


def expand_inputs(paths: list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...]) -> list[Path]:
    """Files to read: files as given; folders expanded to their data files, sorted (recursively).

    Raises InputError for a path that does not exist or a folder without data files.
    """
    out: list[Path] = []
    for p in paths:
        path, fmt = split_format(p)
        if fmt is not None:
            out.extend(InputPath(f, fmt) for f in expand_inputs([path]))
            continue
        if path.is_dir():
            files = sorted(
                f
                for f in path.rglob("*")
                if f.is_file()
                and f.suffix.lower() in _EXT
                and f.name not in _FOLDER_META
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
            )
            if not files:
                raise InputError(
                    f"{path}: a folder without data files (.jsonl .json .csv .parquet .arrow); "
                    "pass the data files themselves"
                )
            out.extend(files)
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return out


def container_of(path: Path) -> str:
    """The container by extension, sniffing .json files that are really JSONL and extension-less files."""
    kind = _EXT.get(path.suffix.lower())
    if kind in ("csv", "parquet", "arrow", "jsonl"):
        return kind
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1") or head[:4] == b"\xff\xff\xff\xff":
        return "arrow"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        # one object per line (JSONL) or one (pretty-printed) object: JSONL when the first line is a whole object
        first = stripped.split(b"\n", 1)[0]
        try:
            return "jsonl" if isinstance(orjson.loads(first), dict) else "json"
        except orjson.JSONDecodeError:
            return "json"
    if kind == "json":
        return "json"
    raise InputError(
        f"{path}: cannot tell the file type (not JSON, JSONL, CSV, Parquet or Arrow by extension or "
        "content); rename it with its extension"
    )


def iter_units(path: Path, container: str) -> Iterator[Unit]:
    if container == "jsonl":
        return iter_jsonl(path)
    if container == "json":
        return iter_json(path)
    if container == "csv":
        return iter_csv(path)
    if container == "parquet":
        return iter_parquet(path)
    if container == "arrow":
        return iter_arrow(path)
    raise InputError(f"unknown container {container!r}")


# ---------------------------------------------------------------- JSONL


def _classify(raw: bytes, err: Exception) -> Reject:
    if "depth limit" in str(err) or "recursion" in str(err).lower():
        return Reject("too_deep", f"nested deeper than the JSON parser reads ({err})")
    if b"NaN" in raw or b"Infinity" in raw or b"e" in raw or b"E" in raw:  # one rule with the .json reader
        try:
            obj = json.loads(raw, parse_constant=guard.parse_constant, parse_float=guard.parse_float)
        except (ValueError, RecursionError):
            obj = None
        if obj is not None:
            fault = guard.unit_fault(obj)
            if fault is not None and fault.reason == "not_finite":
                return fault
    if _PY_LITERAL.search(raw):
        try:
            import ast

            if isinstance(ast.literal_eval(raw.decode("utf-8")), (dict, list)):
                return Reject(
                    "python_literal", "a Python dict/list repr, not JSON (single quotes, True/None)"
                )
        except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError):
            pass
    return Reject("bad_json", f"not JSON: {err}")


def _truncated(err: Exception) -> bool:
    """orjson's error for text that ends inside a value (e.g. a string cut by a raw newline)."""
    return "unexpected end of data" in str(err)


def _join_broken(pull: Any, push: Any, raw: bytes) -> tuple[int, bytes] | None:
    """Join the following lines to `raw` (as escaped newlines) until it parses; (last line, original) or None."""
    joined = raw.rstrip(b"\r\n")
    taken: list[tuple[int, bytes]] = []
    while len(taken) < _MAX_JOIN:
        item = pull()
        if item is None:
            break
        taken.append(item)
        joined += b"\\n" + item[1].rstrip(b"\r\n")
        try:
            obj = orjson.loads(joined)
        except orjson.JSONDecodeError as err:
            if _truncated(err):
                continue
            break
        if isinstance(obj, dict):
            original = b"\n".join([raw.rstrip(b"\r\n")] + [t[1].rstrip(b"\r\n") for t in taken])
            return taken[-1][0], original
        break
    push(taken)
    return None


def _slow_line(no: int, raw: bytes, pull: Any, push: Any) -> Iterator[Unit]:
    """Everything but a line that parses to an object: blank, bad JSON, broken, not an object."""
    raw = raw.rstrip(b"\r\n")
    if not raw.strip():
        return
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as uerr:
            yield (
                no,
                Reject("bad_encoding", f"not UTF-8 at byte {uerr.start}"),
                raw.decode("utf-8", "replace").rstrip("\r\n"),
            )
            return
        if _truncated(err) and raw.lstrip().startswith(b"{"):
            joined = _join_broken(pull, push, raw)
            if joined is not None:
                end, original = joined
                yield (
                    no,
                    Reject(
                        "broken_line",
                        f"one JSON object spans lines {no}-{end}: a raw newline inside a "
                        "string (write it as \\n)",
                    ),
                    original.decode("utf-8", "replace"),
                )
                return
        yield no, _classify(raw, err), text.rstrip("\r\n")
        return
    if isinstance(obj, dict):
        yield no, obj, raw
    else:
        yield (
            no,
            Reject("not_an_object", f"a JSON {_json_type(obj)}, expected an object"),
            raw.decode("utf-8", "replace").rstrip("\r\n"),
        )


def iter_jsonl(path: Path) -> Iterator[Unit]:
    """Stream a JSONL file; see the module docstring for the malformed-line rules.

    The hot path is a plain loop over the file's lines; anything unusual goes through `_slow_line`, which may
    read lines ahead (to join a broken line) and give them back (`pending`, a stack).
    """
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    with open(path, "rb") as fh:
        base = enumerate(fh, 1)
        pending: list[tuple[int, bytes]] = []

        def pull() -> tuple[int, bytes] | None:
            return pending.pop() if pending else next(base, None)

        def push(items: list[tuple[int, bytes]]) -> None:
            pending.extend(reversed(items))

        first = next(base, None)
        if first is None:
            return
        pending.append((1, first[1][3:] if first[1].startswith(b"\xef\xbb\xbf") else first[1]))
        while True:
            while pending:
                no, raw = pending.pop()
                yield from _slow_line(no, raw, pull, push)
            for no, raw in base:
                try:
                    obj = loads(raw)
                except JSONDecodeError:
                    yield from _slow_line(no, raw, pull, push)
                    if pending:
                        break
                    continue
                if type(obj) is dict:
                    yield no, obj, raw
                else:
                    yield from _slow_line(no, raw, pull, push)
            else:
                if not pending:
                    return


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(obj), "null"
    )


# ---------------------------------------------------------------- JSON (whole file)

_WS = re.compile(r"[ \t\n\r]*")


def iter_json(path: Path) -> Iterator[Unit]:
    """A JSON array (elements, each with its starting line) or one JSON object (one unit)."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        yield (
            line,
            Reject("bad_encoding", f"not UTF-8 at byte {err.start}: the whole JSON file is unreadable"),
            data.decode("utf-8", "replace")[:100_000],
        )
        return
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    # one rule with JSONL: NaN/Infinity are not JSON, integers beyond 64 bits are read as floats; duplicate keys
    # are marked (curate.readers.guard quarantines all three per unit)
    decoder = json.JSONDecoder(
        object_pairs_hook=guard.pairs_hook,
        parse_constant=guard.parse_constant,
        parse_float=guard.parse_float,
        parse_int=guard.parse_int,
    )
    if not text.startswith("[", pos):
        try:
            obj, end = decoder.raw_decode(text, pos)
            if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]
                raise json.JSONDecodeError("extra data", text, end)
        except (json.JSONDecodeError, RecursionError) as err:
            try:
                orjson.loads(data)
                msg: Exception = err
            except orjson.JSONDecodeError as oerr:
                msg = oerr
            rej = (
                _classify(data, msg)
                if not isinstance(err, RecursionError)
                else Reject("too_deep", "nested deeper than the JSON parser reads")
            )
            yield 1, rej, text[:100_000]
            return
        if isinstance(obj, dict):
            yield text.count("\n", 0, pos) + 1, obj, obj
        else:
            yield 1, Reject("not_an_object", f"a JSON {_json_type(obj)}, expected an object or array"), obj
        return
    line = text.count("\n", 0, pos) + 1
    last = pos
    pos += 1
    first = True
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            return
        if not first:
            if not text.startswith(",", pos):
                break
            pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        first = False
        line += text.count("\n", last, pos)
        last = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        except RecursionError:  # one element nested past the parser: that element is the bad unit
            end = _skip_value(text, pos)
            if end is None:
                break
            yield (
                line,
                Reject("too_deep", "array element nested deeper than the JSON parser reads"),
                text[pos : min(end, pos + 100_000)],
            )
            pos = end
            continue
        if isinstance(obj, dict):
            yield line, obj, obj
        else:
            yield (
                line,
                Reject("not_an_object", f"array element is a JSON {_json_type(obj)}, expected an object"),
                obj,
            )
        pos = end
    # a syntax error: everything from here on is one bad unit
    line += text.count("\n", last, pos)
    try:
        orjson.loads(data)
        msg = "unexpected text"
    except orjson.JSONDecodeError as err:
        msg = str(err)
    rest = text[pos:]
    yield (
        line,
        Reject(
            "bad_json",
            f"the JSON array is malformed from line {line} on ({msg}); the "
            f"{rest.count(chr(10)) + 1} lines after it could not be read",
        ),
        rest[:100_000],
    )


def _skip_value(text: str, pos: int) -> int | None:
    """The end of the JSON array/object starting at `pos`, found by bracket depth outside strings (no recursion),
    or None when it never closes."""
    depth = 0
    i, n = pos, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


# ---------------------------------------------------------------- CSV

_JSON_COLUMNS = frozenset(
    ("labels", "tags", "violates", "history", "instances", "turns", "reference", "checks")
)


def _messages_like(v: Any) -> bool:
    """A message object or a non-empty list of them ({role|from, ...}): what a turns column holds."""
    if isinstance(v, dict):
        return "role" in v or "from" in v
    return (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(m, dict) and ("role" in m or "from" in m) for m in v)
    )


def _cell(column: str, value: str) -> Any:
    """A CSV cell is text. A cell holding JSON messages (a turns column), or JSON in one of our structured
    columns (labels, tags, ...) is parsed; `true`/`false` in a `label` column (KTO) are booleans. An answer that
    is JSON, a list or the word True stays the text it is."""
    s = value.strip()
    if s[:1] in ("[", "{") and s[-1:] in ("]", "}"):
        try:
            v = orjson.loads(s)
        except orjson.JSONDecodeError:
            return value
        return v if column in _JSON_COLUMNS or _messages_like(v) else value
    if column == "label":
        if s in ("true", "True", "TRUE"):
            return True
        if s in ("false", "False", "FALSE"):
            return False
    return value


def iter_csv(path: Path) -> Iterator[Unit]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:  # the default (128 KiB) is shorter than some conversations
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        if fh.read(1) != "\ufeff":
            fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        start = reader.line_num + 1
        dups = sorted({h for h in header if header.count(h) > 1})
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # e.g. a NUL byte, or an unterminated quote at the end of the file
                line, start = start, reader.line_num + 1
                yield line, Reject("bad_csv_row", f"unreadable CSV row ({err})"), ""
                continue
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            original = delimiter.join(row)
            try:
                original.encode("utf-8")
            except UnicodeEncodeError as err:
                yield (
                    line,
                    Reject("bad_encoding", f"not UTF-8 (at character {err.start} of the row)"),
                    original.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                )
                continue
            if len(row) != len(header):
                yield line, Reject("bad_csv_row", f"{len(row)} cells, the header has {len(header)}"), original
                continue
            if dups:
                yield (
                    line,
                    Reject("duplicate_key", f"column {dups[0]!r} appears twice in the header"),
                    original,
                )
                continue
            yield line, {k: _cell(k, v) for k, v in zip(header, row)}, original


# ---------------------------------------------------------------- Parquet / Arrow


def _batches_to_units(batches: Iterator[Any], path: Path, what: str) -> Iterator[Unit]:
    """Rows of record batches; a file that breaks part-way (corrupt pages, a cut file) is one InputError naming
    it (the rows after the break cannot be counted, so they cannot be quarantined one by one)."""
    import pyarrow as pa

    row = 0
    it = iter(batches)
    while True:
        try:
            batch = next(it)
            objs = batch.to_pylist()
        except StopIteration:
            return
        except (pa.ArrowException, OSError, ValueError, TypeError, OverflowError) as err:
            raise InputError(f"{path}: the {what} file is unreadable after row {row} ({err})") from None
        for obj in objs:
            row += 1
            yield row, obj, obj


def iter_parquet(path: Path) -> Iterator[Unit]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable Parquet file ({err})") from None
    yield from _batches_to_units(pf.iter_batches(batch_size=4096), path, "Parquet")


def iter_arrow(path: Path) -> Iterator[Unit]:
    import pyarrow as pa
    from pyarrow import ipc

    try:
        source = pa.memory_map(str(path), "r")
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable Arrow file ({err})") from None
    try:
        reader: Any = ipc.open_stream(source)
        batches: Iterator[Any] = iter(reader)
    except (pa.ArrowException, OSError):  # not a stream: maybe the file format
        try:
            reader = ipc.open_file(source)
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{path}: not a readable Arrow file ({err})") from None
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    yield from _batches_to_units(batches, path, "Arrow")
