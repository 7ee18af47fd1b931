"""The run context every step shares: quarantine, counters, progress. Steps never print.

    ctx = RunContext(out_dir=Path("out/x"))
    ctx.quarantine(step="read", reason="bad_json", detail="...", source=Source(file="a.jsonl", line=3), original=raw)
    ctx.count("read", "in")
    ctx.close()   # flushes quarantine/<step>.jsonl
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.records import PreferenceRecord, SFTRecord, Source, dump_record

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class RunContext:
    """Quarantine sink and counters for one run; quarantine rows are written to `<qdir>/<step>.jsonl`.

    Rows are buffered per step and written by `flush_quarantine(dir)` (the export writes them into the staged
    output folder, so they land atomically with everything else).
    """

    progress: Progress | None = None
    quarantined: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_file_quarantined: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)

    def quarantine(self, *, step: str, reason: str, detail: str, source: Source | None = None,
                   original: Any = None, record: SFTRecord | PreferenceRecord | None = None) -> None:
        """Set one record (or raw line) aside with a stable reason code; never raises."""
        if record is not None and source is None:
            source = record.source
        if original is None and record is not None:
            original = dump_record(record)
        row = {"step": step, "reason": reason, "detail": detail,
               "source": source.model_dump(exclude_none=True) if source else {},
               "record_id": record.id if record is not None else None, "original": original}
        self.quarantined[step].append(row)
        self.reasons[(step, reason)] += 1
        self.per_file_quarantined[(source.file if source and source.file else "<none>")] += 1
        log.debug("quarantine %s/%s at %s: %s", step, reason, source.where() if source else "?", detail)

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
                for row in rows:
                    fh.write(orjson.dumps(row, default=str) + b"\n")
            paths.append(path)
        return paths
