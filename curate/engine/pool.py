"""The local engine: the validate step on all cores with a fork process pool, same results as the serial step.

    from curate.engine.pool import validate_local
    valid = list(validate_local(records, spec=spec, ctx=ctx, lengths=lengths, max_tokens=1024, workers=2))

Serial (`curate.steps.validate.validate` itself) for fewer than `min_records` records, one worker, a tokenizer
(tokenizers do not survive a fork well), a platform without `fork`, or a process with other threads running (a
progress bar's refresh thread, say: forking a threaded process can deadlock the child). Otherwise the records
are read first, the pool's workers are forked with them (copy-on-write: nothing is pickled on the way in), each
worker runs the serial step over index ranges and sends back only what it decided: quarantine rows (with their
originals), the lengths it measured, and for each passing record its check results, spec ref and `violates`.
The driver rebuilds each passing record as one `model_copy` of its input with those fields, in input order, so
records, quarantine rows, reasons, counters and lengths are exactly what the serial step gives (tests compare).

Workers: `workers=` or `CURATE_WORKERS` (1 turns the pool off); default: the cores left free by the 1-minute load
average. Measured on the 2-core machine with load ~3 from other jobs (30k records, validate only): serial 80 us
CPU / 118 us wall per record; pool 13 us in the driver + 85 us in the workers, but 150 us wall, because there
was no free core; hence a busy machine gets the serial step.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from curate.records import CheckResult, PreferenceRecord, SFTRecord
from curate.steps.base import RunContext
from curate.steps.validate import STEP, LengthCounter, validate

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord
MIN_RECORDS = 20_000
CHUNK = 2_000
_DECIDED = ("checks", "spec", "violates")  # the fields validate sets on a passing record
_STATE: tuple[Any, ...] | None = None  # (records, spec, max_tokens) inherited by the forked workers

__all__ = ["default_workers", "env_workers", "fork_safe", "validate_local"]


def env_workers() -> int | None:
    """CURATE_WORKERS as a worker count (>= 1), or None when it is unset or not a number (logged)."""
    env = os.environ.get("CURATE_WORKERS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            log.warning("CURATE_WORKERS=%r is not a number; ignored", env)
    return None


def worker_init() -> None:
    """Every fork pool's worker initializer: Ctrl-C is the parent's to handle (it stops the pool and prints one
    line); a worker that got SIGINT too would print "Process ForkPoolWorker-N:" and a traceback. SIGTERM (what
    `Pool.terminate` sends) kills the worker outright whatever handler the parent installed: a Python-level handler
    only runs when the worker gets back to Python code, so a worker blocked in C would outlive the pool and its
    parent would wait in `join` forever (seen: a test run's SIGTERM handler hung the pools' teardown)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def fork_safe() -> bool:
    """`fork` exists and no other thread runs here (forking a threaded process can deadlock the child), but for
    the display threads of the CLI's progress output (`curate-progress`, rich's refresh thread): they only wait and
    write to stderr, which the pool's workers never touch; without them every CLI build ran on one core."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return all(
        t is threading.main_thread()
        or t.name.startswith("curate-progress")
        or type(t).__name__ == "_RefreshThread"
        for t in threading.enumerate()
    )


def default_workers() -> int:
    """CURATE_WORKERS, else the cores the load average leaves free."""
    env = env_workers()
    if env is not None:
        return env
    cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])  # cores other jobs already keep busy
    except OSError:  # pragma: no cover - no load average on this platform
        busy = 0
    return max(1, cores - busy)


def validate_local(
    records: Iterable[Rec],
    *,
    spec: Any,
    ctx: RunContext,
    lengths: LengthCounter | None = None,
    max_tokens: int | None = None,
    workers: int | None = None,
    min_records: int = MIN_RECORDS,
    chunk: int = CHUNK,
) -> Iterator[Rec]:
    """`curate.steps.validate.validate`, on a process pool when it is worth it (see the module doc)."""
    lengths = lengths if lengths is not None else LengthCounter(spec)
    workers = workers if workers is not None else default_workers()
    if workers <= 1 or lengths.tokenizer is not None or not fork_safe():
        return validate(records, spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens)
    recs = list(records)
    if len(recs) < min_records:
        return validate(recs, spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens)
    return _pooled(
        recs, spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens, workers=workers, chunk=chunk
    )


def _pooled(
    recs: list[Rec],
    *,
    spec: Any,
    ctx: RunContext,
    lengths: LengthCounter,
    max_tokens: int | None,
    workers: int,
    chunk: int,
) -> Iterator[Rec]:
    global _STATE
    n = len(recs)
    _STATE = (recs, spec, max_tokens)
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    shared: dict[tuple[str, str, str, str], CheckResult] = {}
    done = 0
    try:
        with multiprocessing.get_context("fork").Pool(
            min(workers, len(bounds)), initializer=worker_init
        ) as pool:
            _STATE = None  # the workers have their copy; the driver's list is released as records are rebuilt
            for (a, b), (kept, quarantined, reasons, per_file, counters, sizes) in zip(
                bounds, pool.imap(_work, bounds)
            ):
                for step, rows in quarantined.items():
                    ctx.quarantined[step].extend(rows)
                ctx.reasons.update(reasons)
                ctx.per_file_quarantined.update(per_file)
                ctx.counters.update(counters)
                lengths.lengths.update(sizes)
                for i, checks, spec_ref, violates, whole in kept:
                    if whole is not None:
                        yield whole
                        continue
                    src = recs[i]
                    update: dict[str, Any] = {
                        "checks": tuple(shared.get(c) or _result(shared, c) for c in checks)
                    }
                    if src.spec is None:
                        update["spec"] = spec_ref
                    if violates != src.violates:
                        update["violates"] = violates
                    yield src.model_copy(update=update)
                for i in range(a, b):
                    recs[i] = None  # type: ignore[call-overload]
                done = b
                ctx.report(STEP, done)
    finally:
        _STATE = None
    ctx.report(STEP, n, n)


def _result(
    shared: dict[tuple[str, str, str, str], CheckResult], c: tuple[str, str, str, str]
) -> CheckResult:
    if len(shared) > 100_000:
        shared.clear()
    res = shared[c] = CheckResult(rule=c[0], category=c[1], status=c[2], detail=c[3])
    return res


def _work(bounds: tuple[int, int]) -> tuple[Any, ...]:
    """In a worker: the serial step over records[a:b]; what it decided, compactly."""
    assert _STATE is not None
    recs, spec, max_tokens = _STATE
    a, b = bounds
    ctx = RunContext()
    lengths = LengthCounter(spec)
    at = [a]

    def feed() -> Iterator[Rec]:
        for i in range(a, b):
            at[0] = i
            yield recs[i]

    kept = []
    for out in validate(feed(), spec=spec, ctx=ctx, lengths=lengths, max_tokens=max_tokens):
        src = recs[at[0]].__dict__
        # the step changed only these fields (model_copy keeps the others' objects): send the decision; else,
        # should validate ever change another field, the whole record
        same = all(v is src.get(k) for k, v in out.__dict__.items() if k not in _DECIDED)
        kept.append(
            (
                at[0],
                tuple((c.rule, c.category, c.status, c.detail) for c in out.checks),
                out.spec,
                out.violates,
                None if same else out,
            )
        )
    return (
        kept,
        dict(ctx.quarantined),
        dict(ctx.reasons),
        dict(ctx.per_file_quarantined),
        dict(ctx.counters),
        lengths.lengths,
    )
