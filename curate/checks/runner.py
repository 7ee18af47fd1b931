"""Run a spec's automatic rules over a JSONL file and summarise per rule and failure category.

    >>> from curate.spec import load_spec
    >>> from curate.checks.runner import check_file
    >>> rep = check_file(load_spec("specs/support-triage"), "specs/support-triage/data.jsonl")
    >>> rep.unexpected == []
    True

Each line is one of our records (messages / prompt+completion / prompt+chosen+rejected, with category, tags
and `violates`), or a model output `{"response": "...", "prompt": "..." | "messages": [...]}`. A record
marked negative is expected to fail exactly the rules in `violates`; everything else is expected to pass.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.checks.compiled import compile_rules
from curate.records import LineError, PreferenceRecord, Source, read_jsonl, record_from_native
from curate.spec_model import Spec


@dataclass
class RuleStats:
    rule: str
    category: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def pass_rate(self) -> float | None:
        n = self.passed + self.failed
        return self.passed / n if n else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "category": self.category,
            "pass": self.passed,
            "fail": self.failed,
            "skip": self.skipped,
            "pass_rate": self.pass_rate,
        }


@dataclass
class CheckReport:
    rules: dict[str, RuleStats]
    responses: int = 0
    responses_passing: int = 0
    failures_by_category: Counter[str] = field(default_factory=Counter)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[dict[str, Any]] = field(default_factory=list)
    failing_examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "responses": self.responses,
            "overall_pass_rate": self.responses_passing / self.responses if self.responses else None,
            "rules": [s.as_dict() for s in self.rules.values()],
            "failures_by_category": dict(self.failures_by_category),
            "unexpected": self.unexpected,
            "bad_lines": self.bad_lines,
            "failing_examples": self.failing_examples[:50],
        }


def new_report(spec: Spec) -> CheckReport:
    return CheckReport(rules={r.id: RuleStats(r.id, r.category) for r in spec.automatic_rules()})


def add_result(
    report: CheckReport,
    results: list[Any],
    *,
    where: str,
    response: str,
    expected_fail: frozenset[str] | None,
) -> None:
    """Fold one response's results into the report; compare with what was expected when known."""
    failed = set()
    for res in results:
        st = report.rules[res.rule]
        if res.status == "pass":
            st.passed += 1
        elif res.status == "fail":
            st.failed += 1
            failed.add(res.rule)
            report.failures_by_category[res.category] += 1
        else:
            st.skipped += 1
    report.responses += 1
    report.responses_passing += not failed
    if failed and len(report.failing_examples) < 200:
        report.failing_examples.append(
            {
                "where": where,
                "response": response[:500],
                "failed": {r.rule: r.detail for r in results if r.status == "fail"},
            }
        )
    if expected_fail is not None and failed != expected_fail:
        report.unexpected.append(
            {
                "where": where,
                "expected_fail": sorted(expected_fail),
                "failed": sorted(failed),
                "details": {r.rule: r.detail for r in results if r.status == "fail"},
            }
        )


def check_file(spec: Spec, path: str | Path) -> CheckReport:
    report = new_report(spec)
    automatic = {r.id for r in spec.automatic_rules()}
    check_response = compiled_check(spec)
    for line, obj in read_jsonl(path):
        where = f"{path}:{line}"
        if isinstance(obj, LineError):
            report.bad_lines.append({"where": where, "reason": obj.reason, "detail": obj.detail})
            continue
        if "response" in obj and not any(k in obj for k in ("messages", "chosen", "completion")):
            user = obj.get("prompt") or obj.get("user") or ""
            if isinstance(user, list):
                user = "\n".join(m.get("content", "") for m in user if m.get("role") == "user")
            results = check_response(
                spec,
                str(obj["response"]),
                user_text=str(user),
                category=obj.get("category", "typical"),
                tags=obj.get("tags", ()),
            )
            add_result(report, results, where=where, response=str(obj["response"]), expected_fail=None)
            continue
        try:
            rec = record_from_native(obj, spec=spec.ref, source=Source(file=str(path), line=line))
        except Exception as err:  # noqa: BLE001 - a bad line is reported, never fatal
            report.bad_lines.append(
                {"where": where, "reason": "bad_record", "detail": str(err).splitlines()[0]}
            )
            continue
        violates = frozenset(v for v in rec.violates if v in automatic)
        kw = {"user_text": rec.user_text(), "category": rec.category, "tags": rec.tags}
        if isinstance(rec, PreferenceRecord):
            add_result(
                report,
                check_response(spec, rec.response_text(), **kw),
                where=where + " (chosen)",
                response=rec.response_text(),
                expected_fail=frozenset(),
            )
            add_result(
                report,
                check_response(spec, rec.rejected_text(), **kw),
                where=where + " (rejected)",
                response=rec.rejected_text(),
                expected_fail=violates or None,
            )
        else:
            expected = violates if rec.is_negative else frozenset()
            add_result(
                report,
                check_response(spec, rec.response_text(), **kw),
                where=where,
                response=rec.response_text(),
                expected_fail=expected,
            )
    return report


def compiled_check(spec: Spec) -> Any:
    """A drop-in for `check_response` bound to `spec`'s compiled rules (same results, several times faster):
    `check = compiled_check(spec); check(spec, response, user_text=..., category=..., tags=...)`."""
    compiled = compile_rules(spec)

    def check(
        _spec: Spec, response: str, *, user_text: str = "", category: str = "typical", tags: Any = ()
    ) -> list[Any]:
        return compiled.results(
            response, user_text, category, frozenset(tags)
        )  # as check_response takes them

    return check


def by_category(report: CheckReport) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"pass": 0, "fail": 0})
    for st in report.rules.values():
        out[st.category]["pass"] += st.passed
        out[st.category]["fail"] += st.failed
    return dict(out)
