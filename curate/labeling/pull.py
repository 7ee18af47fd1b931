"""Pull annotations from Label Studio and turn them into records, agreement figures and a conflicts list.

    >>> from curate.spec import load_spec
    >>> from curate.labeling.client import connect
    >>> from curate.labeling.pull import pull
    >>> res = pull(load_spec("specs/support-triage"), client=connect(), out="pulled.jsonl")   # doctest: +SKIP
    >>> res.counts["records"]                                                                # doctest: +SKIP
    42

Exports go through the server's snapshot API (annotated tasks only), one project per kind. The records are
written as our native JSONL, so `curate build SPEC --input pulled.jsonl` takes them through the same validate /
dedup / split / export as imported data. Beside it: `quarantine/label.jsonl` (every annotation that made no
record, with a reason), `rework.jsonl` (corrections that fail the automatic rules: push them back with
`curate label push SPEC --kind review --input rework.jsonl`), `agreement.json` and `conflicts.jsonl`.

Per kind: `by-kind/<kind>/` holds each kind's records, quarantine, rework, conflicts, agreement and state; a
pull of some kinds (`--kind`) rewrites only theirs, and the files beside `out` are put together from every kind's.
Every task is counted once (`counts.task_states`: labeled, skipped, conflicted, quarantined, superseded, pending).

Incremental: `by-kind/<kind>/state.json` remembers every annotation id and its last update; each pull says how many are
new or changed, and with `since_last=True` writes only the records of tasks with new or changed annotations.
The fetch is incremental too: `pull-cache/<kind>.json` keeps the tasks of the last pull (as exported) and a
watermark, a server timestamp; the next pull exports only the tasks Label Studio updated after it (saving an
annotation bumps its task's `updated_at`), puts them in place of their old copies and converts the whole set,
so the outputs are those of a full pull. The watermark is the newest `updated_at` seen, but at most
MARGIN_S seconds before the server's clock at the start of the pull: a write stamped before the export and
committed after it is fetched next time. The project's count of (not skipped) annotations is checked against
the merged set; a difference (a deleted task, a missed write) makes it a full export. The first pull,
a changed server or project, or `full=True` export everything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import orjson

from curate.errors import ServerError
from curate.labeling.agreement import task_agreement
from curate.labeling.client import StudioClient, format_server_time, server_time
from curate.labeling.config import KINDS
from curate.labeling.convert import STEP, Answer, convert_task
from curate.labeling.push import find_project
from curate.labeling.stale import skip_superseded, superseded
from curate.records import PreferenceRecord, SFTRecord, dump_record, write_atomic, write_jsonl_atomic
from curate.spec import Spec
from curate.steps.base import RunContext

log = logging.getLogger(__name__)
Record = SFTRecord | PreferenceRecord
MARGIN_S = 10.0  # bound on the time between a write's updated_at stamp and its commit on the server
CACHE_VERSION = 1
Fetch = Callable[[str, int], list[dict[str, Any]]]


@dataclass
class PullResult:
    records: list[Record] = field(default_factory=list)
    rework: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    agreement: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    projects: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "projects": self.projects,
            "counts": self.counts,
            "agreement": self.agreement,
            "conflicts": self.conflicts,
            "rework": len(self.rework),
            "files": self.files,
            "seconds": self.seconds,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def default_out_dir(spec: Spec) -> Path:
    return Path(".curate") / "labeling" / spec.name / f"v{spec.version}"


class _Annotators(dict):  # type: ignore[type-arg]
    """user id -> email, filled from /api/users/ and, for users outside the list, /api/users/<id>/."""

    def __init__(self, client: StudioClient):
        super().__init__()
        self._client = client
        try:
            users = client.get_json("/api/users/")
        except ServerError:
            users = []
        items = users.get("results", []) if isinstance(users, dict) else users
        for u in items:
            self[u["id"]] = u.get("email") or u.get("username") or str(u["id"])

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self and isinstance(key, int):
            try:
                u = self._client.get_json(f"/api/users/{key}/")
                self[key] = u.get("email") or u.get("username") or str(key)
            except ServerError:
                self[key] = str(key)
        return super().get(key, default)


def _annotators(client: StudioClient) -> dict[Any, str]:
    return _Annotators(client)


def collect(
    spec: Spec,
    client: StudioClient,
    *,
    kinds: Iterable[str] = KINDS,
    adjudicator: str | None = None,
    ctx: RunContext | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    fetch: Fetch | None = None,
) -> tuple[PullResult, dict[str, dict[Any, list[Answer]]], list[dict[str, Any]]]:
    """Export and convert every kind's project; returns (result, answers per kind and task, exported tasks).

    `fetch(kind, project_id)` gives a project's annotated tasks (default: a full snapshot export).
    """
    fetch = fetch or (lambda _kind, pid: client.export_snapshot(pid, annotated_only=True))
    ctx = ctx or RunContext()
    res = PullResult()
    annotators = _annotators(client)
    answers: dict[str, dict[Any, list[Answer]]] = {}
    all_tasks: list[dict[str, Any]] = []
    task_states: dict[str, dict[str, int]] = {}
    counts: dict[str, Any] = {
        "tasks": 0,
        "annotations": 0,
        "used": 0,
        "outvoted": 0,
        "quarantined": 0,
        "conflicts": 0,
        "records": 0,
        "sft": 0,
        "preference": 0,
        "rework": 0,
    }
    for kind in kinds:
        project = find_project(client, spec, kind)
        if project is None:
            continue
        pid = int(project["id"])
        res.projects[kind] = pid
        t = time.perf_counter()
        tasks = fetch(kind, pid)
        # a task whose only annotations were skipped is not in an annotated-only export: fetch those too
        have = {tk.get("id") for tk in tasks}
        tasks = tasks + [
            tk
            for tk in client.export_snapshot(pid, annotated_only=False, skipped_only=True)
            if tk.get("id") not in have
        ]
        total = client.project(pid).get("task_number")
        res.timings["export"] = res.timings.get("export", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        answers[kind] = {}
        states = {
            "labeled": 0,
            "skipped": 0,
            "conflicted": 0,
            "quarantined": 0,
            "superseded": 0,
            "pending": 0,
        }
        replaced = superseded(tasks)  # old tasks whose re-queued copy (label push --stale) is labeled
        for i, task in enumerate(tasks):
            task["_curate_kind"] = kind
            if task.get("id") in replaced:
                n_old = skip_superseded(task, ctx, pid)
                counts["tasks"] += 1
                counts["annotations"] += n_old
                counts["quarantined"] += n_old
                states["superseded"] += 1
                continue
            out = convert_task(
                spec, kind, task, annotators=annotators, ctx=ctx, adjudicator=adjudicator, project=pid
            )
            counts["tasks"] += 1
            counts["annotations"] += len(task.get("annotations") or [])
            counts["used"] += out.used
            counts["outvoted"] += out.outvoted
            counts["quarantined"] += out.quarantined
            res.records.extend(out.records)
            res.rework.extend(out.rework)
            answers[kind][task.get("id")] = out.answers
            if out.conflict:
                res.conflicts.append(out.conflict)
            n_anns = len([a for a in task.get("annotations") or [] if isinstance(a, dict)])
            state = (
                "conflicted"
                if out.conflict
                else "labeled"
                if out.records
                else "skipped"
                if n_anns and out.skipped == n_anns
                else "pending"
                if not n_anns
                else "quarantined"
            )
            states[state] += 1
            if progress and i % 500 == 0:
                progress(f"pull {kind}", i, len(tasks))
        # every task of the project exactly once: labeled, skipped, conflicted, quarantined (no valid answer) or
        # pending (no annotation yet)
        states["pending"] += max(0, int(total or 0) - len(tasks))
        states["total"] = int(total) if total is not None else len(tasks)
        task_states[kind] = states
        all_tasks.extend(tasks)
        res.timings["convert"] = res.timings.get("convert", 0.0) + time.perf_counter() - t
    counts["conflicts"] = len(res.conflicts)
    counts["records"] = len(res.records)
    counts["sft"] = sum(1 for r in res.records if r.kind == "sft")
    counts["preference"] = len(res.records) - counts["sft"]
    counts["rework"] = len(res.rework)
    counts["quarantine"] = {f"{s}/{r}": n for (s, r), n in sorted(ctx.reasons.items())}
    counts["task_states"] = task_states
    counts["accounted"] = counts["used"] + counts["outvoted"] + counts["quarantined"] == counts[
        "annotations"
    ] and all(sum(v for k, v in st.items() if k != "total") == st["total"] for st in task_states.values())
    res.counts = counts
    rule_ids = [r.id for r in spec.rules]
    res.agreement = {
        kind: task_agreement(kind, rule_ids, by_task)
        for kind, by_task in answers.items()
        if any(len(v) > 1 for v in by_task.values())
    }
    return res, answers, all_tasks


def _state_key(task: dict[str, Any], ann: dict[str, Any]) -> str:
    return f"{task.get('_curate_kind')}:{ann.get('id')}"


class _IncrementalFetch:
    """fetch(kind, project) for collect(): only the tasks updated since the last pull, merged into its cache."""

    def __init__(
        self, client: StudioClient, cache_dir: Path, *, full: bool = False, margin_s: float = MARGIN_S
    ):
        self.client, self.cache_dir, self.full, self.margin_s = client, cache_dir, full, margin_s
        self.caches: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, Any] = {
            "fetched_tasks": 0,
            "full_exports": 0,
            "incremental_exports": 0,
            "full_export_reasons": [],
        }

    def _load(self, kind: str, pid: int) -> dict[str, Any] | None:
        path = self.cache_dir / f"{kind}.json"
        if self.full or not path.exists():
            return None
        try:
            cache = orjson.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        ok = (
            isinstance(cache, dict)
            and cache.get("version") == CACHE_VERSION
            and cache.get("server") == self.client.url
            and cache.get("project") == pid
            and isinstance(cache.get("tasks"), list)
            and isinstance(cache.get("watermark"), str)
        )
        return cache if ok else None

    def __call__(self, kind: str, pid: int) -> list[dict[str, Any]]:
        cache = self._load(kind, pid)
        # the project (its annotation count) when there is a cache to check, else the cheapest answer: either
        # way the server's clock (HTTP Date, whole seconds rounded down) before anything is exported
        r = self.client.request("GET", f"/api/projects/{pid}/" if cache is not None else "/health", ok=(404,))
        date = r.headers.get("date")
        now = parsedate_to_datetime(date) if date else None
        tasks: list[dict[str, Any]] | None = None
        if cache is not None:
            want = orjson.loads(r.content).get("total_annotations_number")
            fresh = self.client.export_snapshot(pid, annotated_only=True, updated_after=cache["watermark"])
            merged = {t["id"]: t for t in cache["tasks"]}
            merged.update((t["id"], t) for t in fresh)
            tasks = [merged[k] for k in sorted(merged)]
            have = _annotations_done(tasks)
            if have == want:
                self.counts["fetched_tasks"] += len(fresh)
                self.counts["incremental_exports"] += 1
            else:
                log.info(
                    "pull %s: %s annotations after merging, the server has %s: full export", kind, have, want
                )
                self.counts["full_export_reasons"].append(f"{kind}: annotations {have} != server {want}")
                tasks = None
        if tasks is None:
            tasks = self.client.export_snapshot(pid, annotated_only=True)
            self.counts["fetched_tasks"] += len(tasks)
            self.counts["full_exports"] += 1
        stamps = [server_time(str(t["updated_at"])) for t in tasks if t.get("updated_at")]
        watermark = max(stamps) if stamps else None
        if now is not None:
            bound = now - timedelta(seconds=self.margin_s)
            watermark = bound if watermark is None else min(watermark, bound)
        if watermark is not None:
            self.caches[kind] = {
                "version": CACHE_VERSION,
                "server": self.client.url,
                "project": pid,
                "watermark": format_server_time(watermark),
                "tasks": tasks,
            }
        return tasks

    def save(self) -> None:
        for kind, cache in self.caches.items():
            write_atomic(self.cache_dir / f"{kind}.json", orjson.dumps(cache))


def _annotations_done(tasks: list[dict[str, Any]]) -> int:
    """Annotations not skipped in exported tasks, as the project API counts them (total_annotations_number).

    Skipped ones are not compared: a task with only skipped annotations is not in an annotated-only export.
    """
    return sum(1 for t in tasks for a in t.get("annotations") or [] if not a.get("was_cancelled"))


def pull(
    spec: Spec,
    *,
    client: StudioClient,
    out: str | Path | None = None,
    kinds: Iterable[str] = KINDS,
    adjudicator: str | None = None,
    since_last: bool = False,
    ctx: RunContext | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    full: bool = False,
    margin_s: float = MARGIN_S,
) -> PullResult:
    """Pull, convert and write `out` (JSONL records) with quarantine, rework, agreement and conflicts beside it.

    Fetches only the tasks updated since the last pull into the same folder (see the module's docstring);
    `full=True` exports everything.
    """
    t0 = time.perf_counter()
    ctx = ctx or RunContext()
    out_path = Path(out) if out is not None else default_out_dir(spec) / "pulled.jsonl"
    out_dir = out_path.parent
    fetch = _IncrementalFetch(client, out_dir / "pull-cache", full=full, margin_s=margin_s)
    res, _answers, tasks = collect(
        spec, client, kinds=kinds, adjudicator=adjudicator, ctx=ctx, progress=progress, fetch=fetch
    )
    res.counts.update({k: v for k, v in fetch.counts.items()})
    # outputs and state per kind (by-kind/<kind>/): a pull of some kinds keeps what earlier pulls of the others
    # wrote; the files beside `out` are put together from every kind's files
    kind_of_project = {pid: kind for kind, pid in res.projects.items()}
    kind_of_task = {t.get("id"): t.get("_curate_kind") for t in tasks}
    per_kind: dict[str, dict[str, list[Any]]] = {
        k: {"records": [], "quarantine": [], "rework": [], "conflicts": []} for k in res.projects
    }
    fresh_total = written = 0
    for kind in res.projects:
        kdir = out_dir / "by-kind" / kind
        state_path = kdir / "state.json"
        try:
            state: dict[str, str] = json.loads(state_path.read_text()) if state_path.exists() else {}
        except ValueError:
            state = {}
        current: dict[str, str] = {}
        fresh_tasks: set[Any] = set()
        for task in tasks:
            if task.get("_curate_kind") != kind:
                continue
            for ann in task.get("annotations") or []:
                key = _state_key(task, ann)
                current[key] = str(ann.get("updated_at") or ann.get("created_at") or "")
                if state.get(key) != current[key]:
                    fresh_tasks.add(task.get("id"))
        fresh_total += sum(1 for k, v in current.items() if state.get(k) != v)
        bucket = per_kind[kind]
        bucket["records"] = [
            r
            for r in res.records
            if kind_of_project.get(r.source.project) == kind
            and (not since_last or r.source.task in fresh_tasks)
        ]
        bucket["quarantine"] = [
            q
            for q in ctx.quarantined.get(STEP, [])
            if kind_of_project.get((q.get("source") or {}).get("project")) == kind
        ]
        bucket["rework"] = [r for r in res.rework if kind_of_task.get(r.get("task")) == kind]
        bucket["conflicts"] = [c for c in res.conflicts if c.get("kind") == kind]
        written += len(bucket["records"])
        write_jsonl_atomic(kdir / "records.jsonl", (dump_record(r) for r in bucket["records"]))
        for name in ("quarantine", "rework", "conflicts"):
            write_jsonl_atomic(kdir / f"{name}.jsonl", bucket[name])
        write_atomic(
            kdir / "agreement.json", orjson.dumps(res.agreement.get(kind), option=orjson.OPT_INDENT_2)
        )
        write_atomic(state_path, orjson.dumps(current, option=orjson.OPT_SORT_KEYS))
    res.counts["new_or_changed_annotations"] = fresh_total
    res.counts["written"] = written
    # the combined files: every kind's latest pull
    combined: dict[str, list[bytes]] = {"records": [], "quarantine": [], "rework": [], "conflicts": []}
    agreement: dict[str, Any] = {}
    for kind in KINDS:
        kdir = out_dir / "by-kind" / kind
        for name, rows in combined.items():
            path = kdir / f"{name}.jsonl"
            if path.exists():
                rows.extend(line for line in path.read_bytes().splitlines() if line.strip())
        if (kdir / "agreement.json").exists():
            value = orjson.loads((kdir / "agreement.json").read_bytes())
            if value:
                agreement[kind] = value
    res.counts["records_in_file"] = len(combined["records"])
    _write_lines(out_path, combined["records"])
    _write_lines(out_dir / "quarantine" / f"{STEP}.jsonl", combined["quarantine"])
    _write_lines(out_dir / "rework.jsonl", combined["rework"])
    _write_lines(out_dir / "conflicts.jsonl", combined["conflicts"])
    write_atomic(
        out_dir / "agreement.json",
        orjson.dumps({"spec": spec.ref, "kinds": agreement}, option=orjson.OPT_INDENT_2),
    )
    fetch.save()  # last: a pull that fails before here leaves the previous cache, which is still valid
    res.files = {
        "records": str(out_path),
        "quarantine": str(out_dir / "quarantine" / f"{STEP}.jsonl"),
        "rework": str(out_dir / "rework.jsonl"),
        "conflicts": str(out_dir / "conflicts.jsonl"),
        "agreement": str(out_dir / "agreement.json"),
    }
    res.seconds = round(time.perf_counter() - t0, 3)
    res.timings["write"] = res.seconds - sum(res.timings.values())
    log.info("pulled %d records from %d annotations", len(res.records), res.counts["annotations"])
    return res


def _write_lines(path: Path, lines: list[bytes]) -> None:
    write_atomic(path, b"".join(line + b"\n" for line in lines))


def conflicts(
    spec: Spec, *, client: StudioClient, kinds: Iterable[str] = ("review", "pairwise")
) -> list[dict[str, Any]]:
    """Tasks whose annotators disagree on the main question (no majority), without writing anything."""
    return conflicts_and_agreement(spec, client=client, kinds=kinds)[0]


def conflicts_and_agreement(
    spec: Spec, *, client: StudioClient, kinds: Iterable[str] = ("review", "pairwise")
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(conflicts, agreement per kind: per question and per rule, as `label agreement` computes it)."""
    res, _answers, _tasks = collect(spec, client, kinds=kinds)
    return res.conflicts, res.agreement
