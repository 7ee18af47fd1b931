"""The Ray engine's task runner: the build's chunked per-record tasks on Ray workers instead of fork pools.

    from curate.engine.ray_map import RayMapper
    mapper = RayMapper()                   # connects to RAY_ADDRESS or starts a local Ray (ray_session)
    mapper.share(rows)                     # the build's rows, put in the object store once
    kept, clusters = dedup(rows, access=mapper.access, ...)
    mapper.close()

The steps hand their per-record work to a mapper as chunked tasks (`curate.steps.dedup._map` through
`access.map(fn, tasks, work)`; the split and the export through `pool_map(fn, items)`). The local engine's mapper
(`curate.engine.local_map.LocalMapper`) runs them on fork pools; this one runs the SAME functions on Ray tasks, in
order, so both engines make the same decisions and write the same bytes. Nothing here decides anything.

How a task reaches a worker: a task function is a closure over what the step holds (its rows, index arrays,
candidate pairs). It is pickled (cloudpickle) once per map call and put in the object store; each worker
unpickles it once per map call and keeps it while that call's tasks run (a fork pool's workers get the same from
the fork). Rows are not pickled with it: `share(rows)` puts the build's rows in the object store once (in chunks
of `SHARE_CHUNK`), a closure pickles each shared row as its position (pickle's persistent ids), and a worker
fetches each chunk once. Only tasks and results travel per task. The shared chunks, the task function and each
result travel pickled and zstd-compressed (`_pack`): the object store's pages the driver writes or reads count in
its resident memory, and records repeat a lot (the system prompt, the check results): a 100k OpenAI build's driver
held 227 MB of the store in its 705 MB peak with plain pickles, 92 MB of 583 compressed.

`RUNS` counts, per task function (`__qualname__`), the tasks that ran on Ray in this process, and `PIDS` the
worker processes that ran them (tests check that the stages really ran on Ray, off the driver).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import pickle
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from curate.engine.local_map import POOL_CHUNK, RowAccess
from curate.engine.rows import Row, user_turns

log = logging.getLogger(__name__)

SHARE_CHUNK = 8_192  # rows per object of the shared rows
RUNS: Counter[str] = Counter()  # task function -> tasks run on Ray (in this driver process)
PIDS: defaultdict[str, set[int]] = defaultdict(set)  # task function -> pids of the Ray workers that ran them

__all__ = ["PIDS", "RUNS", "RayMapper"]


class _RayAccess(RowAccess):
    """`RowAccess` whose `map` runs on Ray; a closure that captures it carries plain `RowAccess` to the workers."""

    def __init__(self, mapper: RayMapper) -> None:
        self.mapper = mapper

    def map(self, fn: Any, tasks: Sequence[Any], work: int) -> Iterator[Any]:  # type: ignore[override]
        return self.mapper.map(fn, tasks, work)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_plain_access, ())


def _plain_access() -> type[RowAccess]:
    return RowAccess


class RayMapper:
    """Runs `fn(task, threads)` over tasks on Ray workers, results in task order (see the module doc).

    Started with a `ray_session` (RAY_ADDRESS, else a local Ray on 127.0.0.1) that lasts until `close()`, so the
    validate step and every later stage use one Ray."""

    spool = False  # the export's batches come back through the object store, not /dev/shm files

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        from curate.engine.ray_engine import ray_session

        self._session = ray_session(address, num_cpus)
        self.ray = self._session.__enter__()
        self.access = _RayAccess(self)
        self._index: dict[int, int] = {}  # id(shared row) -> its position
        self._chunks: list[Any] = []  # object refs of the shared rows, SHARE_CHUNK a ref
        self._keep: list[Row] = []  # the shared rows (their ids stay theirs while shared)
        self._calls = itertools.count()
        self._token = uuid.uuid4().hex
        self._shared = uuid.uuid4().hex  # names this mapper's shared rows in the workers' caches
        self._remote = self.ray.remote(num_cpus=1)(_run_task)
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.ahead = max(2, 4 * cpus)  # tasks in flight or done and waiting for their turn

    # ------------------------------------------------------------------ what the steps call

    def share(self, rows: Sequence[Row]) -> None:
        """Put `rows` in the object store; closures pickled after this carry these rows as positions. A record row
        travels with its record, a plain-line row with its line's bytes (`Row.__reduce__`): no worker needs the
        build's files."""
        self._shared = uuid.uuid4().hex
        self._keep = list(rows)
        self._index = {id(r): k for k, r in enumerate(self._keep)}
        self._chunks = [
            self.ray.put(_pack(self._keep[a : a + SHARE_CHUNK]))
            for a in range(0, len(self._keep), SHARE_CHUNK)
        ]

    def map(self, fn: Callable[[Any, int | None], Any], tasks: Sequence[Any], work: int = 0) -> Iterator[Any]:
        """`fn(task, 1)` for each task, in order, each on a Ray worker (one CPU, one kernel thread)."""
        if not tasks:
            return iter(())
        return self._ordered(fn, tasks)

    def pool_map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        min_items: int | None = None,
        chunk: int | None = None,
    ) -> Iterator[Any]:
        """`map(fn, items)` in order, `chunk` (default `POOL_CHUNK`) items a Ray task (`local_map.pool_map`'s
        contract: `fn` depends on its item alone). The items travel with their task (a worker holds one task's)."""
        size = chunk or POOL_CHUNK
        parts = [items[a : a + size] for a in range(0, len(items), size)]

        def chunk_task(part: Sequence[Any], threads: int | None) -> list[Any]:
            return [fn(x) for x in part]

        chunk_task.__qualname__ = f"pool_map[{getattr(fn, '__qualname__', type(fn).__name__)}]"
        return itertools.chain.from_iterable(self.map(chunk_task, parts, len(items)))

    def read_chunks(
        self, fn: Callable[[int, Sequence[int], bytes], Any], src: Any, bounds: Sequence[tuple[int, int]]
    ) -> Iterator[Any]:
        """`fn(a, starts, data)` of each chunk (a, b) of the lines of `src` (an `store.Input`), in order, each on
        a Ray worker: this process reads the chunk's bytes as its task is sent (lines a+1..b: their offsets
        `starts`, the file's bytes from the first to the last, sent compressed), so no worker needs the file."""

        def chunks() -> Iterator[tuple[int, Any, bytes]]:
            for a, b in bounds:
                starts, data = src.chunk(a, b)
                yield a, starts, _compress(data)

        def read_chunk(task: tuple[int, Any, bytes], threads: int | None) -> Any:
            a, starts, blob = task
            return fn(a, starts, _decompress(blob))

        read_chunk.__qualname__ = "read_chunks"
        return self._ordered(read_chunk, chunks()) if bounds else iter(())

    @staticmethod
    def use_pool(n: int, min_items: int | None = None) -> bool:
        """Every stage's tasks run on Ray, whatever their size (the local engine forks only for large ones)."""
        return n > 0

    def turns_all(self, rows: Sequence[Row]) -> list[tuple[str, ...]]:
        """`rows.user_turns` of each row, on Ray."""
        return list(self.pool_map(user_turns, rows))

    def close(self) -> None:
        """Drop the shared rows and stop the Ray this mapper started (not one it found running)."""
        self._chunks, self._keep, self._index = [], [], {}
        self._session.__exit__(None, None, None)

    # ------------------------------------------------------------------ how

    def _dumps(self, fn: Any) -> bytes:
        import cloudpickle

        index = self._index
        buf = io.BytesIO()

        class _Pickler(cloudpickle.Pickler):  # type: ignore[misc, name-defined]
            def persistent_id(self, obj: Any) -> Any:
                if type(obj) is Row:
                    return index.get(id(obj))
                return None

        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(fn)
        return _compress(buf.getvalue())

    def _ordered(self, fn: Any, tasks: Sequence[Any]) -> Iterator[Any]:
        name = getattr(fn, "__qualname__", type(fn).__name__)
        # (unique: a worker's cached task function is never a stale one)
        key = f"{self._token}:{next(self._calls)}"
        blob = [self.ray.put(self._dumps(fn))]  # (in a list: the worker fetches it once, not every task)
        rows = (self._shared, list(self._chunks))
        waiting: deque[Any] = deque()
        it = iter(tasks)
        for t in itertools.islice(it, self.ahead):
            waiting.append(self._remote.remote(key, blob, rows, t))
        while waiting:
            pid, blob_got = self.ray.get(waiting.popleft())
            got = pickle.loads(_decompress(blob_got))  # (what our own task returned)
            RUNS[name] += 1
            PIDS[name].add(pid)
            t = next(it, _END)
            if t is not _END:
                waiting.append(self._remote.remote(key, blob, rows, t))
            yield got


