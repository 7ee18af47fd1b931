"""The independent leakage check: every held-out text against every training text, blocked by cheap keys, decided
exactly by `curate.relation.leak_score` (user texts similar, or one's user turns a near prefix of the other's).

    >>> from curate.steps.leakcheck import leak_pairs
    >>> leak_pairs(["how do i reset my password?"], ["how do i reset my pasword?", "where is my order?"], 0.8)
    [(0, 0, 0.9811)]
    >>> leak_pairs([("write a poem about rain.", "now make it rhyme.")], ["write a poem about rain!"], 0.8)
    [(0, 0, 1.0)]

It shares the definition with the split's grouping (`relation.text_score` of normalized user texts) and nothing
else: its own blocking, so a pair the grouping's candidates missed is found here. The blocks (a pair is compared
when it shares one):
- the exact normalized text;
- the skeleton keys of short texts (`curate.near.skeleton_keys`: every pair the strict rule can merge shares one,
  so the short rule is checked completely);
- MinHash LSH over character 3-grams (other shingles than the grouping's 5-grams): in the build (behind the
  split's grouping, which already joins every leak pair it finds) bands for 0.8 and 64 candidates a text; for
  `curate leakage A B` (`loose=True`, nothing before it) bands for 0.5 and 128 candidates a text.
  scripts/bench_dedup.py measures both against brute force;
- with `brute=True` (tests, small data): every pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from curate.minhash import BandSketch
from curate.near import (
    MAX_VERIFY,
    SHORT_CHARS,
    candidate_pairs_counted,
    cap_candidates,
    key_pairs,
    scored_pairs,
    skeleton_keys,
)
from curate.relation import is_short, leak_score

__all__ = ["LOOSE", "TIGHT", "leak_pairs"]

TIGHT = 0.8  # the build's check: bands for the 0.8 threshold over char 3-grams (other shingles than dedup's)
LOOSE = 0.5  # `curate leakage A B` (loose=True): bands for 0.5, 128 candidates a text: more recall, more time


def leak_pairs(
    train: Sequence[str | Sequence[str]],
    test: Sequence[str | Sequence[str]],
    threshold: float,
    *,
    brute: bool = False,
    loose: bool = False,
    runner: Callable[..., Iterable[Any]] | None = None,
) -> list[tuple[int, int, float]]:
    """(train index, test index, score) of every leak (`relation.leak_score`) between items given as their
    normalized user turns (a str is one turn), sorted. `runner`: an engine's task runner for the verification
    (`near.scored_pairs`)."""
    tr = [(t,) if isinstance(t, str) else tuple(t) for t in train]
    te = [(t,) if isinstance(t, str) else tuple(t) for t in test]
    nt, nh = len(tr), len(te)
    if not nt or not nh:
        return []
    if brute:
        cand = [(i, j) for i in range(nt) for j in range(nh)]
    else:
        # blocking texts: each item's joined user text and, for multi-turn items, its first turn (prefix leaks);
        # a pair is compared when any of its texts meet in a block
        texts: list[str] = []
        owner: list[int] = []
        for k, turns in enumerate(tr + te):
            if not turns:
                continue
            texts.append(" ".join(turns))
            owner.append(k)
            if len(turns) > 1:
                texts.append(turns[0])
                owner.append(k)
        side = np.array([o >= nt for o in owner], dtype=bool)
        order = np.argsort(side, kind="stable")  # training texts first
        texts = [texts[q] for q in order.tolist()]
        own = np.array(owner, dtype=np.int64)[order]
        n_train_texts = int((~side).sum())
        got = _blocks(
            texts, n_train_texts, LOOSE if loose else TIGHT, 2 * MAX_VERIFY if loose else MAX_VERIFY
        )
        pairs = (
            np.stack((own[got[:, 0]], own[got[:, 1]] - nt), axis=1)
            if len(got)
            else np.empty((0, 2), np.int64)
        )
        cand = np.unique(pairs, axis=0) if len(pairs) else pairs
        del got, pairs
    out = scored_pairs(cand, lambda i, j: leak_score(tr[i], te[j], threshold), runner)
    out.sort()
    return out


def _blocks(texts: list[str], nt: int, lsh_threshold: float, per_text: int) -> np.ndarray:
    n = len(texts)
    pairs = []
    first: dict[str, list[int]] = {}
    for k in range(nt):
        first.setdefault(texts[k], []).append(k)
    ex = [(i, k) for k in range(nt, n) for i in first.get(texts[k], ())]
    if ex:
        pairs.append(np.array(ex, dtype=np.int64))
    keyed: list[tuple[int, int]] = []
    for k, t in enumerate(texts):
        if len(t) < SHORT_CHARS and is_short(t):
            keyed += [(k, h) for h in skeleton_keys([t])]
    pairs.append(key_pairs(keyed, np.arange(n, dtype=np.int64), max_run=64))
    sketch = BandSketch(lsh_threshold, 128, 3)
    bands = np.empty((n, sketch.bands), dtype=np.uint32)
    for a in range(0, n, sketch.CHUNK):
        bands[a : a + sketch.CHUNK] = sketch.bands32_of(texts[a : a + sketch.CHUNK])
    lsh, counts = candidate_pairs_counted(bands, small=16, window=4)
    pairs.append(cap_candidates(lsh, counts, n, per_text))
    cand = np.concatenate(pairs)
    cand = cand[(cand[:, 0] < nt) & (cand[:, 1] >= nt)]  # only training x held-out
    return np.unique(cand, axis=0) if len(cand) else cand
