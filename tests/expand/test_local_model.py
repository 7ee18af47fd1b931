"""--model: a local model (the tiny test model, loaded from a folder; no hub) paraphrases and drafts answers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.expand import expand
from curate.expand.local_model import LocalModel


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_expand_with_local_model_drafts_every_prompt(mini_spec, tiny_dir):
    model = LocalModel(tiny_dir, max_new_tokens=12)
    res = expand(mini_spec, seed=1, model=model, variants=1, per_pattern=1, per_rule=1)
    assert res.prompts
    assert all(isinstance(p["draft"], str) for p in res.prompts)
    by_model = [p for p in res.prompts if p["source"]["params"].get("draft") != "parent"]
    assert (
        by_model
        and res.summary["model"] == tiny_dir.name
        and res.summary["counts"]["drafts"] == len(by_model)
    )
    assert res.summary["counts"]["model_paraphrases"] >= 1
    again = expand(mini_spec, seed=1, model=model, variants=1, per_pattern=1, per_rule=1)
    assert [p["draft"] for p in again.prompts] == [p["draft"] for p in res.prompts]  # greedy: deterministic


def test_cli_expand_model_folder(mini_spec, tiny_dir, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "expand",
            str(mini_spec.path),
            "--model",
            str(tiny_dir),
            "--out",
            str(tmp_path),
            "--variants",
            "0",
            "--per-pattern",
            "1",
            "--per-rule",
            "0",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "prompts_to_label.jsonl").read_text().splitlines()]
    assert rows and all("draft" in row for row in rows)


def test_missing_model_folder_is_a_clean_error(tmp_path):
    from curate.errors import CurateError

    with pytest.raises(CurateError, match="no such folder"):
        LocalModel(tmp_path / "nope")


def test_implausible_paraphrases_are_dropped():
    from curate.expand.generate import plausible_paraphrase

    src = "forgot my password, email is jenny.ko@outlook.com"
    assert plausible_paraphrase(
        "I can't remember my password; my email is jenny.ko@outlook.com", src, {"jenny.ko@outlook.com"}
    )
    assert not plausible_paraphrase("I can't remember my password", src, {"jenny.ko@outlook.com"})
    assert not plausible_paraphrase("Rewrite this customer message in different words: " + src, src, set())
    assert not plausible_paraphrase("ok", src, set())
