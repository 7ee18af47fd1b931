"""The build's manifest (manifest.json): what went in, what came out and why, per input file, and the proof that
nothing was lost (records in = exported + quarantined + removed as duplicates, per file). `curate.steps.pipeline`
assembles it from the steps' results; docs/contracts.md describes its fields.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curate._version import __version__
from curate.errors import CurateError, ExportError
from curate.records import PreferenceRecord, SFTRecord
from curate.spec import Spec
from curate.steps.base import RunContext
from curate.steps.export import TEXT_KINDS
from curate.steps.heldout import HeldoutLock
from curate.steps.read import detect_format
from curate.steps.validate import LengthCounter

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord
NONE_FILE = "<none>"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def formats_of(paths: Sequence[Path], forced: str | None, mapping: dict[str, str] | None) -> dict[str, str]:
    if forced:
        return {str(p): forced for p in paths}
    out = {}
    for p in paths:
        try:
            out[str(p)] = detect_format(p, mapping)
        except CurateError:
            out[str(p)] = ""
    return out


def build_manifest(
    spec: Spec,
    ctx: RunContext,
    inputs_info: list[dict[str, Any]],
    totals: dict[str, int],
    clusters: list[dict[str, Any]],
    near_threshold: float,
    parts: Any,
    coverage: dict[str, Any],
    lengths: LengthCounter,
    limit: int | None,
    splits: dict[str, tuple[list[Any], list[Any]]],
    negatives: int,
    pairs_made: int,
    old_lock: HeldoutLock | None,
    lock_path: Path | None,
    sft_format: str,
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """manifest.json but its "files" (docs/contracts.md); `splits`: {"sft": (train, test), "dpo": ...} items (and
    "prompts" or "text" when the build has unlabeled prompts)."""
    formats = spec.export.formats
    q_counts = {f"{s}/{r}": n for (s, r), n in sorted(ctx.reasons.items())}
    exported_formats = [f for f in ("sft", "dpo") if f in formats] + [k for k in splits if k in TEXT_KINDS]
    got = lengths.lengths
    return {
        "tool": {"name": "curate", "version": __version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "spec": {
            "name": spec.name,
            "version": spec.version,
            "ref": spec.ref,
            "sha256": spec.digest,
            "path": str(spec.path) if spec.path else None,
            **contract(spec),
        },  # rules_sha + version_sha (curate.versioning, issue #18)
        "stale_labels": stale_labels(spec, inputs_info),
        "inputs": inputs_info,
        "counts": {
            **totals,
            **{kind: {"train": len(tr), "test": len(te)} for kind, (tr, te) in splits.items()},
            "negatives": negatives,
            "pairs_made": pairs_made,
        },
        "conservation": {"ok": True, **totals},
        "quarantine": q_counts,
        "dedup": dedup_counts(clusters, near_threshold),
        "leakage": parts.leakage.as_dict(),
        "coverage": coverage,
        "lengths": {
            "unit": "tokens",
            "estimated": lengths.tokenizer is None,
            "max_tokens": limit,
            **{
                fmt: {"train": [got.get(r.id, 0) for r in tr], "test": [got.get(r.id, 0) for r in te]}
                for fmt, (tr, te) in splits.items()
            },
        },
        "split": {
            "heldout": spec.split.heldout,
            "seed": spec.split.seed,
            "stratify": spec.split.stratify,
            "groups": parts.groups,
            "locked_from_previous": len(old_lock.ids) if old_lock else 0,
            "lock_from": str(lock_path) if old_lock else None,
        },
        "export": {
            "formats": exported_formats,
            "sft_format": sft_format,
            "include_system_prompt": spec.export.include_system_prompt,
        },
        "exported_formats": exported_formats,
        "system_prompt_added": bool(spec.export.include_system_prompt and spec.system_prompt.strip()),
        "lineage": lineage,
        "files": {},
    }


def contract(spec: Spec) -> dict[str, Any]:
    """The spec's rule hashes and version hash for the manifest (curate.versioning)."""
    from curate.versioning import spec_version

    v = spec_version(spec)
    return {"rules_sha": v["rules"], "version_sha": v["sha"]}


def stale_labels(spec: Spec, inputs_info: list[dict[str, Any]]) -> dict[str, Any]:
    """Labels in the inputs made under other rule hashes: counted, or an error under
    export.stale_labels: error."""
    from curate.versioning import stale_labels_in

    got = stale_labels_in([i["file"] for i in inputs_info], spec)
    if got["stale"] and spec.export.stale_labels == "error":
        ex = got["examples"][0]
        raise ExportError(
            f"{got['stale']} labeled records were labeled under other rules (e.g. "
            f"{ex['where']}: {', '.join(ex['rules'])}); re-label them with `curate label push "
            f"{spec.path or spec.name} --stale` and pull, or set export.stale_labels: warn"
        )
    return got


def file_of(source: Any) -> str:
    if isinstance(source, dict):
        return source.get("file") or NONE_FILE
    return getattr(source, "file", None) or NONE_FILE


def conservation_counts(
    ctx: RunContext, paths: Sequence[Path], exp: Counter[str], formats: dict[str, str]
) -> list[dict[str, Any]]:
    """Per input file: in = exported + quarantined + duplicates (`exp`: exported items per source file)."""
    dup = dup_counts(ctx)
    rows = []
    bad = []
    for p in paths:
        f = str(p)
        row = {
            "file": f,
            "format": formats.get(f, ""),
            "sha256": sha256(p),
            "in": ctx.counters.get("in:" + f, 0),
            "exported": exp.get(f, 0),
            "quarantined": ctx.per_file_quarantined.get(f, 0),
            "duplicates": dup.get(f, 0),
        }
        if row["in"] != row["exported"] + row["quarantined"] + row["duplicates"]:
            bad.append(
                f"{f}: in {row['in']} != exported {row['exported']} + quarantined {row['quarantined']} + "
                f"duplicates {row['duplicates']}"
            )
        rows.append(row)
    if bad:
        raise ExportError("conservation does not hold, nothing was written: " + "; ".join(bad))
    return rows


def extra_counts(ctx: RunContext, exp: Counter[str]) -> dict[str, dict[str, int]]:
    """Counts attributed to no input file (should be empty)."""
    known = {k[3:] for k in ctx.counters if k.startswith("in:")}
    out: dict[str, dict[str, int]] = {}
    dup = dup_counts(ctx)
    for f in set(exp) | set(dup) | set(ctx.per_file_quarantined):
        if f not in known:
            out[f] = {
                "exported": exp.get(f, 0),
                "duplicates": dup.get(f, 0),
                "quarantined": ctx.per_file_quarantined.get(f, 0),
            }
    return out


def dup_counts(ctx: RunContext) -> Counter[str]:
    return Counter(
        {k[len("duplicates:") :]: v for k, v in ctx.counters.items() if k.startswith("duplicates:")}
    )


def dedup_counts(clusters: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    methods = Counter(c.get("method", "exact") for c in clusters)
    return {
        "exact": methods.get("exact", 0),
        "near": methods.get("near", 0),
        "semantic": methods.get("semantic", 0),
        "threshold": threshold,
    }


__all__ = ["build_manifest", "conservation_counts", "dedup_counts", "extra_counts", "formats_of"]