_END = object()

# ---------------------------------------------------------------------- in a Ray worker

_FN: tuple[str, Any] | None = None  # (map call key, its task function) of the call this worker serves now
_ROWS: dict[str, _Chunks] = {}  # the shared rows this worker reads: share() key -> its chunks
SHARE_CACHE = 4  # chunks of shared rows a worker keeps (the most recently read)


class _Chunks:
    """A worker's view of one `share()`: chunks fetched from the object store when a row of theirs is read, the
    `SHARE_CACHE` most recently read kept."""

    def __init__(self, refs: list[Any]) -> None:
        from collections import OrderedDict

        self.refs = refs
        self.cache: OrderedDict[int, list[Row]] = OrderedDict()

    def row(self, pos: int) -> Row:
        k = pos // SHARE_CHUNK
        part = self.cache.get(k)
        if part is None:
            import ray

            part = self.cache[k] = pickle.loads(_decompress(ray.get(self.refs[k])))
            if len(self.cache) > SHARE_CACHE:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(k)
        return part[pos % SHARE_CHUNK]


class _SharedRow:
    """A shared row as a worker's task function holds it: its position; read through (`_Chunks.row`) on first
    use of any attribute, so a closure over all the rows costs a worker ~50 bytes a row, not the rows."""

    __slots__ = ("_chunks", "_pos")

    def __init__(self, chunks: _Chunks, pos: int) -> None:
        self._chunks = chunks
        self._pos = pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chunks.row(self._pos), name)


