"""The calibration gate wired into build and eval: a judge rule fails records only while its calibration for the
current rule hash and the running judge passes the gate; uncalibrated, calibrated for an old rule hash, or for
another judge, it never fails a record (and the build does not even run it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.evaluate import evaluate_outputs
from curate.judge.calibrate import default_calibration_path, save_calibration
from curate.judge.core import LocalJudge
from curate.judge.gate import open_gate
from curate.records import read_jsonl
from curate.spec import load_spec
from curate.steps.pipeline import build
from curate.versioning import rule_hash
from tests.test_judge import _ChatServer, _labels, _spec_dir

RULE = "no-claims-judged"
ANSWER = {"intent": "account_access", "entities": {}, "missing_info": []}


def _answer(step: str) -> str:
    return json.dumps({**ANSWER, "next_step": step})


def _extra(tmp_path: Path) -> Path:
    """Records only the judge can fail: the code rule no-action-claims misses passive claims."""
    rows = [
        {  # a normal record that claims a finished action: the judge (counting) fails it
            "messages": [
                {"role": "user", "content": "My login is locked, help me get back in"},
                {"role": "assistant", "content": _answer("Your access has been reset already.")},
            ],
            "category": "typical",
        },
        {  # a negative naming the judge rule that does claim: kept as a negative
            "messages": [
                {"role": "user", "content": "Unlock my profile for me right away"},
                {"role": "assistant", "content": _answer("Your profile has been unlocked now.")},
            ],
            "category": "negative",
            "violates": [RULE],
        },
        {  # a negative naming the judge rule that does not claim: it teaches nothing once the rule counts
            "messages": [
                {"role": "user", "content": "Please look at my blocked sign-in soon"},
                {"role": "assistant", "content": _answer("Send the customer the unlock link.")},
            ],
            "category": "negative",
            "violates": [RULE],
        },
    ]
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True)
def _passive_claims(monkeypatch):
    """The stub judge also fails passive claims ("has been reset"), which the code rule no-action-claims (I/we
    + verb) misses: records only the judge can fail."""
    import re

    import tests.test_judge as tj

    monkeypatch.setattr(tj, "CLAIM", re.compile(tj.CLAIM.pattern + r"|(?i:\bhas been (?:reset|unlocked)\b)"))


def _judge_yaml(url: str, model: str = "grader-1") -> str:
    return f"\njudge:\n  base_url: {url}\n  endpoint_model: {model}\n"


def _rows(out: Path) -> list[dict]:
    return [o for split in ("train", "test") for _, o in read_jsonl(out / "sft" / f"{split}.jsonl")]


def _texts(out: Path) -> set[str]:
    return {m["content"] for r in _rows(out) for m in r["messages"] if m["role"] == "assistant"}


def _quarantine(out: Path) -> list[dict]:
    path = out / "quarantine" / "validate.jsonl"
    return [o for _, o in read_jsonl(path)] if path.exists() else []


def _calibrate(folder: Path, labels: Path, srv: _ChatServer) -> None:
    r = CliRunner().invoke(main, ["judge", "calibrate", str(folder), "--labels", str(labels), "--json"])
    assert r.exit_code == 0, r.output
    [cal] = json.loads(r.stdout)["rules"]
    assert cal["status"] == "automatic" and cal["judge"] == f"openai:{srv.url}:grader-1:p1"


def test_build_gate_uncalibrated_calibrated_old_hash_other_judge(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the calibration and verdict cache live under ./.curate
    with _ChatServer() as srv:
        folder = _spec_dir(tmp_path, extra=_judge_yaml(srv.url))
        spec = load_spec(folder)
        inputs = [folder / "data.jsonl", _extra(tmp_path)]
        claim = _answer("Your access has been reset already.")

        # uncalibrated: a suggestion; the build does not run the judge and fails nothing on it
        res = build(spec, inputs, tmp_path / "b0")
        assert res.manifest["judge"]["rules"][RULE] == {
            "status": "suggestion",
            "why": "not calibrated",
            "n": None,
            "kappa": None,
            "kappa_ci95": None,
        }
        assert res.manifest["judge"]["judge"] is None and srv.requests == []
        assert claim in _texts(tmp_path / "b0")
        assert not [q for q in _quarantine(tmp_path / "b0") if RULE in q["detail"]]

        # calibrated (n=40, kappa 1.0) for the current rule hash and this judge: it counts
        _calibrate(folder, _labels(tmp_path, n=40), srv)
        before = len(srv.requests)
        res = build(spec, inputs, tmp_path / "b1")
        m = res.manifest
        assert m["judge"]["judge"] == f"openai:{srv.url}:grader-1:p1"
        assert m["judge"]["rules"][RULE] == {
            "status": "automatic",
            "why": "",
            "n": 40,
            "kappa": 1.0,
            "kappa_ci95": [1.0, 1.0],
        }
        # the report shows each judge rule's calibration and whether it counted (escaped: the id holds a URL)
        html = (tmp_path / "b1" / "report.html").read_text()
        assert "Judge rules: calibrated against people before they count" in html
        assert f'<code>{RULE}</code></td><td><span class="badge ok">counts</span>' in html
        assert f"Judge: <code>openai:{srv.url}:grader-1:p1</code>" in html
        # FAIL verdicts: the normal record's and the claiming negative's (which makes it a good negative)
        assert m["judge"]["failed"] == {RULE: 2} and m["judge"]["judged"] > 100
        assert claim not in _texts(tmp_path / "b1")
        q = {(x["reason"], x["original"]["messages"][-1]["content"]): x for x in _quarantine(tmp_path / "b1")}
        failed = q[("rule_failed", claim)]
        assert failed["detail"] == (
            f"{RULE}: judge openai:{srv.url}:grader-1:p1 says FAIL (it claims the reset was done.)"
        )
        assert ("negative_passes_rules", _answer("Send the customer the unlock link.")) in q
        assert ("negative_passes_rules", _answer("Your profile has been unlocked now.")) not in q
        assert m["conservation"]["ok"] and m["quarantine"]["validate/rule_failed"] == 1
        assert len(srv.requests) > before
        # every verdict is cached by (rule hash, response hash, judge id): a rebuild asks nothing
        before = len(srv.requests)
        again = build(spec, inputs, tmp_path / "b2")
        assert len(srv.requests) == before and again.manifest["judge"]["failed"] == {RULE: 2}

        # another judge (a different endpoint model) than the calibrated one: a suggestion again
        other = load_spec(folder).model_copy(
            update={"judge": spec.judge.model_copy(update={"endpoint_model": "grader-2"})}
        )
        res = build(other, inputs, tmp_path / "b3")
        st = res.manifest["judge"]["rules"][RULE]
        assert st["status"] == "suggestion" and st["why"].startswith("calibrated for judge openai:")
        assert claim in _texts(tmp_path / "b3")

        # the rule is reworded: its calibration was for the old rule hash, so it no longer counts
        before = len(srv.requests)
        text = (folder / "spec.yaml").read_text()
        (folder / "spec.yaml").write_text(text.replace("an action was already done", "anything was done"))
        res = build(load_spec(folder), inputs, tmp_path / "b4")
        st = res.manifest["judge"]["rules"][RULE]
        assert (st["status"], st["why"], st["n"]) == (
            "suggestion",
            "calibrated under another rule hash (the rule changed)",
            40,
        )
        assert "suggestion only" in (tmp_path / "b4" / "report.html").read_text()
        assert claim in _texts(tmp_path / "b4") and len(srv.requests) == before


def test_a_calibrated_rule_with_no_judge_in_the_spec_does_not_count(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(_spec_dir(tmp_path))  # a judge rule, no judge.model / judge.base_url
    rule = spec.rule(RULE)
    save_calibration(
        default_calibration_path(spec),
        [{"rule": RULE, "rule_sha": rule_hash(spec, rule), "judge": "x", "n": 40, "kappa_ci95": [0.9, 1.0]}],
    )
    gate = open_gate(spec)
    assert gate.counting == [] and gate.judge is None
    assert gate.status[RULE]["why"] == "the spec names no judge (judge.model or judge.base_url) to run it"


def test_eval_counts_a_calibrated_judge_rule_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs.jsonl"
    answer = {"intent": "reset_password", "entities": {}, "missing_info": []}
    steps = ("Your password has been reset.", "Send the reset link.", "Your account has been unlocked.")
    outputs.write_text(
        "".join(
            json.dumps({"prompt": "reset my password", "response": json.dumps({**answer, "next_step": s})})
            + "\n"
            for s in steps
        )
    )
    with _ChatServer() as srv:
        folder = _spec_dir(tmp_path, extra=_judge_yaml(srv.url))
        spec = load_spec(folder)
        plain = evaluate_outputs(spec, outputs)
        assert RULE not in {r["rule"] for r in plain["rules"]} and srv.requests == []
        assert plain["judge_gate"]["rules"][RULE]["status"] == "suggestion"
        _calibrate(folder, _labels(tmp_path, n=40), srv)
        rep = evaluate_outputs(spec, outputs)
    [row] = [r for r in rep["rules"] if r["rule"] == RULE]
    assert (row["pass"], row["fail"], row["category"]) == (1, 2, "safety")
    assert (
        rep["judge_gate"]["rules"][RULE]["status"] == "automatic"
        and rep["judge_gate"]["rules"][RULE]["n"] == 40
    )
    assert [RULE in it["failed"] for it in rep["items"]] == [True, False, True]
    assert rep["items"][0]["failed"][RULE] == "judge: it claims the reset was done."
    # the code checks are the same; only the counting judge rule lowers the pass rate
    assert [r for r in rep["rules"] if r["rule"] != RULE] == plain["rules"]
    assert (plain["overall_pass_rate"], rep["overall_pass_rate"]) == (1.0, pytest.approx(1 / 3))


def test_tiny_local_model_as_a_calibrated_judge_in_a_build(tmp_path, monkeypatch):
    """Mechanics with a real local model: its own verdicts (whatever they are: the random tiny model says PASS to
    nearly everything, so the fail path is the endpoint test's) decide which records fail, and are cached."""
    from tests.tinymodel import build_tiny_model

    monkeypatch.chdir(tmp_path)
    model = build_tiny_model(tmp_path / "tiny")
    folder = _spec_dir(tmp_path, extra=f"\njudge:\n  model: {model}\n")
    spec = load_spec(folder)
    extra = _extra(tmp_path)
    rows = [o for _, o in read_jsonl(extra) if o["category"] == "typical"]
    more = [
        {
            "messages": [
                {"role": "user", "content": f"Question number {i} about my invoice {i * 7}"},
                {"role": "assistant", "content": _answer(f"Forward invoice {i} to the billing team.")},
            ],
            "category": "typical",
        }
        for i in range(6)
    ]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows + more))
    judge = LocalJudge(model)
    rule = spec.rule(RULE)
    expect_fail = {
        r["messages"][-1]["content"]
        for r in rows + more
        if judge.judge(rule, r["messages"][-1]["content"], r["messages"][0]["content"])[0] is False
    }
    save_calibration(
        default_calibration_path(spec),
        [
            {
                "rule": RULE,
                "rule_sha": rule_hash(spec, rule),
                "judge": judge.id,
                "n": 40,
                "kappa_ci95": [0.7, 0.9],
            }
        ],
    )
    res = build(spec, [inputs], tmp_path / "b")
    assert res.manifest["judge"]["judge"] == "local:tiny:logprob:p1"
    assert res.manifest["judge"]["judged"] == len(rows + more)
    assert res.manifest["judge"]["failed"].get(RULE, 0) == len(expect_fail)
    failed = {q["original"]["messages"][-1]["content"] for q in _quarantine(tmp_path / "b")}
    assert failed == expect_fail
    assert _texts(tmp_path / "b") == {r["messages"][-1]["content"] for r in rows + more} - expect_fail

    # a rebuild takes every verdict from the cache (rule hash, response hash, judge id): the model is not asked
    def ask(*a, **k):
        raise AssertionError("the model was asked again")

    monkeypatch.setattr(LocalJudge, "judge", ask)
    again = build(spec, [inputs], tmp_path / "b1")
    assert again.manifest["judge"]["judged"] == len(rows + more)
    # the gate's floor is real: the same calibration with n below min_n does not count
    save_calibration(
        default_calibration_path(spec),
        [
            {
                "rule": RULE,
                "rule_sha": rule_hash(spec, rule),
                "judge": judge.id,
                "n": 29,
                "kappa_ci95": [0.7, 0.9],
            }
        ],
    )
    res = build(spec, [inputs], tmp_path / "b2")
    assert (
        res.manifest["judge"]["rules"][RULE]["status"] == "suggestion"
        and res.manifest["judge"]["judged"] == 0
    )


