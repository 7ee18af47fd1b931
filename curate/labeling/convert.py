"""Label Studio tasks and annotations (made with curate's configs) -> records.

    >>> from curate.labeling.convert import convert_task
    >>> out = convert_task(spec, "review", task_json, annotators={1: "ann@x"}, ctx=ctx)   # doctest: +SKIP
    >>> [r.kind for r in out.records]                                                    # doctest: +SKIP
    ['sft', 'preference']

Used by `curate label pull` and by the importer for Label Studio export files made with our configs.

- review:  accept -> SFT record; edit -> SFT record with the corrected response AND a preference pair (corrected =
           chosen, original = rejected, ticked rules as `violates`); reject -> negative example with its ticked rules.
- pairwise: DPO pair, the side the labeler picked as chosen (the task says which side showed the original chosen).
- write:   SFT record with the written response.

Label Studio accepts results that do not match the config (unknown control names or choice values): every result
is checked against the config compiled from the spec, and mismatches are quarantined (`label_mismatch`). A
corrected or written response that fails the spec's automatic rules is not accepted; it is listed for another pass.
Records carry rule-check results where the pull ran the rules (corrections, written responses); the build's
validate step checks every record anyway.
With several annotations per task, the main answer (verdict / picked side) is resolved by majority, or the
adjudicator's annotation wins; a task without a majority is a conflict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from curate.checks import run_rules
from curate.labeling.config import KINDS, PAIRWISE_SIDES, VERDICTS, Control, controls
from curate.records import Message, PreferenceRecord, SFTRecord, Source, normalize_text, parse_record
from curate.spec import Spec
from curate.steps.base import RunContext

Record = SFTRecord | PreferenceRecord
STEP = "label"
MAIN_QUESTION = {"review": "verdict", "pairwise": "comparison", "write": None}


@dataclass
class Answer:
    """One annotation, read against the config: control name -> value (str, list[str]) and who made it."""

    annotation: int | str
    annotator: str
    values: dict[str, Any]
    created_at: str = ""


@dataclass
class TaskOutcome:
    records: list[Record] = field(default_factory=list)
    rework: list[dict[str, Any]] = field(default_factory=list)
    conflict: dict[str, Any] | None = None
    answers: list[Answer] = field(default_factory=list)
    base: Source | None = None
    used: int = 0        # annotations that produced records
    outvoted: int = 0    # annotations that agreed with or lost to the resolved answer
    quarantined: int = 0


class Mismatch(ValueError):
    """An annotation result that does not match the config."""


def _textarea(value: dict[str, Any]) -> str:
    text = value.get("text")
    if isinstance(text, str):
        return text
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        return "\n".join(text)
    raise Mismatch(f"textarea text is {type(text).__name__}, expected text")


def read_answer(annotation: dict[str, Any], ctrls: dict[str, Control]) -> dict[str, Any]:
    """The values of one annotation's results, each checked against the config; raises Mismatch."""
    values: dict[str, Any] = {}
    for item in annotation.get("result") or []:
        if not isinstance(item, dict):
            raise Mismatch(f"a result item is a {type(item).__name__}, not an object")
        name = item.get("from_name")
        ctrl = ctrls.get(name)  # type: ignore[arg-type]
        if ctrl is None:
            raise Mismatch(f"unknown control {name!r} (the config has: {', '.join(sorted(ctrls))})")
        if item.get("type", ctrl.type) != ctrl.type:
            raise Mismatch(f"control {name!r} gave a {item.get('type')!r} result, expected {ctrl.type!r}")
        if item.get("to_name", ctrl.to_name) != ctrl.to_name:
            raise Mismatch(f"control {name!r} points at {item.get('to_name')!r}, expected {ctrl.to_name!r}")
        value = item.get("value")
        if not isinstance(value, dict):
            raise Mismatch(f"control {name!r} has no value object")
        if ctrl.type == "choices":
            chosen = value.get("choices")
            if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
                raise Mismatch(f"control {name!r}: choices must be a list of strings")
            chosen = [c.removeprefix("\u200b") for c in chosen]  # a guarded leading `$` (see config._attr)
            unknown = [c for c in chosen if ctrl.values is not None and c not in ctrl.values]
            if unknown:
                raise Mismatch(f"control {name!r}: unknown choice {unknown[0]!r} (allowed: "
                               f"{', '.join(sorted(ctrl.values or ()))})")
            if not ctrl.multiple and len(chosen) > 1:
                raise Mismatch(f"control {name!r} allows one choice, got {len(chosen)}")
            values[name] = list(dict.fromkeys(chosen)) if ctrl.multiple else (chosen[0] if chosen else None)
        elif ctrl.type == "pairwise":
            side = value.get("selected")
            if side not in (ctrl.values or ()):
                raise Mismatch(f"control {name!r}: selected must be left or right, got {side!r}")
            values[name] = side
        else:  # textarea
            values[name] = _textarea(value)
    return values


