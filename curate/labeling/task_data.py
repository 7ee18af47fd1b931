"""What a curate task carries: the labeled record in its hidden meta with its hash (`record_digest`,
`task_record`), and the source and lineage labels of the records made from it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from curate.labeling.answers import MAIN_QUESTION, Answer
from curate.records import PreferenceRecord, SFTRecord, Source, normalize_text, parse_record
from curate.spec_model import Spec

Record = SFTRecord | PreferenceRecord


def record_digest(record: dict[str, Any]) -> str:
    """The hash pushed with a task's record (`curate_sha256`): sha256 of its JSON with sorted keys."""
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def task_record(task: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The record a task carries and its pushed hash: in `meta` (hidden from labelers), or `data` (older pushes)."""
    for where in ("meta", "data"):
        box = task.get(where)
        if isinstance(box, dict) and isinstance(box.get("record"), dict):
            sha = box.get("curate_sha256")
            return box["record"], sha if isinstance(sha, str) else None
    return None, None


def _original(task: dict[str, Any]) -> tuple[Record | None, str | None, str]:
    """(the task's record, None) or (None, reason code, detail) when it is missing, unreadable or tampered with."""
    rec, sha = task_record(task)
    if rec is None:
        return None, "unknown_task", "the task carries no curate record (made outside curate?)"
    if sha is not None and record_digest(rec) != sha:
        return (
            None,
            "tampered_record",
            "the task's record does not match the hash pushed with it (edited on the server?)",
        )
    try:
        parsed = parse_record(rec)
    except (ValueError, TypeError) as err:
        return None, "unknown_task", f"the task's record is unreadable: {str(err).splitlines()[0]}"
    cid = (task.get("data") or {}).get("curate_id")
    if cid and parsed.id != cid:
        return None, "tampered_record", f"the task's record has id {parsed.id}, the task says {cid}"
    return parsed, None, ""


def _source(task: dict[str, Any], ans: Answer, project: int | str | None, original: Record) -> Source:
    return Source(
        format="label-studio",
        project=project if project is not None else task.get("project"),
        task=task.get("id"),
        annotation=ans.annotation,
        annotator=ans.annotator,
        parent=original.id,
    )


def _labels(
    kind: str,
    ans: Answer,
    group: list[Answer],
    valid: list[Answer],
    original: Record,
    spec: Spec | None,
    draft: Any = None,
) -> dict[str, Any]:
    """What reviewers said, with lineage: every annotation behind the record, how many answered, agreement."""
    labels: dict[str, Any] = {
        "reviewed": True,
        "kind": kind,
        **{k: v for k, v in ans.values.items() if v not in (None, "", [])},
    }
    labels["annotations"] = [a.annotation for a in group]
    labels["annotators"] = [a.annotator for a in group]
    labels["n_annotators"] = len(valid)
    if MAIN_QUESTION[kind]:
        labels["agreement"] = f"{len(group)}/{len(valid)}"
    labels["source_ids"] = [original.id]
    if original.source.file or original.source.parent:
        labels["source_where"] = original.source.where()
    if spec is not None and spec.digest:
        labels["spec_sha256"] = spec.digest
    final = (
        ans.values.get("ideal")
        if kind == "write"
        else (ans.values.get("corrected") if ans.values.get("verdict") == "edit" else None)
    )
    if isinstance(draft, dict) and isinstance(draft.get("text"), str) and final is not None:
        # the answer started as a model's draft; a person submitted it (kept as drafted, or edited)
        labels["draft"] = {
            "model": str(draft.get("model")),
            "kept": normalize_text(final) == normalize_text(draft["text"]),
        }
        labels["draft_accepted"] = True
    return labels
