"""Rule checks: a registry keyed by check kind, run over one response at a time.

    >>> from curate.spec import load_spec
    >>> from curate.checks import check_response
    >>> spec = load_spec("specs/support-triage")
    >>> results = check_response(spec, '{"intent": "other"}', user_text="hi")
    >>> sorted({r.status for r in results}) <= ["fail", "pass", "skip"]
    True

A check function takes (check params, context) and returns (passed, detail) or None for "not applicable".
"""

from __future__ import annotations

from collections.abc import Iterable

from curate.checks.context import CheckContext
from curate.checks.registry import get, kinds, register
from curate.records import CheckResult, PreferenceRecord, SFTRecord
from curate.spec_model import Rule, Spec


def run_rule(rule: Rule, ctx: CheckContext) -> CheckResult:
    """One automatic rule against one response."""
    check = rule.check
    if check == "human":
        return CheckResult(rule=rule.id, category=rule.category, status="skip", detail="judged by labelers")
    reason = ctx.when_fails(check.when)
    if reason:
        return CheckResult(rule=rule.id, category=rule.category, status="skip", detail=reason)
    got = get(check.kind)(check, ctx)
    if got is None:
        return CheckResult(rule=rule.id, category=rule.category, status="skip", detail=ctx.skip_reason)
    ok, detail = got
    return CheckResult(rule=rule.id, category=rule.category, status="pass" if ok else "fail", detail=detail)


def check_response(
    spec: Spec,
    response: str,
    *,
    user_text: str = "",
    category: str = "typical",
    tags: Iterable[str] = (),
    rules: Iterable[Rule] | None = None,
) -> list[CheckResult]:
    """Run every automatic rule of `spec` (or the given rules) over one response text."""
    ctx = CheckContext(
        spec=spec, response=response, user_text=user_text, category=category, tags=frozenset(tags)
    )
    return [run_rule(r, ctx) for r in (rules if rules is not None else spec.automatic_rules())]


def run_rules(
    spec: Spec, record: SFTRecord | PreferenceRecord, *, response: str | None = None
) -> list[CheckResult]:
    """Every automatic rule over a record's response (SFT: last assistant turn; preference: chosen)."""
    return check_response(
        spec,
        record.response_text() if response is None else response,
        user_text=record.user_text(),
        category=record.category,
        tags=record.tags,
    )


# the implementations register themselves on import
from curate.checks import json_checks, judge_check, semantic_checks, text_checks  # noqa: F401

__all__ = ["CheckContext", "check_response", "get", "kinds", "register", "run_rule", "run_rules"]