def _original(task: dict[str, Any]) -> Record | None:
    rec = (task.get("data") or {}).get("record")
    if not isinstance(rec, dict):
        return None
    try:
        return parse_record(rec)
    except (ValueError, TypeError):
        return None


def _source(task: dict[str, Any], ans: Answer, project: int | str | None, original: Record) -> Source:
    return Source(format="label-studio", project=project if project is not None else task.get("project"),
                  task=task.get("id"), annotation=ans.annotation, annotator=ans.annotator, parent=original.id)


def _labels(kind: str, ans: Answer, answers: list[Answer], winner_value: Any) -> dict[str, Any]:
    labels: dict[str, Any] = {"reviewed": True, "kind": kind, **{k: v for k, v in ans.values.items()
                                                               if v not in (None, "", [])}}
    if len(answers) > 1:
        main = MAIN_QUESTION[kind]
        labels["annotators"] = [a.annotator for a in answers]
        if main:
            labels["agreement"] = f"{sum(1 for a in answers if a.values.get(main) == winner_value)}/{len(answers)}"
    return labels


def _resolve(kind: str, answers: list[Answer], adjudicator: str | None) -> tuple[Answer | None, dict[str, Any] | None]:
    """(winning answer, conflict) for a task's answers under majority / adjudicator rules."""
    main = MAIN_QUESTION[kind]
    if len(answers) == 1 or main is None:
        return answers[0], None
    if adjudicator:
        for a in answers:
            if a.annotator == adjudicator:
                return a, None
    counts = Counter(a.values.get(main) for a in answers)
    (top, n), *rest = counts.most_common()
    if n * 2 > len(answers) and top is not None:
        return next(a for a in answers if a.values.get(main) == top), None
    return None, {"question": main, "answers": {a.annotator: a.values.get(main) for a in answers},
                  "annotations": [a.annotation for a in answers]}


def loose_controls(kind: str) -> dict[str, Control]:
    """The controls of `kind` when the spec is not at hand: rule and category values are not checked."""
    out = [Control("verdict", "choices", "response", frozenset(VERDICTS), required=True),
           Control("corrected", "textarea", "response"),
           Control("violates", "choices", "response", None, multiple=True),
           Control("category", "choices", "response", None),
           Control("note", "textarea", "response")] if kind == "review" else [
           Control("comparison", "pairwise", "comparison", frozenset(PAIRWISE_SIDES), required=True),
           Control("loser_violates", "choices", "left", None, multiple=True),
           Control("rationale", "textarea", "left")] if kind == "pairwise" else [
           Control("ideal", "textarea", "prompt", required=True)]
    return {c.name: c for c in out}


_CONTROLS: dict[tuple[int, str], tuple[Spec | None, dict[str, Control]]] = {}


def _controls(spec: Spec | None, kind: str) -> dict[str, Control]:
    """controls(spec, kind) (or the loose ones without a spec), made once per spec object and kind."""
    key = (id(spec), kind)
    hit = _CONTROLS.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    ctrls = controls(spec, kind) if spec is not None else loose_controls(kind)
    if len(_CONTROLS) > 64:
        _CONTROLS.clear()
    _CONTROLS[key] = (spec, ctrls)
    return ctrls


def _checks(spec: Spec | None, rec: Record) -> list[Any]:
    return run_rules(spec, rec) if spec is not None else []


