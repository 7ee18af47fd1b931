"""export: TRL rows, files datasets can load, atomic folder swap (also when the build is killed), lint-export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.errors import ExportError
from curate.records import FunctionCall, Message, PreferenceRecord, SFTRecord, Source, ToolCall
from curate.spec import load_spec
from curate.steps.export import dpo_row, file_hashes, recover, sft_row, staged_output, write_splits
from curate.steps.lint_export import dataset_type, lint_export

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "build"


@pytest.fixture(scope="module")
def spec():
    return load_spec(DATA)


U = Message(role="user", content="Cancel order 55?")
A = Message(role="assistant", content='{"answer": "Support will confirm by email."}')


def test_sft_rows(spec):
    rec = SFTRecord.build(messages=(U, A))
    sys_turn = {"role": "system", "content": spec.system_prompt.strip()}
    lineage = sft_row(rec, spec)["lineage"]  # where the row came from, a JSON string (records.lineage_from)
    assert json.loads(lineage)["source"] == "" and json.loads(lineage)["source_ids"] == []
    assert sft_row(rec, spec) == {
        "messages": [sys_turn, U.to_trl(), A.to_trl()],
        "id": rec.id,
        "lineage": lineage,
    }
    assert sft_row(rec, spec, "prompt-completion") == {
        "prompt": [sys_turn, U.to_trl()],
        "completion": [A.to_trl()],
        "id": rec.id,
        "lineage": lineage,
    }
    src = SFTRecord.build(messages=(U, A), source=Source(file="in.jsonl", line=4))
    assert json.loads(sft_row(src, spec)["lineage"])["source"] == "in.jsonl:4"
    own = SFTRecord.build(messages=(Message(role="system", content="mine"), U, A))
    assert sft_row(own, spec)["messages"][0] == {"role": "system", "content": "mine"}
    assert len(sft_row(own, spec)["messages"]) == 3  # no second system turn
    off = spec.model_copy(update={"export": spec.export.model_copy(update={"include_system_prompt": False})})
    assert sft_row(rec, off)["messages"][0] == U.to_trl()
    with pytest.raises(ExportError, match="unknown SFT format"):
        sft_row(rec, spec, "text")


def test_dpo_and_tool_rows(spec):
    pair = PreferenceRecord.build(
        prompt=(U,), chosen=(A,), rejected=(Message(role="assistant", content="done!"),)
    )
    row = dpo_row(pair, spec)
    assert row["prompt"][0]["role"] == "system" and row["prompt"][1] == U.to_trl()
    assert row["chosen"] == [A.to_trl()] and row["rejected"] == [{"role": "assistant", "content": "done!"}]
    assert dataset_type(row) == ("preference", True)
    call = Message(
        role="assistant",
        content="",
        tool_calls=(ToolCall(function=FunctionCall(name="lookup", arguments='{"order": 55}')),),
    )
    tool = SFTRecord.build(
        messages=(U, call, Message(role="tool", content='{"status": "open"}'), A),
        tools='[{"type": "function", "function": {"name": "lookup"}}]',
    )
    trow = sft_row(tool, spec)
    assert trow["tools"] == tool.tools and isinstance(trow["tools"], str)
    assert trow["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"order": 55}'


def test_written_splits_load_with_datasets(tmp_path, spec):
    from datasets import load_dataset

    tool = SFTRecord.build(
        messages=(
            U,
            Message(
                role="assistant",
                content="",
                tool_calls=(ToolCall(function=FunctionCall(name="f", arguments='{"a": {"b": 1}}')),),
            ),
            Message(role="tool", content="1"),
            A,
        ),
        tools="[]",
    )
    plain = [SFTRecord.build(messages=(Message(role="user", content=f"q{i}"), A)) for i in range(5)]
    rows = [sft_row(r, spec) for r in [tool, *plain]]
    write_splits(tmp_path / "sft", {"train": rows[:4], "test": rows[4:]}, title="t")
    ds = load_dataset(str(tmp_path / "sft"))
    assert ds["train"].num_rows == 4 and ds["test"].num_rows == 2
    assert ds["train"][0]["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a": {"b": 1}}'
    assert ds["train"][0]["tools"] == "[]" and ds["train"][1]["tools"] is None
    # the JSONL files hold the same rows
    lines = (tmp_path / "sft" / "train.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [r["id"] for r in rows[:4]]
    # a second folder with the same name and layout but other rows: datasets must not serve the first one's cache
    other = [
        sft_row(SFTRecord.build(messages=(Message(role="user", content=f"other {i}"), A)), spec)
        for i in range(3)
    ]
    write_splits(tmp_path / "b" / "sft", {"train": other[:2], "test": other[2:]})
    ds2 = load_dataset(str(tmp_path / "b" / "sft"))
    assert ds2["train"]["id"] == [r["id"] for r in other[:2]]
    # an empty split is left out of the map (datasets cannot read an empty Parquet file) but its files exist
    write_splits(tmp_path / "sft2", {"train": rows, "test": []})
    assert list(load_dataset(str(tmp_path / "sft2"))) == ["train"]
    assert (tmp_path / "sft2" / "test.jsonl").read_text() == ""


# ---------------------------------------------------------------- atomicity


def _build_once(out: Path) -> dict:
    from curate.steps.pipeline import build

    return build(DATA, [DATA / "data.jsonl"], out).manifest


def _intact(out: Path) -> bool:
    manifest = json.loads((out / "manifest.json").read_text())
    return file_hashes(out) == manifest["files"]


def test_failure_inside_the_stage_leaves_the_old_export(tmp_path):
    out = tmp_path / "o"
    _build_once(out)
    before = file_hashes(out)
    with pytest.raises(RuntimeError), staged_output(out) as stage:
        (stage / "manifest.json").write_text("{}")
        raise RuntimeError("boom")
    assert file_hashes(out) == before and _intact(out)
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # the stage is gone


def test_refuses_to_replace_a_folder_that_is_not_a_build(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(ExportError, match="not a curate build folder"), staged_output(tmp_path / "mine"):
        pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_recover_after_a_kill_between_the_renames(tmp_path):
    out = tmp_path / "o"
    _build_once(out)
    before = file_hashes(out)
    aside = tmp_path / f".o.old-{_dead_pid()}-abc"
    os.rename(out, aside)  # the old export was moved aside, the new one never arrived
    (tmp_path / f".o.staging-{_dead_pid()}-xyz").mkdir()  # and a half-written stage
    recover(out)
    assert file_hashes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


KILL_SCRIPT = r"""
import sys, time
from pathlib import Path
import curate.steps.pipeline as pl
real = pl.write_jsonl
def slow(path, rows):
    n = real(path, rows)
    Path(sys.argv[2]).write_text(str(path))   # tell the test we are half-way through writing the stage
    time.sleep(120)
    return n
