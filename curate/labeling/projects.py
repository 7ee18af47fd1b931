"""curate's Label Studio project for a spec version and kind: found again by the marker line in its description
(`find_project`), created or brought up to date (`ensure_project`: config, instructions, overlap). Moved out of
`curate.labeling.push`, which still exports every name.
"""

from __future__ import annotations

from typing import Any

from curate.errors import LabelingError, ServerError
from curate.labeling.client import StudioClient
from curate.labeling.config import KINDS, build_config, instructions, project_marker, project_title
from curate.spec_model import Spec


def find_project(client: StudioClient, spec: Spec, kind: str) -> dict[str, Any] | None:
    """curate's project for this spec version and kind, found by the marker line in its description."""
    marker = project_marker(spec, kind)
    for p in client.projects():
        if marker in (p.get("description") or "").splitlines():
            return p
    return None


def _differs(old: Any, new: Any) -> bool:
    """The server strips surrounding whitespace from texts: compare the way it stores them."""
    return (old or "").strip() != new.strip() if isinstance(new, str) else old != new


def ensure_project(
    client: StudioClient, spec: Spec, kind: str, *, overlap: int | None = None
) -> tuple[dict[str, Any], bool]:
    """Create the project, or update its config, instructions and overlap; returns (project, created).

    `overlap=None` keeps an existing project's overlap (a new one gets 1): a rework push must not reset it.
    """
    if kind not in KINDS:
        raise LabelingError(f"unknown labeling kind {kind!r}; use one of: {', '.join(KINDS)}")
    config = build_config(spec, kind)
    problems = client.validate_config(config)
    if problems:
        raise LabelingError(
            f"Label Studio rejected the {kind} config compiled from {spec.ref}: {'; '.join(problems)}"
        )
    fields = {
        "label_config": config,
        "expert_instruction": instructions(spec, kind),
        "show_instruction": True,
        "overlap_cohort_percentage": 100,
        "show_collab_predictions": True,
    }
    if overlap is not None:
        fields["maximum_annotations"] = max(1, overlap)
    existing = find_project(client, spec, kind)
    if existing is None:
        fields.setdefault("maximum_annotations", 1)
        desc = project_marker(spec, kind) + ("\n" + spec.description if spec.description else "")
        return client.create_project(title=project_title(spec, kind), description=desc, **fields), True
    existing = client.project(existing["id"])
    changed = {k: v for k, v in fields.items() if _differs(existing.get(k), v)}
    if changed:
        try:
            existing = client.update_project(existing["id"], **changed)
        except ServerError as err:
            raise LabelingError(
                f"cannot update project {existing['id']} to the config compiled from {spec.ref} "
                f"({err}); annotations made under the old config stand in the way: bump the "
                "spec version for a new project"
            ) from None
    return existing, False