def convert_task(spec: Spec | None, kind: str, task: dict[str, Any], *, annotators: dict[Any, str],
                 ctx: RunContext, adjudicator: str | None = None, project: int | str | None = None,
                 base: Source | None = None) -> TaskOutcome:
    """Records from one exported task; every annotation ends in a record, a quarantine row or a conflict.

    Without a spec (importing an export file), choice values for rules and categories are not checked against
    the config and corrections are not checked against the rules here (the build's validate step does that).
    """
    out = TaskOutcome(base=base)
    ctrls = _controls(spec, kind)
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    base_src = (base or Source()).model_copy(update={
        "format": "label-studio", "project": project if project is not None else task.get("project"),
        "task": task.get("id")})
    original = _original(task)
    if original is not None and isinstance(original, PreferenceRecord) != (kind == "pairwise"):
        original = None
    if original is None:
        for a in anns:
            ctx.quarantine(step=STEP, reason="unknown_task", detail="the task carries no curate record (made "
                           "outside curate?)", source=base_src.model_copy(update={"annotation": a.get("id")}),
                           original={"data": task.get("data"), "annotation": a})
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
            ctx.quarantine(step=STEP, reason="skipped_by_annotator", detail="the annotator skipped this task",
                           source=src, original=a)
            out.quarantined += 1
            continue
        try:
            values = read_answer(a, ctrls)
        except Mismatch as err:
            ctx.quarantine(step=STEP, reason="label_mismatch", detail=str(err), source=src,
                           original={"result": a.get("result")})
            out.quarantined += 1
            continue
        missing = [c.name for c in ctrls.values() if c.required and values.get(c.name) in (None, "", [])]
        if missing:
            ctx.quarantine(step=STEP, reason="missing_answer", detail=f"no {', '.join(missing)} given", source=src,
                           original={"result": a.get("result")})
            out.quarantined += 1
            continue
        out.answers.append(Answer(annotation=a.get("id"), annotator=who, values=values,
                                  created_at=str(a.get("created_at") or "")))
    if not out.answers:
        return out
    out.answers.sort(key=lambda x: (x.created_at, str(x.annotation)))
    if kind == "write":  # every written response is its own record
        for ans in out.answers:
            _convert_one(spec, kind, task, ans, out.answers, original, ctx, out, project, ans.values.get("ideal"))
        return out
    winner, conflict = _resolve(kind, out.answers, adjudicator)
    if conflict is not None:
        conflict.update(task=task.get("id"), kind=kind, record_id=original.id)
        out.conflict = conflict
        ctx.quarantine(step=STEP, reason="label_conflict", detail=f"annotators disagree on {conflict['question']}: "
                       + ", ".join(f"{k}={v}" for k, v in conflict["answers"].items()),
                       source=base_src.model_copy(update={"parent": original.id}), original=conflict)
        out.quarantined += len(out.answers)
        return out
    assert winner is not None
    out.outvoted = len(out.answers) - 1
    main = MAIN_QUESTION[kind]
    _convert_one(spec, kind, task, winner, out.answers, original, ctx, out, project,
                 winner.values.get(main) if main else None)
    return out


