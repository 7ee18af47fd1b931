"""The files of an export split: one finder (`export.split_files`) for the readers of one file (`split_file`: eval,
spec diff, the report, the card) and for lint-export, which reads every Parquet shard."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import ExportError
from curate.steps.export import read_rows, split_file, split_files
from curate.steps.lint_export import lint_export


def _chat(i: int) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}


def _shard(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_two_shard_split(tmp_path: Path) -> None:
    folder = tmp_path / "sft"
    second = folder / "data" / "train-00001-of-00002.parquet"
    first = folder / "data" / "train-00000-of-00002.parquet"
    _shard(second, [_chat(3), _chat(4)])  # written first: the order comes from the names, not the disk
    _shard(first, [_chat(0), _chat(1), _chat(2)])
    _shard(folder / "data" / "test-00000-of-00001.parquet", [_chat(9)])

    assert split_files(folder, "train") == [first, second]
    assert split_files(folder, "test") == [folder / "data" / "test-00000-of-00001.parquet"]
    assert split_files(folder, "validation") == []
    rows = [r for f in split_files(folder, "train") for _, r in read_rows(f)]
    assert [r["messages"][0]["content"] for r in rows] == ["q0", "q1", "q2", "q3", "q4"]

    # the one-file readers get the one shard, and a clear error (not a missing split) for several
    assert split_file(folder, "test") == folder / "data" / "test-00000-of-00001.parquet"
    assert split_file(folder, "validation") is None
    with pytest.raises(ExportError, match="the train split is 2 Parquet shards"):
        split_file(folder, "train")

    # lint-export reads every shard of the same files
    rep = lint_export(folder)
    assert rep.datasets[0]["rows"] == {"train": 5, "test": 1}


def test_jsonl_comes_first(tmp_path: Path) -> None:
    folder = tmp_path / "sft"
    _shard(folder / "data" / "train-00000-of-00001.parquet", [_chat(0)])
    (folder / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    assert split_files(folder, "train") == [folder / "train.jsonl"]
    assert split_file(folder, "train") == folder / "train.jsonl"
