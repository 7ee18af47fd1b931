"""Plain text records, a format per input (FILE:FORMAT, on the command line and in a spec's `data:`), and an
undetectable file that is quarantined (not fatal) in a multi-input build unless --strict; `curate coverage SPEC`
is the build's own coverage; `curate expand --fill-gaps` says what it made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.cli.expand_cmds import expand_messages
from curate.errors import InputError
from curate.readers.containers import InputPath, expand_inputs, split_format
from curate.spec import lint, load_spec
from curate.steps.base import RunContext
from curate.steps.pipeline import build
from curate.steps.read import read_inputs

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "support-triage"
SHAREGPT = {
    "conversations": [
        {"from": "human", "value": "I can't log in to my account"},
        {
            "from": "gpt",
            "value": json.dumps(
                {
                    "intent": "account_access",
                    "entities": {},
                    "missing_info": ["account email"],
                    "next_step": "Which email is the account under?",
                }
            ),
        },
    ]
}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_text_records_are_unlabeled_prompts(tmp_path: Path) -> None:
    f = _jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"text": "My invoice is wrong"},
            {"text": "  "},
            {"text": "Cancel my plan", "category": "edge", "tags": ["web"]},
        ],
    )
    ctx = RunContext()
    recs = list(read_inputs([f], ctx=ctx))
    assert [r.messages[0].content for r in recs] == ["My invoice is wrong", "Cancel my plan"]
    assert all(len(r.messages) == 1 and r.messages[0].role == "user" for r in recs)
    assert recs[1].category == "edge" and recs[1].tags == ("web", "unlabeled") and "unlabeled" in recs[0].tags
    assert [q["reason"] for q in ctx.quarantined["read"]] == ["empty_turn"]
    # the same text twice is the same record (one content id): pushing both to labeling makes one task
    again = list(
        read_inputs([_jsonl(tmp_path / "again.jsonl", [{"text": "My invoice is wrong"}])], ctx=RunContext())
    )
    assert again[0].id == recs[0].id
    # a build accounts for them: unlabeled prompts are exported as prompt-only rows (tests/test_text_records.py)
    res = build(SPEC, [f], tmp_path / "out")
    assert res.counts["in"] == 3 and res.counts["exported"] == 2 and res.manifest["conservation"]["ok"]
    assert res.counts["prompts"]["train"] + res.counts["prompts"]["test"] == 2
    assert res.manifest["quarantine"] == {"read/empty_turn": 1}


def test_split_format() -> None:
    p, fmt = split_format("chats.jsonl:sharegpt")
    assert (str(p), fmt) == ("chats.jsonl", "sharegpt")
    assert split_format("plain.jsonl") == (Path("plain.jsonl"), None)
    assert split_format("c:/data/x.jsonl")[1] is None  # not a format name: a path with a colon


def test_per_input_format(tmp_path: Path) -> None:
    sg = _jsonl(tmp_path / "chats.jsonl", [SHAREGPT])
    [p] = expand_inputs([f"{sg}:sharegpt"])
    assert isinstance(p, InputPath) and p.format == "sharegpt" and Path(p.__fspath__()) == sg
    assert str(p) == f"{sg}:sharegpt"  # the name the build counts the input under
    ctx = RunContext()
    [rec] = list(read_inputs([f"{sg}:sharegpt"], ctx=ctx))
    assert rec.source.format == "sharegpt" and ctx.counters[f"in:{sg}:sharegpt"] == 1
    # forcing a wrong format for one input quarantines that input's rows only
    res = build(SPEC, [f"{sg}:alpaca", SPEC / "data.jsonl"], tmp_path / "out")
    by_file = {i["file"]: i for i in res.manifest["inputs"]}
    assert by_file[f"{sg}:alpaca"]["quarantined"] == 1 and by_file[f"{sg}:alpaca"]["format"] == "alpaca"
    assert res.manifest["conservation"]["ok"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "chats.jsonl:alpaca" in card and str(tmp_path) not in card


def test_spec_data_entry_with_a_format(tmp_path: Path) -> None:
    spec_dir = tmp_path / "spec"
    shutil.copytree(SPEC, spec_dir)
    _jsonl(spec_dir / "chats.jsonl", [SHAREGPT])
    text = (spec_dir / "spec.yaml").read_text()
    assert "\ndata: [data.jsonl]" in text
    (spec_dir / "spec.yaml").write_text(
        text.replace("\ndata: [data.jsonl]", "\ndata: [data.jsonl, chats.jsonl:sharegpt]")
    )
    spec = load_spec(spec_dir)
    assert not [f for f in lint(spec) if f.code in ("missing_data_file", "bad_data_format")]
    res = build(spec, None, tmp_path / "out")
    assert any(i["format"] == "sharegpt" and i["in"] == 1 for i in res.manifest["inputs"])
    (spec_dir / "spec.yaml").write_text(
        text.replace("\ndata: [data.jsonl]", "\ndata: [data.jsonl, chats.jsonl:sharegtp]")
    )
    assert "bad_data_format" in [f.code for f in lint(load_spec(spec_dir))]


def test_undetectable_file_is_quarantined_unless_strict(tmp_path: Path) -> None:
    odd = _jsonl(tmp_path / "odd.jsonl", [{"foo": 1}, {"foo": 2}])
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        ["build", str(SPEC), "-i", str(SPEC / "data.jsonl"), "-i", str(odd), "--out", str(out), "--json"],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["conservation"]["ok"] and doc["quarantine"]["read/unknown_format"] == 2
    assert doc["counts"]["exported"] > 100  # the other input was built
    rows = [json.loads(x) for x in (out / "quarantine" / "read.jsonl").read_text().splitlines()]
    assert [(Path(q["source"]["file"]).name, q["source"]["line"]) for q in rows] == [
        ("odd.jsonl", 1),
        ("odd.jsonl", 2),
    ]
    assert "fields found: foo" in rows[0]["detail"] and "(see line 1)" in rows[1]["detail"]
    r = CliRunner().invoke(
        main,
        [
            "build",
            str(SPEC),
            "-i",
            str(SPEC / "data.jsonl"),
            "-i",
            str(odd),
            "--out",
            str(tmp_path / "strict"),
            "--strict",
        ],
    )
    assert r.exit_code == 1 and "cannot tell the format" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "strict" / "manifest.json").exists()
    # the library: `strict` is a parameter of build and read_inputs (no hidden state), on both read paths
    for compact in (True, False):
        with pytest.raises(InputError, match="cannot tell the format"):
            build(SPEC, [SPEC / "data.jsonl", odd], tmp_path / f"lib-{compact}", strict=True, compact=compact)
    with pytest.raises(InputError, match="cannot tell the format"):
        list(read_inputs([odd], ctx=RunContext(), strict=True))
    assert (
        build(SPEC, [odd, SPEC / "data.jsonl"], tmp_path / "lib").manifest["quarantine"][
            "read/unknown_format"
        ]
        == 2
    )


def test_coverage_of_a_spec_is_the_builds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = build(SPEC, None, out)
    r = CliRunner().invoke(main, ["coverage", str(SPEC), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    strip = [{k: v for k, v in c.items() if k != "splits"} for c in res.manifest["coverage"]["cells"]]
    assert [{k: v for k, v in c.items() if k != "splits"} for c in doc["cells"]] == strip
    r = CliRunner().invoke(main, ["coverage", str(out), "--json"])
    assert json.loads(r.stdout)["cells"] == res.manifest["coverage"]["cells"]


def test_fill_gaps_says_what_it_made() -> None:
    summary = {
        "counts": {
            "records": 57,
            "pairs": 29,
            "prompts_to_label": 225,
            "dropped_near_duplicate": 41,
            "records:curate.expand.edge": 16,
            "records:curate.expand.gaps": 41,
        },
        "gaps": {
            "cells": [],
            "made": 0,
            "unfilled": 0,
            "shares": [
                {
                    "category": "typical",
                    "before": 102,
                    "after": 137,
                    "made": 35,
                    "share": 0.5,
                    "min_share": 0.5,
                    "ok": True,
                },
                {
                    "category": "adversarial",
                    "before": 22,
                    "after": 28,
                    "made": 6,
                    "share": 0.102,
                    "min_share": 0.1,
                    "ok": True,
                },
            ],
        },
    }
    lines = expand_messages(summary)
    assert lines[0] == (
        "made 57 records (edge: 16, gaps: 41), 29 pairs, 225 prompts to label; near-duplicates dropped: 41"
    )
    assert "fill-gaps: no coverage cell was under its target, so no cell needed cases" in lines
    assert lines[-1] == (
        "fill-gaps made 0 records and pairs for coverage cells and 41 for category shares "
        "(included in the counts above)"
    )
    assert not any("every coverage cell was already at its target" in x for x in lines)
