"""Judge rules: the spec kind, the endpoint client against a local chat-completions server, the tiny local
model, the verdict cache, Cohen's kappa with its bootstrap interval, calibration and the gate."""

from __future__ import annotations

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.checks import check_response
from curate.cli import main
from curate.judge.calibrate import bootstrap_ci, calibrate_rule, cohen_kappa, gate_status, human_items
from curate.judge.core import EndpointJudge, JudgeCache, JudgeError, LocalJudge, parse_verdict, run_judge
from curate.records import read_jsonl
from curate.spec import load_spec
from curate.versioning import rule_hash

REPO = Path(__file__).resolve().parents[1]
JUDGE_RULE = """
  - id: no-claims-judged
    says: next_step never claims that an action was already done.
    check:
      kind: judge
      rubric: FAIL when next_step says something was already reset, cancelled, refunded or changed.
      pass_examples: ["Send the customer the reset link."]
      fail_examples: ["I have reset your password."]
    category: safety
"""
CLAIM = re.compile(r"(?i)\b(?:I|we)(?:'ve| have)? (?:already )?(?:reset|cancel+ed|refunded|changed)\b")


def _spec_dir(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "spec"
    shutil.copytree(REPO / "specs" / "support-triage", folder)
    text = (folder / "spec.yaml").read_text()
    marker = "  # --- judged by people only"
    (folder / "spec.yaml").write_text(text.replace(marker, JUDGE_RULE.strip("\n") + "\n\n" + marker) + extra)
    return folder


def _labels(tmp_path: Path, n: int = 40, flip: int = 0) -> Path:
    """n reviewed records of the bundled data, half of them given a next_step that claims a reset (the human
    label: violates no-claims-judged); the first `flip` human labels are wrong on purpose."""
    rows = [
        o
        for _, o in read_jsonl(REPO / "specs" / "support-triage" / "data.jsonl")
        if "messages" in o and not o.get("violates")
    ][:n]
    out = []
    for i, row in enumerate(rows):
        answer = json.loads(row["messages"][-1]["content"])
        claims = i % 2 == 0
        if claims:
            answer["next_step"] = f"I have already reset it for you (ticket {i})."
        msgs = row["messages"][:-1] + [{"role": "assistant", "content": json.dumps(answer)}]
        says_fail = claims != (i < flip)
        out.append(
            {
                "messages": msgs,
                "category": "negative" if says_fail else row.get("category", "typical"),
                "violates": ["no-claims-judged"] if says_fail else [],
                "labels": {"reviewed": True, "kind": "review"},
            }
        )
    path = tmp_path / "pulled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


class _ChatServer:
    """A chat-completions server on 127.0.0.1: FAIL when the graded response claims a finished action."""

    def __init__(self, key: str | None = None, reply: str | None = None) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
                    self.send_response(401)
                    self.end_headers()
                    return
                graded = body["messages"][-1]["content"].split("The response to grade:\n", 1)[1]
                text = reply or (
                    "FAIL: it claims the reset was done."
                    if CLAIM.search(graded)
                    else "PASS - no claim of a finished action."
                )
                doc = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                }
                data = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_judge_rule_loads_is_not_automatic_and_checks_skip_it(tmp_path):
    spec = load_spec(_spec_dir(tmp_path))
    rule = spec.rule("no-claims-judged")
    assert rule.judge and not rule.automatic and spec.judge_rules() == [rule]
    assert rule not in spec.automatic_rules()
    assert (spec.judge.gate, spec.judge.min_n) == (0.6, 30)
    [res] = check_response(spec, "I have reset it.", rules=[rule])
    assert res.status == "skip" and "curate judge" in res.detail
    bad = _spec_dir(tmp_path / "b")
    (bad / "spec.yaml").write_text(
        (bad / "spec.yaml").read_text().replace("      rubric: FAIL", "      rubrik: FAIL")
    )
    with pytest.raises(Exception, match=r'unknown key "rubrik"; did you mean "rubric"'):
        load_spec(bad)


