"""The calibration gate, applied: which judge rules count in a build, an eval and a push, and their verdicts.

    >>> from curate.spec import load_spec
    >>> from curate.judge.gate import open_gate
    >>> gate = open_gate(load_spec("specs/support-triage"))   # no judge rule: nothing runs, nothing counts
    >>> gate.counting, gate.suggesting, gate.judge is None
    ([], [], True)

`open_gate` is the one place that decides, for build (`curate.steps.pipeline`), eval (`curate.evaluate.score`)
and pre-annotation (`curate.labeling.push`), whether a judge rule counts: `curate.judge.calibrate.gate_status`
for the current rule hashes and the judge that would run (its id must be the calibrated one). A counting rule's
fail is a failing automatic rule; every other judge rule is at most a suggestion (shown to labelers, marked as
such), never a reason to set a record aside. The judge is the spec's (`judge.model` or `judge.base_url`); it is
loaded only when a rule counts, or for suggestions when the caller asks for them and the spec names a judge.
Verdicts are cached by (rule hash, response hash, judge id) in `.curate/judge/NAME/cache.sqlite`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.judge.calibrate import gate_status
from curate.judge.core import Judge, JudgeCache, Verdict, default_cache_path, make_judge, run_judge
from curate.spec import Rule, Spec

log = logging.getLogger(__name__)
STEP = "validate"  # a counting judge rule's fail is a validate failure, like a code check's


@dataclass
class Gate:
    """The judge rules of a spec split into those that count and those that are suggestions, with the judge."""

    spec: Spec
    status: dict[str, dict[str, Any]]
    judge: Judge | None = None
    cache: JudgeCache | None = None
    suggest: bool = False  # run suggestion rules too (pre-annotation)
    judged: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def counting(self) -> list[Rule]:
        """Judge rules whose calibration passes the gate for the current rule hash and this judge."""
        return [r for r in self.spec.judge_rules() if self.status[r.id]["automatic"]]

    @property
    def counting_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.counting)

    @property
    def suggesting(self) -> list[Rule]:
        """Judge rules run as suggestions only (when asked for and a judge is there)."""
        if not self.suggest or self.judge is None:
            return []
        return [r for r in self.spec.judge_rules() if not self.status[r.id]["automatic"]]

    def verdicts(self, items: Sequence[tuple[str, str]]) -> list[dict[str, Verdict]]:
        """{rule id: Verdict} per (user text, response), for the counting and suggestion rules (cached)."""
        rules = self.counting + self.suggesting
        if not rules or self.judge is None or not items:
            return [{} for _ in items]
        rows = run_judge(self.spec, self.judge, items, rules=rules, cache=self.cache)
        self.judged += len(items)
        out = []
        for row in rows:
            got = {v.rule: v for v in row}
            for v in row:
                if v.passed is False and self.status[v.rule]["automatic"]:
                    self.failed[v.rule] = self.failed.get(v.rule, 0) + 1
            out.append(got)
        return out

    def summary(self) -> dict[str, Any]:
        """What the manifest / an eval report says about the judge rules (empty rules: the spec has none): per rule
        its status, why, and its calibration's n, kappa and kappa_ci95 (None when not calibrated)."""
        return {
            "judge": self.judge.id if self.judge is not None else None,
            "rules": {
                rid: {
                    "status": "automatic" if st["automatic"] else "suggestion",
                    "why": st["why"],
                    **{k: (st["calibration"] or {}).get(k) for k in ("n", "kappa", "kappa_ci95")},
                }
                for rid, st in self.status.items()
            },
            "judged": self.judged,
            "failed": dict(sorted(self.failed.items())),
        }

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None


def _names_judge(spec: Spec) -> bool:
    return bool(spec.judge.model or spec.judge.base_url)


def open_gate(
    spec: Spec,
    *,
    calibration: str | Path | None = None,
    judge: Judge | None = None,
    cache: str | Path | JudgeCache | None = None,
    suggestions: bool = False,
    make: Callable[..., Judge] = make_judge,
) -> Gate:
    """The gate for `spec`: its judge rules' status under their calibration (default
    `.curate/judge/NAME/calibration.json`) and the judge that runs them.

    Without `judge`, the spec's judge is made when a rule's calibration passes the gate (then the gate is asked
    again with that judge's id: a calibration made for another judge does not count) or, with `suggestions`, when
    the spec names one. A calibrated rule the spec names no judge for is a suggestion ("the spec names no
    judge ...")."""
    rules = spec.judge_rules()
    if not rules:
        return Gate(spec, {})
    status = gate_status(spec, calibration, judge_id=judge.id if judge is not None else None)
    wanted = any(st["automatic"] for st in status.values()) or suggestions
    if judge is None and wanted:
        if _names_judge(spec):
            judge = make(spec)
            status = gate_status(spec, calibration, judge_id=judge.id)
        else:
            for st in status.values():
                if st["automatic"]:
                    st["automatic"] = False
                    st["why"] = "the spec names no judge (judge.model or judge.base_url) to run it"
    opened = None
    if judge is not None and wanted:
        opened = cache if isinstance(cache, JudgeCache) else JudgeCache(cache or default_cache_path(spec))
    for rid, st in status.items():
        log.info("judge rule %s: %s", rid, "counts" if st["automatic"] else f"suggestion ({st['why']})")
    return Gate(spec, status, judge, opened, suggest=suggestions)


