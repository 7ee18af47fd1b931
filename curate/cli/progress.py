"""Progress of a long command on stderr: rich bars on a terminal, else one log line per stage at least every 10 s.

    >>> import io
    >>> out = io.StringIO()
    >>> with stage_lines("build", stream=out, every=0.0) as update:
    ...     update("read", 0, None)
    ...     update("read", 5000, 5000)
    >>> print(out.getvalue())                                           # doctest: +ELLIPSIS
    build: read started
    build: read done: 5,000 in ... s
    <BLANKLINE>

The library reports through a callback `update(stage, done, total)` (`RunContext.report`, the `progress=` argument
of `curate.steps.pipeline.build`); `progress_for(...)` picks how it is shown. Lines go to stderr (stdout is data),
never under --quiet. A command that ends within `every` seconds prints none (its output stays what it was). After
that, a stage that reports nothing for `every` seconds (a step that needs all the data, like dedup) still gets a
line: a watcher thread prints a status line for the last stage heard from, so a build that runs for minutes with
stderr in a log file shows it is alive and where. `every` is 10 s, or CURATE_PROGRESS_S seconds (0: every report).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Update = Callable[[str, int, "int | None"], None]
EVERY_S = 10.0  # the longest time without a line while a command runs


def _n(x: int) -> str:
    return f"{x:,}"


class StageLines:
    """The line renderer. Nothing is printed for the first `every` seconds (a short command stays silent); from then
    on `update(stage, done, total)` prints a line when a stage starts, when it ends (done == total) and in between
    at most every `every` seconds, and `tick()` (the watcher) prints a status line when nothing was printed for
    `every` seconds. Thread-safe; `clock` is injectable for tests."""

    def __init__(
        self,
        prefix: str,
        stream: TextIO | None = None,
        every: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self.stream = stream
        self.every = every
        self.clock = clock
        self.lock = threading.Lock()
        self.t0 = clock()
        self.last_line = self.t0
        self.live = False  # lines are printed (the command has run for `every` seconds)
        self.stage: str | None = None
        self.stage_t0 = self.t0
        self.done = 0
        self.total: int | None = None
        self.finished = False

    def _emit(self, text: str, now: float) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(f"{self.prefix}: {text}\n")
        stream.flush()
        self.last_line = now

    def _rate(self, done: int, took: float) -> str:
        """ ", N/s" when it means something: records, not a stage's few phases (split: 1..3 of 3), over >= 0.5 s."""
        if took < 0.5 or (self.total is not None and self.total < 1000):
            return ""
        return f", {_n(round(done / took))}/s"

    def _counts(self, now: float) -> str:
        took = now - self.stage_t0
        of = f"/{_n(self.total)} ({self.done / self.total:.0%})" if self.total else ""
        return f"{_n(self.done)}{of}{self._rate(self.done, took)}, {took:.1f} s"

    def _status(self, now: float) -> None:
        if self.stage is None:
            self._emit(f"starting ({now - self.t0:.0f} s)", now)
        elif self.finished:
            self._emit(f"still running after {self.stage} ({now - self.t0:.0f} s in all)", now)
        else:
            self._emit(f"{self.stage} {self._counts(now)}", now)

    def update(self, stage: str, done: int, total: int | None = None) -> None:
        with self.lock:
            now = self.clock()
            new = stage != self.stage
            if new:
                self.stage, self.stage_t0, self.finished = stage, now, False
            self.done, self.total = done, total
            ends = total is not None and done >= total and not self.finished
            if ends:
                self.finished = True
            if not self.live:
                if now - self.t0 < self.every:
                    return
                self.live = True
                if not (new or ends):
                    self._status(now)  # the first line: where the command is
                    return
            if new:
                self._emit(f"{stage} started" + (f" ({_n(total)} to do)" if total else ""), now)
            if ends:
                took = now - self.stage_t0
                self._emit(f"{stage} done: {_n(done)} in {took:.1f} s{self._rate(done, took)}", now)
            elif not new and now - self.last_line >= self.every:
                self._emit(f"{stage} {self._counts(now)}", now)

    def tick(self) -> None:
        with self.lock:
            now = self.clock()
            if now - self.last_line >= self.every and (self.live or now - self.t0 >= self.every):
                self.live = True
                self._status(now)


@contextmanager
def stage_lines(
    prefix: str,
    *,
    stream: TextIO | None = None,
    every: float = EVERY_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Update]:
    """A `StageLines` callback, with a watcher thread that keeps a line coming at least every `every` seconds."""
    lines = StageLines(prefix, stream, every, clock)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(min(1.0, every / 4)):
            lines.tick()

    watcher = threading.Thread(target=watch, name="curate-progress", daemon=True) if every > 0 else None
    if watcher is not None:  # (every 0: a line per report already)
        watcher.start()
    try:
        yield lines.update
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()


def _bars() -> tuple[Any, Update]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}

    def update(stage: str, done: int, total: int | None = None) -> None:
        now = time.monotonic()
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, rate="")
            started[stage] = now
        took = now - started[stage]
        rate = f"{done / took:>9,.0f}/s" if took > 0.5 and done else ""
        progress.update(tasks[stage], completed=done, total=total, rate=rate)

    return progress, update


@contextmanager
def progress_for(prefix: str, *, quiet: bool, as_json: bool = False) -> Iterator[Update]:
    """The progress callback of a CLI command: nothing under --quiet; rich bars when stderr is a terminal (and no
    --json); else `stage_lines` (a log file, CI, a pipe)."""
    if quiet:
        yield lambda stage, done, total=None: None
        return
    if not as_json and sys.stderr.isatty():
        bars, update = _bars()
        with bars:
            yield update
        return
    with stage_lines(prefix, every=_every()) as update:
        yield update


def _every() -> float:
    raw = os.environ.get("CURATE_PROGRESS_S", "")
    try:
        return max(0.0, float(raw)) if raw.strip() else EVERY_S
    except ValueError:
        return EVERY_S
