"""Label Studio tasks and annotations (made with curate's configs) -> records.

    >>> from curate.labeling.convert import convert_task
    >>> out = convert_task(spec, "review", task_json, annotators={1: "ann@x"}, ctx=ctx)   # doctest: +SKIP
    >>> [r.kind for r in out.records]                                                    # doctest: +SKIP
    ['sft', 'preference']

Used by `curate label pull` and by the importer for Label Studio export files made with our configs.

- review:  accept -> SFT record; edit -> SFT record with the corrected response AND a preference pair (corrected =
           chosen, original = rejected, `violates` = the ticked rules, the data's own and the automatic checks the
           original fails); the correction of a `negative` example is a positive (its category is never negative);
           reject -> negative example with its ticked rules.
- pairwise: DPO pair, the side the labeler picked as chosen (the task's hidden meta says which side showed the
           original chosen).
- write:   SFT record with the written response.

Label Studio accepts results that do not match the config (unknown control names or choice values): every result
is checked against the config compiled from the spec, and mismatches are quarantined (`label_mismatch`). A
corrected or written response that fails the spec's automatic rules is not accepted; it is listed for another pass.
Records carry rule-check results where the pull ran the rules (corrections, written responses); the build's
validate step checks every record anyway.
With several annotations per task, the main answer (verdict / picked side; for edits, the corrected text) is
resolved by majority over the valid annotations, or the adjudicator's annotation wins; a task without a majority
is a conflict.

The task's record travels in `meta` (never shown to labelers) with its hash (`curate_sha256`); a record that does
not match its hash, or whose id is not the task's `curate_id`, is quarantined (`tampered_record`). Every record
made carries its lineage in `labels`: `annotations` (ids of the agreeing annotations), `annotators`,
`n_annotators` (valid answers on the task), `agreement` ("agreeing/valid"), `source_ids` (the labeled record's
id, also `source.parent`), `source_where` (its file:line) and `spec_sha256`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from curate.checks import run_rules

# Answer, MAIN_QUESTION, record_digest and task_record moved to answers.py / task_data.py; importable from here
from curate.labeling.answers import MAIN_QUESTION, Answer, Mismatch, _controls, _resolve, read_answer  # noqa: F401
from curate.labeling.config import KINDS, visible
from curate.labeling.task_data import Record, _labels, _original, _source, record_digest, task_record  # noqa: F401
from curate.records import Message, PreferenceRecord, SFTRecord, Source, normalize_text
from curate.spec_model import Spec
from curate.steps.base import RunContext

STEP = "label"


@dataclass
class TaskOutcome:
    records: list[Record] = field(default_factory=list)
    rework: list[dict[str, Any]] = field(default_factory=list)
    conflict: dict[str, Any] | None = None
    answers: list[Answer] = field(default_factory=list)
    base: Source | None = None
    used: int = 0  # annotations that produced records
    outvoted: int = 0  # annotations that agreed with or lost to the resolved answer
    quarantined: int = 0
    skipped: int = 0  # annotations the annotator skipped (also counted in quarantined)


def _checks(spec: Spec | None, rec: Record) -> list[Any]:
    return run_rules(spec, rec) if spec is not None else []


@dataclass
class _Candidate:
    """What one annotation would make: records, or the reason it makes none (and a rework row)."""

    answer: Answer
    records: list[Record] = field(default_factory=list)
    reject: tuple[str, str, dict[str, Any] | None] | None = None


def convert_task(
    spec: Spec | None,
    kind: str,
    task: dict[str, Any],
    *,
    annotators: dict[Any, str],
    ctx: RunContext,
    adjudicator: str | None = None,
    project: int | str | None = None,
    base: Source | None = None,
) -> TaskOutcome:
    """Records from one exported task; every annotation ends in a record, a quarantine row or a conflict.

    Each valid annotation is converted on its own first (a correction that fails the rules is quarantined and
    listed for rework); the main answer is then resolved by majority over the valid ones (or the adjudicator's
    wins), so an invalid first annotation never hides agreeing valid ones, and different corrections of one
    response are a conflict. Without a spec (importing an export file), choice values for rules and categories
    are not checked against the config and corrections are not checked against the rules here (the build's
    validate step does that).
    """
    out = TaskOutcome(base=base)
    ctrls = _controls(spec, kind)
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    base_src = (base or Source()).model_copy(
        update={
            "format": "label-studio",
            "project": project if project is not None else task.get("project"),
            "task": task.get("id"),
        }
    )
    original, problem, detail = _original(task)
    if original is not None and isinstance(original, PreferenceRecord) != (kind == "pairwise"):
        original, problem, detail = None, "unknown_task", f"the task's record is not a {kind} record"
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    if (
        original is not None
        and kind == "pairwise"
        and not all(isinstance(data.get(k), str) for k in ("left", "right"))
    ):
        original, problem, detail = (
            None,
            "missing_task_data",
            "a pairwise task without data.left and data.right",
        )
    if original is None:
        for a in anns:
            ctx.quarantine(
                step=STEP,
                reason=problem or "unknown_task",
                detail=detail,
                source=base_src.model_copy(update={"annotation": a.get("id")}),
                original={"data": task.get("data"), "annotation": a},
            )
            out.quarantined += 1
        return out
    for a in anns:
        by = a.get("completed_by")
        if isinstance(by, dict):
            who = by.get("email") or str(by.get("id"))
        else:
            who = annotators.get(by, str(by))
        src = base_src.model_copy(update={"annotation": a.get("id"), "annotator": who, "parent": original.id})
        if a.get("was_cancelled"):
            ctx.quarantine(
                step=STEP,
                reason="skipped_by_annotator",
                detail="the annotator skipped this task",
                source=src,
                original=a,
            )
            out.quarantined += 1
            out.skipped += 1
            continue
        try:
            values = read_answer(a, ctrls)
        except Mismatch as err:
            ctx.quarantine(
                step=STEP,
                reason="label_mismatch",
                detail=str(err),
                source=src,
                original={"result": a.get("result")},
            )
            out.quarantined += 1
            continue
        missing = [c.name for c in ctrls.values() if c.required and values.get(c.name) in (None, "", [])]
        if missing:
            ctx.quarantine(
                step=STEP,
                reason="missing_answer",
                detail=f"no {', '.join(missing)} given",
                source=src,
                original={"result": a.get("result")},
            )
            out.quarantined += 1
            continue
        out.answers.append(
            Answer(
                annotation=a.get("id"),
                annotator=who,
                values=values,
                created_at=str(a.get("created_at") or ""),
            )
        )
    if not out.answers:
        return out
    out.answers.sort(key=lambda x: (x.created_at, str(x.annotation)))
    cands = [_convert_one(spec, kind, task, ans, original, out, project) for ans in out.answers]
    valid = []
    for cand in cands:
        if cand.reject is None:
            valid.append(cand.answer)
            continue
        reason, why, rework = cand.reject
        ctx.quarantine(
            step=STEP,
            reason=reason,
            detail=why,
            source=_source(task, cand.answer, project, original),
            original={"values": cand.answer.values, "record_id": original.id},
        )
        out.quarantined += 1
        if rework is not None:
            out.rework.append(rework)
    if not valid:
        return out
    by_answer = {id(c.answer): c for c in cands}
    if kind == "write":  # every written response is its own record
        for ans in valid:
            _emit(by_answer[id(ans)], [ans], valid, kind, original, spec, out, task)
        return out
    group, conflict = _resolve(kind, valid, adjudicator)
    if conflict is not None:
        conflict.update(task=task.get("id"), kind=kind, record_id=original.id)
        out.conflict = conflict
        ctx.quarantine(
            step=STEP,
            reason="label_conflict",
            detail=f"annotators disagree on {conflict['question']}: "
            + ", ".join(f"{k}={v}" for k, v in conflict["answers"].items()),
            source=base_src.model_copy(update={"parent": original.id}),
            original=conflict,
        )
        out.quarantined += len(valid)
        return out
    assert group
    out.outvoted = len(valid) - 1
    _emit(by_answer[id(group[0])], group, valid, kind, original, spec, out, task)
    return out


def _emit(
    cand: _Candidate,
    group: list[Answer],
    valid: list[Answer],
    kind: str,
    original: Record,
    spec: Spec | None,
    out: TaskOutcome,
    task: dict[str, Any],
) -> None:
    """Put a winning candidate's records in `out`, with the lineage of every annotation that agreed."""
    meta = task.get("meta") if isinstance(task.get("meta"), dict) else {}
    labels = _labels(kind, cand.answer, group, valid, original, spec, meta.get("draft"))
    for rec in cand.records:
        out.records.append(rec.model_copy(update={"labels": {**labels, **rec.labels}}))
    if cand.records:
        out.used += 1


