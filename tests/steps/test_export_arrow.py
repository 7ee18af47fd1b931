"""Export's batches: the schema and the (chunked) table are what one `from_pylist` over all rows gives, the JSONL
bytes what one `orjson.dumps` per row gives."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from curate.steps import export

MSG = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}],
}
CASES = {
    "messages": [{"messages": MSG, "id": str(i)} for i in range(10)],
    "prompt-completion": [{"prompt": MSG[:1], "completion": MSG[1:], "id": str(i)} for i in range(10)],
    "dpo": [
        {
            "prompt": MSG[:1],
            "chosen": MSG[1:],
            "rejected": [{"role": "assistant", "content": "no"}],
            "id": str(i),
        }
        for i in range(10)
    ],
    "tools late": [{"messages": MSG, "id": "a", "tools": None}] * 5
    + [{"messages": [MSG[0], CALL], "id": "b", "tools": '[{"name": "f"}]'}],
    "mixed keys": [
        {"messages": MSG, "id": 1},
        {"messages": [{"role": "user", "content": "x", "name": "n"}], "id": 2.5, "extra": True},
    ],
}


@pytest.mark.parametrize("rows", CASES.values(), ids=CASES.keys())
def test_inferred_schema_and_chunked_table_equal_from_pylist(rows) -> None:
    whole = pa.Table.from_pylist(rows)
    schema = export.infer_schema(rows)
    assert schema == whole.schema
    tools = any("tools" in r for r in rows)
    got = [
        export.encode_batch([dict(r) for r in rows[a : a + 3]], schema, tools) for a in range(0, len(rows), 3)
    ]
    table = export._concat([t for _, t in got], schema)
    assert table.equals(whole) and table.column(0).num_chunks == len(got)
    assert b"".join(b for b, _ in got) == b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_writer_thread_failure_reaches_the_caller(tmp_path, monkeypatch) -> None:
    """A failure on a writer thread (here the Parquet one) fails the export; no thread is left running."""
    import threading

    rows = CASES["messages"]
    schema = export.infer_schema(rows)

    def boom(self, table):
        raise OSError("disk full")

    monkeypatch.setattr(export._RowGroups, "add", boom)
    batches = [
        export.encode_batch([dict(r) for r in rows[a : a + 3]], schema, False) for a in range(0, 10, 3)
    ]
    with pytest.raises(OSError, match="disk full"):
        export.write_split_batches(tmp_path / "x", {"train": lambda: iter(batches)}, schema=schema)
    assert not [t for t in threading.enumerate() if t.name == "curate-export-writer"]


def test_spool_hands_batches_over_and_leaves_nothing() -> None:
    """A batch through the shared-memory spool comes back equal (JSONL bytes, table); its files are gone at once
    and the folder at close."""
    spool = export.Spool.open()
    assert spool is not None  # Linux: /dev/shm
    rows = CASES["dpo"]
    schema = export.infer_schema(rows)
    data, table = export.encode_batch([dict(r) for r in rows], schema, False)
    empty = export.encode_batch([], schema, False)
    try:
        got_data, got_table = spool.take(spool.put(data, table))
        assert bytes(got_data) == data and got_table.equals(table)
        got_data.close()
        e_data, e_table = spool.take(spool.put(*empty))
        assert bytes(e_data) == b"" and e_table.num_rows == 0 and e_table.schema == schema
        assert list(spool.folder.iterdir()) == []
    finally:
        spool.close()
    assert not spool.folder.exists()


@pytest.mark.parametrize(
    "row",
    [
        {
            "messages": [
                {"role": "system", "content": 'Be "terse".\nAlways.'},
                {"role": "user", "content": "hi"},
            ],
            "id": "a",
        },
        {
            "prompt": [{"role": "system", "content": "S\\u00e9\n"}, {"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
            "id": "b",
        },
        {"messages": [{"content": "order kept", "role": "system"}], "id": "c"},
        {"messages": [{"role": "system", "content": "x", "name": "n"}], "id": "d", "tools": None},
        {"messages": [{"role": "user", "content": "no system"}], "id": "e"},
        {"prompt": [], "completion": [{"role": "assistant", "content": "x"}], "id": "f"},
        {
            "prompt": [{"role": "system", "content": "only ✓"}],
            "completion": [{"role": "assistant", "content": "x"}],
            "id": "g",
            "tools": '[{"type": "function"}]',
        },
    ],
)
def test_row_json_is_orjson_dumps(row) -> None:
    assert export._row_json(row) == orjson.dumps(row) + b"\n"


def test_spool_full_sends_the_batch_inline(monkeypatch) -> None:
    """A full /dev/shm (Docker's 64 MB default) must not fail the export: the batch comes back inline."""
    import pyarrow as pa

    spool = export.Spool.open()
    assert spool is not None
    rows = CASES["messages"]
    schema = export.infer_schema(rows)
    data, table = export.encode_batch([dict(r) for r in rows], schema, False)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    try:
        monkeypatch.setattr(pa, "OSFile", full)
        ticket = spool.put(data, table)
        assert ticket[0] is None
        got_data, got_table = spool.take(ticket)
        assert got_data == data and got_table.equals(table)
        assert list(spool.folder.iterdir()) == []  # the half-written JSONL file was removed
    finally:
        spool.close()


def test_spool_removes_what_a_killed_build_left() -> None:
    import subprocess
    from pathlib import Path

    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that no longer runs
    stale = Path(f"/dev/shm/curate-spool-{proc.pid}-test")
    stale.mkdir(exist_ok=True)
    (stale / "1-1.jsonl").write_bytes(b"x")
    spool = export.Spool.open()
    try:
        assert not stale.exists() and spool is not None and spool.folder.exists()
    finally:
        spool.close()
