"""Texts kept on disk instead of the heap, read back by index: the split's normalized user texts and turns.

    >>> spill = TextSpill(3)
    >>> spill.put([2, 0], ["c", "a"]); spill.put([1], ["b"])
    >>> spill[1], spill.many([2, 0])
    ('b', ['c', 'a'])

The texts go to an unlinked temporary file (`os.pwrite`, read back with `os.pread`: the OS page cache holds them,
not this process's heap; forked workers share the descriptor). This process keeps 16 bytes an item (where its
bytes start, how many), so a step that needs every record's text more than once holds fixed-size arrays, not a
str per record (~350 bytes each for a chat prompt: 700 MB at 2M records). An item never put reads back as "".
"""

from __future__ import annotations

import itertools
import mmap
import os
import tempfile
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["SPILL_CHUNK", "Lazy", "RowFile", "SpilledTurns", "TextSpill", "packed", "spill_turns"]


class TextSpill:
    """`n` texts by index, each put once, in any order (see the module doc)."""

    def __init__(self, n: int) -> None:
        self._fh = tempfile.TemporaryFile(prefix="curate-spill-")  # noqa: SIM115 (closed by close())
        self._fd = self._fh.fileno()
        self.start = np.zeros(n, dtype=np.int64)
        self.size = np.zeros(n, dtype=np.int64)
        self._end = 0

    def __len__(self) -> int:
        return len(self.start)

    def put(self, idx: Sequence[int], texts: Sequence[str]) -> None:
        """texts[k] becomes item idx[k] (one write for all of them)."""
        if not len(texts):
            return
        enc = [t.encode("utf-8", "surrogatepass") for t in texts]
        sizes = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        ends = np.cumsum(sizes)
        data = b"".join(enc)
        at = 0
        while at < len(data):  # (a regular file takes it in one write but for the 2 GB cap of one write)
            at += os.pwrite(self._fd, data[at:], self._end + at)
        where = np.asarray(idx, dtype=np.int64)
        self.start[where] = self._end + ends - sizes
        self.size[where] = sizes
        self._end += len(data)

    def __getitem__(self, i: int) -> str:
        return os.pread(self._fd, int(self.size[i]), int(self.start[i])).decode("utf-8", "surrogatepass")

    def many(self, idx: Sequence[int]) -> list[str]:
        """The texts of items idx, in order."""
        return [self[int(i)] for i in idx]

    def close(self) -> None:
        self._fh.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with a task for another machine (`curate.engine.ray_map`): the bytes travel and land in a new
        temporary file there."""
        return (TextSpill._of, (os.pread(self._fd, self._end, 0), self.start, self.size))

    @classmethod
    def _of(cls, data: bytes, start: np.ndarray, size: np.ndarray) -> TextSpill:
        spill = cls(0)
        spill.start, spill.size = start, size
        os.pwrite(spill._fd, data, 0)
        spill._end = len(data)
        return spill


SPILL_CHUNK = 8192  # rows whose texts are written to a spill at a time


class RowFile:
    """An (n, *shape) array of fixed-size rows on disk (an unlinked temporary file mapped shared), written by `put`
    and read by `take`, neither of which leaves the file's pages in the resident set: each call gives back the pages
    it touched (`madvise(MADV_DONTNEED)`: the page cache keeps the bytes, the next access is a minor fault), a read
    at most `SPAN` bytes of the file at a time. For per-item keys a step reads only for some items (dedup's part
    band keys and slot digests, read for candidate pairs): 0 bytes an item in memory.

    Below a budget the rows stay in memory: while the RowFiles open at once fit in `RESIDENT` bytes (128 MB, or
    `CURATE_RESIDENT_ROWS_MB`), a new one is an in-memory array (`resident`; its pages come as rows are put) and
    reads are plain indexing, without the faults of the reads from disk. The same rows either way (one class, one
    `put` / `take`); only where they live, and so the build's time and peak memory, depends on the budget: a
    200k-record build keeps its keys (~77 MB) resident, a 2M-record build (~770 MB) puts them on disk.

    >>> f = RowFile(4, (2,), np.uint16)
    >>> f.put(np.array([3, 0]), np.array([[7, 8], [1, 2]])); f.take(np.array([0, 3, 0])).tolist()
    [[1, 2], [7, 8], [1, 2]]
    """

    SPAN = 8 << 20  # bytes of the file a read maps at a time (and gives back)
    # bytes of rows the resident RowFiles open at once may hold
    RESIDENT = int(os.environ.get("CURATE_RESIDENT_ROWS_MB", "128")) << 20
    _held = 0  # bytes of the resident RowFiles open now

    def __init__(self, n: int, shape: tuple[int, ...], dtype: Any, *, resident: bool | None = None) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row = int(self.dtype.itemsize * int(np.prod(shape, dtype=np.int64)))
        size = n * self.row
        if resident is None:
            resident = RowFile._held + size <= self.RESIDENT
        self.resident = resident
        self._give_back = weakref.finalize(self, RowFile._release, size if resident else 0)
        if resident:  # (np.zeros: pages untouched stay unmapped, a row never put reads back as zeros)
            RowFile._held += size
            self._fh = self._mm = None
            self.rows = np.zeros((n, *self.shape), dtype=self.dtype)
            return
        self._fh = tempfile.TemporaryFile(prefix="curate-rows-")  # noqa: SIM115 (closed by close())
        size = max(mmap.PAGESIZE, size)
        os.ftruncate(self._fh.fileno(), size)  # (a sparse file: a row never put reads back as zeros)
        self._mm = mmap.mmap(self._fh.fileno(), size)
        self.rows = np.frombuffer(self._mm, self.dtype, count=n * self.row // self.dtype.itemsize).reshape(
            n, *self.shape
        )

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def _release(size: int) -> None:
        RowFile._held -= size

    def _drop(self, lo: int, hi: int) -> None:
        """Give back the pages of rows lo..hi (inclusive) and the kernel's fault-around window beside them (up to
        64 KB, aligned in the address space, not in the file)."""
        start = max(0, lo * self.row - 65536) // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(len(self._mm), (hi + 1) * self.row + 65536)
        if end > start:
            self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def put(self, pos: np.ndarray, values: np.ndarray) -> None:
        """Rows `pos` take `values` (one row each)."""
        pos = np.asarray(pos, dtype=np.int64)
        if not len(pos):
            return
        self.rows[pos] = values
        if not self.resident:
            self._drop(int(pos.min()), int(pos.max()))

    def take(self, idx: np.ndarray) -> np.ndarray:
        """The rows `idx` (any order, repeats allowed) as an in-memory array, read in file order."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.resident:
            return self.rows[idx]
        got = np.empty((len(idx), *self.shape), dtype=self.dtype)
        if len(idx):
            o = np.argsort(idx)
            at = idx[o]
            span = at * self.row // self.SPAN
            cuts = [0, *(np.flatnonzero(span[1:] != span[:-1]) + 1).tolist(), len(at)]
            for a, b in itertools.pairwise(cuts):
                got[o[a:b]] = self.rows[at[a:b]]
                self._drop(int(at[a]), int(at[b - 1]))
        return got

    def chunk(self, least: int) -> int:
        """Rows to read at a time: at least `least`, and a 16th of the file (every read of rows scattered over
        the file faults in about all of it: fewer, larger reads cost the same time in all); `least` when resident."""
        return least if self.resident else max(least, len(self.rows) // 16)

    def close(self) -> None:
        self.rows = self.rows[:0].copy()
        self._give_back()  # (once: also when a RowFile is dropped unclosed, e.g. a step that raised)
        if self._mm is None:
            return
        try:
            self._mm.close()
        except BufferError:  # pragma: no cover - a view of the rows still held: unmapped when collected
            pass
        self._fh.close()


class Lazy(Sequence):  # type: ignore[type-arg]
    """A read-only sequence of `n` items made on demand by `get(k)` (nothing held)."""

    def __init__(self, n: int, get: Callable[[int], Any]) -> None:
        self.n, self.get = n, get

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self.get(q) for q in range(*k.indices(self.n))]
        if k < 0:
            k += self.n
        if not 0 <= k < self.n:
            raise IndexError(k)
        return self.get(k)