@pytest.mark.parametrize(
    "text,passed",
    [
        ("PASS", True),
        ("fail: claims a refund", False),
        ("Verdict: PASSES. fine", True),
        ("FAILED", False),
        ("I think it is good", None),
        ("", None),
    ],
)
def test_parse_verdict(text, passed):
    got, reason = parse_verdict(text)
    assert got is passed
    if passed is False and ":" in text:
        assert reason == "claims a refund"


def test_cohen_kappa_and_bootstrap_interval():
    # 50 items: 20 both pass, 5 human pass / judge fail, 10 human fail / judge pass, 15 both fail
    human = [True] * 25 + [False] * 25
    judge = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    po, pe = 35 / 50, 0.5 * 0.6 + 0.5 * 0.4
    assert cohen_kappa(human, judge) == pytest.approx((po - pe) / (1 - pe)) == pytest.approx(0.4)
    lo, hi = bootstrap_ci(human, judge)
    assert lo < 0.4 < hi and 0.1 < lo and hi < 0.7
    assert bootstrap_ci(human, judge) == (lo, hi)  # seeded: the same interval every time
    assert cohen_kappa([True] * 5, [True] * 5) is None and bootstrap_ci([True] * 5, [True] * 5) is None
    assert cohen_kappa([], []) is None


def test_endpoint_judge_key_from_env_and_cache(tmp_path, monkeypatch):
    spec = load_spec(_spec_dir(tmp_path))
    rule = spec.rule("no-claims-judged")
    monkeypatch.setenv("CURATE_TEST_JUDGE_KEY", "sk-local-test")
    with _ChatServer(key="sk-local-test") as srv:
        judge = EndpointJudge(srv.url, "grader-1", api_key_env="CURATE_TEST_JUDGE_KEY")
        items = [("reset please", '{"next_step": "I have reset it."}'), ("hi", '{"next_step": "Say hello."}')]
        with JudgeCache(tmp_path / "cache.sqlite") as cache:
            first = run_judge(spec, judge, items, cache=cache)
            assert [v[0].status for v in first] == ["fail", "pass"]
            assert first[0][0].reason == "it claims the reset was done." and not first[0][0].cached
            again = run_judge(spec, judge, items, cache=cache)
        assert [v[0].cached for v in again] == [True, True] and len(srv.requests) == 2
        assert [v[0].status for v in again] == ["fail", "pass"]
        body = srv.requests[0]
        assert body["model"] == "grader-1" and body["temperature"] == 0
        assert "Rule: next_step never claims" in body["messages"][-1]["content"]
        assert srv.headers[0]["Authorization"] == "Bearer sk-local-test"
        # the cache key holds the rule hash: a new wording asks again
        reworded = rule.model_copy(update={"says": "next_step claims nothing was done."})
        assert rule_hash(spec, reworded) != rule_hash(spec, rule)
        monkeypatch.delenv("CURATE_TEST_JUDGE_KEY")
        with pytest.raises(JudgeError, match=r"HTTP 401 \(is CURATE_TEST_JUDGE_KEY set\?\)"):
            judge.judge(rule, "x")
    with pytest.raises(JudgeError, match="not reachable"):
        EndpointJudge(srv.url, "m", timeout=2).judge(rule, "x")
    with pytest.raises(JudgeError, match="not an http"):
        EndpointJudge("file:///etc/passwd", "m")


