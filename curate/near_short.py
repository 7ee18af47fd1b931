"""Candidates for the strict short-text rule (`curate.relation.text_score` on texts of fewer than `SHORT_TOKENS`
words): keys every pair the rule can join shares, so LSH loses no short pair, and a key whose inequality rules a
pair out before verification.

    >>> from curate.near_short import masked_key, skeleton_keys
    >>> masked_key("where is my order 123") == masked_key("wehre is my order 123")  # a typo the rule forgives
    True
    >>> masked_key("where is my order 123") == masked_key("where is my order 124")  # another number
    False
    >>> bool(set(skeleton_keys(["reset my password"])) & set(skeleton_keys(["reset my pasword"])))
    True

- `skeleton_keys` / `key_pairs`: the keys of an item's parts (the skeleton of all parts, and for each short part
  the same with one typo-able word masked but its first letter) and the candidate pairs of items sharing one;
- `masked_key` / `ShortSketches`: one key per short text (every typo-able word masked at once); two short texts
  with different keys cannot be similar: a `keep` test for LSH candidates (`curate.near.candidate_pairs_counted`)
  in the split's grouping and the leakage check.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

import numpy as np
from xxhash import xxh3_64_intdigest

from curate.relation import is_short, skeleton

SHORT_CHARS = 400  # skeleton keys are made for texts shorter than this with a short part


def _h64(data: bytes) -> int:
    """The 64-bit key of some bytes (XXH3: keys live for one build and only pair texts for verification, so a
    collision costs one more candidate; ~0.1 us for 250 bytes, sha256 ~0.9)."""
    return xxh3_64_intdigest(data)


def skeleton_keys(parts: Sequence[str]) -> list[int]:
    """Keys two items share whenever `relation.text_score`'s strict rule could call each of their parts (e.g.
    prompt and response, normalized) similar: the skeleton of all parts, and for each short part the same with one
    word (4+ letters, the only kind a typo may change) masked but its first letter. Exact candidates: the strict
    rule loses no pair to LSH. With two or more short parts, one more key: every part's skeleton with every such word
    masked in its short parts (a typo in each of two parts, "reset my pasword" / "sending the rest link", shares no
    one-word mask)."""
    # the key of a token list is the sha256 of its tokens joined by \x1f, the parts by \x1e; a masked key differs
    # from the whole one in one token, so it is the whole text's bytes with that token's bytes replaced (utf-8
    # encodes code point by code point: the bytes of a join are the joined bytes of its pieces)
    sk = [skeleton(p) for p in parts]
    enc = [[t.encode("utf-8", "surrogatepass") for t in toks] for toks in sk]
    whole = b"\x1e".join(b"\x1f".join(e) for e in enc)
    keys = [_h64(b"s" + whole)]
    at = 0  # where the current part's bytes begin in `whole`
    for side, toks in enumerate(sk):
        if is_short(parts[side]):
            pos = at
            for tok, e in zip(toks, enc[side]):
                if len(tok) >= 4 and tok.isalpha():
                    mask = tok[0].encode("utf-8", "surrogatepass") + b"\x00"
                    keys.append(_h64(b"m" + whole[:pos] + mask + whole[pos + len(e) :]))
                pos += len(e) + 1
        at += sum(map(len, enc[side])) + max(len(enc[side]) - 1, 0) + 1
    short = [is_short(p) for p in parts]
    if sum(short) > 1:
        keys.append(
            _h64(
                b"M"
                + b"\x1e".join(
                    "\x1f".join(_masked(toks) if s else toks).encode("utf-8", "surrogatepass")
                    for toks, s in zip(sk, short)
                )
            )
        )
    return keys


def _masked(toks: Sequence[str]) -> list[str]:
    """The tokens with every word a typo may change (4+ letters) cut to its first letter."""
    return [t[0] + "\x00" if len(t) >= 4 and t.isalpha() else t for t in toks]


class Keyed:
    """(item position, key) pairs, appended as they are made: 16 bytes a key in two arrays (a list of (int, int)
    tuples held ~120: 324 MB for the 2.7M skeleton keys of 200k short prompts with short JSON answers)."""

    def __init__(self) -> None:
        self.pos: array[int] = array("q")
        self.key: array[int] = array("Q")

    def add(self, pos: int, keys: list[int]) -> None:
        """Item `pos`'s keys."""
        self.pos.extend([pos] * len(keys))
        self.key.extend(keys)

    def extend(self, pos: np.ndarray, keys: np.ndarray) -> None:
        self.pos.frombytes(np.ascontiguousarray(pos, dtype=np.int64).tobytes())
        self.key.frombytes(np.ascontiguousarray(keys, dtype=np.uint64).tobytes())

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, keys): views of the arrays, in the order added."""
        return np.frombuffer(self.pos, dtype=np.int64), np.frombuffer(self.key, dtype=np.uint64)

    def sort(self) -> None:
        """In position order (stable: an item's keys stay in the order added)."""
        pos, key = self.arrays()
        o = np.argsort(pos, kind="stable")
        self.pos, self.key = array("q", pos[o].tobytes()), array("Q", key[o].tobytes())

    def __len__(self) -> int:
        return len(self.pos)


def key_pairs(keyed: Keyed, local: np.ndarray, max_run: int = 16) -> np.ndarray:
    """Candidate pairs (i < j, local indices) of items sharing a key: each member of a key's group is paired with
    the group's first `max_run` members (lowest index: the first in keep order), so a group of any size costs at
    most `max_run` pairs a member and every member meets the ones that would be kept."""
    if not len(keyed):
        return np.empty((0, 2), dtype=np.int64)
    pos, key = keyed.arrays()
    loc = local[pos]
    ok = loc >= 0
    if not ok.all():
        loc, key = loc[ok], key[ok]
    del ok
    # only keys two items share make pairs: most are one item's own (a short text's masked keys hold its order
    # number), so they are set aside by one sort of the keys before the pairs are made (2.7M keys of 200k short
    # records: ~70 MB at the peak instead of ~250)
    o = np.argsort(key, kind="stable")
    ks = key[o]
    same = ks[1:] == ks[:-1]
    del ks
    shared = np.zeros(len(o), dtype=bool)
    shared[1:] = same
    shared[:-1] |= same
    o = o[shared]
    del same, shared
    loc, key = loc[o], key[o]
    if len(loc) < 2:
        return np.empty((0, 2), dtype=np.int64)
    o = np.lexsort((loc, key))
    loc, key = loc[o], key[o]
    m = len(loc)
    new = np.concatenate(([True], key[1:] != key[:-1]))
    start = np.maximum.accumulate(np.where(new, np.arange(m), 0))
    at = np.arange(m)
    out = []
    for t in range(max_run):
        q = start + t
        ok = q < at
        if not ok.any():
            break
        a, b = loc[q[ok]], loc[at[ok]]
        out.append(np.stack((np.minimum(a, b), np.maximum(a, b)), axis=1))
    if not out:
        return np.empty((0, 2), dtype=np.int64)
    got = np.unique(np.concatenate(out), axis=0)
    return got[got[:, 0] != got[:, 1]]


class ShortSketches:
    """The typo-masked skeleton key of the short texts among n (`relation.is_short`), kept sparse (16 bytes a short
    text, nothing for a long one), filled chunk by chunk (`add`): the hash of `relation.skeleton(text)` with every
    token a typo may change (4+ letters) cut to its first letter, as `skeleton_keys` masks one. Two short texts the
    strict rule calls similar have equal skeletons but for one such token with the same first letter, so their keys
    are equal. `meet(i, j)` is a `keep` test: False exactly where both texts are short and their keys differ; such a
    pair scores 0, so dropping it before the cap (`cap_candidates`) loses no pair and leaves room for ones that can
    score (short prompts that differ in an order number: ~22 LSH candidates a text, all rejected by the strict rule;
    11.7 s of verification in a 50k-record build)."""

    def __init__(self) -> None:
        self._pos: list[np.ndarray] = []
        self._key: list[np.ndarray] = []

    def add(self, base: int, texts: Sequence[str], short: Sequence[bool]) -> None:
        """Texts base, base + 1, ... and whether each is short."""
        at = [k for k, s in enumerate(short) if s]
        if at:
            self._pos.append(np.asarray(at, dtype=np.int64) + base)
            self._key.append(np.fromiter((masked_key(texts[k]) for k in at), dtype=np.uint64, count=len(at)))

    def meet(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """The keep test (None when no text is short: it would keep every pair)."""
        if not self._pos:
            return None
        pos, key = np.concatenate(self._pos), np.concatenate(self._key)  # (pos ascending: added in order)
        self._pos, self._key = [], []

        def test(i: np.ndarray, j: np.ndarray) -> np.ndarray:
            a = np.minimum(np.searchsorted(pos, i), len(pos) - 1)
            b = np.minimum(np.searchsorted(pos, j), len(pos) - 1)
            return ~((pos[a] == i) & (pos[b] == j)) | (key[a] == key[b])

        return test


def masked_key(norm: str) -> int:
    """`ShortSketches`' key of one normalized text."""
    return _h64("\x1f".join(_masked(skeleton(norm))).encode("utf-8", "surrogatepass"))


__all__ = ["SHORT_CHARS", "Keyed", "ShortSketches", "key_pairs", "masked_key", "skeleton_keys"]
