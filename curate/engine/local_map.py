"""The local engine's fork pools: their settings, `pool_map`, and what dedup, the split and the export run on them
over rows (`RowAccess`, `LocalMapper`, `split_keys_all`); moved out of `curate.engine.compact`, whose read
(`compact.read_validate_rows`) forks its pools with the same settings.

    from curate.engine.local_map import LocalMapper
    mapper = LocalMapper()
    keys = list(mapper.pool_map(split_keys, rows))  # in order; forked from POOL_MIN_LINES rows on

`pool_workers()`: CURATE_WORKERS, else the cores `os.sched_getaffinity` allows (1 turns the pools off); a pool
forks only while no other thread runs (`_fork_safe`). The read reads `POOL_MIN_LINES`, `POOL_CHUNK` and
`_fork_safe` from this module when it runs, so one setting here (tests patch them here) holds for every pool.
`curate.engine.ray_map.RayMapper` runs the same task functions on Ray.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from typing import Any

from curate.engine.pool import env_workers, fork_safe, worker_init
from curate.engine.rows import (
    Row,
    dedup_messages,
    keep_priority,
    read_objs,
    source_file,
    split_keys,
    user_turns_all,
)
from curate.steps.dedup_keys import ChunkDedup

POOL_MIN_LINES = 8_192  # below this a native file is read serially (a fork + pipes cost ~30-50 ms)
POOL_CHUNK = 4_096  # lines per task


def pool_workers() -> int:
    """Processes for the compact read: CURATE_WORKERS, else the cores this process may run on (1: no pool)."""
    env = env_workers()
    if env is not None:
        return env
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - no affinity on this platform
        return os.cpu_count() or 1


def _fork_safe() -> bool:
    """`fork` exists and no other thread runs here (`engine.pool.fork_safe`; tests patch this name)."""
    return fork_safe()


def _ordered(pool: Any, fn: Any, tasks: list[Any], ahead: int) -> Iterator[Any]:
    """`pool.imap(fn, tasks)` with at most `ahead` tasks in flight or waiting to be taken (imap would run through
    all of them and queue their results here when this process is the slower one: memory)."""
    from collections import deque

    waiting: deque[Any] = deque()
    it = iter(tasks)
    for t in it:
        waiting.append(pool.apply_async(fn, (t,)))
        if len(waiting) >= ahead:
            break
    while waiting:
        got = waiting.popleft().get()
        t = next(it, None)
        if t is not None:
            waiting.append(pool.apply_async(fn, (t,)))
        yield got


_MAP: tuple[Any, ...] | None = None  # (function, items) inherited by pool_map's forked workers


def pool_map(
    fn: Any, items: Sequence[Any], *, min_items: int | None = None, chunk: int | None = None
) -> Iterator[Any]:
    """`map(fn, items)`, in order, on a fork pool when there are `min_items` (default `POOL_MIN_LINES`) items or
    more and `pool_workers()` >= 2; `fn` must depend on its item alone (the workers see the items as they were at
    the fork) and return something picklable."""
    if not use_pool(len(items), min_items):
        return map(fn, items)
    return _pool_map(fn, items, pool_workers(), chunk or POOL_CHUNK)


def use_pool(n: int, min_items: int | None = None) -> bool:
    """Whether `pool_map` over `n` items forks: `min_items` (default `POOL_MIN_LINES`) or more, `pool_workers()`
    >= 2 and no other thread running."""
    return n >= (POOL_MIN_LINES if min_items is None else min_items) and pool_workers() >= 2 and _fork_safe()


def _pool_map(fn: Any, items: Sequence[Any], workers: int, chunk: int) -> Iterator[Any]:
    """`map(fn, items)` in order on a fork pool of `workers`, `chunk` items a task, 2 tasks a worker queued."""
    return _fork_map(fn, items, workers, chunk, 2)


def _fork_map(fn: Any, items: Sequence[Any], workers: int, chunk: int, ahead: int) -> Iterator[Any]:
    """`map(fn, items)` in order on a fork pool of `workers`, `chunk` items a task, `ahead` tasks a worker queued
    (one implementation for `_pool_map` and `RowAccess.eager_pool_map`)."""
    global _MAP
    n = len(items)
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    _MAP = (fn, items)
    try:
        with multiprocessing.get_context("fork").Pool(
            min(workers, len(bounds)), initializer=worker_init
        ) as pool:
            _MAP = None
            for got in _ordered(pool, _map_chunk, bounds, ahead * workers):
                yield from got
    finally:
        _MAP = None


def _map_chunk(bounds: tuple[int, int]) -> list[Any]:
    assert _MAP is not None
    fn, items = _MAP
    return [fn(items[i]) for i in range(*bounds)]


# ---------------------------------------------------------------- the steps after validate, over rows


class RowAccess:
    """What `curate.steps.dedup.dedup` reads of a row (its `access=`), plus two optional hooks dedup uses when
    present: `texts` (many rows' dedup texts, their lines read in bulk) and `map` (dedup's chunked tasks on the
    fork pool)."""

    kind = staticmethod(lambda r: r.kind)
    priority = staticmethod(keep_priority)
    where = staticmethod(lambda r: r.where())
    file = staticmethod(source_file)

    @staticmethod
    def messages(rows: Sequence[Row]) -> list[Any]:
        """`dedup_messages` of each row, each fast row's line parsed once and nearby lines read with one `pread`
        (`read_objs`)."""
        return [dedup_messages(r, o) for r, o in zip(rows, read_objs(rows))]

    @staticmethod
    def fused(row: Row) -> tuple[ChunkDedup, int] | None:
        """The dedup keys the read's workers made of this row: (their chunk, its item there), or None; the row
        gives them up (dedup takes them once)."""
        ck = row.dkeys
        if ck is None:
            return None
        row.dkeys = None
        j = ck.item(row.line)
        return None if j < 0 else (ck, j)

    @staticmethod
    def map(fn: Any, tasks: Sequence[Any], work: int) -> Iterator[Any]:
        """`fn(task, threads)` for each task, in order: on a fork pool (`pool_workers()` processes, each task's
        MinHash on one thread: threads=1) when the tasks read `POOL_MIN_LINES` rows or more, else here with
        threads=None. `fn` must depend on its task and on what this process holds at the fork alone.

        Unlike `pool_map` (2 tasks a worker in flight), 8 tasks a worker are queued: dedup's results are small
        (~100 bytes a row, ~0.8 MB a task), and a worker then rarely waits for a slower one's task (a busy
        machine) while tasks are left; the results waiting for their turn stay bounded."""
        workers = pool_workers()
        if workers < 2 or work < POOL_MIN_LINES or len(tasks) < 2 or not _fork_safe():
            return (fn(t, None) for t in tasks)

        def dedup_task(task: Any) -> Any:
            return fn(task, 1)

        return RowAccess.eager_pool_map(dedup_task, tasks, workers)

    @staticmethod
    def eager_pool_map(fn: Any, tasks: Sequence[Any], workers: int) -> Iterator[Any]:
        """`map(fn, tasks)` in order on a fork pool of `workers`, one task each, 8 tasks a worker queued."""
        return _fork_map(fn, tasks, workers, 1, 8)


class LocalMapper:
    """The local engine's runner of the build's chunked per-record tasks: fork pools (`RowAccess.map`,
    `pool_map`). `curate.engine.ray_map.RayMapper` has the same methods and runs the same tasks on Ray."""

    access = RowAccess
    spool = True  # the export's pooled batches come back through /dev/shm files (export.Spool)
    pool_map = staticmethod(pool_map)
    use_pool = staticmethod(use_pool)
    turns_all = staticmethod(lambda rows: user_turns_all(rows))

    def share(self, rows: Sequence[Row]) -> None:
        """Nothing to do: forked workers see the rows as they are."""

    def close(self) -> None:
        """Nothing to stop: each pool ends with its map."""


def split_keys_all(rows: Sequence[Row], mapper: Any = None) -> Iterator[tuple[str, str]]:
    """`split_keys` of each row, in order: the keys the read's workers made where a row has them (taken: the row
    no longer holds them), the rest on the fork pool (`pool_map`), or `mapper.pool_map` when given."""
    missing = [r for r in rows if r.keys is None]
    made = iter((mapper.pool_map if mapper else pool_map)(split_keys, missing)) if missing else iter(())
    for r in rows:
        ck = r.keys
        if ck is None:
            yield next(made)
        else:
            r.keys = None
            yield ck.get(r.line)


__all__ = [
    "POOL_CHUNK",
    "POOL_MIN_LINES",
    "LocalMapper",
    "RowAccess",
    "pool_map",
    "pool_workers",
    "split_keys_all",
    "use_pool",
]
