"""The dataset card a build writes: every Python snippet in it runs as printed (from inside the build folder; a
tiny local model stands in for MODEL), it has a license field and an example row per kind, no absolute local
path, and an export with one kind empty stays loadable and lints clean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.steps.pipeline import build

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "support-triage"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    out = root / "out" / "v1"
    build(SPEC, [SPEC / "data.jsonl"], out)
    return out


def _run(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_card_header_example_rows_and_relative_paths(built: Path) -> None:
    card = (built / "README.md").read_text()
    header = card.split("---")[1]
    assert "\nlicense: " in header
    for absolute in (
        str(REPO),
        str(built),
        str(built.parent),
    ):  # a relative path may pass through them: `../x`
        assert not re.search(r"(?<!\.\.)" + re.escape(absolute), card), absolute
    assert "<this folder>" not in card
    rows = [json.loads(b) for b in _blocks(card, "json")]
    first_sft = json.loads((built / "sft" / "train.jsonl").read_text().splitlines()[0])
    first_dpo = json.loads((built / "dpo" / "train.jsonl").read_text().splitlines()[0])
    assert [r["id"] for r in rows] == [first_sft["id"], first_dpo["id"]]
    assert rows[0]["messages"][-1] == first_sft["messages"][-1]
    m = re.search(r"\| `([^`]+)` \(native\)", card)
    assert m and not Path(m.group(1)).is_absolute()
    assert (built / m.group(1)).resolve() == (SPEC / "data.jsonl").resolve()


def test_load_snippet_runs_as_printed(built: Path) -> None:
    card = (built / "README.md").read_text()
    load = next(
        b for b in _blocks(card, "python") if 'load_dataset(folder, "sft")' in b and "Trainer" not in b
    )
    r = _run(load + "\nprint('ROWS', len(sft['train']), len(dpo['train']))", cwd=built)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = json.loads((built / "manifest.json").read_text())["counts"]
    assert f"ROWS {counts['sft']['train']} {counts['dpo']['train']}" in r.stdout


@pytest.mark.train
def test_trl_snippets_run_as_printed(built: Path, tmp_path: Path) -> None:
    """The SFTTrainer and DPOTrainer snippets train for real; only MODEL is replaced (and the epochs cut to a few
    steps, to keep the test short: `num_train_epochs=1` -> `max_steps=2`)."""
    from tests.tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    card = (built / "README.md").read_text()
    trl_blocks = [b for b in _blocks(card, "python") if "Trainer(" in b]
    assert len(trl_blocks) == 2 and "SFTTrainer" in trl_blocks[0] and "DPOTrainer" in trl_blocks[1]
    for block in trl_blocks:
        assert 'MODEL = "path/to/a/local/model"' in block and "num_train_epochs=1" in block
        code = block.replace('MODEL = "path/to/a/local/model"', f"MODEL = {str(model)!r}")
        code = code.replace("num_train_epochs=1", "max_steps=2, report_to='none'")
        r = _run(code + "\nprint('TRAINED', trainer.state.global_step)", cwd=built)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "TRAINED 2" in r.stdout


def test_single_kind_export_is_loadable_and_lints_clean(tmp_path: Path) -> None:
    data = tmp_path / "sft_only.jsonl"
    lines = [
        x
        for x in (SPEC / "data.jsonl").read_text().splitlines()
        if '"chosen"' not in x and '"negative"' not in x
    ]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "b"
    res = build(SPEC, [data], out)
    assert res.counts["dpo"]["train"] == 0 and res.counts["sft"]["train"] > 0
    card = (out / "README.md").read_text()
    assert '"dpo")' not in card.split("## Counts")[0] and "There are no DPO rows in this build" in card
    assert "data_files:" not in (out / "dpo" / "README.md").read_text()
    load = next(b for b in _blocks(card, "python") if "load_dataset" in b and "Trainer" not in b)
    r = _run(load, cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    r = CliRunner().invoke(main, ["lint-export", str(out), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["ok"]
    assert [(f["code"], f["level"]) for f in doc["findings"]] == [("empty", "warning")]
    r = CliRunner().invoke(main, ["lint-export", str(out / "dpo")])
    assert r.exit_code == 1  # the empty kind alone: nothing to train on
