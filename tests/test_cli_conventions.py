"""One CLI vocabulary: --json/-q everywhere, one-line errors (exit 1, a JSON error under --json), Ctrl-C 130,
deprecated option spellings that still work and warn, spec references, `spec check --strict`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from curate.cli import main

REPO = Path(__file__).resolve().parents[1]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


def test_every_command_has_json_and_quiet() -> None:
    missing = []
    for path, cmd in _commands(main):
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        if not {"--json", "-q", "--quiet"} <= opts:
            missing.append(" ".join(path))
    assert not missing, f"commands without --json or -q/--quiet: {missing}"


def test_option_names_have_one_meaning() -> None:
    """--out is always a folder, --out-file always a file, --studio-dir always Label Studio's data folder."""
    for path, cmd in _commands(main):
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            if "--out" in p.opts:
                assert isinstance(p.type, click.Path) and not p.type.file_okay, (
                    f"{path}: --out is not a folder"
                )
            if "--out-file" in p.opts:
                assert isinstance(p.type, click.Path) and not p.type.dir_okay, (
                    f"{path}: --out-file is not a file"
                )
            assert "--dir" not in p.opts and "--out-dir" not in p.opts, f"{path}: old spelling {p.opts}"


def test_missing_path_is_one_line_exit_1(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["build", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: curate build: ")
    assert "does not exist" in r.stderr and "curate build --help" in r.stderr and "Usage:" not in r.stderr
    assert r.stdout == ""


def test_usage_error_with_json_prints_error_document(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["build", str(tmp_path / "nope"), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["ok"] is False and doc["exit_code"] == 1
    assert doc["error"]["type"] == "UsageError" and "does not exist" in doc["error"]["message"]
    r = CliRunner().invoke(main, ["build", "--bogus", "--json"])
    assert r.exit_code == 1 and "No such option" in json.loads(r.stdout)["error"]["message"]


def test_curate_error_with_json_prints_error_document(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nversion: 1\nrulez: []\n")
    r = CliRunner().invoke(main, ["coverage", str(spec), "--json"])
    doc = json.loads(r.stdout)
    assert (
        r.exit_code == 1 and doc["error"]["type"] == "SpecError" and "unknown key" in doc["error"]["message"]
    )
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_no_args_prints_help_exit_0() -> None:
    r = CliRunner().invoke(main, [])
    assert r.exit_code == 0 and "Usage:" in r.stdout


def test_ctrl_c_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.steps import pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build", interrupted)
    r = CliRunner().invoke(main, ["build", str(REPO / "specs/support-triage")])
    assert r.exit_code == 130 and r.stderr == "error: interrupted\n"
    r = CliRunner().invoke(main, ["build", str(REPO / "specs/support-triage"), "--json"])
    assert r.exit_code == 130 and json.loads(r.stdout)["error"]["type"] == "Interrupted"


def test_real_sigint_exits_130(tmp_path: Path) -> None:
    """A real SIGINT to a running command (a build stuck in its library call)."""
    ready = tmp_path / "ready"
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import curate.steps.pipeline as p\n"
        f"def slow(*a, **k):\n    open({str(ready)!r}, 'w').close()\n    time.sleep(60)\n"
        "p.build = slow\n"
        "from curate.cli import main\n"
        f"main(['build', {str(REPO / 'specs/support-triage')!r}, '-q'])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), proc.communicate()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == "error: interrupted\n", err


def test_deprecated_spellings_work_and_warn(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["spec", "init", "refund-bot", "--dir", str(tmp_path)])
    assert r.exit_code == 0 and (tmp_path / "refund-bot" / "spec.yaml").is_file()
    assert "warning: curate spec init --dir is deprecated; use --out" in r.stderr
    r = CliRunner().invoke(main, ["spec", "init", "--help"])
    assert "--dir" not in r.stdout  # hidden
    out = tmp_path / "r.html"
    r = CliRunner().invoke(
        main, ["import", str(REPO / "specs/support-triage/data.jsonl"), "-o", str(tmp_path / "n.jsonl"), "-q"]
    )
    assert r.exit_code == 0 and (tmp_path / "n.jsonl").is_file()
    assert "-o is deprecated; use --out-file" in r.stderr
    r = CliRunner().invoke(main, ["studio", "status", "--dir=" + str(tmp_path / "none"), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["running"] is False
    assert "--dir is deprecated; use --studio-dir" in r.stderr
    del out


def test_spec_check_warnings_exit_0_unless_strict(tmp_path: Path) -> None:
    CliRunner().invoke(main, ["spec", "init", "x", "--out", str(tmp_path)])
    p = tmp_path / "x" / "spec.yaml"
    p.write_text(
        p.read_text().replace('seeds: ["help", "it broke again"]', "seeds: []")
    )  # no_seeds: a warning
    r = CliRunner().invoke(main, ["spec", "check", str(p)])
    assert r.exit_code == 0 and "warning: no_seeds" in r.stdout and "ok (x@1" in r.stdout
    r = CliRunner().invoke(main, ["spec", "check", str(p), "--strict", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["ok"] is False and doc["specs"][0]["warnings"] == 1
    r = CliRunner().invoke(main, ["spec", "check", str(p), "-q"])
    assert r.exit_code == 0 and "no_seeds" not in r.stdout


def test_lint_messages_speak_of_curate_only() -> None:
    import inspect

    from curate.spec import lint

    text = Path(inspect.getsourcefile(lint) or "").read_text()  # where lint lives: curate/spec_lint.py
    start = text.index("def lint(")
    body = text[start : text.index("\ndef ", start + 10)]
    assert "the seeds ask" not in body  # a message once spoke of the brief curate was written from


def test_import_spec_by_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(main, ["spec", "init", "refund-bot"])  # specs/refund-bot/spec.yaml, version 1
    data = REPO / "specs/support-triage/data.jsonl"
    r = CliRunner().invoke(
        main, ["import", str(data), "--spec", "refund-bot@1", "--out-file", "n.jsonl", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["spec"] == "refund-bot@1"
    assert json.loads(Path("n.jsonl").read_text().splitlines()[0])["spec"] == "refund-bot@1"
    r = CliRunner().invoke(main, ["import", str(data), "--spec", "refund-bot@2", "--out-file", "n.jsonl"])
    assert r.exit_code == 1 and "holds refund-bot@1, not refund-bot@2" in r.stderr
    r = CliRunner().invoke(main, ["import", str(data), "--spec", "nobot@1", "--out-file", "n.jsonl"])
    assert r.exit_code == 1 and "no specs/nobot/spec.yaml" in r.stderr


def test_detection_hint_names_fields_and_a_ready_map_line(tmp_path: Path) -> None:
    f = tmp_path / "tickets.csv"
    f.write_text('ticket,reply,priority\n"I cannot log in","{""answer"": ""Reset it""}",high\n')
    r = CliRunner().invoke(main, ["import", str(f), "--out-file", str(tmp_path / "o.jsonl"), "--strict"])
    assert r.exit_code == 1
    assert "fields found: ticket, reply, priority" in r.stderr
    assert "--map prompt=ticket --map completion=reply" in r.stderr and "--mapping" not in r.stderr
    r = CliRunner().invoke(
        main,
        [
            "import",
            str(f),
            "--out-file",
            str(tmp_path / "o.jsonl"),
            "--map",
            "prompt=ticket",
            "--map",
            "completion=reply",
            "--json",
        ],
    )
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["counts"]["records"] == 1
    rec = json.loads((tmp_path / "o.jsonl").read_text())
    assert json.loads(rec["completion"][0]["content"]) == {
        "answer": "Reset it"
    }  # a JSON answer stays JSON text