pl.write_jsonl = slow
pl.build(sys.argv[3], [sys.argv[3] + "/data.jsonl", sys.argv[3] + "/bad.jsonl"], sys.argv[1])
"""


def test_killed_build_leaves_the_previous_export_whole(tmp_path):
    out = tmp_path / "o"
    first = _build_once(out)
    before = file_hashes(out)
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(out), str(marker), str(DATA)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no marker"
        assert ".o.staging-" in marker.read_text()  # it was writing into the stage, not into out/
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert file_hashes(out) == before and _intact(out)
    assert json.loads((out / "manifest.json").read_text())["counts"] == first["counts"]
    assert any(p.name.startswith(".o.staging-") for p in tmp_path.iterdir())  # the killed build's leftovers
    second = _build_once(out)  # the next build cleans them up
    assert second["counts"] == first["counts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker", "o"]


# ---------------------------------------------------------------- lint-export


def test_lint_export_types_and_lengths(tmp_path, spec):
    from tests.tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    rows = [
        sft_row(SFTRecord.build(messages=(Message(role="user", content=f"question {i}"), A)), spec)
        for i in range(4)
    ]
    long_prompt = sft_row(SFTRecord.build(messages=(Message(role="user", content="word " * 400), A)), spec)
    write_splits(tmp_path / "d" / "sft", {"train": rows + [long_prompt], "test": rows[:1]})
    rep = lint_export(tmp_path / "d", tokenizer=model, max_length=200)
    assert rep.datasets[0]["type"] == "language_modeling" and rep.datasets[0]["conversational"]
    assert rep.datasets[0]["dropped"] == 1 and not rep.ok
    assert [f["code"] for f in rep.findings] == ["rows_dropped"]
    # a row of another type than the first
    pc = sft_row(SFTRecord.build(messages=(Message(role="user", content="q"), A)), spec, "prompt-completion")
    write_splits(tmp_path / "e" / "sft", {"train": rows + [pc], "test": rows[:1]})
    rep = lint_export(tmp_path / "e", tokenizer=model, max_length=2000)
    assert [f["code"] for f in rep.findings] == ["inconsistent_types"]
    # a chat template without generation markers, when assistant-only loss is wanted
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    rep = lint_export(tmp_path / "d", tokenizer=tok, max_length=2000)
    assert "no_generation_markers" in [f["code"] for f in rep.findings]
    rep = lint_export(tmp_path / "d", tokenizer=tok, max_length=100_000, assistant_only_loss=False)
    assert rep.ok and rep.findings == []
    # training on every token: the long prompt is truncated, not dropped
    rep = lint_export(tmp_path / "d", tokenizer=model, max_length=200, assistant_only_loss=False)
    assert rep.ok and (rep.datasets[0]["dropped"], rep.datasets[0]["truncated"]) == (0, 1)
    # just under the short rows' length: they are truncated (a warning), the long prompt dropped (an error)
    full = AutoTokenizer.from_pretrained(str(model)).apply_chat_template(rows[0]["messages"], tokenize=True)
    n = len(full["input_ids"] if hasattr(full, "keys") else full)
    r = CliRunner().invoke(
        main,
        ["lint-export", str(tmp_path / "d"), "--tokenizer", str(model), "--max-length", str(n - 2), "--json"],
    )
    doc = json.loads(r.output)
    assert {f["code"]: f["level"] for f in doc["findings"]} == {
        "rows_truncated": "warning",
        "rows_dropped": "error",
    }
    assert doc["datasets"][0]["truncated"] == 5 and r.exit_code == 1


def test_fsync_behind_flushes_and_joins(tmp_path, monkeypatch) -> None:
    """The export folders are fsynced on a thread while the block runs; the thread is gone after it."""
    import os
    import threading

    from curate.steps.export import fsync_behind

    (tmp_path / "sft" / "data").mkdir(parents=True)
    for name in ("sft/train.jsonl", "sft/data/train.parquet", "other.txt"):
        (tmp_path / name).write_bytes(b"x" * 10)
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with fsync_behind([tmp_path / "sft", tmp_path / "dpo"]):
        pass
    assert sorted(synced) == sorted(str(tmp_path / n) for n in ("sft/train.jsonl", "sft/data/train.parquet"))
    assert not [t for t in threading.enumerate() if t.name == "curate-fsync"]
