"""`relation.skeleton_sketch` of many ASCII texts at once, in a compiled kernel (dedup's key pass sketches every
short part: ~15 us a text in Python, the regex and the 4 joins; ~1 us here).

    >>> from curate.relation import skeleton_sketch
    >>> from curate.skeleton_kernel import sketches
    >>> texts = ["refund order 12 please", "don't ship it", "caf\u00e9 ouvert"]
    >>> sketches(texts) == [skeleton_sketch(t) for t in texts]
    True

Same values as `skeleton_sketch`, text for text (tests/test_relation.py compares them on any ASCII text): the
apostrophes are removed, the text is cut into tokens as `relation._TOKEN_ASCII` cuts it (runs of [A-Za-z0-9_], or
one character that is neither that nor whitespace), the sentence punctuation, articles and fillers
(`relation._DROP`) are left out, and the CRC-32 (zlib's) of each of `SKETCH_PARTS` pieces of the tokens joined by
\\x1f is taken. A text that is not ASCII (or no numba) goes through `skeleton_sketch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curate.relation import _DROP, SKETCH_PARTS, skeleton_sketch

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a dependency
    _numba = None

_WORD_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_WORD = np.zeros(128, dtype=np.uint8)  # 1: [A-Za-z0-9_] (a str pattern's \\w in ASCII)
_WORD[list(_WORD_CHARS)] = 1
_SPACE = np.zeros(128, dtype=np.uint8)  # 1: what str.isspace() takes in ASCII (a str pattern's \\s)
_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 1
_DROP_CHAR = np.zeros(128, dtype=np.uint8)  # 1: a one-character token _DROP leaves out (sentence punctuation)
_DROP_CHAR[[ord(t) for t in _DROP if len(t) == 1 and t.isascii() and ord(t) not in _WORD_CHARS]] = 1
_words = sorted(t.encode("ascii") for t in _DROP if t.isascii() and all(c in _WORD_CHARS for c in t.encode()))
_DROP_WORDS = np.frombuffer(
    b"".join(_words), dtype=np.uint8
).copy()  # the word tokens _DROP leaves out, packed
_DROP_OFF = np.zeros(len(_words) + 1, dtype=np.int64)
np.cumsum([len(w) for w in _words], out=_DROP_OFF[1:])
_CRC = np.zeros(256, dtype=np.uint32)  # zlib's CRC-32 table (polynomial 0xEDB88320)
for _b in range(256):
    _v = _b
    for _ in range(8):
        _v = (_v >> 1) ^ 0xEDB88320 if _v & 1 else _v >> 1
    _CRC[_b] = _v

if _numba is not None:

    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _sketch_kernel(
        buf, offsets, word, space, drop_char, drop_words, drop_off, crc_table, parts, out_n, out_crc
    ):  # pragma: no cover - compiled
        n_texts = offsets.shape[0] - 1
        scratch = np.empty(buf.shape[0] + 1, dtype=np.uint8)
        starts = np.empty(buf.shape[0] + 1, dtype=np.int64)
        ends = np.empty(buf.shape[0] + 1, dtype=np.int64)
        for r in range(n_texts):
            # the text without apostrophes
            m = 0
            for p in range(offsets[r], offsets[r + 1]):
                c = buf[p]
                if c != 39:
                    scratch[m] = c
                    m += 1
            # tokens, the dropped ones left out
            n = 0
            p = 0
            while p < m:
                c = scratch[p]
                if word[c]:
                    q = p + 1
                    while q < m and word[scratch[q]]:
                        q += 1
                    keep = True
                    ln = q - p
                    for w in range(drop_off.shape[0] - 1):
                        if drop_off[w + 1] - drop_off[w] == ln:
                            same = True
                            for k in range(ln):
                                if scratch[p + k] != drop_words[drop_off[w] + k]:
                                    same = False
                                    break
                            if same:
                                keep = False
                                break
                    if keep:
                        starts[n] = p
                        ends[n] = q
                        n += 1
                    p = q
                elif space[c]:
                    p += 1
                else:
                    if not drop_char[c]:
                        starts[n] = p
                        ends[n] = p + 1
                        n += 1
                    p += 1
            out_n[r] = n
            for k in range(parts):
                a = n * k // parts
                b = n * (k + 1) // parts
                crc = np.uint32(0xFFFFFFFF)
                for t in range(a, b):
                    if t > a:
                        crc = crc_table[(crc ^ np.uint32(31)) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
                    for q in range(starts[t], ends[t]):
                        crc = crc_table[(crc ^ np.uint32(scratch[q])) & np.uint32(0xFF)] ^ (
                            crc >> np.uint32(8)
                        )
                out_crc[r, k] = crc ^ np.uint32(0xFFFFFFFF)


def sketches(texts: Sequence[str]) -> list[tuple[int, tuple[int, ...]]]:
    """`[skeleton_sketch(t) for t in texts]`: the ASCII ones through the kernel, in one call."""
    out: list[tuple[int, tuple[int, ...]] | None] = [None] * len(texts)
    ascii_at = [i for i, t in enumerate(texts) if t.isascii()] if _numba is not None else []
    if ascii_at:
        data = [texts[i].encode("ascii") for i in ascii_at]
        offsets = np.zeros(len(data) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in data], out=offsets[1:])
        buf = np.frombuffer(b"".join(data), dtype=np.uint8)
        n = np.empty(len(data), dtype=np.int64)
        crc = np.empty((len(data), SKETCH_PARTS), dtype=np.uint32)
        _sketch_kernel(
            buf, offsets, _WORD, _SPACE, _DROP_CHAR, _DROP_WORDS, _DROP_OFF, _CRC, SKETCH_PARTS, n, crc
        )
        for i, k, c in zip(ascii_at, n.tolist(), crc.tolist()):
            out[i] = (k, tuple(c))
    return [got if got is not None else skeleton_sketch(t) for got, t in zip(out, texts)]


__all__ = ["sketches"]
