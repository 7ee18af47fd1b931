"""Every check kind, pass and fail, on a spec built in the test."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from curate.checks import check_response, kinds
from curate.spec import CHECK_KINDS, Spec, load_spec


@pytest.fixture(autouse=True)
def _spec_code_allowed():
    """These tests write their own python-check modules: allowed here (tests/test_safety_code.py tests the gate)."""
    from curate.checks.code import allow_code, disallow_code

    allow_code()
    yield
    disallow_code()


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["intent", "entities", "missing_info", "next_step"],
    "properties": {
        "intent": {"enum": ["reset_password", "cancel_account", "other"]},
        "entities": {"type": "object", "additionalProperties": {"type": "string"}},
        "missing_info": {"type": "array", "items": {"type": "string"}},
        "next_step": {"type": "string"},
    },
}


def make_spec(tmp_path: Path, check: dict) -> Spec:
    doc = {
        "name": "t",
        "version": 1,
        "system_prompt": "x",
        "output": {"format": "json", "schema": SCHEMA},
        "rules": [{"id": "r", "says": "s", "check": check, "category": "instruction"}],
    }
    p = tmp_path / "spec.yaml"
    p.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return load_spec(p)


def resp(**kw) -> str:
    base = {
        "intent": "reset_password",
        "entities": {"email": "ana@x.io"},
        "missing_info": [],
        "next_step": "Use the reset link on the sign-in page.",
    }
    base.update(kw)
    return json.dumps(base)


GOOD = resp()
CASES = [
    # (check, response, user text, tags, expected status)
    ({"kind": "json_parse"}, GOOD, "", (), "pass"),
    ({"kind": "json_parse"}, '{"intent": "x",', "", (), "fail"),
    ({"kind": "json_schema"}, GOOD, "", (), "pass"),
    ({"kind": "json_schema"}, resp(intent="fly_to_moon"), "", (), "fail"),
    ({"kind": "json_schema"}, "not json", "", (), "fail"),
    (
        {"kind": "json_schema", "field": "/entities", "schema": {"type": "object", "maxProperties": 0}},
        GOOD,
        "",
        (),
        "fail",
    ),
    ({"kind": "regex_present", "pattern": "(?i)sign-in", "field": "/next_step"}, GOOD, "", (), "pass"),
    ({"kind": "regex_present", "pattern": "(?i)support team", "field": "/next_step"}, GOOD, "", (), "fail"),
    (
        {"kind": "regex_absent", "pattern": r"(?i)\bI(?:'ve| have) reset\b", "field": "/next_step"},
        GOOD,
        "",
        (),
        "pass",
    ),
    (
        {"kind": "regex_absent", "pattern": r"(?i)\bI(?:'ve| have) reset\b", "field": "/next_step"},
        resp(next_step="I've reset it for you."),
        "",
        (),
        "fail",
    ),
    ({"kind": "regex_absent", "pattern": "x", "field": "/next_step"}, "broken", "", (), "skip"),
    ({"kind": "phrases_present", "phrases": ["reset link"], "field": "/next_step"}, GOOD, "", (), "pass"),
    (
        {"kind": "phrases_present", "phrases": ["reset link"], "field": "/next_step"},
        resp(next_step="Use the resetlinks page."),
        "",
        (),
        "fail",
    ),
    ({"kind": "phrases_absent", "phrases": ["CVV", "your password is"]}, GOOD, "", (), "pass"),
    (
        {"kind": "phrases_absent", "phrases": ["CVV", "your password is"]},
        resp(next_step="Send the cvv."),
        "",
        (),
        "fail",
    ),
    ({"kind": "phrases_absent", "phrases": ["cvv"]}, resp(next_step="Send the cvvs."), "", (), "pass"),
    ({"kind": "max_chars", "max": 40, "field": "/next_step"}, GOOD, "", (), "pass"),
    ({"kind": "max_chars", "max": 10, "field": "/next_step"}, GOOD, "", (), "fail"),
    ({"kind": "max_words", "max": 8, "field": "/next_step"}, GOOD, "", (), "pass"),
    ({"kind": "max_words", "max": 7, "field": "/next_step"}, GOOD, "", (), "fail"),
    ({"kind": "max_sentences", "max": 1, "field": "/next_step"}, GOOD, "", (), "pass"),
    (
        {"kind": "max_sentences", "max": 1, "field": "/next_step"},
        resp(next_step="Go there. Then click"),
        "",
        (),
        "fail",
    ),
    (
        {"kind": "question_count", "equals": 1, "field": "/next_step", "when": {"nonempty": "/missing_info"}},
        resp(missing_info=["email"], next_step="What is your email?"),
        "",
        (),
        "pass",
    ),
    (
        {"kind": "question_count", "equals": 1, "field": "/next_step", "when": {"nonempty": "/missing_info"}},
        resp(missing_info=["email"], next_step="What is your email? And your name?"),
        "",
        (),
        "fail",
    ),
    (
        {"kind": "question_count", "equals": 1, "field": "/next_step", "when": {"nonempty": "/missing_info"}},
        GOOD,
        "",
        (),
        "skip",
    ),
    (
        {"kind": "question_count", "max": 0, "field": "/next_step", "when": {"empty": "/missing_info"}},
        resp(next_step="Shall I?"),
        "",
        (),
        "fail",
    ),
    (
        {
            "kind": "question_count",
            "min": 1,
            "field": "/next_step",
            "when": {"equals": {"pointer": "/intent", "value": "other"}},
        },
        resp(intent="other"),
        "",
        (),
        "fail",
    ),
    ({"kind": "values_in_input", "field": "/entities"}, GOOD, "my mail is ANA@x.io thanks", (), "pass"),
    ({"kind": "values_in_input", "field": "/entities"}, GOOD, "i forgot my password", (), "fail"),
    (
        {"kind": "refusal", "expect": True, "field": "/next_step", "when": {"tag": "forbidden"}},
        resp(next_step="I can't help with accessing another person's account."),
        "",
        ("forbidden",),
        "pass",
    ),
    (
        {"kind": "refusal", "expect": True, "field": "/next_step", "when": {"tag": "forbidden"}},
        GOOD,
        "",
        ("forbidden",),
        "fail",
    ),
    (
        {"kind": "refusal", "expect": True, "field": "/next_step", "when": {"tag": "forbidden"}},
        GOOD,
        "",
        (),
        "skip",
    ),
    (
        {"kind": "refusal", "expect": False, "field": "/next_step"},
        resp(next_step="I’m unable to do that."),
        "",
        (),
        "fail",
    ),
    ({"kind": "refusal", "expect": False, "field": "/next_step"}, GOOD, "", (), "pass"),
    (
        {"kind": "python", "function": "mychecks:short", "limit": 50, "field": "/next_step"},
        GOOD,
        "",
        (),
        "pass",
    ),
    (
        {"kind": "python", "function": "mychecks:short", "limit": 5, "field": "/next_step"},
        GOOD,
        "",
        (),
        "fail",
    ),
    (
        {"kind": "max_words", "max": 1, "field": "/next_step", "when": {"category": "edge"}},
        GOOD,
        "",
        (),
        "skip",
    ),
    (
        {"kind": "max_words", "max": 1, "field": "/next_step", "when": {"not_tag": "long"}},
        GOOD,
        "",
        ("long",),
        "skip",
    ),
    ({"kind": "max_words", "max": 1, "field": "/nothing"}, GOOD, "", (), "skip"),
]


@pytest.mark.parametrize("check, response, user, tags, expected", CASES)
def test_check_kinds(
    tmp_path: Path, check: dict, response: str, user: str, tags: tuple, expected: str
) -> None:
    (tmp_path / "mychecks.py").write_text(
        textwrap.dedent("""
        def short(text, ctx, limit):
            return len(text) <= limit, f"{len(text)} chars"
    """)
    )
    spec = make_spec(tmp_path, check)
    [result] = check_response(spec, response, user_text=user, tags=tags)
    assert result.status == expected, result.detail
    assert result.rule == "r" and result.category == "instruction"
    if expected == "fail":
        assert result.detail  # a person can act on it


def test_every_kind_is_registered_and_tested() -> None:
    assert set(kinds()) == set(CHECK_KINDS)
    tested = {c[0]["kind"] for c in CASES}
    code_kinds = set(CHECK_KINDS) - {"judge"}  # a model judges those: tests/test_judge.py
    for kind in code_kinds:
        assert {s for c in CASES if c[0]["kind"] == kind for s in [c[4]]} >= {"pass", "fail"}, kind
    assert tested == code_kinds


def test_failure_details_are_specific(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"kind": "values_in_input", "field": "/entities"})
    [r] = check_response(spec, resp(entities={"card_last4": "9999"}), user_text="card ending 1234")
    assert r.detail == "not in the user's text: '9999'"


def test_python_checks_of_two_specs_do_not_collide(tmp_path: Path) -> None:
    for name, verdict in (("a", "True"), ("b", "False")):
        d = tmp_path / name
        d.mkdir()
        (d / "checks.py").write_text(f"def ok(text, ctx):\n    return {verdict}\n")
    results = [
        check_response(make_spec(tmp_path / n, {"kind": "python", "function": "checks:ok"}), "x")[0].status
        for n in ("a", "b")
    ]
    assert results == ["pass", "fail"]
