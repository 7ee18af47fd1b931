"""The output folder (#16): curate replaces only what it wrote, locks the folder, survives kill -9 anywhere."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.errors import ExportError
from curate.outdir import MARKER, curate_outputs, lock_path, output_lock, read_marker, recover, staged_output
from curate.steps.export import file_hashes
from curate.steps.pipeline import build

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "build"


def _build(out: Path) -> dict:
    return build(DATA, [DATA / "data.jsonl", DATA / "bad.jsonl"], out).manifest


def _intact(out: Path) -> bool:
    manifest = json.loads((out / "manifest.json").read_text())
    got = {k: v for k, v in file_hashes(out).items() if k.split("/")[0] in curate_outputs(out)}
    return got == manifest["files"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_folder_with_someone_elses_manifest_is_refused(tmp_path):
    web = tmp_path / "site"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    (web / "index.html").write_text("<html>precious</html>")
    with pytest.raises(ExportError, match=f"not a curate build folder \\(no {MARKER}\\)"):
        _build(web)
    assert sorted(p.name for p in web.iterdir()) == ["index.html", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no stage, no lock left


def test_a_rebuild_keeps_what_curate_did_not_write(tmp_path):
    out = tmp_path / "v1"
    first = _build(out)
    marker = read_marker(out)
    assert marker["tool"] == "curate" and {"sft", "dpo", "manifest.json", "README.md", "quarantine"} <= set(
        marker["outputs"]
    )
    (out / "notes.md").write_text("my notes")
    (out / "agreement.json").write_text('{"kappa": 0.7}')
    (out / "evals").mkdir()
    (out / "evals" / "base.json").write_text("{}")
    (out / "sft" / "stray.txt").write_text("inside a curate output: replaced")
    second = _build(out)
    assert second["counts"] == first["counts"] and _intact(out)
    assert (out / "notes.md").read_text() == "my notes" and (out / "agreement.json").is_file()
    assert (out / "evals" / "base.json").is_file()
    assert not (out / "sft" / "stray.txt").exists()
    assert read_marker(out)["build_id"] != marker["build_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]


def test_outputs_a_new_build_no_longer_writes_are_removed_but_user_files_kept(tmp_path):
    out = tmp_path / "v1"
    _build(out)
    (out / "keep.txt").write_text("x")
    with staged_output(out) as stage:  # a build that writes only one file
        (stage / "manifest.json").write_text('{"tool": {"name": "curate"}}')
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "keep.txt", "manifest.json"])


def test_a_legacy_build_folder_is_recognised_by_its_manifest(tmp_path):
    out = tmp_path / "v1"
    _build(out)
    os.unlink(out / MARKER)  # as built before the marker existed
    (out / "notes.md").write_text("mine")
    _build(out)
    assert (out / "notes.md").read_text() == "mine" and read_marker(out) is not None and _intact(out)


def test_a_tampered_marker_cannot_name_files_outside_the_folder(tmp_path):
    out = tmp_path / "v1"
    _build(out)
    (tmp_path / "victim.txt").write_text("x")
    m = read_marker(out)
    m["outputs"] += ["../victim.txt", "/etc/passwd", ".."]
    (out / MARKER).write_text(json.dumps(m))
    _build(out)
    assert (tmp_path / "victim.txt").read_text() == "x"


HOLD = r"""
import sys, time
from curate.outdir import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_build_into_a_locked_folder_fails_naming_the_holder(tmp_path):
    out = tmp_path / "v1"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(
            ExportError,
            match=f"another curate build is writing this folder \\(pid {proc.pid} on {socket.gethostname()}",
        ):
            _build(out)
        assert not out.exists()
    finally:
        proc.kill()
        proc.wait()
    # the holder died without releasing: its lock is stale and taken over
    assert lock_path(out).exists()
    _build(out)
    assert not lock_path(out).exists() and _intact(out)


def test_the_lock_is_reentrant_and_a_foreign_host_is_never_taken_over(tmp_path):
    out = tmp_path / "v1"
    with output_lock(out), output_lock(out):
        _build(out)  # staged_output inside takes it again
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    lock_path(out).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere", "started": "t"}))
    with pytest.raises(ExportError, match="on elsewhere"):
        _build(out)


def test_recover_finishes_a_swap_killed_half_way(tmp_path):
    """Simulate every crash point of the swap: the next build's recover yields one whole export."""
    out = tmp_path / "v1"
    _build(out)
    (out / "notes.md").write_text("mine")
    import curate.outdir as od

    real = os.rename
    for crash_at in range(1, 30):
        calls = {"n": 0}

        class Crash(BaseException):
            pass

        def rename(a, b, _calls=calls, _at=crash_at):
            _calls["n"] += 1
            if _calls["n"] == _at:
                raise Crash
            return real(a, b)

        od.os.rename = rename
        try:
            with pytest.raises(Crash):
                _build(out)
            crashed = True
        except pytest.fail.Exception:
            crashed = False  # fewer renames than crash_at: the build finished
        finally:
            od.os.rename = real
        pid, dead = os.getpid(), _dead_pid()
        # make the leftovers look like a dead build's (they carry our live pid)
        for p in list(tmp_path.iterdir()):
            if p.name.startswith((".v1.staging-", ".v1.old-")):
                real(p, tmp_path / p.name.replace(f"-{pid}-", f"-{dead}-", 1))
        od._HELD.clear()
        with od.contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path(out))
        recover(out)
        assert _intact(out), crash_at
        assert (out / "notes.md").read_text() == "mine"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"], crash_at
        if not crashed:
            assert crash_at > 8  # the crash points covered every rename of the swap (9 outputs + the notes)
            break
    else:
        pytest.fail("the swap never finished")


KILL = r"""
import sys
from curate.steps.pipeline import build
d = sys.argv[2]
print("go", flush=True)
build(d, [d + "/data.jsonl", d + "/bad.jsonl"], sys.argv[1])
"""


def test_kill_9_at_random_points_of_a_build(tmp_path):
    out = tmp_path / "v1"
    first = _build(out)
    (out / "notes.md").write_text("mine")
    rng = random.Random(16)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # how long a build takes in a fresh process, so the kills land all over it
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL, str(out), str(DATA)], env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"go"
    t0 = time.perf_counter()
    assert proc.wait() == 0
    span = time.perf_counter() - t0
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL, str(out), str(DATA)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout.readline().strip() == b"go"
        time.sleep(rng.uniform(0, span))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # whatever the kill left, the folder holds one whole export (old or new) once repaired
        recover(out)
        assert _intact(out) and json.loads((out / "manifest.json").read_text())["counts"] == first["counts"]
        assert (out / "notes.md").read_text() == "mine"
    _build(out)  # the next build leaves the folder clean
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "notes.md", *read_marker(out)["outputs"]])
    assert not [p for p in Path("/dev/shm").glob("curate-spool-*-*") if not _alive(p)]


def _alive(spool: Path) -> bool:
    try:
        os.kill(int(spool.name.split("-")[2]), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def test_expand_defaults_beside_the_build_folder_never_inside(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from curate.cli import main

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["build", str(DATA), "-q"]).exit_code == 0
    r = CliRunner().invoke(main, ["expand", str(DATA), "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "mini-build" / "v1-expand" / "records.jsonl").is_file()
    assert not (tmp_path / "out" / "mini-build" / "v1" / "expand").exists()
    assert CliRunner().invoke(main, ["build", str(DATA), "-q"]).exit_code == 0  # the rebuild leaves it alone
    assert (tmp_path / "out" / "mini-build" / "v1-expand" / "records.jsonl").is_file()
