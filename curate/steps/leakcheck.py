"""The independent leakage check: every held-out text against every training text, blocked by cheap keys, decided
exactly by `curate.relation.text_score`.

    >>> from curate.steps.leakcheck import leak_pairs
    >>> leak_pairs(["how do i reset my password?"], ["how do i reset my pasword?", "where is my order?"], 0.8)
    [(0, 0, 0.9811)]

It shares the definition with the split's grouping (`relation.text_score` of normalized user texts) and nothing
else: its own blocking, so a pair the grouping's candidates missed is found here. The blocks (a pair is compared
when it shares one):
- the exact normalized text;
- the skeleton keys of short texts (`curate.near.skeleton_keys`: every pair the strict rule can merge shares one,
  so the short rule is checked completely);
- MinHash LSH over character 3-grams tuned to catch pairs down to a Jaccard of ~0.4 (`LOOSE`), which at the
  default threshold covers every Indel-similar long pair seen in our benchmarks (scripts/bench_dedup.py measures
  it against brute force);
- with `brute=True` (tests, small data): every pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curate.near import BandSketch, candidate_pairs, key_pairs, skeleton_keys
from curate.relation import is_short, text_score

__all__ = ["LOOSE", "leak_pairs"]

LOOSE = 0.5  # the LSH of the check is built for this threshold (looser than any build threshold we accept)
_SHORT_CHARS = 400


def leak_pairs(train: Sequence[str], test: Sequence[str], threshold: float, *,
               brute: bool = False) -> list[tuple[int, int, float]]:
    """(train index, test index, score) of every pair of normalized texts with text_score >= threshold, sorted."""
    nt, nh = len(train), len(test)
    if not nt or not nh:
        return []
    texts = list(train) + list(test)
    if brute:
        cand = np.array([(i, nt + j) for i in range(nt) for j in range(nh)], dtype=np.int64).reshape(-1, 2)
    else:
        cand = _blocks(texts, nt)
    out = []
    for i, j in cand.tolist():
        if i < nt <= j:
            score = text_score(texts[i], texts[j], threshold)
            if score > 0:
                out.append((i, j - nt, score))
    out.sort()
    return out


def _blocks(texts: list[str], nt: int) -> np.ndarray:
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
        if len(t) < _SHORT_CHARS and is_short(t):
            keyed += [(k, h) for h in skeleton_keys([t])]
    pairs.append(key_pairs(keyed, np.arange(n, dtype=np.int64), max_run=1024))
    sketch = BandSketch(LOOSE, 128, 3)
    bands = np.empty((n, sketch.bands), dtype=np.uint32)
    for a in range(0, n, sketch.CHUNK):
        bands[a:a + sketch.CHUNK] = sketch.bands32_of(texts[a:a + sketch.CHUNK])
    pairs.append(candidate_pairs(bands, max_run=1024))
    cand = np.concatenate(pairs)
    cand = cand[(cand[:, 0] < nt) & (cand[:, 1] >= nt)]  # only training x held-out
    return np.unique(cand, axis=0) if len(cand) else cand
