"""Parquet is the primary export: the loader headers map the Parquet files, the card says so, JSONL stays beside."""

from __future__ import annotations

import re
from pathlib import Path

from curate.steps.pipeline import build

DATA = Path(__file__).resolve().parents[1] / "data" / "build"


def test_card_and_loader_headers_point_at_parquet(tmp_path: Path) -> None:
    out = tmp_path / "o"
    build(DATA, [DATA / "data.jsonl"], out)
    card = (out / "README.md").read_text()
    header = card.split("---")[1]
    paths = re.findall(r"path: (\S+)", header)
    assert paths[:3] == ["sft/data/train-*.parquet", "sft/data/test-*.parquet", "dpo/data/train-*.parquet"]
    assert all(x.endswith(".parquet") for x in paths)  # (an empty split is left out: dpo/test here)
    assert (
        "The rows are in Parquet, what the configs load: `sft/data/*.parquet`, `dpo/data/*.parquet`" in card
    )
    assert (
        "`sft/train.jsonl` and `sft/test.jsonl`, `dpo/train.jsonl` and `dpo/test.jsonl` hold the same rows"
        in card
    )
    for kind in ("sft", "dpo"):
        sub = (out / kind / "README.md").read_text().split("---")[1]
        assert re.findall(r"path: (\S+)", sub)[0] == "data/train-*.parquet"
        assert all(x.endswith(".parquet") for x in re.findall(r"path: (\S+)", sub))
        assert (out / kind / "train.jsonl").is_file()  # JSONL still written


def test_no_jsonl_writes_parquet_only_and_every_reader_reads_it(tmp_path: Path) -> None:
    """`curate build --no-jsonl` (spec export.jsonl: false): no JSONL split files, the same rows in Parquet, and
    what reads an export (eval's held-out prompts, spec diff, the report, datasets) reads it as it reads JSONL."""
    import datasets
    import orjson
    from click.testing import CliRunner

    from curate.cli import main
    from curate.evaluate import heldout_prompts
    from curate.report.data import load_report_data
    from curate.spec_diff import _exported
    from curate.steps.export import read_rows, split_file

    both, lean = tmp_path / "both", tmp_path / "lean"
    for out, flag in ((both, []), (lean, ["--no-jsonl"])):
        got = CliRunner().invoke(
            main, ["build", str(DATA), "--input", str(DATA / "data.jsonl"), "--out", str(out), "-q", *flag]
        )
        assert got.exit_code == 0, got.output
    assert sorted(p.name for p in lean.glob("*/*.jsonl")) == []
    assert sorted(p.name for p in both.glob("*/*.jsonl")) == [
        "test.jsonl",
        "test.jsonl",
        "train.jsonl",
        "train.jsonl",
    ]
    manifest = orjson.loads((lean / "manifest.json").read_bytes())
    assert not [f for f in manifest["files"] if f.startswith(("sft/", "dpo/")) and f.endswith(".jsonl")]
    for kind in ("sft", "dpo"):
        for split in ("train", "test"):
            a, b = split_file(both / kind, split), split_file(lean / kind, split)
            assert (a is None) == (b is None)
            if a is None:
                continue
            assert a.suffix == ".jsonl" and b.suffix == ".parquet"
            rows_a = [r for _, r in read_rows(a)]
            rows_b = [r for _, r in read_rows(b)]
            assert [r["id"] for r in rows_a] == [r["id"] for r in rows_b]
            assert len(rows_a) == manifest["counts"][kind][split]
            assert [r["lineage"] for r in rows_a] == [r["lineage"] for r in rows_b]
    assert len(datasets.load_dataset(str(lean / "sft"))["train"]) == manifest["counts"]["sft"]["train"]
    assert [p.messages for p in heldout_prompts(lean)] == [p.messages for p in heldout_prompts(both)]
    ex_a, ex_b = _exported(both), _exported(lean)
    assert [r.id for r in ex_a[0]] == [r.id for r in ex_b[0]] and [r.id for r in ex_a[1]] == [
        r.id for r in ex_b[1]
    ]
    assert "This build wrote no JSONL copies" in (lean / "README.md").read_text()
    assert "This build wrote no JSONL copies" not in (both / "README.md").read_text()
    rep_a, rep_b = load_report_data(both), load_report_data(lean)
    assert len(rep_a.pair_examples) == len(rep_b.pair_examples) and rep_a.pair_examples
    assert rep_a.texts == rep_b.texts
