"""The verification of candidate pairs (`scored_pairs`), on this process or an engine's task runner, and what it
returns (`ScoredPairs`: three arrays, not a list of tuples).

    >>> got = scored_pairs([(0, 1), (1, 2)], lambda i, j: 0.9 if i == 0 else 0.0)
    >>> list(got), len(got)
    ([(0, 1, 0.9)], 1)

The split's grouping and the leakage check verify up to 64 candidates a text; on templated data most of them are
near, and the pairs found were a Python list of (i, j, score) tuples (~150 bytes a pair: 76 MB of a 50k-record
CJK templated build's peak); as arrays they are 24 bytes a pair, and a task's result crosses from a worker as three
arrays, not a pickled list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

VERIFY_CHUNK = 8_192  # candidate pairs a verification task scores (scored_pairs)


class ScoredPairs:
    """(i, j, score) triples as three arrays (`i`, `j`: int64, `s`: float64), in the order they were found;
    iterating, comparing and `tolist` give the triples as Python (int, int, float) tuples."""

    __slots__ = ("i", "j", "s")

    def __init__(self, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> None:
        self.i, self.j, self.s = i, j, s

    @classmethod
    def empty(cls) -> ScoredPairs:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    def __len__(self) -> int:
        return len(self.i)

    def __iter__(self) -> Iterator[tuple[int, int, float]]:
        return zip(self.i.tolist(), self.j.tolist(), self.s.tolist(), strict=True)

    def tolist(self) -> list[tuple[int, int, float]]:
        return list(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScoredPairs | list):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ScoredPairs({self.tolist()!r})"


def scored_pairs(
    cand: Any,
    score: Callable[[int, int], float] | None = None,
    runner: Callable[..., Iterable[Any]] | None = None,
    *,
    per_task: Callable[[list[tuple[int, int]]], Callable[[int, int], float]] | None = None,
    report: Callable[[int], None] | None = None,
) -> ScoredPairs:
    """(i, j, score(i, j)) of each candidate pair (an (m, 2) array or a list of pairs) whose score is above 0, in
    candidate order. `runner(fn, tasks, work)`, when given, runs the chunks of `VERIFY_CHUNK` pairs (an engine's
    runner: `local_map.RowAccess.map`'s fork pool, `ray_map.RayMapper.map`); `score` must then depend on what this
    process holds alone. Same pairs either way. `per_task(pairs)` instead of `score`: the score function of one
    task's pairs (which may read the texts they need once, e.g. from a `steps.spill.TextSpill`). `report(pairs
    done)`, when given, is called as each chunk's results arrive."""

    def task(
        bounds: tuple[int, int], threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        part = cand[bounds[0] : bounds[1]]
        pairs = part.tolist() if not isinstance(part, list) else part
        score_of = per_task(pairs) if per_task is not None else score
        assert score_of is not None
        ii: list[int] = []
        jj: list[int] = []
        ss: list[float] = []
        for i, j in pairs:
            s = score_of(i, j)
            if s > 0:
                ii.append(i)
                jj.append(j)
                ss.append(s)
        return (
            np.array(ii, dtype=np.int64),
            np.array(jj, dtype=np.int64),
            np.array(ss, dtype=np.float64),
        )

    tasks = [(a, min(len(cand), a + VERIFY_CHUNK)) for a in range(0, len(cand), VERIFY_CHUNK)]
    parts = (
        runner(task, tasks, 2 * len(cand)) if runner is not None and len(tasks) else (task(t) for t in tasks)
    )
    got: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for (_, b), part in zip(tasks, parts, strict=True):
        if len(part[0]):
            got.append(part)
        if report is not None:
            report(b)
    if not got:
        return ScoredPairs.empty()
    return ScoredPairs(*(np.concatenate([p[k] for p in got]) for k in range(3)))


__all__ = ["VERIFY_CHUNK", "ScoredPairs", "scored_pairs"]
