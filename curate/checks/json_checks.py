"""json_parse and json_schema (Draft 2020-12 via jsonschema).

Speed: a schema is compiled once (cached by the identity of the spec's schema object, with an equality check, so
no per-record serialisation), and a document is first checked with `is_valid`; the error message is produced only
for a failing document. `is_valid` runs on jsonschema-rs (compiled, ~50x faster) when the schema uses nothing
whose verdict could differ between the two libraries (no `format`, no regex `pattern`, only local `$ref`s);
otherwise, and always for the message, the Python `jsonschema` validator decides. Verdict equality is tested on
the example data and mutants (tests/test_schema_fast.py).
"""

from __future__ import annotations

from typing import Any

import jsonschema

from curate.checks.context import MISSING, CheckContext
from curate.checks.registry import register

try:  # optional at import time: without it every document goes through the Python validator
    import jsonschema_rs
except ImportError:  # pragma: no cover - a declared dependency
    jsonschema_rs = None

_CACHE: dict[
    int, tuple[Any, Any, Any]
] = {}  # id(schema) -> (schema, python validator, fast is_valid or None)


def _rs_safe(node: Any) -> bool:
    """True when the schema has no keyword whose handling could differ between jsonschema and jsonschema-rs."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("format", "pattern") and isinstance(v, str):  # format sets and regex dialects differ
                return False
            if k == "patternProperties" or k == "$id":
                return False
            if k in ("$ref", "$dynamicRef", "$recursiveRef") and not (
                isinstance(v, str) and v.startswith("#")
            ):
                return False
            if not _rs_safe(v):
                return False
    elif isinstance(node, list):
        return all(_rs_safe(v) for v in node)
    return True


def _plain(node: Any) -> Any:
    """The schema as plain JSON types (YAML loaders give int/str subclasses the Rust validator refuses)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if type(node).__name__ == "ScalarBoolean":  # ruamel's anchored booleans are int subclasses
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _compile(schema: Any) -> tuple[Any, Any]:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    slow = cls(schema, format_checker=cls.FORMAT_CHECKER)
    fast = None
    if (
        jsonschema_rs is not None
        and isinstance(schema, dict)
        and _rs_safe(schema)
        and (schema.get("$schema") in (None, "https://json-schema.org/draft/2020-12/schema"))
    ):
        try:
            fast = jsonschema_rs.Draft202012Validator(_plain(schema)).is_valid
        except Exception:  # noqa: BLE001 - a schema the Rust validator cannot take: the Python one decides
            fast = None
    return slow, fast


def _validator(schema: Any) -> tuple[Any, Any]:
    """(python validator, fast is_valid or None) for a schema object, compiled once per object."""
    hit = _CACHE.get(id(schema))
    if hit is not None and (hit[0] is schema or hit[0] == schema):
        return hit[1], hit[2]
    slow, fast = _compile(schema)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[id(schema)] = (schema, slow, fast)  # keeps the schema alive, so its id is not reused
    return slow, fast


def schema_verdict(schema: Any, doc: Any) -> tuple[bool, str]:
    """(valid, message) for one document: the message names the first error by path, '' when valid."""
    slow, fast = _validator(schema)
    if fast is not None:
        if fast(doc):
            return True, ""
    elif slow.is_valid(doc):
        return True, ""
    errors = sorted(slow.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:  # the fast validator disagreed; the Python validator (the reference) decides
        return True, ""
    err = errors[0]
    where = "/" + "/".join(str(p) for p in err.absolute_path)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return False, f"{where}: {err.message}{more}"


@register("json_parse")
def json_parse(check: Any, ctx: CheckContext) -> tuple[bool, str]:
    if ctx.parsed is MISSING:
        return False, f"not valid JSON: {ctx.parse_error}"
    return True, ""


@register("json_schema")
def json_schema(check: Any, ctx: CheckContext) -> tuple[bool, str]:
    schema = check.schema_ if check.schema_ is not None else ctx.spec.output.schema_
    doc = ctx.parsed
    if doc is MISSING:
        return False, f"not valid JSON: {ctx.parse_error}"
    if check.field:
        doc = ctx.value(check.field)
        if doc is MISSING:
            return False, f"missing {check.field}"
    return schema_verdict(schema, doc)


__all__ = ["json_parse", "json_schema", "schema_verdict"]
