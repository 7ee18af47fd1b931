"""One row's history in a build folder: `curate explain ID`.

    >>> from curate.labeling.lineage import explain
    >>> story = explain("out/support-triage/v1", "3f2a9c01d4e5b6a7")      # doctest: +SKIP
    >>> [e["what"] for e in story["events"]]                              # doctest: +SKIP
    ['input', 'exported']

Reads only what the build wrote: `manifest.json` (spec, inputs), the inputs it names (the line that made the
record, with the record's own lineage: labels, annotations, the record it was made from), `clusters.jsonl` (the
twins it absorbed, or the record that absorbed it), `quarantine/*.jsonl`, `heldout.lock`, `negatives.jsonl`, and
the exported rows of `sft/` and `dpo/` (with their `lineage` column when the export has one). An id prefix of 6 or
more characters is enough when it is unique.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from curate.errors import CurateError
from curate.records import lineage_of, read_jsonl, record_from_native

MIN_PREFIX = 6


class ExplainError(CurateError):
    """The build folder or the id cannot be explained."""


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.exists():
        return
    for line, obj in read_jsonl(path):
        if isinstance(obj, dict):
            yield line, obj


def _match(value: Any, rid: str) -> bool:
    return isinstance(value, str) and (value == rid or (len(rid) >= MIN_PREFIX and value.startswith(rid)))


def explain(build_dir: str | Path, rid: str) -> dict[str, Any]:
    """{"id", "build", "spec", "events": [{"what", "where", ...}], "lineage"} for the record `rid` (or a prefix)."""
    out_dir = Path(build_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists():
        raise ExplainError(f"{out_dir}: no manifest.json; pass the folder `curate build` wrote (--out)")
    manifest = orjson.loads(manifest_path.read_bytes())
    if len(rid) < MIN_PREFIX:
        raise ExplainError(f"id {rid!r} is too short; give at least {MIN_PREFIX} characters of it")
    events: list[dict[str, Any]] = []
    ids: set[str] = set()
    lineage: dict[str, Any] | None = None
    # the exported rows
    for sub in ("sft", "dpo"):
        for split in ("train", "test"):
            path = out_dir / sub / f"{split}.jsonl"
            for line, row in _rows(path):
                if _match(row.get("id"), rid):
                    ids.add(row["id"])
                    ev: dict[str, Any] = {
                        "what": "exported",
                        "where": f"{path}:{line}",
                        "format": sub,
                        "split": split,
                    }
                    if row.get("lineage") is not None:
                        lin = row["lineage"]
                        ev["lineage"] = orjson.loads(lin) if isinstance(lin, str) else lin
                        lineage = lineage or ev["lineage"]
                    events.append(ev)
    for line, row in _rows(out_dir / "negatives.jsonl"):
        if _match(row.get("id"), rid):
            ids.add(row["id"])
            events.append(
                {"what": "exported", "where": f"{out_dir / 'negatives.jsonl'}:{line}", "format": "negatives"}
            )
    # duplicates
    for line, row in _rows(out_dir / "clusters.jsonl"):
        if _match(row.get("kept"), rid):
            ids.add(row["kept"])
            events.append(
                {
                    "what": "kept_over_duplicate",
                    "where": f"{out_dir / 'clusters.jsonl'}:{line}",
                    "other": row.get("dropped"),
                    "method": row.get("method"),
                    "score": row.get("score"),
                    "other_source": row.get("dropped_source"),
                }
            )
        if _match(row.get("dropped"), rid):
            ids.add(row["dropped"])
            events.append(
                {
                    "what": "dropped_as_duplicate",
                    "where": f"{out_dir / 'clusters.jsonl'}:{line}",
                    "other": row.get("kept"),
                    "method": row.get("method"),
                    "score": row.get("score"),
                    "other_source": row.get("kept_source"),
                }
            )
    # quarantine
    qdir = out_dir / "quarantine"
    for path in sorted(qdir.glob("*.jsonl")) if qdir.is_dir() else []:
        for line, row in _rows(path):
            orig = row.get("original")
            oid = orig.get("id") if isinstance(orig, dict) else None
            if _match(row.get("record_id"), rid) or _match(oid, rid):
                ids.add(row.get("record_id") or oid)
                events.append(
                    {
                        "what": "quarantined",
                        "where": f"{path}:{line}",
                        "step": row.get("step"),
                        "reason": row.get("reason"),
                        "detail": row.get("detail"),
                        "source": row.get("source"),
                    }
                )
    # the held-out lock
    lock = out_dir / "heldout.lock"
    if lock.exists():
        try:
            held = orjson.loads(lock.read_bytes())
        except orjson.JSONDecodeError:
            held = {}
        for key, what in (("ids", "held_out"), ("train_ids", "locked_to_train")):
            hits = [i for i in held.get(key) or [] if _match(i, rid)]
            if hits:
                ids.update(hits)
                events.append({"what": what, "where": str(lock)})
    # the input line that made it, with the record's own lineage (labels, annotations, its original)
    for item in manifest.get("inputs") or []:
        path = Path(item.get("file") or "")
        if path.suffix != ".jsonl" or not path.exists():
            continue
        for line, obj in _rows(path):
            try:
                rec = record_from_native(obj)
            except (ValueError, TypeError):
                continue
            if _match(rec.id, rid):
                ids.add(rec.id)
                lin = lineage_of(rec)
                if not lin["source"]:
                    lin["source"] = f"{path}:{line}"
                lineage = lineage or lin
                events.insert(
                    0,
                    {
                        "what": "input",
                        "where": f"{path}:{line}",
                        "category": rec.category,
                        "labels": rec.labels,
                        "lineage": lin,
                    },
                )
    if len(ids) > 1:
        raise ExplainError(
            f"id prefix {rid!r} matches {len(ids)} records ({', '.join(sorted(ids)[:5])}); "
            "give more characters"
        )
    if not events:
        raise ExplainError(
            f"{rid} is not in the build at {out_dir} (not exported, duplicated, quarantined or held out)"
        )
    spec = manifest.get("spec") or {}
    return {
        "id": next(iter(ids)) if ids else rid,
        "build": str(out_dir),
        "spec": {"ref": spec.get("ref"), "sha256": spec.get("sha256")},
        "created": manifest.get("created"),
        "events": events,
        "lineage": lineage,
    }


def render(story: dict[str, Any]) -> list[str]:
    """The history as lines for a terminal."""
    lines = [
        f"{story['id']} in {story['build']} (spec {story['spec'].get('ref')}, built {story.get('created')})"
    ]
    for ev in story["events"]:
        what = ev["what"]
        extra = ""
        if what == "quarantined":
            extra = f" {ev.get('step')}/{ev.get('reason')}: {ev.get('detail')}"
        elif what in ("kept_over_duplicate", "dropped_as_duplicate"):
            extra = f" {ev.get('method')} twin {ev.get('other')} (score {ev.get('score')})"
        elif what == "exported":
            extra = f" {ev.get('format')}" + (f"/{ev['split']}" if ev.get("split") else "")
        lines.append(f"  {what}{extra} at {ev['where']}")
    lin = story.get("lineage")
    if lin:
        lines.append(
            f"  from {lin.get('source') or '?'}"
            + (f"; made from {', '.join(lin['source_ids'])}" if lin.get("source_ids") else "")
            + (
                f"; annotations {', '.join(lin['annotations'])} by {lin.get('n_annotators')} annotator(s)"
                if lin.get("annotations")
                else ""
            )
            + (f", agreement {lin['agreement']}" if lin.get("agreement") else "")
            + (f"; spec sha256 {lin['spec_sha256'][:12]}" if lin.get("spec_sha256") else "")
            + ("; a model draft no human accepted" if lin.get("draft") else "")
        )
    return lines
