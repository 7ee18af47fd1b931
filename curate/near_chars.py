"""The character-count bound: which LSH candidates of two long CJK texts can be similar at all.

    >>> import numpy as np
    >>> from curate.near_chars import CharBound
    >>> texts = ["订单号一二三四五六七八九十还没有收到请帮我查一下物流", "订单号一二三四五六七八九十还没有收到请帮我查一下快递",
    ...          "您好我想修改收货地址和联系电话可以吗谢谢您的帮助与支持"]
    >>> bound = CharBound.of(texts, 0.8)
    >>> bound(np.array([0, 0]), np.array([1, 2])).tolist()
    [True, False]

The slot-agreement floor (`minhash.agreement_floor`) cannot judge CJK texts: a near copy differs in single
characters, each of which takes 5 shingles out of a short text (2 characters changed in 20: Indel 0.9, 33 of 128
slots agree), so such pairs are exempt from it (`near.over_floor`), and a template family of CJK texts kept every
pair its bands met (a 200k-record build folded ~50M pairs). This bound is exact instead of probabilistic: the
normalized Indel similarity of two texts is 2 LCS / (len a + len b), and the longest common subsequence holds each
character at most as often as both texts do, so

    LCS(a, b) <= sum over characters c of min(count_a(c), count_b(c)) <= sum over buckets B of min(count_a(B), count_b(B))

where a bucket counts the characters (code points) hashed into it (`CHAR_BUCKETS` of them; a sum of minima over
merged counts is never smaller). A pair with 2 * (that sum) < t (len a + len b) cannot reach `text_score`'s Indel
threshold t: it is dropped before verification, and no similar pair ever is (tests/test_near_chars.py proves the
bound against rapidfuzz and the brute-force character multiset). It is a function of the two texts alone. It
applies only where `text_score` is the Indel similarity: two long texts (`relation.is_short` false for both; a short
text is judged by the strict token rule, which leaves out punctuation and filler words). A count is held in one
byte: a bucket at 255 in both texts says nothing, and such a pair is kept (texts of ~30k characters and more).
Dedup's near twins need both parts similar (`relation.near_score`): its bound has a row of counts per part (64
buckets each) and tests each part long in both records.

Templated Chinese text replaced at random in 6-10 of 40 characters (bench_build's `cjk` workload) is at Indel
0.63 +- 0.04 within a template: 0.7% of 20,000 sampled pairs of one template pass this bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

_SLACK = 1e-6  # (a pair at the threshold within float rounding is kept: the bound only ever keeps more)

CHAR_BUCKETS = 128  # counts a text (one part): one byte each
PART_BUCKETS = 64  # counts a part of a dedup item (prompt, answer)


def char_counts(texts: Sequence[str], buckets: int = CHAR_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """((len(texts), buckets) uint8 counts of each text's code points by bucket (at most 255), (len(texts),) int64
    lengths in code points). A code point's bucket is the top bits of a multiplicative hash (`buckets` a power of
    two)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    bits = buckets.bit_length() - 1
    bucket = (cps.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
    row = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    counts = np.bincount(row * buckets + bucket.astype(np.int64), minlength=len(texts) * buckets)
    return np.minimum(counts, 255).astype(np.uint8).reshape(len(texts), buckets), lengths


def part_counts(
    parts: Sequence[Sequence[str]], bounded: np.ndarray, buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """((k, P, buckets) uint8 counts, (k, P) int64 lengths) of k items of P parts (`parts[p][i]`: part p of item i),
    the length -1 where `bounded[i, p]` is False (a part the bound leaves alone)."""
    counts, lengths = zip(*(char_counts(texts, buckets) for texts in parts))
    size = np.stack(lengths, axis=1) if parts and len(parts[0]) else np.empty((0, len(parts)), np.int64)
    if len(size):
        size[~bounded] = -1
    rows = np.stack(counts, axis=1) if len(size) else np.empty((0, len(parts), buckets), np.uint8)
    return rows, size


class CharBound(NamedTuple):
    """The bound of the module doc over n texts (or items of P parts): text i has row `rows[i]` of `counts` ((m, P,
    buckets) uint8) and `lengths` ((m, P) int64, -1: that part is not tested), or -1: no bound (a short text, or
    one the caller leaves alone). A pair is kept when either has no row, or each part both rows test has a bucket at
    255 in both or 2 * sum of minima >= threshold * (len a + len b). `__call__` is the numpy reference of
    `minhash_kernels._chars_ok`; `near.SlotFloor(chars=)` tests it in the floor's kernel on the pairs the floor
    exempts (a CJK text in the pair)."""

    rows: np.ndarray
    counts: np.ndarray
    lengths: np.ndarray
    threshold: float

    @classmethod
    def of(cls, texts: Sequence[str], threshold: float, bounded: np.ndarray | None = None) -> CharBound:
        """The bound over `texts` (one part), each with a row where `bounded` (bools; None: every text)."""
        rows = CharRows()
        rows.add(0, texts, np.ones(len(texts), dtype=bool) if bounded is None else bounded)
        none = np.full(len(texts), -1, dtype=np.int64), np.empty((0, 1, CHAR_BUCKETS), np.uint8)
        return rows.bound(len(texts), threshold) or cls(*none, np.empty((0, 1), np.int64), float(threshold))

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        x, y = self.rows[i], self.rows[j]
        ok = (x < 0) | (y < 0)
        test = np.flatnonzero(~ok)
        for a in range(0, len(test), 65536):
            k = test[a : a + 65536]
            good = np.ones(len(k), dtype=bool)
            for p in range(self.counts.shape[1]):
                lx, ly = self.lengths[x[k], p], self.lengths[y[k], p]
                cx, cy = self.counts[x[k], p], self.counts[y[k], p]
                both_full = ((cx == 255) & (cy == 255)).any(axis=1)
                s = np.minimum(cx, cy).sum(axis=1, dtype=np.int64)
                total = lx + ly
                good &= (lx < 0) | (ly < 0) | both_full | (2.0 * s + _SLACK * total >= self.threshold * total)
            ok[k] = good
        return ok


class CharRows:
    """A one-part `CharBound` made chunk by chunk (`add`), for texts made on demand: rows only for the texts
    bounded."""

    def __init__(self) -> None:
        self.at: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []

    def add(self, start: int, texts: Sequence[str], bounded: np.ndarray) -> None:
        """Texts start, start + 1, ... are `texts`; those where `bounded` is True get a row."""
        at = np.flatnonzero(bounded)
        if len(at):
            counts, lengths = char_counts([texts[k] for k in at.tolist()])
            self.at.append(at + start)
            self.counts.append(counts[:, None])
            self.lengths.append(lengths[:, None])

    def bound(self, n: int, threshold: float) -> CharBound | None:
        """The bound over n texts (None when no text has a row)."""
        if not self.at:
            return None
        rows = np.full(n, -1, dtype=np.int64)
        at = np.concatenate(self.at)
        rows[at] = np.arange(len(at))
        return CharBound(rows, np.concatenate(self.counts), np.concatenate(self.lengths), float(threshold))


__all__ = ["CHAR_BUCKETS", "PART_BUCKETS", "CharBound", "CharRows", "char_counts", "part_counts"]
