"""Per-record lengths in lengths.parquet (the manifest keeps a summary) and the report reading them from there."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.report import load_report_data, render_report
from curate.steps.lengths_file import FILE, read_lengths, summarize, write_lengths

from .synthetic import make_out_dir


@pytest.mark.parametrize(
    ("values", "limit", "want"),
    [
        ([], 10, {"rows": 0}),
        ([5], None, {"rows": 1, "min": 5, "p50": 5, "p95": 5, "max": 5, "mean": 5.0}),
        (
            list(range(1, 101)),
            90,
            {"rows": 100, "min": 1, "p50": 50, "p95": 95, "max": 100, "mean": 50.5, "over_limit": 10},
        ),
    ],
)
def test_summarize(values: list[int], limit: int | None, want: dict) -> None:
    assert summarize(values, limit) == want


def test_write_and_read_back(tmp_path: Path) -> None:
    block = {
        "unit": "tokens",
        "estimated": False,
        "max_tokens": 100,
        "sft": {"train": [30, 120, 0, 45], "test": [60]},
        "dpo": {"train": [], "test": [7, 8]},
    }
    summary = write_lengths(tmp_path, block)
    assert summary == {
        "unit": "tokens",
        "estimated": False,
        "max_tokens": 100,
        "file": FILE,
        "sft": {"train": summarize([30, 120, 0, 45], 100), "test": summarize([60], 100)},
        "dpo": {"train": {"rows": 0}, "test": summarize([7, 8], 100)},
    }
    assert summary["sft"]["train"]["over_limit"] == 1
    assert read_lengths(tmp_path, summary) == {fmt: block[fmt] for fmt in ("sft", "dpo")}
    table = pq.read_table(tmp_path / FILE)
    assert table.num_rows == 7 and table.column_names == ["format", "split", "length"]
    assert table.column("format").to_pylist() == ["sft"] * 5 + ["dpo"] * 2
    assert table.column("length").to_pylist() == [30, 120, 0, 45, 60, 7, 8]  # export order
    # the same lengths always give the same bytes (the manifest hashes every file)
    first = (tmp_path / FILE).read_bytes()
    write_lengths(tmp_path, block)
    assert (tmp_path / FILE).read_bytes() == first
    # an older manifest's lists are read as they are
    assert read_lengths(tmp_path, block) == {fmt: block[fmt] for fmt in ("sft", "dpo")}
    assert read_lengths(tmp_path, None) == {}


def test_summary_is_small_at_scale(tmp_path: Path) -> None:
    n, rng = 300_000, random.Random(1)
    train = [max(20, int(rng.lognormvariate(5.3, 0.45))) for _ in range(n)]  # ~200 tokens, long tail
    block = {"unit": "tokens", "max_tokens": 1024, "sft": {"train": train, "test": []}}
    summary = write_lengths(tmp_path, block)
    assert len(json.dumps(summary)) < 400  # was ~1.5 MB of JSON in the manifest at this size
    assert (tmp_path / FILE).stat().st_size < 2 * n  # under 2 bytes a row (JSON in the manifest: ~5)
    assert read_lengths(tmp_path, summary)["sft"]["train"] == block["sft"]["train"]


def _move_lengths_to_side_file(out: Path) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    lists = {fmt: m["lengths"][fmt] for fmt in ("sft", "dpo")}
    m["lengths"] = write_lengths(out, m["lengths"])
    (out / "manifest.json").write_text(json.dumps(m))
    return lists


def test_report_reads_lengths_from_the_side_file(tmp_path: Path) -> None:
    out = make_out_dir(tmp_path)
    before = render_report(out)
    lists = _move_lengths_to_side_file(out)
    data = load_report_data(out)
    assert data.lengths == lists and data.warnings == load_report_data(out).warnings
    html = render_report(out)
    hist = re.search(r'<svg id="chart-len-sft-train".*?</svg>', html, re.DOTALL)
    assert hist and f"n={len(lists['sft']['train'])}" in hist.group(0)
    # the same charts as when the lists were in the manifest
    lens = [re.search(r'<section[^>]*id="lengths".*?</section>', h, re.DOTALL) for h in (before, html)]
    assert lens[0] and lens[1] and lens[0].group(0) == lens[1].group(0)


def test_unreadable_side_file_is_a_warning(tmp_path: Path) -> None:
    out = make_out_dir(tmp_path)
    _move_lengths_to_side_file(out)
    (out / FILE).write_bytes(b"not parquet")
    data = load_report_data(out)
    assert data.lengths == {} and any(w.startswith("lengths.parquet: cannot read") for w in data.warnings)
    assert "No lengths in the build." in render_report(out)