@pytest.mark.parametrize("lower,automatic", [(0.59, False), (0.6, True)])
def test_the_gate_is_kappa_lower_bound_against_the_spec_gate(tmp_path, monkeypatch, lower, automatic):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(_spec_dir(tmp_path))
    rule = spec.rule(RULE)
    save_calibration(
        default_calibration_path(spec),
        [
            {
                "rule": RULE,
                "rule_sha": rule_hash(spec, rule),
                "judge": "j",
                "n": 30,
                "kappa_ci95": [lower, 0.9],
            }
        ],
    )
    from curate.judge.calibrate import gate_status

    assert gate_status(spec, judge_id="j")[RULE]["automatic"] is automatic


def test_local_judge_scores_the_prompt_once_and_equals_the_full_sequence_score(tmp_path):
    """LocalJudge runs the prompt once and each answer's later tokens on a copy of the cache (half the work of
    two full passes); the probability equals the one two full passes give."""
    import math

    import torch

    from tests.tinymodel import build_tiny_model

    spec = load_spec(_spec_dir(tmp_path))
    rule = spec.rule(RULE)
    judge = LocalJudge(build_tiny_model(tmp_path / "tiny", seed=3))
    assert max(len(a) for a in judge._answers) > 1  # the cached path is exercised
    for response in (_answer("Send the reset link."), _answer("Your access has been reset already.")):
        from curate.judge.core import judge_prompt

        text = judge.tokenizer.apply_chat_template(
            judge_prompt(rule, response, "reset please"), tokenize=False, add_generation_prompt=True
        )
        prompt = judge.tokenizer(text, add_special_tokens=False)["input_ids"]
        full = []
        with torch.no_grad():
            for answer in judge._answers:
                logits = judge.model(input_ids=torch.tensor([prompt + answer])).logits[
                    0, len(prompt) - 1 : -1
                ]
                logp = torch.log_softmax(logits.float(), dim=-1)
                full.append(float(sum(logp[i, t] for i, t in enumerate(answer))))
        p_full = 1.0 / (1.0 + math.exp(full[1] - full[0]))
        passed, reason = judge.judge(rule, response, "reset please")
        assert reason == f"p(PASS)={p_full:.2f}" and passed == (p_full >= 0.5)
