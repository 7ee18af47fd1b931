"""Per-unit faults no converter should meet: one bad unit is quarantined, never the end of a build.

    >>> from curate.readers.guard import unit_fault
    >>> unit_fault({"a": [[[1]]]}, b'{"a": [[[1]]]}') is None
    True
    >>> unit_fault({"a": 1, "b": 2}, b'{"a": 1, "a": 2, "b": 2}').reason
    'duplicate_key'

One rule for every container (JSONL, JSON, CSV, Parquet, Arrow):
- too_deep: objects/arrays nested deeper than MAX_DEPTH (curate's writers, orjson, stop at 255 levels; a record
  needs a handful). JSON nested beyond the parser's own limit is too_deep as well (containers.py).
- number_out_of_range: an integer outside the 64-bit range (orjson cannot write it; JSONL's parser reads such
  numbers as floats, the `.json` reader does the same, so this is met only in other containers).
- not_finite: NaN or Infinity (not JSON: JSONL rejects them as bad_json, the `.json` reader marks them).
- duplicate_key: an object with a key twice (which value is meant?). Checked exactly for `.json` files; for JSONL
  lines a cheap count of `":` decides when a line needs the exact check.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from curate.readers.common import Reject

MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


class NonFinite(float):
    """NaN / Infinity as read by the `.json` reader (kept a float, marked so the guard quarantines it)."""


class DupDict(dict):  # type: ignore[type-arg]
    """An object that had a key twice (the last value kept, as JSON parsers do); `dup` is the key."""

    dup: str = ""


def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json `object_pairs_hook`: a dict, or a DupDict naming the first repeated key."""
    out: dict[str, Any] = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        marked = DupDict(out)
        marked.dup = dup
        return marked
    return out


def parse_constant(name: str) -> float:
    return NonFinite(name)


def parse_float(text: str) -> float:
    v = float(text)
    return NonFinite(v) if v in (float("inf"), float("-inf")) else v


def parse_int(text: str) -> int | float:
    v = int(text)
    return v if _INT_MIN <= v <= _INT_MAX else float(v)  # as orjson reads it


_PUSH = frozenset((dict, DupDict, list, tuple, int, NonFinite))


def _walk(obj: Any) -> Reject | None:
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        t = type(node)
        if t is dict or t is DupDict or t is list or t is tuple:
            if depth > MAX_DEPTH:
                return Reject("too_deep", f"nested deeper than {MAX_DEPTH} levels")
            if t is DupDict:
                return Reject("duplicate_key", f"key {node.dup!r} appears twice in one object")
            children = node.values() if t is not list and t is not tuple else node
            for c in children:
                tc = type(c)
                if tc in _PUSH or isinstance(c, (dict, list)):
                    stack.append((c, depth + 1))
        elif t is int:
            if not _INT_MIN <= node <= _INT_MAX:
                return Reject(
                    "number_out_of_range", f"integer {str(node)[:24]}... is outside the 64-bit range"
                )
        elif t is NonFinite:
            return Reject("not_finite", f"{node} is not a JSON number (NaN/Infinity)")
        elif isinstance(node, dict):
            stack.append((dict(node), depth))
        elif isinstance(node, list):
            stack.append((list(node), depth))
    return None


def _exact_duplicates(raw: bytes) -> Reject | None:
    try:
        obj = json.loads(raw, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return None
    return _walk(obj) if _has_dup(obj) else None


def _has_dup(obj: Any) -> bool:
    stack = [obj]
    while stack:
        node = stack.pop()
        if type(node) is DupDict:
            return True
        if isinstance(node, dict):
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return False


def _key_count(obj: Any) -> int:
    n = 0
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            n += len(node)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return n


def unit_fault(obj: Any, original: Any = None) -> Reject | None:
    """The fault of one raw unit (see the module doc), or None. `original`: the unit's raw bytes (JSONL), used to
    find duplicate keys the parser dropped."""
    got = _walk(obj)
    if got is not None:
        return got
    if isinstance(original, bytes | bytearray | memoryview):
        raw = bytes(original)
        # every key ends with `":` (when written compactly); fewer parsed keys than such ends -> look exactly
        ends = raw.count(b'":') - raw.count(b'\\":')
        if ends > _key_count(obj):
            return _exact_duplicates(raw)
    return None


def line_fault(obj: Any, raw: bytes) -> Reject | None:
    """`unit_fault(obj, raw)` of an object orjson parsed from the JSONL line `raw`, without walking it (~8 us
    instead of ~20 for an OpenAI line with metadata). orjson gives no NaN, no duplicate-key marker and no integer
    outside the 64-bit range (it reads those as floats), so the walk can only find depth, and no value of a line
    with MAX_DEPTH `[` and `{` bytes or fewer is nested deeper. The object's compact dump has one unescaped `":` per
    key (a `"` inside a string is escaped; a key ending in a backslash is not counted: fewer, never more), so
    when the line has no more key ends than the dump, it has no more than the object's keys and no duplicate
    check is due. Anything else goes to `unit_fault`."""
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        return unit_fault(obj, raw)
    ends = raw.count(b'":') - raw.count(b'\\":')
    try:
        dumped = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):  # pragma: no cover - not an object orjson parsed
        return unit_fault(obj, raw)
    if ends > dumped.count(b'":') - dumped.count(b'\\":'):
        return unit_fault(obj, raw)
    return None


_TURN_KEYS = ("messages", "prompt", "chosen", "rejected")


def dup_suspect(obj: dict[str, Any], raw: bytes) -> bool:
    """For a line the compact build takes as a plain row (turn lists of {role, content} dicts, string tags):
    whether its bytes hold more key ends (`":`) than the parsed object has keys, i.e. it may have had a duplicate
    key; such a line goes to the record path, where `unit_fault` decides exactly (~1 us a line)."""
    ends = raw.count(b'":')
    n = len(obj)
    if ends <= n:
        return False
    for k in _TURN_KEYS:
        v = obj.get(k)
        if v.__class__ is list:
            n += 2 * len(v)  # a plain row's turns have exactly two keys
    if ends <= n:
        return False
    return ends - raw.count(b'\\":') > n


__all__ = [
    "MAX_DEPTH",
    "DupDict",
    "NonFinite",
    "dup_suspect",
    "line_fault",
    "pairs_hook",
    "parse_constant",
    "parse_float",
    "parse_int",
    "unit_fault",
]