def _convert_one(
    spec: Spec | None,
    kind: str,
    task: dict[str, Any],
    ans: Answer,
    original: Record,
    out: TaskOutcome,
    project: int | str | None,
) -> _Candidate:
    cand = _Candidate(answer=ans)
    src = _source(task, ans, project, original)
    if out.base is not None and out.base.file:
        src = src.model_copy(update={"file": out.base.file, "line": out.base.line})
    labels: dict[str, Any] = {}
    task_rules = (task.get("data") or {}).get("curate_rules")
    if isinstance(task_rules, dict):  # the rule hashes the task was pushed under (curate.versioning)
        labels["rules_sha"] = task_rules

    def reject(reason: str, detail: str, rework: dict[str, Any] | None = None) -> _Candidate:
        cand.reject = (reason, detail, rework)
        return cand

    def rework_row(fixed: SFTRecord, failed: list[str]) -> dict[str, Any]:
        return {
            "record_id": original.id,
            "task": task.get("id"),
            "annotation": ans.annotation,
            "annotator": ans.annotator,
            "failed": failed,
            "messages": [m.to_trl() for m in fixed.conversation()],
            "category": fixed.category,
            "tags": list(fixed.tags),
        }

    spec_ref = original.spec or (spec.ref if spec else None)
    if kind == "review":
        assert isinstance(original, SFTRecord)
        verdict = ans.values["verdict"]
        ticked = tuple(ans.values.get("violates") or ())
        category = ans.values.get("category") or original.category
        prompt = original.prompt_messages()
        common = {"spec": spec_ref, "tags": original.tags, "source": src, "labels": labels}
        if verdict == "accept":
            if ticked:
                return reject("inconsistent_verdict", f"accepted but ticked rules: {', '.join(ticked)}")
            if category == "negative" or original.category == "negative":
                # accepting a negative example says it is fine as it is: a positive of its prompt's own case
                category = category if category != "negative" else "typical"
            cand.records.append(
                SFTRecord.build(messages=original.conversation(), category=category, violates=(), **common)
            )
        elif verdict == "reject":
            if not ticked:
                return reject("reject_without_rule", "rejected without ticking a rule it breaks")
            cand.records.append(
                SFTRecord.build(
                    messages=original.conversation(), category="negative", violates=ticked, **common
                )
            )
        else:  # edit: the correction is a positive (never `negative`), the original the rejected side of a pair
            corrected = (ans.values.get("corrected") or "").strip()
            if not corrected:
                return reject("missing_correction", "verdict edit without a corrected response")
            fixed_cat = (
                category
                if category != "negative"
                else (original.category if original.category != "negative" else "typical")
            )
            fixed = SFTRecord.build(
                messages=prompt + (Message(role="assistant", content=corrected),),
                category=fixed_cat,
                violates=(),
                **common,
            )
            checks = _checks(spec, fixed)
            failed = [c.rule for c in checks if c.status == "fail"]
            if failed:
                return reject(
                    "correction_fails_rules",
                    f"the corrected response fails: {', '.join(failed)}",
                    rework=rework_row(fixed, failed),
                )
            cand.records.append(fixed.with_checks(checks))
            if normalize_text(corrected) != normalize_text(original.response_text()):
                # the rules the original breaks: the ticked ones, the data's own `violates`, the automatic checks
                orig_failed = [c.rule for c in _checks(spec, original) if c.status == "fail"]
                violates = tuple(dict.fromkeys((*ticked, *original.violates, *orig_failed)))
                pair = PreferenceRecord.build(
                    prompt=prompt,
                    chosen=(Message(role="assistant", content=corrected),),
                    rejected=(Message(role="assistant", content=original.response_text()),),
                    category=fixed.category,
                    violates=violates,
                    **common,
                )
                cand.records.append(pair.with_checks(checks))
    elif kind == "pairwise":
        assert isinstance(original, PreferenceRecord)
        side = ans.values["comparison"]
        data = task.get("data") or {}
        chosen_text, rejected_text = (
            (data["left"], data["right"]) if side == "left" else (data["right"], data["left"])
        )
        labels["swapped"] = normalize_text(chosen_text) != normalize_text(original.response_text())
        ticked = tuple(ans.values.get("loser_violates") or ())
        # the texts shown may have had control characters made visible: take the record's own sides
        shown = {
            normalize_text(visible(original.response_text())): original.response_text(),
            normalize_text(visible(original.rejected_text())): original.rejected_text(),
        }
        chosen_text = shown.get(normalize_text(chosen_text), chosen_text)
        rejected_text = shown.get(normalize_text(rejected_text), rejected_text)
        pair = PreferenceRecord.build(
            prompt=original.prompt,
            chosen=(Message(role="assistant", content=chosen_text),),
            rejected=(Message(role="assistant", content=rejected_text),),
            category=original.category,
            tags=original.tags,
            violates=ticked,
            spec=spec_ref,
            source=src,
            labels=labels,
        )
        cand.records.append(pair)
    else:  # write
        text = (ans.values.get("ideal") or "").strip()
        fixed = SFTRecord.build(
            messages=original.prompt_messages() + (Message(role="assistant", content=text),),
            category=original.category if original.category != "negative" else "typical",
            tags=original.tags,
            spec=spec_ref,
            source=src,
            labels=labels,
        )
        checks = _checks(spec, fixed)
        failed = [c.rule for c in checks if c.status == "fail"]
        if failed:
            return reject(
                "written_fails_rules",
                f"the written response fails: {', '.join(failed)}",
                rework=rework_row(fixed, failed),
            )
        cand.records.append(fixed.with_checks(checks))
    return cand


