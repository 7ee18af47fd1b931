"""The build's bounded-memory pieces (docs/performance.md, round 9 helper-16) give the decisions of the code they
replaced: each is compared with a plain reference on generated data."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.steps.dedup import keep_order


def _keep_order_reference(origin, length, rawhash, where) -> np.ndarray:
    """keep_order as it was: every item's source string ranked up front."""
    n = len(origin)
    wrank = np.empty(n, dtype=np.int64)
    wrank[np.array(sorted(range(n), key=where.__getitem__), dtype=np.int64)] = np.arange(n)
    return np.lexsort((wrank, rawhash, -length.astype(np.int64), origin)).astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from(["a:1", "a:10", "a:9", "b:2"]),
        ),
        max_size=40,
    )
)
def test_keep_order_asks_sources_only_for_ties(items) -> None:
    origin = np.array([x[0] for x in items], dtype=np.int64)
    length = np.array([x[1] for x in items], dtype=np.int64)
    rawhash = np.array([x[2] for x in items], dtype=np.uint64)
    where = [x[3] for x in items]
    asked: list[int] = []

    def of(p: int) -> str:
        asked.append(p)
        return where[p]

    got = keep_order(origin, length, rawhash, of)
    assert got.tolist() == _keep_order_reference(origin, length, rawhash, where).tolist()
    assert keep_order(origin, length, rawhash, where).tolist() == got.tolist()
    key = list(zip(origin.tolist(), length.tolist(), rawhash.tolist()))
    assert all(key.count(key[p]) > 1 for p in asked)  # only tied items' sources were read
