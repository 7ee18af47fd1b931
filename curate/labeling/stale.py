"""Stale labels: tasks labeled under rule hashes the spec no longer has, re-queued with the old label as a
prior.

    >>> from curate.labeling.stale import prior_result
    >>> old = [{"from_name": "violates", "type": "choices", "value": {"choices": ["a", "gone"]}}]
    >>> prior_result(old, {"a"})
    [{'from_name': 'violates', 'type': 'choices', 'value': {'choices': ['a']}}]

Every pushed task carries `data.curate_rules`, the rule hashes its labels are judged under
(curate.versioning). `requeue_stale` finds the labeled tasks whose labels are stale (a rule changed or was
added; a ticked rule was removed; or the task predates rule hashes) in the spec's current project AND in the
projects of its other versions (a version bump opens a new project: the labels made under v1 are in v1's), and
sends each to the current version's project: one new task with the same record under the current hashes,
`data.curate_requeue_of` = the old task, and the old (winning) annotation as a prediction (model version
"prior-label"), so the labeler starts from the old label and changes what the new rules need. When the current
project already holds the record unlabeled, the prior goes onto that task instead. A record counts once, where
it was labeled last, and is not re-queued twice. A pull skips the annotations of a task whose re-queued copy in
the same project has been labeled (`superseded`), with the quarantine reason `superseded_by_requeue`, so each
record ends with one label, the fresh one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from curate.labeling.client import StudioClient
from curate.labeling.config import project_marker
from curate.labeling.convert import task_record
from curate.labeling.push import ensure_project, to_task
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


def spec_projects(client: StudioClient, spec: Spec, kind: str) -> list[tuple[dict[str, Any], bool]]:
    """curate's projects of `kind` for every version of the spec (by the marker line in their description):
    [(project, is the current version's)], the current one first, then the others newest first."""
    current = project_marker(spec, kind)
    prefix, suffix = f"curate:{spec.name}@", f":{kind}"
    mine, others = [], []
    for p in client.projects():
        lines = (p.get("description") or "").splitlines()
        if current in lines:
            mine.append((p, True))
        elif any(
            ln.startswith(prefix) and ln.endswith(suffix) and len(ln) > len(prefix + suffix) for ln in lines
        ):
            others.append((p, False))
    others.sort(key=lambda x: int(x[0]["id"]), reverse=True)
    return mine[:1] + others


def _version_of(project: dict[str, Any], spec: Spec, kind: str) -> str:
    prefix, suffix = f"curate:{spec.name}@", f":{kind}"
    for ln in (project.get("description") or "").splitlines():
        if ln.startswith(prefix) and ln.endswith(suffix):
            return ln[len("curate:") : -len(suffix)]
    return "?"


def find_stale(spec: Spec, kind: str, client: StudioClient) -> tuple[int | None, list[dict[str, Any]]]:
    """(the current version's project id or None, [{"task", "project", "under", "curate_id", "rules": [(rule,
    why)], "task_data", "annotations", "existing"}]) of the stale labeled tasks.

    Searched: the current version's project and the projects of the spec's other versions (newest first). A
    record counts once, where it was labeled last: a label in the current project (stale or not), or a
    re-queued copy there, hides the record's labels in older projects. `existing`: an unlabeled task of the same
    record under the current hashes in the current project (the prior goes onto it instead of a new task)."""
    current = rules_sha(spec)
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()  # records whose newest label (or re-queued copy) has been looked at
    replaced: set[Any] = set()
    unlabeled: dict[Any, dict[str, Any]] = {}
    pid: int | None = None
    for project, is_current in spec_projects(client, spec, kind):
        p = int(project["id"])
        labeled = client.export_snapshot(p, annotated_only=True)
        replaced |= superseded(labeled)
        if is_current:
            pid = p
            done = {t.get("id") for t in labeled if _live(t)}
            for t in client.task_data(p):
                d = t["data"]
                if d.get("curate_rules") != current:
                    continue
                if d.get("curate_requeue_of") is not None:
                    seen.add(d.get("curate_id"))  # re-queued already
                elif t["id"] not in done:
                    unlabeled.setdefault(d.get("curate_id"), t)
        for t in labeled:
            data = t.get("data") or {}
            anns = _live(t)
            rid = data.get("curate_id")
            if not anns or t.get("id") in replaced or rid in seen:
                continue
            seen.add(rid)
            under = data.get("curate_rules")
            why = stale_rules(under if isinstance(under, dict) else None, spec, ticked=_ticked(anns))
            if why:
                out.append(
                    {
                        "task": t.get("id"),
                        "project": p,
                        "under": spec.ref if is_current else _version_of(project, spec, kind),
                        "curate_id": rid,
                        "rules": why,
                        "task_data": {**data, "record": task_record(t)[0]},  # the record travels in meta
                        "annotations": anns,
                        "existing": None if is_current else unlabeled.get(rid),
                    }
                )
    return pid, out


def requeue_stale(spec: Spec, kind: str, *, client: StudioClient, dry_run: bool = False) -> dict[str, Any]:
    """One new task per stale labeled task in the current version's project (made when missing), with the newest
    old annotation as a prior; an unlabeled task of the same record already there gets the prior instead.
    Returns a summary."""
    pid, stale = find_stale(spec, kind, client)
    summary: dict[str, Any] = {
        "kind": kind,
        "project_id": pid,
        "stale": len(stale),
        "requeued": 0,
        "tasks": [
            {
                "task": s["task"],
                "project": s["project"],
                "under": s["under"],
                "curate_id": s["curate_id"],
                "rules": [f"{r} ({w})" for r, w in s["rules"]],
            }
            for s in stale
        ],
    }
    if not stale or dry_run:
        return summary
    project, _ = ensure_project(client, spec, kind)  # the config and instructions follow the current spec
    pid = summary["project_id"] = int(project["id"])
    rule_ids = {r.id for r in spec.rules}
    tasks = []
    updated: list[int] = []
    for s in stale:
        try:
            record = parse_record(s["task_data"]["record"])
        except (KeyError, ValueError, TypeError):
            log.warning("task %s carries no curate record; not re-queued", s["task"])
            continue
        newest = max(
            s["annotations"],
            key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0),
        )
        prior = {
            "model_version": PRIOR_MODEL,
            "score": None,
            "result": prior_result(newest.get("result") or [], rule_ids),
        }
        marks = {
            "curate_requeue_of": s["task"],
            "prior_label_rules": ", ".join(f"{r} ({w})" for r, w in s["rules"]),
        }
        if (
            s.get("existing") is not None
        ):  # the record is in the project already, unlabeled: the prior goes there
            held = s["existing"]
            client.request("PATCH", f"/api/tasks/{held['id']}/", json={"data": {**held["data"], **marks}})
            client.request("POST", "/api/predictions/", json={"task": held["id"], **prior})
            updated.append(int(held["id"]))
            continue
        task = to_task(spec, kind, record)
        task["data"].update(marks)
        task["predictions"] = [prior]
        tasks.append(task)
    ids = client.import_tasks(pid, tasks) if tasks else []
    summary["requeued"] = len(ids) + len(updated)
    summary["task_ids"] = ids + updated
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


__all__ = [
    "PRIOR_MODEL",
    "find_stale",
    "prior_result",
    "requeue_stale",
    "skip_superseded",
    "spec_projects",
    "superseded",
]
