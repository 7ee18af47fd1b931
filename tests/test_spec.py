"""Spec loading: every kind of bad input gets one message with file:line:column, field and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.errors import SpecError
from curate.spec import lint, load_spec

BASE = """\
name: t
version: 1
system_prompt: hi
output:
  format: json
  schema: {type: object, properties: {a: {type: string}}}
rules:
  - id: valid-json
    says: ok
    check: {kind: json_schema}
    category: format
  - id: no-secrets
    says: never print a password
    check: {kind: regex_absent, field: /a, pattern: "(?i)password"}
    category: safety
cases:
  typical: {min_share: 0.5}
  edge: {min_share: 0.2, seeds: [x]}
  adversarial: {min_share: 0.1, seeds: [y]}
  negative: {min_share: 0.1}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda s: s.replace("version: 1\n", "version: 1\nrules2: [\n"),
            (
                "spec.yaml:5:7: YAML syntax error: expected ',' or ']', but got ':' "
                "(while parsing a flow sequence at line 3, column 9)"
            ),
        ),
        (
            lambda s: s.replace("system_prompt:", "system_promt:"),
            'spec.yaml:3:1: (top level): unknown key "system_promt"; did you mean "system_prompt"?',
        ),
        (
            lambda s: s.replace("version: 1", "version: [1, 2]"),
            "spec.yaml:2:1: version: expected an integer or a string (got [1, 2])",
        ),
        (
            lambda s: s.replace("{kind: json_schema}", '{kind: regex_absent, pattern: "(oops"}'),
            "spec.yaml:10:33: rules[0].check.pattern: bad regex: missing ), unterminated subpattern at position 0",
        ),
        (
            lambda s: s.replace("{type: string}", "{type: strng}"),
            (
                "spec.yaml:6:3: output.schema: not a valid JSON Schema at properties/a/type: 'strng' is not valid "
                "under any of the given schemas"
            ),
        ),
        (
            lambda s: s.replace(
                "cases:",
                "  - id: valid-json\n    says: again\n    check: human\n    category: format\ncases:",
            ),
            'spec.yaml:16:5: rules[2].id: duplicate rule id "valid-json" (first used by rules[0]); rule ids must be unique',
        ),
        (
            lambda s: s.replace("kind: json_schema", "kind: json_shema"),
            "spec.yaml:10:5: rules[0].check: unknown check kind 'json_shema'; did you mean \"json_schema\"?",
        ),
        (
            lambda s: s.replace("{kind: json_schema}", "{kind: max_words, max: 3, feild: /a}"),
            'spec.yaml:10:38: rules[0].check: unknown key "feild"; did you mean "field"?',
        ),
        (
            lambda s: s.replace("category: format", "category: formatting"),
            (
                "spec.yaml:11:5: rules[0].category: Input should be 'format', 'instruction', 'knowledge' or 'safety' "
                "(got 'formatting')"
            ),
        ),
        (
            lambda s: s.replace("{kind: json_schema}", "{kind: max_words, max: 3, field: a}"),
            "spec.yaml:10:38: rules[0].check.field: a JSON Pointer starts with '/', got 'a' (write '/a')",
        ),
    ],
)
def test_bad_spec_messages(tmp_path: Path, change, expected: str) -> None:
    p = write(tmp_path, change(BASE))
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert str(info.value) == f"{tmp_path}/{expected}"


def test_json_schema_rule_without_schema(tmp_path: Path) -> None:
    text = BASE.replace("  schema: {type: object, properties: {a: {type: string}}}\n", "")
    with pytest.raises(
        SpecError,
        match=r"spec.yaml:9:5: rules\[0\].check: json_schema rule \"valid-json\" has no "
        r"schema; add output.schema",
    ):
        load_spec(write(tmp_path, text))


def test_load_folder_and_file(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    a, b = load_spec(tmp_path), load_spec(tmp_path / "spec.yaml")
    assert a == b and a.ref == "t@1" and len(a.digest) == 64


def test_missing_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no spec.yaml in this folder"):
        load_spec(tmp_path)


def test_lint_clean_and_findings(tmp_path: Path) -> None:
    assert lint(load_spec(write(tmp_path, BASE))) == []
    bad = BASE.replace("min_share: 0.5", "min_share: 0.9").replace("  negative: {min_share: 0.1}\n", "")
    bad = bad.replace("{kind: json_schema}", "{kind: max_words, max: 3, field: /b}").replace(
        "field: /a, ", ""
    )
    codes = {f.code for f in lint(load_spec(write(tmp_path, bad)))}
    assert codes >= {
        "coverage_over_one",
        "missing_case_category",
        "pointer_not_in_schema",
        "schema_not_checked",
        "unused_field",
    }


def test_lint_text_output_with_json_rule(tmp_path: Path) -> None:
    text = BASE.replace("format: json", "format: text")
    assert "json_rule_on_text_output" in {f.code for f in lint(load_spec(write(tmp_path, text)))}


def test_example_specs_load_and_lint_clean(example_specs: list[Path]) -> None:
    assert len(example_specs) >= 2
    for path in example_specs:
        spec = load_spec(path)
        assert lint(spec) == [], path
        assert spec.data_paths() and all(p.exists() for p in spec.data_paths())
