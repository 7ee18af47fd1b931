"""Where the build's rows live: an input JSONL file held open (`Input`: a descriptor and every line's offset), or
the build's `RecordStore` (curate's own unlinked temp file of the records the record path made). A row re-reads its
line with one `os.pread`. And the split's keys the read's workers made of one chunk of a file (`_ChunkKeys`), held
by its rows, their texts in a spool file.
"""

from __future__ import annotations

import itertools
import os
from array import array
from pathlib import Path
from typing import Any


class Input:
    """An input JSONL file held open for the build: its descriptor and the byte offset of every line start.

    Fast rows re-read their line with one `os.pread` (not through an mmap: mapped pages would count in the
    process's resident memory). `close()` when the build is done.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.fd = os.open(path, os.O_RDONLY)
        self.starts = _line_starts(self.fd)

    def line(self, no: int) -> bytes:
        data = self.span(self.starts[no - 1], self.starts[no])
        if no == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data

    def span(self, a: int, b: int) -> bytes:
        """The file's bytes a..b (offsets from `starts`): the lines between, with one `pread`."""
        return os.pread(self.fd, b - a, a)

    def chunk(self, a: int, b: int) -> tuple[Any, bytes]:
        """Lines a+1..b: their offsets (`starts[a..b]`) and the bytes from the first to the end of the last (what
        a read worker takes of one chunk, `chunks.chunk_verdicts`)."""
        starts = self.starts[a : b + 1]
        return starts, self.span(starts[0], starts[-1])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HeldLine(Input):
    """One input line's bytes held in memory: the source of a plain-line row in another process (a Ray worker: a
    `Row` pickled for the object store carries its line, not the descriptor of a file the worker may not have)."""

    def __init__(self, data: bytes) -> None:
        self.name = "<line>"
        self.fd = -1
        self.data = data
        self.starts = array("q", [0, len(data)])

    def span(self, a: int, b: int) -> bytes:
        return self.data[a:b]

    def close(self) -> None:
        self.data = b""


class RecordStore(Input):
    """The build's stored records: lines appended to an anonymous temporary file (unlinked at once, gone with the
    process), read back like an input file's lines (`line(no)`, `starts`), also by forked workers (the inherited
    descriptor; `os.pread` has no shared position)."""

    def __init__(self) -> None:
        import tempfile

        self.name = "<records>"
        self._fh = tempfile.TemporaryFile(prefix="curate-records-")  # noqa: SIM115 - closed by close()
        self.fd = self._fh.fileno()
        self.starts = array("q", [0])

    def add(self, data: bytes) -> int:
        """Append one line (`data` holds no newline); its line number."""
        end = self.starts[-1]
        os.pwrite(self.fd, data + b"\n", end)
        self.starts.append(end + len(data) + 1)
        return len(self.starts) - 1

    def close(self) -> None:
        if self.fd >= 0:
            self._fh.close()
            self.fd = -1


def _line_starts(fd: int, chunk: int = 1 << 24) -> array:
    """Offsets of each line's first byte, plus the file size at the end (lines split at b"\\n", like a binary file's
    iteration)."""
    import numpy as np

    out = array("q", [0])
    pos = 0
    while True:
        data = os.pread(fd, chunk, pos)
        if not data:
            break
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + (pos + 1)
        out.frombytes(nl.astype(np.int64).tobytes())
        pos += len(data)
    if out[-1] != pos:
        out.append(pos)  # the last line has no newline
    return out


class _ChunkKeys:
    """The split's keys of the fast lines of one chunk of a file, as made by a read worker: the normalized user
    texts joined (with offsets) and the 16-char prompt keys joined in one str. Rows share it (no string per row
    while dedup runs); the strings are cut out when the split asks (`get`). With a `spool` (a
    `dedup_keys.TextSpool`) the texts are appended to it as UTF-8 and read back by `get` (os.pread): the chunk then
    holds their byte offsets, not the texts (~250-600 bytes a row from the read to the split)."""

    __slots__ = ("at", "first", "offsets", "one_turn", "prompt_keys", "spool", "texts")

    def __init__(self, first: int, payload: tuple[Any, ...], spool: Any = None) -> None:
        self.first = first
        self.texts, self.offsets, self.prompt_keys = payload[:3]
        # (payload[3]: a byte a line, 1 where the line's prompt has one user turn: `one_user_turn`)
        self.one_turn: bytes = payload[3] if len(payload) > 3 else b""
        self.spool = spool
        self.at = 0
        if spool is not None:
            texts, offsets = self.texts, self.offsets
            if texts.isascii():  # (a byte a character: the offsets stay)
                blob = texts.encode("ascii")
            else:
                parts = [texts[x:y].encode("utf-8", "surrogatepass") for x, y in itertools.pairwise(offsets)]
                blob = b"".join(parts)
                ends = array("q", [0])
                for p in parts:
                    ends.append(ends[-1] + len(p))
                self.offsets = ends
            self.at = spool.append(blob)
            self.texts = ""

    def get(self, line: int) -> tuple[str, str] | tuple[str, str, bool]:
        """`split_keys` of the row at `line`, and True third when its prompt has one user turn (known: the split
        reads its user turns as `(its normalized user text,)`)."""
        i = line - self.first
        a, b = self.offsets[i], self.offsets[i + 1]
        pk = self.prompt_keys[16 * i : 16 * i + 16]
        if self.spool is None:
            text = self.texts[a:b]
        else:
            text = os.pread(self.spool.fd, b - a, self.at + a).decode("utf-8", "surrogatepass")
        if i < len(self.one_turn) and self.one_turn[i]:
            return text, pk, True
        return text, pk
