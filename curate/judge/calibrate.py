"""Calibrate judge rules against human per-rule labels: n, agreement, Cohen's kappa with a bootstrap 95%
interval, the confusion matrix and the disagreeing examples; the gate decides whether a judge rule counts as
automatic.

    >>> from curate.judge.calibrate import cohen_kappa
    >>> cohen_kappa([True, True, False, False], [True, True, False, False])
    1.0
    >>> round(cohen_kappa([True, False, True, False], [True, True, False, False]), 3)
    0.0

Human labels come from pulled Label Studio records (`curate label pull`): a reviewed response fails a judge
rule when the labeler ticked it (the record's `violates`: a rejected response, or the original side of an
edit, which a pull writes as the rejected side of a pair) and passes it otherwise. An item the judge gives no
verdict on counts against the judge (as the opposite of the human label), so an unparseable judge cannot pass
the gate.

The gate (docs/contracts.md, "Calibration gate"): a judge rule is automatic only while its calibration was
made for the rule's current hash and the same judge, has n >= spec.judge.min_n (30) and the lower bound of
kappa's 95% interval >= spec.judge.gate (0.6). Otherwise its verdicts are suggestions shown to labelers.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from curate.judge.core import Judge, JudgeCache, run_judge
from curate.records import LineError, PreferenceRecord, read_jsonl, record_from_native, write_atomic
from curate.spec import Rule, Spec
from curate.versioning import rule_hash

BOOTSTRAP = 1000
SEED = 13


def cohen_kappa(human: list[bool], judge: list[bool]) -> float | None:
    """Cohen's kappa of two binary raters; None when undefined (chance agreement is 1: one class only)."""
    n = len(human)
    if n == 0:
        return None
    po = sum(h == j for h, j in zip(human, judge, strict=True)) / n
    ph, pj = sum(human) / n, sum(judge) / n
    pe = ph * pj + (1 - ph) * (1 - pj)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def bootstrap_ci(
    human: list[bool], judge: list[bool], *, n_boot: int = BOOTSTRAP, seed: int = SEED
) -> tuple[float, float] | None:
    """Percentile 95% interval of kappa over `n_boot` resamples of the items (undefined resamples count as
    0)."""
    n = len(human)
    if n == 0 or cohen_kappa(human, judge) is None:
        return None
    rng = random.Random(seed)
    stats = []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        k = cohen_kappa([human[i] for i in idx], [judge[i] for i in idx])
        stats.append(0.0 if k is None else k)
    stats.sort()
    return stats[int(0.025 * (n_boot - 1))], stats[int(0.975 * (n_boot - 1))]


