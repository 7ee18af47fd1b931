"""Stale labels: tasks labeled under rule hashes the spec no longer has, re-queued with the old label as a
prior.

    >>> from curate.labeling.stale import prior_result
    >>> old = [{"from_name": "violates", "type": "choices", "value": {"choices": ["a", "gone"]}}]
    >>> prior_result(old, {"a"})
    [{'from_name': 'violates', 'type': 'choices', 'value': {'choices': ['a']}}]

Every pushed task carries `data.curate_rules`, the rule hashes its labels are judged under
(curate.versioning). `requeue_stale` finds the labeled tasks of the spec's project whose labels are stale (a
rule changed or was added; a ticked rule was removed; or the task predates rule hashes) and imports, for each,
one new task: the same record under the current hashes, `data.curate_requeue_of` = the old task, and the old
(winning) annotation as a prediction (model version "prior-label"), so the labeler starts from the old label
and changes what the new rules need. A task already re-queued (a task of the same record under the current
hashes exists) is not sent again. A pull skips the annotations of a task whose re-queued copy has been labeled
(`superseded`), with the quarantine reason `superseded_by_requeue`, so each record ends with one label, the
fresh one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from curate.labeling.client import StudioClient
from curate.labeling.convert import task_record
from curate.labeling.push import ensure_project, find_project, to_task
from curate.records import parse_record
from curate.spec import Spec
from curate.versioning import rules_sha, stale_rules

log = logging.getLogger(__name__)
PRIOR_MODEL = "prior-label"
_RULE_CONTROLS = ("violates", "loser_violates")


def prior_result(result: list[dict[str, Any]], rule_ids: set[str]) -> list[dict[str, Any]]:
    """An old annotation's result as a prediction for the current config: ticks of removed rules dropped."""
    out = []
    for item in result or []:
        if not isinstance(item, dict):
            continue
        if item.get("from_name") in _RULE_CONTROLS and isinstance(item.get("value"), dict):
            kept = [c for c in item["value"].get("choices") or [] if c in rule_ids]
            if not kept:
                continue
            item = {**item, "value": {**item["value"], "choices": kept}}
        out.append(item)
    return out


def _ticked(annotations: Iterable[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for a in annotations:
        for item in a.get("result") or []:
            if isinstance(item, dict) and item.get("from_name") in _RULE_CONTROLS:
                out.update(c for c in (item.get("value") or {}).get("choices") or [] if isinstance(c, str))
    return out


def _live(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]


def superseded(tasks: Iterable[dict[str, Any]]) -> set[Any]:
    """Ids of tasks whose re-queued copy (data.curate_requeue_of) holds an annotation: their labels are
    replaced."""
    return {
        (t.get("data") or {}).get("curate_requeue_of")
        for t in tasks
        if (t.get("data") or {}).get("curate_requeue_of") is not None and _live(t)
    }


def find_stale(spec: Spec, kind: str, client: StudioClient) -> tuple[int | None, list[dict[str, Any]]]:
    """(project id, [{"task", "curate_id", "rules": [(rule, why)], "task_data", "annotations"}]) of stale
    tasks."""
    project = find_project(client, spec, kind)
    if project is None:
        return None, []
    pid = int(project["id"])
    current = rules_sha(spec)
    labeled = client.export_snapshot(pid, annotated_only=True)
    requeued = {
        t["data"].get("curate_id")
        for t in client.task_data(pid)
        if t["data"].get("curate_rules") == current and t["data"].get("curate_requeue_of") is not None
    }
    replaced = superseded(labeled)
    out = []
    for t in labeled:
        data = t.get("data") or {}
        anns = _live(t)
        if not anns or t.get("id") in replaced or data.get("curate_id") in requeued:
            continue
        under = data.get("curate_rules")
        why = stale_rules(under if isinstance(under, dict) else None, spec, ticked=_ticked(anns))
        if why:
            out.append(
                {
                    "task": t.get("id"),
                    "curate_id": data.get("curate_id"),
                    "rules": why,
                    "task_data": {**data, "record": task_record(t)[0]},  # the record travels in meta
                    "annotations": anns,
                }
            )
    return pid, out


def requeue_stale(spec: Spec, kind: str, *, client: StudioClient, dry_run: bool = False) -> dict[str, Any]:
    """Import one new task per stale labeled task, with the newest old annotation as a prior; returns a
    summary."""
    pid, stale = find_stale(spec, kind, client)
    summary: dict[str, Any] = {
        "kind": kind,
        "project_id": pid,
        "stale": len(stale),
        "requeued": 0,
        "tasks": [
            {"task": s["task"], "curate_id": s["curate_id"], "rules": [f"{r} ({w})" for r, w in s["rules"]]}
            for s in stale
        ],
    }
    if pid is None or not stale or dry_run:
        return summary
    ensure_project(client, spec, kind)  # the config and instructions follow the current spec
    rule_ids = {r.id for r in spec.rules}
    tasks = []
    for s in stale:
        try:
            record = parse_record(s["task_data"]["record"])
        except (KeyError, ValueError, TypeError):
            log.warning("task %s carries no curate record; not re-queued", s["task"])
            continue
        task = to_task(spec, kind, record)
        newest = max(
            s["annotations"],
            key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0),
        )
        task["data"]["curate_requeue_of"] = s["task"]
        task["data"]["prior_label_rules"] = ", ".join(f"{r} ({w})" for r, w in s["rules"])
        task["predictions"] = [
            {
                "model_version": PRIOR_MODEL,
                "score": None,
                "result": prior_result(newest.get("result") or [], rule_ids),
            }
        ]
        tasks.append(task)
    ids = client.import_tasks(pid, tasks) if tasks else []
    summary["requeued"] = len(ids)
    summary["task_ids"] = ids
    return summary


def skip_superseded(task: dict[str, Any], ctx: Any, project: int | None) -> int:
    """Quarantine every annotation of a superseded task (reason superseded_by_requeue); returns how many."""
    from curate.labeling.convert import STEP
    from curate.records import Source

    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    for a in anns:
        src = Source(format="label-studio", project=project, task=task.get("id"), annotation=a.get("id"))
        ctx.quarantine(
            step=STEP,
            reason="superseded_by_requeue",
            source=src,
            original={"result": a.get("result")},
            detail="re-queued by `curate label push --stale` and labeled again there",
        )
    return len(anns)


__all__ = ["PRIOR_MODEL", "find_stale", "prior_result", "requeue_stale", "skip_superseded", "superseded"]
