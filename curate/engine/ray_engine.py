"""The Ray engine: the per-record validate step on batches, across a local or remote Ray cluster.

The JSONL inputs of one record a line (native, OpenAI, ShareGPT, Alpaca, ... lines) are not read here: the build
reads them as the local engine does, in chunks, each chunk a Ray task (`compact.read_validate_rows(mapper=)`,
`ray_map.RayMapper.read_chunks`), into the same compact rows. This step serves the other inputs (JSON arrays,
Parquet, CSV, a build with a tokenizer: the record path).

    from curate.engine.ray_engine import validate_ray
    valid = list(validate_ray(records, spec=spec, ctx=ctx, lengths=lengths, max_tokens=1024))

Same signature and results as `curate.steps.validate.validate`: records come back in input order with their
checks, quarantine rows land in `ctx` in the same order with the same reason codes, and `lengths.lengths` gets
the same values, so `curate build --engine ray` and `--engine local` write identical exports.

How it runs: the driver reads records (streaming, as the local engine does) and serializes them in batches of
`batch_size`; each batch is a Ray task running `curate.steps.validate.validate` over it (each worker rebuilds
the spec's checks once per batch from a pickled spec, never from user files), 2 x CPUs batches in flight, and
the driver merges the results in order as they come back. (Tasks, not a Ray Data `from_items` job: that one
needed every serialized record in a list first and all results back before the first record went on, ~2 copies
of the input in the driver; and Ray Data does not run through Ray Client, `ray://`.) The later stages'
per-record tasks (dedup's keys and verification, the split's keys, texts and verification, the export's
batches) run on Ray too, through `curate.engine.ray_map.RayMapper`; their decisions that need every record
(candidate pairs, greedy keep order, groups, the split) stay on the driver, over fixed-size arrays.

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
from curate.records import CheckResult, PreferenceRecord, SFTRecord, dump_record, parse_record

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
    """A Ray task: the local validate step over one batch of serialized records, one result per record."""
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


def _shared_checks(data: dict[str, Any], shared: dict[tuple[str, ...], CheckResult]) -> dict[str, Any]:
    """A record dict whose check results are shared objects (~10 rules x ~300 bytes a record otherwise: the local
    engine's pool shares them the same way); the record validates to an equal one."""
    checks = data.get("checks")
    if checks:
        if len(shared) > 100_000:
            shared.clear()
        out = []
        for c in checks:
            key = (c["rule"], c["category"], c["status"], c.get("detail", ""))
            got = shared.get(key)
            if got is None:
                got = shared[key] = CheckResult.model_validate(c)
            out.append(got)
        data["checks"] = out
    return data


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
    """`curate.steps.validate.validate` on Ray tasks (see the module docstring); same results, same order."""
    from curate.steps.validate import LengthCounter

    global RUNS
    RUNS += 1
    lengths = lengths if lengths is not None else LengthCounter(spec)
    payload = pickle.dumps((spec, lengths.tokenizer, max_tokens))
    return _validated(iter(records), payload, ctx, lengths, batch_size, address, num_cpus)


def _validated(
    records: Iterator[Rec],
    payload: bytes,
    ctx: Any,
    lengths: Any,
    batch_size: int,
    address: str | None,
    num_cpus: int | None,
) -> Iterator[Rec]:
    """The records, validated a batch a task, in order; `2 x CPUs` batches in flight, the next batch read from
    `records` as one comes back (the driver never holds more)."""
    from collections import deque
    from itertools import islice

    with ray_session(address, num_cpus) as ray:
        fn = ray.remote(num_cpus=1)(_validate_batch)
        ahead = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        spec_ref = ray.put(payload)
        waiting: deque[Any] = deque()

        def submit() -> bool:
            batch = [orjson.dumps(dump_record(r)) for r in islice(records, batch_size)]
            if batch:
                waiting.append(fn.remote({"rec": batch}, spec_ref))
            return bool(batch)

        more = True
        while more and len(waiting) < ahead:
            more = submit()
        n = 0
        shared: dict[
            tuple[str, ...], CheckResult
        ] = {}  # one object per distinct check result, as the local step
        while waiting:
            got = ray.get(waiting.popleft())
            if more:
                more = submit()
            for rec_b, q_b, size in zip(got["rec"], got["q"], got["len"]):
                n += 1
                q = orjson.loads(q_b)
                _merge_quarantine(ctx, q["rows"], q["counters"])
                if n % 1000 == 0:
                    ctx.report("validate", n)
                if rec_b:
                    rec = parse_record(_shared_checks(orjson.loads(rec_b), shared))
                    lengths.lengths[rec.id] = size
                    yield rec
        if n:
            log.info("ray engine: validated %d records", n)
            ctx.report("validate", n, n)
