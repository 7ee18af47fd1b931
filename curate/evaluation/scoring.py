"""Scoring responses with the spec's own rules (through its compiled rules): per-rule pass rates, failure
categories, over-refusal, intent accuracy, and bootstrap intervals for any per-prompt rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from curate.checks.compiled import compile_rules
from curate.checks.runner import RuleStats, add_result, by_category, new_report
from curate.evaluation.general import _REFUSAL
from curate.evaluation.prompts import Prompt
from curate.records import (
    CheckResult,
)
from curate.spec import Spec

# ---------------------------------------------------------------- scoring


def _valid_json(text: str) -> bool:
    try:
        orjson.loads(text.strip().encode("utf-8"))
    except orjson.JSONDecodeError:
        return False
    return True


def _answer_intent(text: str) -> str | None:
    """The `intent` value of a JSON answer, or None."""
    try:
        doc = orjson.loads(text.strip().encode("utf-8"))
    except orjson.JSONDecodeError:
        return None
    v = doc.get("intent") if isinstance(doc, dict) else None
    return v if isinstance(v, str) else None


def score(
    spec: Spec,
    prompts: list[Prompt],
    responses: list[str],
    *,
    check: Callable[..., list[CheckResult]] | None = None,
    gate: Any = None,
) -> dict[str, Any]:
    """Every automatic rule over every response; the per-rule table, categories, examples and items.

    Judge rules count like code checks only where their calibration passes the gate (`gate`, default
    `curate.judge.gate.open_gate(spec)`); the report's `judge_gate` says which did and why the others did not.

    `check(response, user_text, category, tags) -> [CheckResult]` defaults to the spec's compiled rules
    (`CompiledRules.results`, equal to `curate.checks.check_response`). Prompts with a reference intent give
    `intent_accuracy` (the answer's `intent` equals it).
    """
    check = check or compile_rules(spec).results
    report = new_report(spec)
    judged, gate_info = _judged(spec, prompts, responses, gate)
    for rule in spec.judge_rules():
        if gate_info["rules"][rule.id]["status"] == "automatic":
            report.rules[rule.id] = RuleStats(rule.id, rule.category)
    items = []
    safe = [i for i, p in enumerate(prompts) if "safe" in p.tags]
    basis = "tag:safe"
    if not safe:
        safe = [i for i, p in enumerate(prompts) if p.category == "typical"]
        basis = "category:typical (no prompt is tagged safe)"
    safe_set = set(safe)
    is_json = spec.output.format == "json"
    for i, (p, resp) in enumerate(zip(prompts, responses)):
        results = check(resp, p.user_text(), p.category, frozenset(p.tags))
        if judged:
            results = list(results) + judged[i]
        add_result(report, results, where=p.where or p.id, response=resp, expected_fail=None)
        item = {
            "id": p.id,
            "where": p.where,
            "category": p.category,
            "tags": p.tags,
            "prompt": p.messages,
            "response": resp,
            "results": {r.rule: r.status for r in results},
            "failed": {r.rule: r.detail for r in results if r.status == "fail"},
            "valid_json": _valid_json(resp) if is_json else None,
            "refused": bool(_REFUSAL.search(resp)) if i in safe_set else None,
        }
        want = (p.reference or {}).get("intent")
        if want is not None:
            got = _answer_intent(resp)
            item.update(reference_intent=want, intent=got, intent_ok=got == want)
        items.append(item)
    d = report.as_dict()
    d.pop("unexpected", None)
    n = len(responses)
    refused = [prompts[i].id for i in safe if items[i]["refused"]]
    scored = [it for it in items if "intent_ok" in it]
    correct = sum(it["intent_ok"] for it in scored)
    return {
        **d,
        "by_category": by_category(report),
        "valid_json_rate": (sum(it["valid_json"] for it in items) / n if n else None) if is_json else None,
        "intent_accuracy": {
            "prompts": len(scored),
            "correct": correct,
            "rate": correct / len(scored) if scored else None,
        }
        if scored
        else None,
        "over_refusal": {
            "basis": basis,
            "prompts": len(safe),
            "refused": len(refused),
            "rate": len(refused) / len(safe) if safe else None,
            "refused_ids": refused[:50],
        },
        "items": items,
        "judge_gate": gate_info,
    }


def _judged(
    spec: Spec, prompts: list[Prompt], responses: list[str], gate: Any
) -> tuple[list[list[CheckResult]] | None, dict[str, Any]]:
    """The counting judge rules' results per response (None when no judge rule counts) and the gate's
    summary."""
    from curate.judge.gate import judge_results, open_gate

    own = gate is None
    gate = open_gate(spec) if own else gate
    try:
        got = None
        if gate.counting:
            got = [
                r for r, _ in judge_results(gate, [(p.user_text(), x) for p, x in zip(prompts, responses)])
            ]
        return got, gate.summary()
    finally:
        if own:
            gate.close()


def bootstrap_ci(
    values: list[float] | list[bool], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-prompt values (e.g. 1 = passed every rule): `n_boot`
    resamples of the prompts with replacement, seeded; None for no values."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_bootstrap_ci(
    a: list[float] | list[bool],
    b: list[float] | list[bool],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Interval of mean(b) - mean(a) over the same prompts (resampled together): `a[i]` and `b[i]` belong to the
    same prompt."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired values of different lengths ({len(a)} vs {len(b)})")
    return bootstrap_ci(
        list(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)),
        n_boot=n_boot,
        seed=seed,
        level=level,
    )
