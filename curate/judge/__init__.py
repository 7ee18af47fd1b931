"""Judge rules: a model reads a response against a rule's rubric and says pass or fail, with a short reason.

    >>> from curate.spec import load_spec
    >>> from curate.judge import judge_rules
    >>> judge_rules(load_spec("specs/support-triage"))         # the bundled spec has no judge rule
    []

Two judges: `LocalJudge` (an HF folder or a GGUF file loaded with transformers; the verdict is the likelier of
the answers "PASS" and "FAIL" after the prompt, so a small model always gives one) and `EndpointJudge` (an
OpenAI-compatible chat-completions endpoint; the key only from the environment). `run_judge` caches every
verdict by (rule hash, response hash, judge id) in a SQLite file. A judge rule counts as automatic only while
its calibration (curate.judge.calibrate) for the current rule hash passes the spec's gate.
"""

from __future__ import annotations

from curate.judge.core import (
    EndpointJudge,
    Judge,
    JudgeCache,
    LocalJudge,
    Verdict,
    judge_prompt,
    make_judge,
    parse_verdict,
    response_hash,
    run_judge,
)
from curate.spec import Rule, Spec


def judge_rules(spec: Spec) -> list[Rule]:
    return spec.judge_rules()


__all__ = [
    "EndpointJudge",
    "Judge",
    "JudgeCache",
    "LocalJudge",
    "Verdict",
    "judge_prompt",
    "judge_rules",
    "make_judge",
    "parse_verdict",
    "response_hash",
    "run_judge",
]
