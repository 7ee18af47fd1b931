"""The Ray Data engine: the per-record validate step on batches, across a local or remote Ray cluster.

    from curate.engine.ray_engine import validate_ray
    valid = list(validate_ray(records, spec=spec, ctx=ctx, lengths=lengths, max_tokens=1024))

Same signature and results as `curate.steps.validate.validate`: records come back in input order with their
checks, quarantine rows land in `ctx` in the same order with the same reason codes, and `lengths.lengths` gets
the same values, so `curate build --engine ray` and `--engine local` write identical exports.

How it runs: the driver reads records (streaming, as the local engine does) and serializes them in batches of
`batch_size`; Ray Data maps `curate.steps.validate.validate` over the batches (each worker rebuilds the spec's
checks once per batch from a pickled spec, never from user files) with `preserve_order`, and the driver merges
the results. The later stages' per-record tasks (dedup's keys and verification, the split's keys and texts, the
export's batches) run on Ray too, through `curate.engine.ray_map.RayMapper`; their decisions that need every
record (candidate pairs, greedy keep order, groups, the split) stay on the driver, over fixed-size arrays.

Where it runs:
- `RAY_ADDRESS` set (e.g. `ray://head:10001` or `auto` on a cluster node) or `address=` given: that cluster.
  Every node needs the same curate version installed (`pip install 'curate[ray]'`).
- otherwise a local Ray started for the run on 127.0.0.1 only (its gRPC servers listen on the loopback
  interface; see `ray_session`), no dashboard, `num_cpus` = all cores (or `CURATE_RAY_CPUS`), shut down
  again at the end of the run unless Ray was already running.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from curate.errors import CurateError
from curate.records import PreferenceRecord, SFTRecord, dump_record, parse_record

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord
RUNS = 0  # how many times validate_ray ran in this process (tests check the engine really ran)

__all__ = ["ray_session", "validate_ray"]


class ray_session:
    """Connect to `address` / RAY_ADDRESS, or start a local Ray on 127.0.0.1; stops only what it started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus or int(os.environ.get("CURATE_RAY_CPUS", "0")) or os.cpu_count() or 1
        self.started = False

    def __enter__(self) -> Any:
        if not self.address:
            # Ray on Linux advertises and binds its gRPC servers (GCS, raylet, workers) on the machine's
            # reachable IP even when asked for 127.0.0.1; with "cluster mode" off (read when ray is imported)
            # it stays on the loopback interface.
            if "ray" not in sys.modules:
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            elif getattr(sys.modules.get("ray._private.ray_constants"), "ENABLE_RAY_CLUSTER", False):
                log.warning(
                    "ray was imported before curate started it: the local Ray binds to this "
                    "machine's IP, not only 127.0.0.1 (set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                    "before importing ray)"
                )
        try:
            import ray
        except ImportError as err:
            raise CurateError("the ray engine needs Ray: pip install 'curate[ray]'") from err
        for name in ("ray", "ray.data"):  # library code stays quiet: Ray's INFO lines go nowhere
            logging.getLogger(name).setLevel(logging.WARNING)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.WARNING,
                "configure_logging": False,
            }
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(address="local", num_cpus=self.num_cpus, _node_ip_address="127.0.0.1", **kwargs)
            self.started = True
        return ray

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import ray

            ray.shutdown()