def _convert_one(spec: Spec | None, kind: str, task: dict[str, Any], ans: Answer, answers: list[Answer], original: Record,
                 ctx: RunContext, out: TaskOutcome, project: int | str | None, main_value: Any) -> None:
    src = _source(task, ans, project, original)
    if base_src_file := (out.base.file if out.base is not None else None):
        src = src.model_copy(update={"file": base_src_file, "line": out.base.line})  # type: ignore[union-attr]
    labels = _labels(kind, ans, answers, main_value)
    task_rules = (task.get("data") or {}).get("curate_rules")
    if isinstance(task_rules, dict):  # the rule hashes the task was pushed under (curate.versioning)
        labels["rules_sha"] = task_rules
    before = len(out.records)

    def reject(reason: str, detail: str, rework: dict[str, Any] | None = None) -> None:
        ctx.quarantine(step=STEP, reason=reason, detail=detail, source=src, original={"values": ans.values,
                                                                                      "record_id": original.id})
        out.quarantined += 1
        if rework is not None:
            out.rework.append(rework)

    if kind == "review":
        assert isinstance(original, SFTRecord)
        verdict = ans.values["verdict"]
        ticked = tuple(ans.values.get("violates") or ())
        category = ans.values.get("category") or original.category
        prompt = original.prompt_messages()
        common = {"spec": original.spec or (spec.ref if spec else None), "tags": original.tags, "source": src, "labels": labels}
        if verdict == "accept":
            if ticked:
                return reject("inconsistent_verdict", f"accepted but ticked rules: {', '.join(ticked)}")
            rec = SFTRecord.build(messages=original.conversation(), category=category, violates=(), **common)
            out.records.append(rec)
        elif verdict == "reject":
            if not ticked:
                return reject("reject_without_rule", "rejected without ticking a rule it breaks")
            rec = SFTRecord.build(messages=original.conversation(), category="negative", violates=ticked, **common)
            out.records.append(rec)
        else:  # edit
            corrected = (ans.values.get("corrected") or "").strip()
            if not corrected:
                return reject("missing_correction", "verdict edit without a corrected response")
            fixed = SFTRecord.build(messages=prompt + (Message(role="assistant", content=corrected),),
                                    category=category if category != "negative" else original.category,
                                    violates=(), **common)
            checks = _checks(spec, fixed)
            failed = [c.rule for c in checks if c.status == "fail"]
            if failed:
                return reject("correction_fails_rules", f"the corrected response fails: {', '.join(failed)}",
                              rework={"record_id": original.id, "task": task.get("id"), "annotation": ans.annotation,
                                      "annotator": ans.annotator, "failed": failed,
                                      "messages": [m.to_trl() for m in fixed.conversation()],
                                      "category": fixed.category, "tags": list(fixed.tags)})
            out.records.append(fixed.with_checks(checks))
            if normalize_text(corrected) != normalize_text(original.response_text()):
                pair = PreferenceRecord.build(prompt=prompt, chosen=(Message(role="assistant", content=corrected),),
                                              rejected=(Message(role="assistant", content=original.response_text()),),
                                              category=fixed.category, violates=ticked, **common)
                out.records.append(pair.with_checks(checks))
    elif kind == "pairwise":
        assert isinstance(original, PreferenceRecord)
        side = ans.values["comparison"]
        data = task.get("data") or {}
        chosen_text, rejected_text = (data["left"], data["right"]) if side == "left" else (data["right"], data["left"])
        labels["swapped"] = normalize_text(chosen_text) != normalize_text(original.response_text())
        ticked = tuple(ans.values.get("loser_violates") or ())
        pair = PreferenceRecord.build(prompt=original.prompt, chosen=(Message(role="assistant", content=chosen_text),),
                                      rejected=(Message(role="assistant", content=rejected_text),),
                                      category=original.category, tags=original.tags, violates=ticked,
                                      spec=original.spec or (spec.ref if spec else None), source=src,
                                      labels=labels)
        out.records.append(pair)
    else:  # write
        text = (main_value or "").strip()
        fixed = SFTRecord.build(messages=original.prompt_messages() + (Message(role="assistant", content=text),),
                                category=original.category if original.category != "negative" else "typical",
                                tags=original.tags, spec=original.spec or (spec.ref if spec else None), source=src,
                                labels=labels)
        checks = _checks(spec, fixed)
        failed = [c.rule for c in checks if c.status == "fail"]
        if failed:
            return reject("written_fails_rules", f"the written response fails: {', '.join(failed)}",
                          rework={"record_id": original.id, "task": task.get("id"), "annotation": ans.annotation,
                                  "annotator": ans.annotator, "failed": failed,
                                  "messages": [m.to_trl() for m in fixed.conversation()],
                                  "category": fixed.category, "tags": list(fixed.tags)})
        out.records.append(fixed.with_checks(checks))
    if len(out.records) > before:
        out.used += 1


def convert_export(spec: Spec, kind: str, tasks: Iterable[dict[str, Any]], *, annotators: dict[Any, str],
                   ctx: RunContext, adjudicator: str | None = None) -> list[TaskOutcome]:
    """convert_task over a whole export (a list of task objects)."""
    return [convert_task(spec, kind, t, annotators=annotators, ctx=ctx, adjudicator=adjudicator) for t in tasks]


# ---------------------------------------------------------------- the importer's hook (curate.readers.labelstudio)

def is_curate_task(task: Any) -> bool:
    """True for a task pushed by curate (it carries the record, its id and the labeling kind)."""
    data = task.get("data") if isinstance(task, dict) else None
    return (isinstance(data, dict) and isinstance(data.get("record"), dict) and bool(data.get("curate_id"))
            and data.get("curate_kind") in KINDS)


def task_records(task: dict[str, Any], *, source: dict[str, Any] | None = None,
                 spec: Spec | str | None = None) -> list[Any]:
    """Records (and `Reject`s for annotations that make none) from one task of a Label Studio export file."""
    from curate.readers.common import Reject

    kind = task["data"]["curate_kind"]
    ctx = RunContext()
    base = Source.model_validate({k: v for k, v in (source or {}).items() if k in Source.model_fields})
    out = convert_task(spec if isinstance(spec, Spec) else None, kind, task, annotators={}, ctx=ctx, base=base)
    items: list[Any] = list(out.records)
    for rows in ctx.quarantined.values():
        for row in rows:
            items.append(Reject(row["reason"], row["detail"], row.get("source")))
    if not items:
        items.append(Reject("unannotated", "a curate task with no annotation (label it first)"))
    return items
