"""The whole loop with a labeler in a real browser: push, label by script in headless Chromium (edit a negative
example's answer in place, accept the good ones), pull, build, train DPO on the tiny model. The correction must land
on the chosen side of dpo/train, the original answer on the rejected side, and nowhere as a positive."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner
from lshelpers import make_spec

from curate.labeling.pull import pull
from curate.labeling.push import find_project, push
from curate.labeling.screens import LabelerBrowser

pytestmark = [pytest.mark.studio, pytest.mark.browser, pytest.mark.train]

FIX = '{"intent": "other", "next_step": "Which account should I look at?"}'
NEGATIVE = "I've reset your password."


def _rows(path):
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def test_corrections_made_in_the_browser_land_on_the_chosen_side_of_dpo_train(client, tmp_path):
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[k] = "1"
    spec = make_spec(tmp_path)
    push(spec, "review", client=client)
    pid = find_project(client, spec, "review")["id"]
    tasks = list(client.task_data(pid))
    seconds = []
    with LabelerBrowser(client, width=1400, height=1600) as browser:
        for task in tasks:
            t0 = time.perf_counter()
            browser.open_task(pid, task["id"])
            if task["data"]["response"] == NEGATIVE:
                browser.tick("edit")
                browser.edit_text("corrected", FIX)
            else:
                browser.tick("accept")
            ann = browser.submit(task["id"])
            seconds.append(time.perf_counter() - t0)
            assert not ann.get("was_cancelled")
    assert len(seconds) == len(tasks) == 6
    out = tmp_path / "pulled.jsonl"
    res = pull(spec, client=client, out=out, kinds=["review"])
    assert res.counts["task_states"]["review"]["labeled"] == 6 and res.counts["accounted"]
    from curate.cli import main

    build = tmp_path / "build"
    r = CliRunner().invoke(
        main,
        [
            "build",
            str(spec.path),
            "--input",
            str(out),
            "--input",
            str(spec.base_dir / "data.jsonl"),
            "--out",
            str(build),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    dpo = _rows(build / "dpo" / "train.jsonl") + _rows(build / "dpo" / "test.jsonl")
    corrected = [row for row in dpo if row["chosen"][-1]["content"] == FIX]
    assert corrected and all(row["rejected"][-1]["content"] == NEGATIVE for row in corrected)
    assert corrected[0] in _rows(build / "dpo" / "train.jsonl")  # in the training split
    assert not [row for row in dpo if row["rejected"][-1]["content"] == FIX]  # never the rejected side
    sft = _rows(build / "sft" / "train.jsonl") + _rows(build / "sft" / "test.jsonl")
    assert not [row for row in sft if row["messages"][-1]["content"] == NEGATIVE]
    # the exported row's history: from the labeler's annotation of the data line
    r = CliRunner().invoke(main, ["explain", corrected[0]["id"], "--build-dir", str(build), "--json"])
    assert r.exit_code == 0, r.output
    story = json.loads(r.stdout)
    assert story["lineage"]["annotations"] and story["lineage"]["source"].endswith("data.jsonl:5")
    # and it trains
    from curate.train import TrainOptions, train_dpo
    from tests.tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    result = train_dpo(
        build,
        TrainOptions(
            model=model, out=tmp_path / "dpo-run", epochs=1.0, batch_size=2, max_length=1024, max_steps=2
        ),
    )
    cfg = json.loads((tmp_path / "dpo-run" / "curate_train_config.json").read_text())
    assert cfg["data"]["train_rows"] == len(_rows(build / "dpo" / "train.jsonl"))
    assert result.config["result"]["global_step"] == 2