def _validate_batch(batch: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """Ray Data map function: run the local validate step over one batch, one result row per input record."""
    from curate.steps.base import RunContext
    from curate.steps.validate import LengthCounter, validate

    spec, tokenizer, max_tokens = pickle.loads(payload)  # our own payload, built by the driver below
    lengths = LengthCounter(spec, tokenizer)
    out_rec: list[bytes] = []
    out_q: list[bytes] = []
    out_len: list[int] = []
    for raw in batch["rec"]:
        rec = parse_record(orjson.loads(raw))
        ctx = RunContext()
        got = list(validate([rec], spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens))
        rows = [row for step_rows in ctx.quarantined.values() for row in step_rows]
        out_rec.append(orjson.dumps(dump_record(got[0])) if got else b"")
        out_q.append(orjson.dumps({"rows": rows, "counters": dict(ctx.counters)}, default=str))
        out_len.append(lengths.lengths.get(got[0].id, -1) if got else -1)
    return {"rec": out_rec, "q": out_q, "len": out_len}


def _merge_quarantine(ctx: Any, rows: list[dict[str, Any]], counters: dict[str, int]) -> None:
    from curate.records import Source

    for row in rows:
        ctx.quarantined[row["step"]].append(row)
        ctx.reasons[(row["step"], row["reason"])] += 1
        src = Source.model_validate(row.get("source") or {})
        ctx.per_file_quarantined[src.file or "<none>"] += 1
    for key, n in counters.items():
        ctx.count(key, n)


def validate_ray(
    records: Iterable[Rec],
    *,
    spec: Any,
    ctx: Any,
    lengths: Any = None,
    max_tokens: int | None = None,
    batch_size: int = 2000,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterator[Rec]:
    """`curate.steps.validate.validate` on Ray Data (see the module docstring); same results, same order."""
    from curate.steps.validate import LengthCounter

    global RUNS
    RUNS += 1
    lengths = lengths if lengths is not None else LengthCounter(spec)
    items = [{"rec": orjson.dumps(dump_record(r))} for r in records]
    if not items:
        return iter(())
    payload = pickle.dumps((spec, lengths.tokenizer, max_tokens))
    results: list[tuple[bytes, bytes, int]] = []
    with ray_session(address, num_cpus) as ray:
        if _client(ray):  # Ray Data does not run through Ray Client (ray://): the same batches as Ray tasks
            results = _validate_tasks(ray, [x["rec"] for x in items], payload, batch_size)
            del items
            return _merged(results, ctx, lengths)
        data_ctx = ray.data.DataContext.get_current()
        data_ctx.execution_options.preserve_order = True
        data_ctx.enable_progress_bars = False
        blocks = max(1, min(len(items) // max(1, batch_size // 2), 200))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.map_batches(
            _validate_batch, batch_size=batch_size, batch_format="numpy", fn_kwargs={"payload": payload}
        )
        for row in ds.iter_rows():
            results.append((bytes(row["rec"]), bytes(row["q"]), int(row["len"])))
    del items
    log.info("ray engine: validated %d records", len(results))
    return _merged(results, ctx, lengths)


def _client(ray: Any) -> bool:
    """Connected through Ray Client (a `ray://` address)."""
    try:
        return bool(ray.util.client.ray.is_connected())
    except AttributeError:  # pragma: no cover - a Ray without the client
        return False


def _validate_tasks(
    ray: Any, recs: list[bytes], payload: bytes, batch_size: int
) -> list[tuple[bytes, bytes, int]]:
    """`_validate_batch` over batches of `batch_size` records as Ray tasks, results in order (a few in flight)."""
    from collections import deque

    fn = ray.remote(num_cpus=1)(_validate_batch)
    ahead = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    batches = iter(range(0, len(recs), batch_size))
    waiting: deque[Any] = deque()
    results: list[tuple[bytes, bytes, int]] = []
    for a in batches:
        waiting.append(fn.remote({"rec": recs[a : a + batch_size]}, payload))
        if len(waiting) >= ahead:
            break
    while waiting:
        got = ray.get(waiting.popleft())
        a = next(batches, None)
        if a is not None:
            waiting.append(fn.remote({"rec": recs[a : a + batch_size]}, payload))
        results += zip(got["rec"], got["q"], got["len"])
    return results


def _merged(results: list[tuple[bytes, bytes, int]], ctx: Any, lengths: Any) -> Iterator[Rec]:
    for n, (rec_b, q_b, size) in enumerate(results, start=1):
        q = orjson.loads(q_b)
        _merge_quarantine(ctx, q["rows"], q["counters"])
        if n % 1000 == 0:
            ctx.report("validate", n)
        if rec_b:
            rec = parse_record(orjson.loads(rec_b))
            lengths.lengths[rec.id] = size
            yield rec
    ctx.report("validate", len(results), len(results))