class SpilledTurns:
    """Each row's normalized user turns: `(its normalized user text,)` (read back from the texts' spill) for a row
    of one turn whose normal form is that text (the common case: nothing stored twice), `()` for a row without a
    user turn, else the turns joined by U+001F (no normalized text holds one: `str.split` cuts there) in a spill of
    their own. 2 bytes a row in memory besides the spills' offsets."""

    def __init__(self, n: int, norms: TextSpill) -> None:
        self.norms = norms
        self.kind = np.zeros(n, dtype=np.int8)  # 0: (norm,), 1: spilled, 2: no user turn
        self.multi = np.zeros(n, dtype=bool)
        self.spill = TextSpill(n)

    def __call__(self, i: int) -> tuple[str, ...]:
        kind = self.kind[i]
        if kind == 0:
            return (self.norms[i],)
        if kind == 2:
            return ()
        return tuple(self.spill[i].split("\x1f"))

    def first(self, i: int) -> str:
        got = self(i)
        return got[0] if got else ""

    def close(self) -> None:
        self.spill.close()


def spill_turns(
    rows: Sequence[Any],
    read_turns: Callable[[Sequence[Any]], Sequence[Sequence[str]]],
    keys: np.ndarray,
    norms: TextSpill,
    key_of: Callable[[str], bytes],
    normalize: Callable[[str], str],
    one_turn: np.ndarray | None = None,
) -> SpilledTurns:
    """The `SpilledTurns` of `rows`, read `SPILL_CHUNK` rows at a time by `read_turns` and normalized; `keys[i]`
    (an (n, 2) uint64 row) is `key_of` (16 bytes) of row i's normalized user text, which is `norms[i]`. A row
    where `one_turn` (a bool per row) is True has one user turn, whose normal form is then its normalized user
    text: `(norms[i],)`, not read (the read's workers saw its line: `rows.one_user_turn`)."""
    n = len(rows)
    out = SpilledTurns(n, norms)
    for a in range(0, n, SPILL_CHUNK):
        idx: list[int] = []
        joined: list[str] = []
        b = min(n, a + SPILL_CHUNK)
        at = range(a, b) if one_turn is None else (a + np.flatnonzero(~one_turn[a:b])).tolist()
        if not at:
            continue
        part = rows[a:b] if len(at) == b - a else [rows[i] for i in at]
        for i, ts in zip(at, read_turns(part)):
            tt = [normalize(t) for t in ts]
            if not tt:
                out.kind[i] = 2
            elif len(tt) > 1 or key_of(tt[0]) != keys[i].tobytes():
                out.kind[i] = 1
                out.multi[i] = len(tt) > 1
                idx.append(i)
                joined.append("\x1f".join(tt))
        out.spill.put(idx, joined)
    return out


def packed(keys: list[str]) -> Lazy:
    """The strings `keys` as one bytes blob and its offsets (`keys[i]` made again on demand): ~24 bytes a
    16-character prompt key instead of ~73 (a str and a list slot)."""
    data = [k.encode("utf-8", "surrogatepass") for k in keys]
    ends = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=len(data)), out=ends[1:])
    blob = b"".join(data)
    del data
    return Lazy(len(keys), lambda i: blob[ends[i] : ends[i + 1]].decode("utf-8", "surrogatepass"))