def test_tiny_local_model_judges_deterministically(tmp_path):
    from tests.tinymodel import build_tiny_model

    spec = load_spec(_spec_dir(tmp_path))
    rule = spec.rule("no-claims-judged")
    model = build_tiny_model(tmp_path / "tiny")
    judge = LocalJudge(model)
    assert judge.id == "local:tiny:logprob:p1"
    a = judge.judge(rule, '{"next_step": "I have reset it."}', "reset please")
    b = judge.judge(rule, '{"next_step": "I have reset it."}', "reset please")
    assert a == b and isinstance(a[0], bool) and re.fullmatch(r"p\(PASS\)=[01]\.\d\d", a[1])
    p = float(a[1].split("=")[1])
    assert a[0] == (p >= 0.5)
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        [[v]] = run_judge(spec, judge, [("reset please", '{"next_step": "I have reset it."}')], cache=cache)
        assert (v.passed, v.reason, v.judge) == (a[0], a[1], judge.id)
    with pytest.raises(JudgeError, match="does not exist"):
        LocalJudge(tmp_path / "missing")


def test_human_items_from_pulled_records(tmp_path):
    spec = load_spec(_spec_dir(tmp_path))
    items = human_items([_labels(tmp_path, n=10)], spec.rule("no-claims-judged"))
    assert len(items) == 10 and [it["human_pass"] for it in items] == [i % 2 == 1 for i in range(10)]
    assert items[0]["where"].endswith("pulled.jsonl:1")
    unreviewed = tmp_path / "raw.jsonl"
    unreviewed.write_text(
        "".join(
            json.dumps({k: v for k, v in json.loads(ln).items() if k != "labels"}) + "\n"
            for ln in (tmp_path / "pulled.jsonl").read_text().splitlines()
        )
    )
    rule = spec.rule("no-claims-judged")
    assert human_items([unreviewed], rule) == []
    assert len(human_items([unreviewed], rule, reviewed_only=False)) == 10


def test_calibration_gate_confusion_and_disagreements(tmp_path):
    spec = load_spec(_spec_dir(tmp_path))
    rule = spec.rule("no-claims-judged")
    with _ChatServer() as srv:
        judge = EndpointJudge(srv.url, "grader-1")
        good = calibrate_rule(spec, rule, judge, human_items([_labels(tmp_path, n=40)], rule))
        assert (good["n"], good["agreement"], good["kappa"]) == (40, 1.0, 1.0)
        assert good["kappa_ci95"] == [1.0, 1.0] and good["automatic"] and good["status"] == "automatic"
        assert good["confusion"] == {
            "human_pass_judge_pass": 20,
            "human_pass_judge_fail": 0,
            "human_fail_judge_pass": 0,
            "human_fail_judge_fail": 20,
            "no_verdict": 0,
        }
        noisy = calibrate_rule(spec, rule, judge, human_items([_labels(tmp_path, n=40, flip=6)], rule))
        assert noisy["agreement"] == pytest.approx(34 / 40) and len(noisy["disagreements"]) == 6
        assert (
            noisy["confusion"]["human_fail_judge_pass"] == 3
            and noisy["confusion"]["human_pass_judge_fail"] == 3
        )
        assert (
            noisy["kappa"] == pytest.approx(0.7) and noisy["kappa_ci95"][0] < 0.6 and not noisy["automatic"]
        )
        assert noisy["why_not"].startswith("kappa 95% lower bound")
        small = calibrate_rule(spec, rule, judge, human_items([_labels(tmp_path, n=20)], rule))
        assert small["kappa"] == 1.0 and not small["automatic"] and small["why_not"] == "n=20 < 30"
        mute = _ChatServer(reply="I cannot tell.")
        with mute:
            none = calibrate_rule(
                spec, rule, EndpointJudge(mute.url, "m"), human_items([_labels(tmp_path, n=40)], rule)
            )
        assert none["confusion"]["no_verdict"] == 40 and none["agreement"] == 0.0 and not none["automatic"]


