"""The `judge` check kind: a model reads the response against the rule's rubric (curate.judge).

A judge rule is not automatic (`Rule.automatic` is False), so the code checks never run it by themselves; when
it is passed in explicitly it is skipped here with a pointer to `curate judge`, because running a model is the
judge's business (cached, calibrated, gated), never a side effect of a plain check.
"""

from __future__ import annotations

from typing import Any

from curate.checks.context import CheckContext
from curate.checks.registry import register


@register("judge")
def judge(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    ctx.skip_reason = "judged by a model (curate judge run / calibrate), not by code"
    return None
