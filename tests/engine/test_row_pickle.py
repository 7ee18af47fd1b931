"""A plain-line row pickled for another process (a Ray worker: `Row.__reduce__`) reads back the same line there:
`Row.obj()` and `read_objs` give what they give here, on generated files (lines of any JSON text, a BOM on line 1)."""

from __future__ import annotations

import pickle

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.engine.rows import Input, Row, read_objs

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_obj = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": _text})
        )
    }
)


@settings(max_examples=60, deadline=None)
@given(objs=st.lists(_obj, min_size=1, max_size=12), bom=st.booleans(), picks=st.data())
def test_pickled_plain_rows_read_their_lines(tmp_path_factory, objs, bom, picks) -> None:
    path = tmp_path_factory.mktemp("rows") / "in.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"".join(orjson.dumps(o) + b"\n" for o in objs))
    src = Input(path)
    try:
        rows = [
            Row("sft", f"{k:016d}", src, str(path), k + 1, "native", "", (), (), ("pass",), None)
            for k in range(len(objs))
        ]
        moved = pickle.loads(pickle.dumps(rows))
        assert [r.obj() for r in moved] == [r.obj() for r in rows] == objs
        order = picks.draw(st.permutations(range(len(rows))))
        assert (
            read_objs([moved[k] for k in order])
            == read_objs([rows[k] for k in order])
            == [objs[k] for k in order]
        )
        assert [(r.id, r.line, r.file, r.statuses) for r in moved] == [
            (r.id, r.line, r.file, r.statuses) for r in rows
        ]
    finally:
        src.close()
