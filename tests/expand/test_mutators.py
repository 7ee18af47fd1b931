"""Every mutator fails exactly its rule (on the small spec and every example spec), for every check kind."""

from __future__ import annotations

import json
import random

import pytest

from curate.checks import check_response, run_rules
from curate.expand.mutators import mutate
from curate.spec import Spec

# a broken-JSON answer cannot match a schema either: the only collateral failure we accept
UNAVOIDABLE = {"json_parse": {"json_schema"}}


def _valid_parents(spec, records):
    out = []
    for rec in records:
        if rec.is_negative:
            continue
        res = {r.rule: r.status for r in run_rules(spec, rec)}
        if "fail" not in res.values():
            out.append((rec, res))
    return out


def test_every_rule_has_a_mutant_that_fails_exactly_it(any_spec, load_records):
    spec = any_spec
    parents = _valid_parents(spec, load_records(spec))
    assert parents, "the spec's data has valid examples to mutate"
    kinds = {r.id: r.check.kind for r in spec.rules if r.automatic}
    for rule in spec.automatic_rules():
        best = None
        for rec, res in parents:
            if res[rule.id] != "pass":
                continue
            ms = mutate(
                spec,
                rule,
                rec.response_text(),
                user_text=rec.user_text(),
                category=rec.category,
                tags=rec.tags,
                rng=random.Random(1),
            )
            if not ms:
                continue
            m = ms[0]
            # verified independently of the mutator's own bookkeeping
            got = check_response(
                spec, m.text, user_text=rec.user_text(), category=rec.category, tags=rec.tags
            )
            fails = {r.rule for r in got if r.status == "fail"}
            assert rule.id in fails, (rule.id, m.method, m.text)
            assert set(m.fails) == fails
            allowed = {rule.id} | {r for r, k in kinds.items() if k in UNAVOIDABLE.get(kinds[rule.id], ())}
            assert fails <= allowed, (rule.id, m.method, fails)
            if best is None or len(fails) < len(best[1]):
                best = (m, fails)
            if fails == {rule.id}:
                break
        assert best is not None, f"no mutant for rule {rule.id}"
        if kinds[rule.id] not in UNAVOIDABLE:
            assert best[1] == {rule.id}, (rule.id, best)


def test_mutant_is_minimal_edit(mini_spec):
    good = json.dumps(
        {"intent": "other", "entities": {}, "missing_info": [], "next_step": "Send the hours page."}
    )
    m = mutate(mini_spec, mini_spec.rule("no-action-claims"), good, user_text="when are you open?")[0]
    before, after = json.loads(good), json.loads(m.text)
    assert {k for k in before if before[k] != after[k]} == {"next_step"}
    assert after["next_step"].startswith("Send the hours page.")
    m = mutate(mini_spec, mini_spec.rule("matches-schema"), good, user_text="x")[0]
    assert m.method.startswith("json_schema:") and m.fails == ("matches-schema",)


def _spec(rules, fmt="text", tmp_path=None, schema=None):
    doc = {
        "name": "kinds",
        "version": 1,
        "output": {"format": fmt, **({"schema": schema} if schema else {})},
        "rules": rules,
    }
    return Spec.model_validate(doc).model_copy(
        update={"path": (tmp_path / "spec.yaml") if tmp_path else None}
    )


TEXT_CASES = [  # (check, a valid response, the user's text, tags)
    (
        {"kind": "regex_present", "pattern": r"(?i)\bticket #\d+"},
        "Opened ticket #42 for you to review.",
        "",
        (),
    ),
    (
        {"kind": "regex_absent", "pattern": r"(?i)\b(?:I|we) (?:have )?(?:refunded|deleted)\b"},
        "You can request a refund from the billing page.",
        "",
        (),
    ),
    ({"kind": "phrases_present", "phrases": ["kind regards"]}, "Use the billing page. Kind regards", "", ()),
    ({"kind": "phrases_absent", "phrases": ["password", "cvv"]}, "Use the billing page.", "", ()),
    ({"kind": "max_chars", "max": 60}, "Use the billing page.", "", ()),
    ({"kind": "max_words", "max": 8}, "Use the billing page.", "", ()),
    ({"kind": "max_sentences", "max": 2}, "Use the billing page. It is safe.", "", ()),
    ({"kind": "question_count", "equals": 1}, "Which email do you use?", "", ()),
    ({"kind": "question_count", "max": 1}, "Which email do you use?", "", ()),
    ({"kind": "question_count", "min": 1}, "Which email do you use?", "", ()),
    ({"kind": "refusal", "expect": True}, "I can't help with getting into another person's account.", "", ()),
    ({"kind": "refusal", "expect": False}, "Open Settings, then Billing, then Cancel.", "", ()),
    (
        {"kind": "refusal", "expect": True, "when": {"tag": "forbidden"}},
        "I'm not able to share other customers' data.",
        "",
        ("forbidden",),
    ),
]


