"""The json_schema check's fast path (jsonschema-rs is_valid) gives the same verdicts as Python jsonschema."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import orjson
import pytest

from curate.checks import json_checks
from curate.records import read_jsonl
from curate.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (REPO / "specs").iterdir() if (p / "spec.yaml").is_file())
ODD = [
    None,
    True,
    False,
    0,
    -1,
    1.0,
    1.5,
    2,
    1e300,
    "",
    "x",
    "💥",
    "e\u0301",
    "a" * 500,
    [],
    [""],
    ["x", 1],
    {},
    {"k": ""},
    {"k": "v"},
    {"k": 1},
]


def _responses(spec_dir: Path) -> list[object]:
    out = []
    for _, obj in read_jsonl(spec_dir / "data.jsonl"):
        if not isinstance(obj, dict):
            continue
        turns = (
            list(obj.get("messages") or []) + list(obj.get("chosen") or []) + list(obj.get("rejected") or [])
        )
        for t in turns:
            if isinstance(t, dict) and t.get("role") == "assistant":
                try:
                    out.append(orjson.loads(t.get("content") or ""))
                except orjson.JSONDecodeError:
                    pass
    return out


def _mutants(doc: object) -> list[object]:
    """The document, and one-edit variants: each key dropped, each value swapped for an odd one, a key added."""
    out = [doc] + ODD
    if isinstance(doc, dict):
        for k in doc:
            d = dict(doc)
            del d[k]
            out.append(d)
            for v in ODD:
                out.append({**doc, k: v})
            if isinstance(doc[k], dict):
                for v in ODD:
                    out.append({**doc, k: {**doc[k], "extra": v}})
            if isinstance(doc[k], list):
                for v in ODD:
                    out.append({**doc, k: [*doc[k], v]})
        out.append({**doc, "extra": 1})
        out.append([doc])
    return out


@pytest.mark.parametrize("spec_dir", SPECS, ids=lambda p: p.name)
def test_fast_verdicts_equal_python_jsonschema(spec_dir: Path) -> None:
    spec = load_spec(spec_dir)
    schemas = [spec.output.schema_] + [
        r.check.schema_ for r in spec.automatic_rules() if getattr(r.check, "schema_", None) is not None
    ]
    docs = [m for d in _responses(spec_dir) for m in _mutants(d)]
    assert len(docs) > 1000
    for schema in schemas:
        _, fast = json_checks._validator(schema)
        assert fast is not None  # the example specs' schemas take the fast path
        ref = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        verdicts = [ref.is_valid(d) for d in docs]
        assert 0 < sum(verdicts) < len(docs)  # both kinds of verdict are exercised
        assert [fast(d) for d in docs] == verdicts
        for d, ok in zip(docs[:400], verdicts):
            got_ok, msg = json_checks.schema_verdict(schema, d)
            assert got_ok == ok and (msg == "") == ok


def test_message_is_the_python_validators_first_error() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "string"}, "b": {"minimum": 0}},
    }
    assert json_checks.schema_verdict(schema, {"a": "x"}) == (True, "")
    ok, msg = json_checks.schema_verdict(schema, {"a": 1, "b": -1})
    assert not ok and msg == "/a: 1 is not of type 'string' (+1 more)"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "email"},
        {"type": "string", "pattern": "^\\d+$"},
        {"patternProperties": {"^x": {"type": "string"}}},
        {"$id": "https://example.com/s", "type": "object"},
        {"$ref": "https://example.com/other.json"},
    ],
)
def test_schemas_whose_verdict_may_differ_use_python_jsonschema(schema: dict) -> None:
    slow, fast = json_checks._validator(copy.deepcopy(schema))
    assert fast is None and slow is not None


def test_format_is_checked_by_python_jsonschema() -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    assert json_checks.schema_verdict(schema, {"email": "a@b.example"}) == (True, "")
    assert not json_checks.schema_verdict(schema, {"email": "no-at-sign"})[0]