# ---------------------------------------------------------------- build


def judge_build_rows(
    rows: list[Any],
    gate: Gate,
    ctx: Any,
    *,
    response: Callable[[Any], str],
    user: Callable[[Any], str],
    record: Callable[[Any], Any],
    code_failed: Callable[[Any], set[str]],
) -> list[Any]:
    """The validated build rows that also pass the counting judge rules; the others go to quarantine.

    A normal record (or a pair's chosen side) failing a counting judge rule: `rule_failed`, as a code check's
    fail. A negative (category `negative` or `violates` not empty) naming a counting judge rule must break one of
    the rules it names (code or judge), else `negative_passes_rules`. Suggestion rules never set a row aside."""
    counting = gate.counting_ids
    if not counting or not rows:
        return rows
    auto = {r.id for r in gate.spec.automatic_rules()} | counting
    need: list[int] = []
    items: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        negative = row.kind != "preference" and (row.category == "negative" or bool(row.violates))
        if negative and not counting.intersection(row.violates):
            continue  # a negative is judged only where it names a judge rule
        text = response(row)
        if not text.strip():
            continue  # an unlabeled prompt: no answer to judge
        need.append(i)
        items.append((user(row), text))
    verdicts = gate.verdicts(items)
    drop: set[int] = set()
    judge_id = gate.judge.id if gate.judge is not None else "?"
    for i, got in zip(need, verdicts, strict=True):
        row = rows[i]
        fails = {rid: v for rid, v in got.items() if rid in counting and v.passed is False}
        negative = row.kind != "preference" and (row.category == "negative" or bool(row.violates))
        if negative:
            named = auto.intersection(row.violates)
            if not (code_failed(row) | set(fails)).intersection(named):
                ctx.quarantine(
                    step=STEP,
                    reason="negative_passes_rules",
                    detail=f"marked as violating {', '.join(sorted(named))} but passes them (judge {judge_id})",
                    record=record(row),
                )
                drop.add(i)
            continue
        if fails:
            what = "; ".join(
                f"{rid}: judge {judge_id} says FAIL ({v.reason})" for rid, v in sorted(fails.items())
            )
            ctx.quarantine(
                step=STEP,
                reason="rule_failed",
                detail=("chosen fails " if row.kind == "preference" else "") + what,
                record=record(row),
            )
            drop.add(i)
    return [r for i, r in enumerate(rows) if i not in drop] if drop else rows


def judge_build(
    rows: list[Any], spec: Spec, ctx: Any, *, record: Callable[[Any], Any], checker: Any
) -> tuple[list[Any], Gate]:
    """The build's judge pass over validated compact rows (`curate.engine.compact.Row`): `judge_build_rows` with
    the spec's gate; returns (the rows kept, the gate, closed) for the manifest and the export's `rules` column."""
    from curate.engine import compact as C

    def code_failed(row: Any) -> set[str]:
        if row.facts is not None:
            return {c.rule for c in row.rec.checks if c.status == "fail"}
        return {r.id for r, s in zip(checker.rules, row.statuses or ()) if s == "fail"}

    gate = open_gate(spec)
    try:
        kept = judge_build_rows(
            rows,
            gate,
            ctx,
            response=C.response_text,
            user=C.user_text,
            record=record,
            code_failed=code_failed,
        )
    finally:
        gate.close()
    return kept, gate


# ---------------------------------------------------------------- eval and pre-annotation


def judge_results(gate: Gate, items: Iterable[tuple[str, str]]) -> list[tuple[list[Any], dict[str, Verdict]]]:
    """Per (user text, response): (CheckResults of the counting judge rules, {rule: Verdict} of suggestions)."""
    from curate.records import CheckResult

    items = list(items)
    cats = {r.id: r.category for r in gate.spec.judge_rules()}
    out = []
    for got in gate.verdicts(items):
        results = [
            CheckResult(rule=rid, category=cats[rid], status=v.status, detail=f"judge: {v.reason}")
            for rid, v in got.items()
            if gate.status[rid]["automatic"]
        ]
        suggested = {rid: v for rid, v in got.items() if not gate.status[rid]["automatic"]}
        out.append((results, suggested))
    return out


def suggestion_text(suggested: dict[str, Verdict]) -> str:
    """The line a labeler reads for a judge's suggestions (uncalibrated: the labeler decides)."""
    if not suggested:
        return ""
    said = "; ".join(f"{rid} {v.status.upper()} ({v.reason})" for rid, v in sorted(suggested.items()))
    return f"JUDGE SUGGESTION ONLY (not calibrated; you decide): {said}"


__all__ = ["Gate", "judge_build", "judge_build_rows", "judge_results", "open_gate", "suggestion_text"]
