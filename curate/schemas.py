"""Generated JSON Schemas in schemas/: the spec file, our record formats, the quarantine row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from curate.records import record_json_schema, write_atomic
from curate.spec import spec_json_schema


def generated_schemas() -> dict[str, dict[str, Any]]:
    rec = record_json_schema()
    rec["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    rec["title"] = "curate record (SFT or preference, TRL shapes)"
    return {"spec.schema.json": spec_json_schema(), "record.schema.json": rec}


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(directory: str | Path = "schemas", spec_name: str = "spec.schema.json") -> list[Path]:
    directory = Path(directory)
    out = []
    for name, schema in generated_schemas().items():
        path = directory / (spec_name if name == "spec.schema.json" else name)
        write_atomic(path, render(schema))
        out.append(path)
    return out