def _run_task(key: str, blob: list[Any], rows: tuple[str, list[Any]], task: Any) -> tuple[int, Any]:
    """One task in a worker: (this worker's pid, fn(task, 1) packed: `_pack`)."""
    global _FN
    if _FN is None or _FN[0] != key:
        _FN = None
        _FN = (key, _loads(blob[0], rows))
    return os.getpid(), _pack(_FN[1](task, 1))


def _loads(ref: Any, rows: tuple[str, list[Any]]) -> Any:
    import ray

    owner, refs = rows
    for other in [k for k in _ROWS if k != owner]:
        del _ROWS[other]  # a later build's mapper: the earlier one's rows are gone
    mine = _ROWS.get(owner) or _ROWS.setdefault(owner, _Chunks(refs))

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return _SharedRow(mine, pid)

    return _Unpickler(io.BytesIO(_decompress(ray.get(ref)))).load()


# ---------------------------------------------------------------------- what goes into the object store


def _pack(obj: Any) -> bytes:
    """`obj` pickled (cloudpickle: a result may hold a class of a task's closure) and compressed (`_compress`):
    the shared rows a chunk at a time, and each task's result."""
    import cloudpickle

    return _compress(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _compress(raw: bytes) -> bytes:
    """`raw` compressed with zstd (level 1, pyarrow's codec), its length in front. The object store's pages the
    driver writes count in its resident memory, and the shared rows repeat what records repeat (the system
    prompt, the spec's check results): docs/performance.md, round 12."""
    import pyarrow as pa

    return len(raw).to_bytes(8, "little") + pa.compress(raw, codec="zstd", asbytes=True)


def _decompress(blob: bytes) -> bytes:
    """The bytes `_compress` took."""
    import pyarrow as pa

    n = int.from_bytes(blob[:8], "little")
    return pa.decompress(memoryview(blob)[8:], decompressed_size=n, codec="zstd", asbytes=True)
