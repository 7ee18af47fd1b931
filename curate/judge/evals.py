"""Judge rules in eval results: run the spec's judge rules over a `curate eval --json-out` report's responses
and add, per rule, its pass rate and whether it counts (its calibration passes the gate) or is a suggestion.

    report["judge"] = {"judge": "<judge id>", "rules": [{"rule", "rule_sha", "status": automatic | suggestion,
                       "why", "pass", "fail", "skip", "pass_rate"}]}
    report["items"][i]["judge"] = {rule id: pass | fail | skip}

Only automatic judge rules belong with the code checks' figures; suggestions are shown apart, never folded
into `overall_pass_rate` (which the eval computes from the code checks alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from curate.errors import EvalError
from curate.judge.calibrate import gate_status
from curate.judge.core import Judge, JudgeCache, run_judge
from curate.records import write_atomic
from curate.spec import Spec
from curate.versioning import rule_hash


def _user_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(
            str(m.get("content", "")) for m in prompt if isinstance(m, dict) and m.get("role") == "user"
        )
    return ""


def judge_eval_report(
    spec: Spec,
    path: str | Path,
    judge: Judge,
    *,
    cache: JudgeCache | None = None,
    calibration: str | Path | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """The report at `path` with its judge section (written back atomically when `write`)."""
    path = Path(path)
    try:
        report = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as err:
        raise EvalError(f"{path}: not a readable eval report ({err})") from None
    if report.get("kind") != "curate-eval" or not isinstance(report.get("items"), list):
        raise EvalError(f"{path}: not a `curate eval --json-out` report (kind curate-eval with items)")
    rules = spec.judge_rules()
    items = report["items"]
    pairs = [(_user_text(it.get("prompt")), str(it.get("response", ""))) for it in items]
    verdicts = run_judge(spec, judge, pairs, rules=rules, cache=cache)
    gate = gate_status(spec, calibration, judge_id=judge.id)
    summary = []
    for k, rule in enumerate(rules):
        got = [row[k].status for row in verdicts]
        n_pass, n_fail = got.count("pass"), got.count("fail")
        summary.append(
            {
                "rule": rule.id,
                "rule_sha": rule_hash(spec, rule),
                "category": rule.category,
                "status": "automatic" if gate[rule.id]["automatic"] else "suggestion",
                "why": gate[rule.id]["why"],
                "pass": n_pass,
                "fail": n_fail,
                "skip": got.count("skip"),
                "pass_rate": n_pass / (n_pass + n_fail) if n_pass + n_fail else None,
            }
        )
    for it, row in zip(items, verdicts, strict=True):
        it["judge"] = {v.rule: v.status for v in row}
    report["judge"] = {"judge": judge.id, "rules": summary}
    if write:
        write_atomic(path, orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


__all__ = ["judge_eval_report"]
