"""dedup's continuation pairs from prefix keys held as arrays (`dedup_keys.continuations`) against the loop over
(position, key) tuples they replaced: the same pairs in the same order, on generated keys."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.steps.dedup_keys import continuations


def _reference(prefixes: list[tuple[int, int]], ekeys: list[int], alive: list[bool]) -> list[tuple[int, int]]:
    longer: dict[int, list[int]] = {}
    for pos, h in prefixes:
        if alive[pos]:
            longer.setdefault(h, []).append(pos)
    out = []
    for pos in range(len(ekeys)):
        if alive[pos] and ekeys[pos] in longer:
            for other in longer[ekeys[pos]]:
                out.append((pos, other))
    return out


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int], list[bool]]:
    n = draw(st.integers(1, 30))
    keys = st.sampled_from([0, 1, 7, 2**63 + 5, 2**64 - 1])  # few keys: many hits; uint64's top half too
    ekeys = draw(st.lists(keys, min_size=n, max_size=n))
    alive = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    pre = draw(st.lists(st.tuples(st.integers(0, n - 1), keys), max_size=60))
    pre.sort(key=lambda t: t[0])  # (KeyTable.done: by position, stable)
    return pre, ekeys, alive


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_continuations_equal_the_tuple_loop(case) -> None:
    pre, ekeys, alive = case
    arrays = (
        np.array([p for p, _ in pre], dtype=np.int64),
        np.array([h for _, h in pre], dtype=np.uint64),
    )
    got = continuations(arrays, np.array(ekeys, dtype=np.uint64), np.array(alive, dtype=bool))
    assert got == _reference(pre, ekeys, alive)
