"""`steps.spill.spill_turns` with the rows the read's workers saw to have one user turn (`one_turn`): the same user
turns for every row as reading them all, and none of those rows is read again."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.records import normalize_text
from curate.steps import spill
from curate.steps.split import _ekey

turn = st.text(st.sampled_from("ab C\u00e9\u4e2d \n\t"), max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(turn, max_size=3), max_size=40), st.data(), st.sampled_from([1, 3, 8192]))
def test_rows_known_to_have_one_user_turn_are_not_read_and_read_the_same(rows, data, chunk) -> None:
    n = len(rows)
    norms_l = [normalize_text("\n".join(ts)) for ts in rows]  # (the split's normalized user text)
    one = np.array([len(ts) == 1 and data.draw(st.booleans()) for ts in rows], dtype=bool)
    seen: list[int] = []

    def read_turns(part):
        seen.extend(int(i) for i in part)
        return [rows[i] for i in part]

    got: list[list[tuple[str, ...]]] = []
    for known in (None, one):
        norms = spill.TextSpill(n)
        norms.put(list(range(n)), norms_l)
        keys = np.frombuffer(b"".join(_ekey(t) for t in norms_l), dtype=np.uint64).reshape(-1, 2)
        seen.clear()
        old = spill.SPILL_CHUNK
        spill.SPILL_CHUNK = chunk
        try:
            turns = spill.spill_turns(list(range(n)), read_turns, keys, norms, _ekey, normalize_text, known)
        finally:
            spill.SPILL_CHUNK = old
        got.append([turns(i) for i in range(n)])
        assert [bool(turns.multi[i]) for i in range(n)] == [len(ts) > 1 for ts in rows]
        if known is not None:
            assert sorted(seen) == [i for i in range(n) if not one[i]]  # the others were not read
        turns.close()
        norms.close()
    assert got[0] == got[1] == [tuple(normalize_text(t) for t in ts) for ts in rows]
