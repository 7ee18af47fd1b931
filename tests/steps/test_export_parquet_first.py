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
