"""Where the build's rows live: an input JSONL file held open (`Input`: a descriptor and every line's offset), or
the build's `RecordStore` (curate's own unlinked temp file of the records the record path made). A row re-reads its
line with one `os.pread`.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path


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
        a, b = self.starts[no - 1], self.starts[no]
        data = os.pread(self.fd, b - a, a)
        if no == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