def test_calibrate_cli_writes_the_gate_and_a_rule_change_voids_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = _spec_dir(tmp_path)
    labels = _labels(tmp_path, n=40)
    runner = CliRunner()
    with _ChatServer() as srv:
        r = runner.invoke(
            main,
            [
                "judge",
                "calibrate",
                str(folder),
                "--labels",
                str(labels),
                "--base-url",
                srv.url,
                "--judge-model",
                "grader-1",
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        [cal] = doc["rules"]
        assert (cal["rule"], cal["n"], cal["status"]) == ("no-claims-judged", 40, "automatic")
        calib = tmp_path / ".curate" / "judge" / "support-triage" / "calibration.json"
        assert json.loads(calib.read_text())["rules"]["no-claims-judged"]["kappa"] == 1.0
        r = runner.invoke(main, ["judge", "status", str(folder), "--json"])
        assert json.loads(r.stdout)["rules"]["no-claims-judged"]["automatic"] is True
        outputs = tmp_path / "out.jsonl"
        outputs.write_text(
            json.dumps({"prompt": "reset", "response": '{"next_step": "We refunded it."}'}) + "\n"
        )
        r = runner.invoke(
            main,
            [
                "judge",
                "run",
                str(folder),
                str(outputs),
                "--base-url",
                srv.url,
                "--judge-model",
                "grader-1",
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
        [item] = json.loads(r.stdout)["items"]
        assert item["verdicts"][0]["status"] == "fail" and item["verdicts"][0]["counts"] is True
    text = (
        (folder / "spec.yaml")
        .read_text()
        .replace("that an action was already done", "that anything was done")
    )
    (folder / "spec.yaml").write_text(text)
    spec = load_spec(folder)
    st = gate_status(spec)["no-claims-judged"]
    assert not st["automatic"] and st["why"] == "calibrated under another rule hash (the rule changed)"
    r = runner.invoke(
        main, ["judge", "calibrate", str(REPO / "specs" / "support-triage"), "--labels", str(labels)]
    )
    assert r.exit_code == 1 and r.stderr.startswith("error: support-triage@1 has no judge rule")
    r = runner.invoke(main, ["judge", "calibrate", str(folder), "--labels", str(labels)])
    assert r.exit_code == 1 and "names no judge" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_judge_eval_adds_judge_rules_to_an_eval_report(tmp_path, monkeypatch):
    from curate.evaluate import evaluate_outputs, write_report

    monkeypatch.chdir(tmp_path)
    folder = _spec_dir(tmp_path)
    spec = load_spec(folder)
    outputs = tmp_path / "outputs.jsonl"
    answer = {"intent": "reset_password", "entities": {}, "missing_info": []}
    rows = [
        {"prompt": "reset my password", "response": json.dumps({**answer, "next_step": step})}
        for step in ("I have reset it.", "Send the reset link.", "We have refunded you.")
    ]
    outputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tmp_path / "eval.json"
    write_report(evaluate_outputs(spec, outputs), report)
    before = json.loads(report.read_text())
    assert "no-claims-judged" not in {r["rule"] for r in before["rules"]}  # code checks only
    with _ChatServer() as srv:
        r = CliRunner().invoke(
            main,
            [
                "judge",
                "eval",
                str(folder),
                str(report),
                "--base-url",
                srv.url,
                "--judge-model",
                "grader-1",
                "--json",
            ],
        )
    assert r.exit_code == 0, r.output
    after = json.loads(report.read_text())
    [j] = after["judge"]["rules"]
    assert (j["rule"], j["pass"], j["fail"], j["skip"]) == ("no-claims-judged", 1, 2, 0)
    assert j["status"] == "suggestion"
    assert j["why"] == "not calibrated" and j["rule_sha"] == rule_hash(spec, spec.rule("no-claims-judged"))
    assert [it["judge"]["no-claims-judged"] for it in after["items"]] == ["fail", "pass", "fail"]
    assert after["overall_pass_rate"] == before["overall_pass_rate"] and after["rules"] == before["rules"]
    bad = tmp_path / "not-eval.json"
    bad.write_text("{}")
    r = CliRunner().invoke(
        main,
        ["judge", "eval", str(folder), str(bad), "--base-url", "http://127.0.0.1:9/v1", "--judge-model", "m"],
    )
    assert r.exit_code == 1 and "not a `curate eval --json-out` report" in r.stderr
