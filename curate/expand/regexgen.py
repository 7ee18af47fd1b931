"""Strings that match a regex: the raw material of a mutant for a `regex_absent` rule (any spec's pattern).

    >>> import random
    >>> from curate.expand.regexgen import examples
    >>> examples(r"(?i)\\b(?:I|we)(?:'ve| have)? (?:reset|cancel+ed)\\b", random.Random(0), n=3)[0]
    'I reset'

Walks Python's own parse tree (re._parser), so what it supports is what `re` supports; lookarounds and back
references are approximated and every result is verified with `re.search` before it is returned.
"""

from __future__ import annotations

import random
import re
from typing import Any

try:  # Python 3.11+
    import re._constants as C
    import re._parser as P
except ImportError:  # pragma: no cover
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse as P  # type: ignore[no-redef]

_CATEGORY_CHARS = {
    C.CATEGORY_DIGIT: "0123456789",
    C.CATEGORY_NOT_DIGIT: "abcxyz",
    C.CATEGORY_SPACE: " ",
    C.CATEGORY_NOT_SPACE: "abcxyz",
    C.CATEGORY_WORD: "abcxyz",
    C.CATEGORY_NOT_WORD: " .,-",
}
WORDS = ("account", "order", "plan", "data", "payment", "request")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,-_"


class _Gen:
    def __init__(self, rng: random.Random | None, groups: dict[int, str]) -> None:
        self.rng = rng  # None: always the shortest, first choice
        self.groups = groups

    def pick(self, seq: list[Any]) -> Any:
        return seq[0] if self.rng is None else self.rng.choice(seq)

    @staticmethod
    def _wordlike(items: Any) -> bool:
        items = list(items)
        if len(items) != 1:
            return False
        op, av = items[0]
        if op is C.CATEGORY:
            return av is C.CATEGORY_WORD
        if op is C.IN:
            return any(
                o is C.CATEGORY and v is C.CATEGORY_WORD or o is C.RANGE and v == (97, 122) for o, v in av
            ) and not any(o is C.NEGATE for o, _ in av)
        return False

    def seq(self, items: Any) -> str:
        return "".join(self.one(op, av) for op, av in items)

    def charset(self, av: list[Any]) -> str:
        negate = any(op is C.NEGATE for op, _ in av)
        allowed: list[str] = []
        for op, val in av:
            if op is C.LITERAL:
                allowed.append(chr(val))
            elif op is C.RANGE:
                lo, hi = val
                allowed.extend(chr(c) for c in range(lo, min(hi, lo + 25) + 1))
            elif op is C.CATEGORY:
                allowed.extend(_CATEGORY_CHARS.get(val, "a"))
        if negate:
            pool = [c for c in _ALPHABET if c not in allowed]
            return self.pick(pool or ["~"])
        return self.pick(allowed or ["a"])

    def one(self, op: Any, av: Any) -> str:
        if op is C.LITERAL:
            return chr(av)
        if op is C.NOT_LITERAL:
            return "a" if chr(av) != "a" else "b"
        if op is C.ANY:
            return "a"
        if op is C.IN:
            return self.charset(av)
        if op is C.BRANCH:
            return self.seq(self.pick(av[1]))
        if op is C.SUBPATTERN:
            group, _add, _del, items = av
            text = self.seq(items)
            if group:
                self.groups[group] = text
            return text
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
            lo, hi, items = av
            if self._wordlike(items) and hi >= 3:
                return self.pick(list(WORDS))  # `\w+`, `[a-z]{2,}`: a real word reads better than "zyq"
            # optional parts vary with the seed; repeated ones take their minimum ("cancel+ed" -> "canceled")
            n = lo if self.rng is None or hi - lo > 1 else self.rng.randint(lo, min(hi, lo + 1))
            return "".join(self.seq(items) for _ in range(n))
        if op is C.GROUPREF:
            return self.groups.get(av, "")
        if op is C.CATEGORY:
            return _CATEGORY_CHARS.get(av, "a")[0]
        if op is C.ASSERT:
            direction, items = av
            return self.seq(items) if direction == 1 else ""
        return ""  # AT (anchors, boundaries), ASSERT_NOT, ...: contribute no text


def examples(pattern: str, rng: random.Random, n: int = 4) -> list[str]:
    """Up to n distinct, verified matches of `pattern`: the shortest first, then seeded random ones."""
    try:
        tree = P.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError):
        return []
    out: list[str] = []
    tries = [None] + [rng] * (n * 4)
    for r in tries:
        if len(out) >= n:
            break
        try:
            text = _Gen(r, {}).seq(tree)
        except (RecursionError, ValueError, IndexError):
            continue
        text = text.strip() or text
        m = compiled.search(text) or compiled.search(f" {text} ")
        if m and m.group(0).strip() and text not in out:
            out.append(text)
    return out
