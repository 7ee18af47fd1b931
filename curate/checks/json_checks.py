"""json_parse and json_schema (Draft 2020-12 via jsonschema)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
import orjson

from curate.checks import register
from curate.checks.context import MISSING, CheckContext


@lru_cache(maxsize=64)
def _validator(schema_json: bytes) -> jsonschema.protocols.Validator:
    schema = orjson.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


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
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return True, ""
    err = errors[0]
    where = "/" + "/".join(str(p) for p in err.absolute_path)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return False, f"{where}: {err.message}{more}"
