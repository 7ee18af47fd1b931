"""Export's chunked Arrow conversion: the schema and the table are what one `from_pylist` over all rows gives."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.steps import export

MSG = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
CALL = {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                            "function": {"name": "f", "arguments": "{}"}}]}
CASES = {
    "messages": [{"messages": MSG, "id": str(i)} for i in range(10)],
    "prompt-completion": [{"prompt": MSG[:1], "completion": MSG[1:], "id": str(i)} for i in range(10)],
    "dpo": [{"prompt": MSG[:1], "chosen": MSG[1:], "rejected": [{"role": "assistant", "content": "no"}],
             "id": str(i)} for i in range(10)],
    "tools late": [{"messages": MSG, "id": "a", "tools": None}] * 5 + [{"messages": [MSG[0], CALL], "id": "b",
                                                                        "tools": '[{"name": "f"}]'}],
    "mixed keys": [{"messages": MSG, "id": 1}, {"messages": [{"role": "user", "content": "x", "name": "n"}],
                                                "id": 2.5, "extra": True}],
}


@pytest.mark.parametrize("rows", CASES.values(), ids=CASES.keys())
def test_inferred_schema_and_chunked_table_equal_from_pylist(rows, monkeypatch) -> None:
    whole = pa.Table.from_pylist(rows)
    schema = export.infer_schema(rows)
    assert schema == whole.schema
    monkeypatch.setattr(export, "_ARROW_CHUNK", 3)
    table = export._to_arrow(rows, schema)
    assert table.equals(whole) and table.column(0).num_chunks == 1