def convert_export(
    spec: Spec,
    kind: str,
    tasks: Iterable[dict[str, Any]],
    *,
    annotators: dict[Any, str],
    ctx: RunContext,
    adjudicator: str | None = None,
) -> list[TaskOutcome]:
    """convert_task over a whole export (a list of task objects)."""
    return [
        convert_task(spec, kind, t, annotators=annotators, ctx=ctx, adjudicator=adjudicator) for t in tasks
    ]


# ---------------------------------------------------------------- the importer's hook (curate.readers.labelstudio)


def is_curate_task(task: Any) -> bool:
    """True for a task pushed by curate (it carries the record, its id and the labeling kind)."""
    data = task.get("data") if isinstance(task, dict) else None
    return (
        isinstance(data, dict)
        and task_record(task)[0] is not None
        and bool(data.get("curate_id"))
        and data.get("curate_kind") in KINDS
    )


def task_records(
    task: dict[str, Any], *, source: dict[str, Any] | None = None, spec: Spec | str | None = None
) -> list[Any]:
    """Records (and `Reject`s for annotations that make none) from one task of a Label Studio export file."""
    from curate.readers.common import Reject

    kind = task["data"]["curate_kind"]
    ctx = RunContext()
    base = Source.model_validate({k: v for k, v in (source or {}).items() if k in Source.model_fields})
    out = convert_task(
        spec if isinstance(spec, Spec) else None, kind, task, annotators={}, ctx=ctx, base=base
    )
    items: list[Any] = list(out.records)
    for rows in ctx.quarantined.values():
        for row in rows:
            items.append(Reject(row["reason"], row["detail"], row.get("source")))
    if not items:
        items.append(Reject("unannotated", "a curate task with no annotation (label it first)"))
    return items
