"""The run context every step shares: quarantine, counters, progress. Steps never print.

ctx = RunContext(out_dir=Path("out/x"))
ctx.quarantine(step="read", reason="bad_json", detail="...", source=Source(file="a.jsonl", line=3), original=raw)
ctx.count("read", "in")
ctx.close()   # flushes quarantine/<step>.jsonl
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.records import PreferenceRecord, SFTRecord, Source, dump_record

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]


SPILL_ROWS = 4_096  # quarantine rows a step keeps in memory; more go to an anonymous temporary file


def encode_row(row: dict[str, Any]) -> bytes:
    """One quarantine row as a JSON line; never raises (an `original` orjson cannot write, e.g. an integer beyond
    64 bits or nesting past 255 levels, is stored as text instead)."""
    try:
        return orjson.dumps(row, default=str) + b"\n"
    except (TypeError, orjson.JSONEncodeError):
        pass
    safe = {k: (_text_of(v) if k == "original" else v) for k, v in row.items()}
    try:
        return orjson.dumps(safe, default=str) + b"\n"
    except (TypeError, orjson.JSONEncodeError):  # e.g. lone surrogates (undecodable bytes kept by a reader)
        return (
            orjson.dumps(
                _scrub(
                    {k: (v if isinstance(v, str | dict | None) else _text_of(v)) for k, v in safe.items()}
                ),
                default=str,
            )
            + b"\n"
        )


def _scrub(v: Any) -> Any:
    """Strings made writable: lone surrogates become U+FFFD."""
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(v, dict):
        return {_scrub(str(k)): _scrub(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_scrub(x) for x in v]
    return v


def _text_of(value: Any) -> str:
    import json
    import reprlib

    try:
        return json.dumps(value, ensure_ascii=True, default=str)
    except (TypeError, ValueError, RecursionError):
        r = reprlib.Repr()
        r.maxstring, r.maxother, r.maxlevel = 10_000, 10_000, 50
        return r.repr(value)


class StepRows:
    """One step's quarantine rows, list-like (iterate, index, len, ==, append, extend): the first SPILL_ROWS in
    memory, the rest as JSON lines in an anonymous temporary file (gone with the process, even after kill -9), so
    millions of bad lines do not fill memory. Rows read back from the file are the JSON of what was put in.
    A forked child keeps what it adds in memory (the file belongs to the process that made it). Pickles as a list.
    """

    def __init__(self, rows: Any = ()) -> None:
        self._mem: list[dict[str, Any]] = []
        self._file: Any = None
        self._n_file = 0
        self._owner = os.getpid()
        self.extend(rows)

    def append(self, row: dict[str, Any]) -> None:
        self._mem.append(row)
        if len(self._mem) >= SPILL_ROWS and os.getpid() == self._owner:
            self._spill()

    def extend(self, rows: Any) -> None:
        for row in rows:
            self.append(row)

    def _spill(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="curate-quarantine-")  # noqa: SIM115 - lives with the rows
        self._file.seek(0, os.SEEK_END)
        self._file.write(b"".join(encode_row(r) for r in self._mem))
        self._n_file += len(self._mem)
        self._mem.clear()

    def __len__(self) -> int:
        return self._n_file + len(self._mem)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._file is not None and os.getpid() == self._owner:
            self._file.flush()
            with open(self._file.fileno(), "rb", closefd=False) as fh:
                fh.seek(0)
                for _, line in zip(range(self._n_file), fh, strict=False):
                    yield orjson.loads(line)
        yield from list(self._mem)

    def __getitem__(self, i: Any) -> Any:
        if self._file is None:
            return self._mem[i]
        return list(self)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StepRows | list):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"StepRows({len(self)} rows, {self._n_file} on disk)"

    def __reduce__(self) -> Any:
        return (list, (list(self),))

    def write_to(self, fh: Any) -> None:
        """Write every row as a JSON line to the binary file `fh` (the spilled part copied as it is)."""
        if self._file is not None and os.getpid() == self._owner:
            self._file.flush()
            with open(self._file.fileno(), "rb", closefd=False) as src:
                src.seek(0)
                shutil.copyfileobj(src, fh, 1 << 20)
        fh.write(b"".join(encode_row(r) for r in self._mem))


@dataclass
class RunContext:
    """Quarantine sink and counters for one run; quarantine rows are written to `<qdir>/<step>.jsonl`.

    Rows are kept per step (`StepRows`: in memory up to SPILL_ROWS, then in an anonymous temporary file) and written
    by `flush_quarantine(dir)` (the export writes them into the staged output folder, so they land atomically with
    everything else).
    """

    progress: Progress | None = None
    quarantined: dict[str, StepRows] = field(default_factory=lambda: defaultdict(StepRows))
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_file_quarantined: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)

    def quarantine(
        self,
        *,
        step: str,
        reason: str,
        detail: str,
        source: Source | None = None,
        original: Any = None,
        record: SFTRecord | PreferenceRecord | None = None,
    ) -> None:
        """Set one record (or raw line) aside with a stable reason code; never raises."""
        if record is not None and source is None:
            source = record.source
        if original is None and record is not None:
            original = dump_record(record)
        row = {
            "step": step,
            "reason": reason,
            "detail": detail,
            "source": source.model_dump(exclude_none=True) if source else {},
            "record_id": record.id if record is not None else None,
            "original": original,
        }
        self.quarantined[step].append(row)
        self.reasons[(step, reason)] += 1
        self.per_file_quarantined[(source.file if source and source.file else "<none>")] += 1
        log.debug("quarantine %s/%s at %s: %s", step, reason, source.where() if source else "?", detail)

    def add_quarantine_row(self, step: str, row: dict[str, Any]) -> None:
        """Take a quarantine row `quarantine` made in another process (a pool worker's context), as it would
        have counted it here."""
        self.quarantined[step].append(row)
        self.reasons[(step, row["reason"])] += 1
        self.per_file_quarantined[(row["source"] or {}).get("file") or "<none>"] += 1

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def report(self, step: str, done: int, total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(step, done, total)

    @property
    def n_quarantined(self) -> int:
        return sum(self.reasons.values())

    def flush_quarantine(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for step, rows in sorted(self.quarantined.items()):
            path = directory / f"{step}.jsonl"
            with open(path, "wb") as fh:
                if isinstance(rows, StepRows):
                    rows.write_to(fh)
                else:  # a plain list someone put in
                    fh.writelines(encode_row(row) for row in rows)
            paths.append(path)
        return paths
