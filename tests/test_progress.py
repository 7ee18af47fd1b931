"""Progress of `curate build` on stderr: log lines when stderr is not a terminal, none under --quiet."""

from __future__ import annotations

import io
import time
from pathlib import Path

from click.testing import CliRunner

from curate.cli import main
from curate.cli.progress import StageLines, stage_lines

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "build"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_silent_for_a_short_command_then_a_line_at_least_every_period() -> None:
    clock, out = Clock(), io.StringIO()
    lines = StageLines("curate build", out, every=10.0, clock=clock)
    lines.update("read", 0, None)
    clock.t = 4.0
    lines.update("read", 40_000, None)
    lines.tick()
    assert _lines(out) == []  # a build that ends within 10 s prints nothing
    clock.t = 10.0
    lines.update("read", 100_000, None)
    assert _lines(out) == ["curate build: read 100,000, 10,000/s, 10.0 s"]
    clock.t = 15.0
    lines.update("read", 150_000, None)  # 5 s after the last line: not yet
    assert len(_lines(out)) == 1
    clock.t = 20.0
    lines.update("read", 200_000, 200_000)  # a stage's end is always said
    clock.t = 21.0
    lines.update("validate", 0, 200_000)
    clock.t = 25.0
    lines.update("validate", 100_000, 200_000)
    assert _lines(out)[1:] == [
        "curate build: read done: 200,000 in 20.0 s, 10,000/s",
        "curate build: validate started (200,000 to do)",
    ]
    clock.t = 31.0
    lines.update("validate", 150_000, 200_000)
    assert _lines(out)[-1] == "curate build: validate 150,000/200,000 (75%), 15,000/s, 10.0 s"
    lines.update("validate", 200_000, 200_000)
    # a stage that reports nothing (dedup needs all the data): the watcher's tick still gives a line every 10 s
    n = len(_lines(out))
    clock.t = 40.0
    lines.tick()
    assert len(_lines(out)) == n
    clock.t = 41.0
    lines.tick()
    clock.t = 51.0
    lines.tick()
    assert _lines(out)[n:] == [
        "curate build: still running after validate (41 s in all)",
        "curate build: still running after validate (51 s in all)",
    ]


def test_watcher_thread_prints_while_nothing_reports() -> None:
    out = io.StringIO()
    with stage_lines("curate build", stream=out, every=0.2) as update:
        update("dedup", 0, 1)
        time.sleep(1.1)
    got = _lines(out)
    assert len(got) >= 3, got
    assert got[0] == "curate build: dedup started (1 to do)" or got[0].startswith("curate build: dedup 0/1")
    assert all(x.startswith("curate build: dedup ") for x in got)


def test_cli_build_prints_stage_lines_off_a_terminal(tmp_path: Path) -> None:
    args = ["build", str(DATA), "--input", str(DATA / "data.jsonl"), "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(main, args, env={"CURATE_PROGRESS_S": "0"})
    assert r.exit_code == 0, r.output
    got = [x for x in r.stderr.splitlines() if x.startswith("curate build: ")]
    stages = [x.split()[2] for x in got if x.endswith(" started") or " started (" in x]
    assert {"read", "validate", "split", "export"} <= set(stages) and stages[-1] == "export", got
    split = [x for x in got if x.startswith("curate build: split 2/3 (67%), ")]
    assert split and "/s" not in split[0], got  # a stage's phases (1..3 of 3) get no rate
    assert any(x.startswith("curate build: export done: 1 in ") for x in got), got
    assert r.stdout.startswith("mini-build@1: ")  # stdout is data, untouched
    quiet = CliRunner().invoke(
        main, [*args[:-1], str(tmp_path / "q"), "--quiet"], env={"CURATE_PROGRESS_S": "0"}
    )
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout.startswith("mini-build@1: ")
    as_json = CliRunner().invoke(
        main, [*args[:-1], str(tmp_path / "j"), "--json"], env={"CURATE_PROGRESS_S": "0"}
    )
    assert as_json.exit_code == 0 and as_json.stdout.startswith("{")  # lines on stderr only
    assert "curate build: read started" in as_json.stderr
