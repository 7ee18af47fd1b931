"""How the export's batches travel and land: Arrow schema inference (`infer_schema`), the shared-memory hand-off
from pool workers (`Spool`), a split's Parquet file written by row groups (`_RowGroups`) and the writer threads of
`write_split_batches` (`_Behind`). Moved out of `curate.steps.export`, which still exports every name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.outdir import clean_dead_spools


def infer_schema(rows: list[dict[str, Any]]) -> Any:
    """The Arrow schema `pa.Table.from_pylist(rows)` would infer (columns of the first row, types over all rows),
    without converting the rows (that conversion's growing buffers cost ~7 KB a row at its peak)."""
    import pyarrow as pa

    if not rows:
        return pa.schema([("id", pa.string())])
    names = list(rows[0].keys())
    return pa.schema([pa.field(n, pa.infer_type([row.get(n) for row in rows])) for n in names])


def _concat(chunks: list[Any], schema: Any) -> Any:
    """One table of the batches' tables (chunked as they are; an empty table of `schema` for none)."""
    import pyarrow as pa

    if not chunks:
        return pa.Table.from_pylist([], schema=schema)
    return chunks[0] if len(chunks) == 1 else pa.concat_tables(chunks)


class Spool:
    """Batches handed from pool workers to the build process through files in shared memory (/dev/shm) instead
    of the pool's pipe (which costs the receiving process ~3 ns a byte: ~2 s for the 600 MB of a 150k-row split).

    A worker calls `put(data, table)` -> a small ticket (picklable); the build process `take(ticket)` -> (the
    JSONL bytes as a read-only mmap, the Arrow table mapped from its IPC file, zero-copy); the files are unlinked
    at once (the mappings keep the pages until released). `close()` removes the folder and whatever is left in
    it. `Spool.open()` is None where no shared-memory folder is writable (callers then send batches as they are).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    @classmethod
    def open(cls) -> Spool | None:
        shm = Path("/dev/shm")
        if not shm.is_dir() or not os.access(shm, os.W_OK):
            return None
        clean_dead_spools()  # left by killed builds
        try:
            return cls(Path(tempfile.mkdtemp(prefix=f"curate-spool-{os.getpid()}-", dir=shm)))
        except OSError:
            return None

    def put(self, data: bytes, table: Any) -> tuple[Any, ...]:
        """A ticket for `take`: (name, size) of the files written, or (None, data, table) when they could not be
        written (a full /dev/shm, e.g. Docker's 64 MB default: the batch then goes through the pipe after all)."""
        import pyarrow as pa

        self.count += 1
        name = f"{os.getpid()}-{self.count}"
        paths = (self.folder / f"{name}.jsonl", self.folder / f"{name}.arrow")
        try:
            with open(paths[0], "wb") as fh:
                fh.write(data)
            with pa.OSFile(str(paths[1]), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
        except OSError:
            for path in paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            return None, data, table
        return name, len(data)

    def take(self, ticket: tuple[Any, ...]) -> tuple[Any, Any]:
        import mmap

        import pyarrow as pa

        if ticket[0] is None:  # sent inline (see put)
            return ticket[1], ticket[2]
        name, size = ticket
        path = self.folder / f"{name}.jsonl"
        data: Any = b""
        if size:
            with open(path, "rb") as fh:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        os.unlink(path)
        path = self.folder / f"{name}.arrow"
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        os.unlink(path)
        return data, table

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _RowGroups:
    """A split's Parquet file fed batch tables: a row group every `row_group` rows; a split of at most one row group
    is written by `pq.write_table` at `finish()`."""

    def __init__(self, path: Path, schema: Any, row_group: int) -> None:
        self.path, self.schema, self.row_group = path, schema, row_group
        self.writer: Any = None
        self.chunks: list[Any] = []
        self.filled = 0

    def add(self, table: Any) -> None:
        import pyarrow.parquet as pq

        self.chunks.append(table)
        self.filled += table.num_rows
        if self.filled >= self.row_group:
            self.writer = self.writer or pq.ParquetWriter(self.path, self.schema)
            self.writer.write_table(_concat(self.chunks, self.schema))
            self.chunks = []
            self.filled = 0

    def finish(self) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            pq.write_table(_concat(self.chunks, self.schema), self.path)
        elif self.chunks:
            self.writer.write_table(_concat(self.chunks, self.schema))
        self.chunks = []

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_DONE = object()


class _Behind:
    """`fn(item)` for each `put(item)`, in order, on a thread (a bounded queue of `depth` items between);
    `close()` waits for the last one and returns what `fn` raised (after a failure the rest is dropped; `put`
    raises it at once)."""

    def __init__(self, fn: Callable[[Any], None], depth: int = 2) -> None:
        import queue
        import threading

        self.queue: Any = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), name="curate-export-writer", daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[Any], None]) -> None:
        while (item := self.queue.get()) is not _DONE:
            if self.error is None:
                try:
                    fn(item)
                except BaseException as err:  # noqa: BLE001 - handed to the caller by put/close
                    self.error = err

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def close(self) -> BaseException | None:
        """Wait for the thread; what `fn` raised, if anything (the caller raises it)."""
        self.queue.put(_DONE)
        self.thread.join()
        return self.error
