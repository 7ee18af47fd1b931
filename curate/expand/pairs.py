"""Preference pairs with a validity proof: `check_pairs(spec, path)` proves every pair in a file valid.

    >>> from curate.spec import load_spec
    >>> from curate.expand.pairs import check_pairs_file
    >>> rep = check_pairs_file(load_spec("specs/support-triage"), "out/expand/pairs.jsonl")   # doctest: +SKIP
    >>> rep.ok, rep.problems[:1]                                                               # doctest: +SKIP
    (False, [PairProblem(where='out/expand/pairs.jsonl:3', reason='rejected_passes_named_rules', ...)])

A pair is valid when:
- it has one shared prompt: a `prompt` with a user turn, and `chosen` / `rejected` hold only the answer (in TRL's
  implicit-prompt shape, where chosen and rejected are whole conversations, everything before their last
  assistant turn must be the same);
- chosen passes every automatic rule (checked in the pair's category and tags);
- rejected fails at least one rule named in `violates` (a named human-judged rule counts only on a pair a
  person labeled, whose judgment is the proof);
- chosen != rejected (after normalization).
Reason codes are stable: bad_json, bad_encoding, python_literal, not_an_object, bad_record, not_a_pair,
prompt_mismatch, empty_prompt, empty_response, chosen_equals_rejected, chosen_fails_rule, no_violates,
unknown_rule, rejected_passes_named_rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.checks import check_response
from curate.records import (
    LineError,
    Message,
    PreferenceRecord,
    Source,
    normalize_text,
    read_jsonl,
    record_from_native,
)
from curate.spec import Spec


@dataclass(frozen=True)
class PairProblem:
    where: str
    reason: str
    detail: str
    record_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "reason": self.reason,
            "detail": self.detail,
            "record_id": self.record_id,
        }


@dataclass
class PairsReport:
    file: str
    pairs: int = 0
    valid: int = 0
    problems: list[PairProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "pairs": self.pairs,
            "valid": self.valid,
            "invalid": self.pairs - self.valid,
            "problems": [p.as_dict() for p in self.problems],
        }


def pair_problems(spec: Spec, pair: PreferenceRecord) -> list[tuple[str, str]]:
    """(reason, detail) for every way `pair` is not a valid preference pair; [] when it is valid."""
    out: list[tuple[str, str]] = []
    if not any(m.role == "user" and m.content.strip() for m in pair.prompt):
        out.append(("empty_prompt", "the prompt has no user turn"))
    for side, msgs in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        if any(m.role == "user" for m in msgs):
            out.append(
                (
                    "prompt_mismatch",
                    (f"{side} holds a user turn: it must hold only the answer to the shared prompt"),
                )
            )
        if not msgs or msgs[-1].role != "assistant" or not (msgs[-1].content.strip() or msgs[-1].tool_calls):
            out.append(("empty_response", f"{side} has no assistant answer"))
    chosen, rejected = pair.response_text(), pair.rejected_text()
    if normalize_text(chosen) == normalize_text(rejected) and [m.tool_calls for m in pair.chosen] == [
        m.tool_calls for m in pair.rejected
    ]:
        out.append(("chosen_equals_rejected", "chosen and rejected are the same answer"))
    kw = {"user_text": pair.user_text(), "category": pair.category, "tags": pair.tags}
    failed = [r for r in check_response(spec, chosen, **kw) if r.status == "fail"]
    if failed:
        out.append(("chosen_fails_rule", "; ".join(f"{r.rule}: {r.detail}" for r in failed)))
    if not pair.violates:
        out.append(("no_violates", "violates names no rule: say which rule the rejected answer breaks"))
        return out
    known = {r.id: r for r in spec.rules}
    unknown = [v for v in pair.violates if v not in known]
    if unknown:
        out.append(("unknown_rule", f"violates names rules the spec does not have: {', '.join(unknown)}"))
    named = [known[v] for v in pair.violates if v in known]
    auto = [r for r in named if r.automatic]
    human = [r for r in named if not r.automatic]
    if human and pair.is_human_reviewed:
        return out
    res = {r.rule: r for r in check_response(spec, rejected, rules=auto, **kw)} if auto else {}
    if not any(r.status == "fail" for r in res.values()):
        why = (
            ", ".join(
                f"{rid} {res[rid].status}" + (f" ({res[rid].detail})" if res[rid].detail else "")
                for rid in res
            )
            or "only human-judged rules, and no person labeled this pair"
        )
        out.append(
            ("rejected_passes_named_rules", f"rejected breaks none of {', '.join(pair.violates)}: {why}")
        )
    return out


def _implicit_prompt(obj: dict[str, Any]) -> dict[str, Any] | str:
    """TRL's implicit-prompt pair {chosen: [..conversation..], rejected: [...]} -> explicit, or a mismatch."""
    ch, rj = obj.get("chosen"), obj.get("rejected")
    if not (isinstance(ch, list) and isinstance(rj, list)):
        return obj

    def split(conv: list[Any]) -> tuple[list[Any], list[Any]]:
        last = max(
            (i for i, m in enumerate(conv) if isinstance(m, dict) and m.get("role") == "assistant"),
            default=len(conv),
        )
        return conv[:last], conv[last:]

    pc, ac = split(ch)
    pr, ar = split(rj)
    if not pc and not pr:
        return obj
    if [(m.get("role"), normalize_text(str(m.get("content", "")))) for m in pc] != [
        (m.get("role"), normalize_text(str(m.get("content", "")))) for m in pr
    ]:
        return "chosen and rejected continue different conversations"
    return {**obj, "prompt": pc, "chosen": ac, "rejected": ar}


def check_pairs_file(spec: Spec, path: str | Path) -> PairsReport:
    """Prove every pair in a JSONL file valid; non-pair lines are problems too (reason not_a_pair)."""
    report = PairsReport(file=str(path))
    for line, obj in read_jsonl(path):
        where = f"{path}:{line}"
        if isinstance(obj, LineError):
            report.pairs += 1
            report.problems.append(PairProblem(where, obj.reason, obj.detail))
            continue
        report.pairs += 1
        if "chosen" not in obj and "rejected" not in obj:
            report.problems.append(
                PairProblem(where, "not_a_pair", "no chosen/rejected: not a preference pair")
            )
            continue
        if "prompt" not in obj:
            fixed = _implicit_prompt(obj)
            if isinstance(fixed, str):
                report.problems.append(PairProblem(where, "prompt_mismatch", fixed))
                continue
            obj = fixed
        try:
            src = obj.get("source")
            source = (
                Source.model_validate(src) if isinstance(src, dict) else Source(file=str(path), line=line)
            )
            rec = record_from_native(obj, spec=spec.ref, source=source)
        except Exception as err:  # noqa: BLE001 - reported per line, never fatal
            report.problems.append(PairProblem(where, "bad_record", str(err).splitlines()[0]))
            continue
        if not isinstance(rec, PreferenceRecord):  # pragma: no cover - guarded above
            report.problems.append(PairProblem(where, "not_a_pair", "not a preference pair"))
            continue
        probs = pair_problems(spec, rec)
        for reason, detail in probs:
            report.problems.append(PairProblem(where, reason, detail, rec.id))
        report.valid += not probs
    return report


def make_pair(prompt: tuple[Message, ...], chosen: str, rejected: str, **fields: Any) -> PreferenceRecord:
    return PreferenceRecord.build(
        prompt=prompt,
        chosen=(Message(role="assistant", content=chosen),),
        rejected=(Message(role="assistant", content=rejected),),
        **fields,
    )


__all__ = ["PairProblem", "PairsReport", "check_pairs_file", "make_pair", "pair_problems"]