def human_items(
    paths: Iterable[str | Path], rule: Rule, *, reviewed_only: bool = True
) -> list[dict[str, Any]]:
    """(user text, response, human says pass?) for `rule` from labeled records, one per distinct response."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for line, obj in read_jsonl(path):
            if isinstance(obj, LineError):
                continue
            try:
                rec = record_from_native({k: v for k, v in obj.items() if k not in ("id", "kind")})
            except (ValueError, TypeError):
                continue
            if reviewed_only and not rec.is_human_reviewed:
                continue
            if isinstance(rec, PreferenceRecord):
                if not rec.violates:
                    continue  # a pair with no ticked rule says nothing per rule
                response = rec.rejected_text()
            else:
                response = rec.response_text()
            if not response:
                continue
            key = (rec.user_text(), response)
            out.setdefault(
                key,
                {
                    "user": key[0],
                    "response": response,
                    "human_pass": rule.id not in rec.violates,
                    "where": f"{path}:{line}",
                    "id": rec.id,
                },
            )
    return list(out.values())


def calibrate_rule(
    spec: Spec,
    rule: Rule,
    judge: Judge,
    items: list[dict[str, Any]],
    *,
    cache: JudgeCache | None = None,
    max_examples: int = 20,
) -> dict[str, Any]:
    """The calibration of one judge rule on human-labeled items, with the gate's decision."""
    verdicts = run_judge(
        spec, judge, [(it["user"], it["response"]) for it in items], rules=[rule], cache=cache
    )
    human, said, disagree = [], [], []
    confusion = {
        "human_pass_judge_pass": 0,
        "human_pass_judge_fail": 0,
        "human_fail_judge_pass": 0,
        "human_fail_judge_fail": 0,
        "no_verdict": 0,
    }
    for it, [v] in zip(items, verdicts, strict=True):
        h = bool(it["human_pass"])
        j = (not h) if v.passed is None else v.passed  # no verdict counts against the judge
        if v.passed is None:
            confusion["no_verdict"] += 1
        confusion[f"human_{'pass' if h else 'fail'}_judge_{'pass' if j else 'fail'}"] += 1
        human.append(h)
        said.append(j)
        if h != j and len(disagree) < max_examples:
            disagree.append(
                {
                    "where": it["where"],
                    "id": it["id"],
                    "human": "pass" if h else "fail",
                    "judge": v.status,
                    "reason": v.reason,
                    "response": it["response"][:300],
                }
            )
    n = len(items)
    kappa = cohen_kappa(human, said)
    ci = bootstrap_ci(human, said)
    gate, min_n = spec.judge.gate, spec.judge.min_n
    why = []
    if n < min_n:
        why.append(f"n={n} < {min_n}")
    if ci is None:
        why.append("kappa undefined (every label is the same)")
    elif ci[0] < gate:
        why.append(f"kappa 95% lower bound {ci[0]:.2f} < gate {gate:.2f}")
    return {
        "rule": rule.id,
        "rule_sha": rule_hash(spec, rule),
        "judge": judge.id,
        "n": n,
        "agreement": round(sum(h == j for h, j in zip(human, said, strict=True)) / n, 4) if n else None,
        "kappa": None if kappa is None else round(kappa, 4),
        "kappa_ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
        "confusion": confusion,
        "gate": gate,
        "min_n": min_n,
        "automatic": not why,
        "status": "automatic" if not why else "suggestion",
        "why_not": "; ".join(why),
        "disagreements": disagree,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def default_calibration_path(spec: Spec) -> Path:
    return Path(".curate") / "judge" / spec.name / "calibration.json"


def save_calibration(path: str | Path, results: list[dict[str, Any]]) -> None:
    """Merge `results` into the calibration file (one entry per rule id, the newest wins), atomically."""
    path = Path(path)
    doc: dict[str, Any] = {"kind": "curate-judge-calibration", "rules": {}}
    if path.exists():
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            pass
    for r in results:
        doc.setdefault("rules", {})[r["rule"]] = r
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def gate_status(
    spec: Spec, path: str | Path | None = None, *, judge_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """{judge rule id: {"automatic": bool, "why": str, "calibration": {...} | None}} for the current rule
    hashes."""
    path = Path(path) if path is not None else default_calibration_path(spec)
    doc = orjson.loads(path.read_bytes()) if path.exists() else {"rules": {}}
    out = {}
    for rule in spec.judge_rules():
        cal = doc.get("rules", {}).get(rule.id)
        if cal is None:
            out[rule.id] = {"automatic": False, "why": "not calibrated", "calibration": None}
        elif cal.get("rule_sha") != rule_hash(spec, rule):
            out[rule.id] = {
                "automatic": False,
                "why": "calibrated under another rule hash (the rule changed)",
                "calibration": cal,
            }
        elif judge_id is not None and cal.get("judge") != judge_id:
            out[rule.id] = {
                "automatic": False,
                "why": f"calibrated for judge {cal.get('judge')}, not {judge_id}",
                "calibration": cal,
            }
        else:
            ok = (
                cal.get("n", 0) >= spec.judge.min_n
                and cal.get("kappa_ci95") is not None
                and cal["kappa_ci95"][0] >= spec.judge.gate
            )
            out[rule.id] = {
                "automatic": ok,
                "why": "" if ok else (cal.get("why_not") or "below the gate"),
                "calibration": cal,
            }
    return out


def gated_rules(spec: Spec, path: str | Path | None = None, *, judge_id: str | None = None) -> list[Rule]:
    """The judge rules that count as automatic now (their calibration passes the gate)."""
    status = gate_status(spec, path, judge_id=judge_id)
    return [r for r in spec.judge_rules() if status[r.id]["automatic"]]


__all__ = [
    "bootstrap_ci",
    "calibrate_rule",
    "cohen_kappa",
    "default_calibration_path",
    "gate_status",
    "gated_rules",
    "human_items",
    "save_calibration",
]