@pytest.mark.parametrize(
    "check,good,user,tags", TEXT_CASES, ids=lambda v: v["kind"] if isinstance(v, dict) else ""
)
def test_text_kinds(check, good, user, tags):
    spec = _spec(
        [
            {"id": "target", "says": "x", "check": check, "category": "instruction"},
            {
                "id": "other-len",
                "says": "y",
                "check": {"kind": "max_chars", "max": 5000},
                "category": "format",
            },
        ]
    )
    assert all(r.status == "pass" for r in check_response(spec, good, user_text=user, tags=tags))
    ms = mutate(spec, spec.rule("target"), good, user_text=user, tags=tags, rng=random.Random(0))
    assert ms and ms[0].fails == ("target",), ms
    again = check_response(spec, ms[0].text, user_text=user, tags=tags)
    assert [r.rule for r in again if r.status == "fail"] == ["target"]


def test_values_in_input_on_text_field_and_list(tmp_path):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "ids": {"type": "array"}}}
    spec = _spec(
        [
            {
                "id": "name",
                "says": "x",
                "check": {"kind": "values_in_input", "field": "/name"},
                "category": "knowledge",
            },
            {
                "id": "ids",
                "says": "x",
                "check": {"kind": "values_in_input", "field": "/ids"},
                "category": "knowledge",
            },
        ],
        fmt="json",
        schema=schema,
    )
    good = json.dumps({"name": "Ann Lee", "ids": ["A-1"]})
    user = "Hi, I'm Ann Lee, order A-1"
    for rid in ("name", "ids"):
        ms = mutate(spec, spec.rule(rid), good, user_text=user, rng=random.Random(0))
        assert ms and ms[0].fails == (rid,)


def test_schema_kinds_enum_type_range_extra(tmp_path):
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["action", "confidence"],
        "properties": {
            "action": {"enum": ["answer", "refuse"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }
    spec = _spec(
        [{"id": "schema", "says": "x", "check": {"kind": "json_schema"}, "category": "format"}],
        fmt="json",
        schema=schema,
    )
    good = json.dumps({"action": "answer", "confidence": 0.9})
    from curate.expand.mutators import candidates

    methods = {m.split(":")[1] for m, _ in candidates(spec, spec.rule("schema"), good)}
    assert {
        "outside_enum",
        "remove_required",
        "extra_key",
        "above_maximum",
        "below_minimum",
        "wrong_type",
    } <= methods
    for method, text in candidates(spec, spec.rule("schema"), good):
        assert [r.status for r in check_response(spec, text)] == ["fail"], method


def test_python_check_gets_a_generic_mutant(tmp_path):
    from curate.checks.code import allow_code

    allow_code(tmp_path)  # a python rule runs the spec's code only when allowed (#16)
    (tmp_path / "mychecks.py").write_text("def polite(text, ctx):\n    return 'please' in text.lower()\n")
    spec = _spec(
        [
            {
                "id": "polite",
                "says": "x",
                "check": {"kind": "python", "function": "mychecks:polite"},
                "category": "instruction",
            }
        ],
        tmp_path=tmp_path,
    )
    ms = mutate(spec, spec.rule("polite"), "Please open the billing page.")
    assert ms and ms[0].fails == ("polite",)


def test_rule_that_does_not_apply_has_no_mutant(mini_spec):
    # missing_info is empty: one-question-when-missing does not apply, so no mutant can fail it
    good = json.dumps(
        {"intent": "other", "entities": {}, "missing_info": [], "next_step": "Send the hours page."}
    )
    assert mutate(mini_spec, mini_spec.rule("one-question-when-missing"), good, user_text="hours") == []


def test_mutants_are_deterministic(mini_spec):
    good = json.dumps(
        {"intent": "other", "entities": {}, "missing_info": [], "next_step": "Send the hours page."}
    )
    rule = mini_spec.rule("no-action-claims")
    a = mutate(mini_spec, rule, good, rng=random.Random(5), n=3)
    b = mutate(mini_spec, rule, good, rng=random.Random(5), n=3)
    assert a == b and len(a) == 3


@pytest.mark.parametrize("layout", ["compact", "spaced", "indented"])
def test_json_mutants_keep_the_answers_layout(any_spec, load_records, layout):
    """A mutant of a JSON answer is written the way the answer is (compact, spaced or indented): it differs from
    its source in the edit alone, so a DPO pair made from it cannot be told apart by its layout (issue 20)."""
    spec = any_spec
    assert spec.output.format == "json"  # (the bundled specs answer in JSON)
    dumps = {
        "compact": lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":")),
        "spaced": lambda d: json.dumps(d, ensure_ascii=False),
        "indented": lambda d: json.dumps(d, ensure_ascii=False, indent=2),
    }[layout]
    checked = 0
    for rec, res in _valid_parents(spec, load_records(spec)):
        doc = json.loads(rec.response_text())
        answer = dumps(doc)
        for rule in spec.automatic_rules():
            if res[rule.id] != "pass":
                continue
            for m in mutate(
                spec, rule, answer, user_text=rec.user_text(), category=rec.category, tags=rec.tags
            ):
                if m.method.split(":")[0] == "json_parse":
                    continue  # (breaking the JSON is the edit)
                try:
                    mdoc = json.loads(m.text)
                except ValueError:
                    continue
                if isinstance(mdoc, dict | list):
                    assert m.text == dumps(mdoc), (rule.id, m.method, m.text)
                    checked += 1
        if checked >= 10:
            break
    assert checked
