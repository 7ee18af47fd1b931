"""Execution engines for the per-record batch steps of `curate build`.

    from curate.engine import validate_step
    validate = validate_step("ray")          # or "local"
    valid = list(validate(records, spec=spec, ctx=ctx, lengths=lengths, max_tokens=limit))

"local" is `curate.engine.pool.validate_local`: `curate.steps.validate.validate` itself, on a fork process pool
over all cores for large inputs (same results). "ray" (`curate.engine.ray_engine.validate_ray`, extra
`ray`) runs the same function on batches of records as Ray tasks and gives back the same records,
quarantine rows, counters and lengths in the same order, so both engines write identical exports.

`task_mapper(engine)` runs the later steps' chunked per-record tasks (dedup's keys and verification, the split's
keys and texts, the export's batches): `local_map.LocalMapper` on fork pools, `ray_map.RayMapper` on Ray tasks;
the same task functions either way. What needs all the data at once (pairing, candidate pairs, the keep order,
groups and the split, writing the files in order) runs in the build process in both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curate.errors import CurateError

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "task_mapper", "validate_step"]


def validate_step(engine: str = "local") -> Callable[..., Any]:
    """The validate step for an engine name; raises CurateError for an unknown one."""
    if engine == "local":
        from curate.engine.pool import validate_local

        return validate_local
    if engine == "ray":
        from curate.engine.ray_engine import validate_ray

        return validate_ray
    raise CurateError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")


def task_mapper(engine: str = "local") -> Any:
    """What runs the build's chunked per-record tasks (dedup's keys and verification, the split's keys and texts,
    the export's batches) for an engine: `local_map.LocalMapper` (fork pools) or `ray_map.RayMapper` (Ray tasks,
    Ray started here and stopped by its `close()`). Both run the same task functions."""
    if engine == "ray":
        from curate.engine.ray_map import RayMapper

        return RayMapper()
    from curate.engine.local_map import LocalMapper

    return LocalMapper()
