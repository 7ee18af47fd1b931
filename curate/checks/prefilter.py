"""Literal prefilters for the compiled rules: strings every match of a regex must contain, read from re's parse
tree and tested with `in` on `fold_lower(text)`, so a regex or a phrase list runs only when a text may match
(see curate.checks.compiled); also the source text of these tests for the generated function.

    >>> from curate.checks.prefilter import fold_lower, prefilter
    >>> prefilter("(?i)refund(ed)?")  # a match needs "refund" in fold_lower(text)
    ((('refund',),),)
    >>> fold_lower("İstanbul")
    'istanbul'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from curate.checks.text_checks import count_questions, phrase_regex

try:
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_p
except ImportError:  # pragma: no cover - Python < 3.11 (curate requires 3.11)
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_p  # type: ignore[no-redef]


# ---------------------------------------------------------------- literal prefilters for regexes

_CAP = 64  # the most strings a finite-language set may hold
_REPEATS = (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, getattr(_sre_c, "POSSESSIVE_REPEAT", None))
_ATOMIC = getattr(_sre_c, "ATOMIC_GROUP", None)


@lru_cache(maxsize=4096)
def _ascii_form(ch: str) -> str | None:
    """How a pattern character can appear in ASCII text: itself (ASCII), '' (never: no ASCII character matches it,
    even ignoring case), or None (an ASCII character may match it, e.g. the Kelvin sign matches 'k')."""
    if ch.isascii():
        return ch
    rx = re.compile(re.escape(ch), re.IGNORECASE)
    return None if any(rx.fullmatch(chr(i)) for i in range(128)) else ""


def _finite(op: Any, av: Any) -> frozenset[str] | None:
    """Every string this parsed item can match, when there are few (zero-width anchors: {''}); else None."""
    c = _sre_c
    if op is c.LITERAL:
        return frozenset([chr(av)])
    if op is c.AT:
        return frozenset([""])
    if op is c.IN:
        if av and all(o is c.LITERAL for o, _ in av):
            return frozenset(chr(x) for _, x in av)
        return None
    if op is c.SUBPATTERN:
        return _seq_finite(av[-1])
    if op is _ATOMIC:
        return _seq_finite(av)
    if op is c.BRANCH:
        sets = [_seq_finite(b) for b in av[1]]
        if any(x is None for x in sets):
            return None
        out = frozenset().union(*sets)  # type: ignore[arg-type]
        return out if len(out) <= _CAP else None
    if op in _REPEATS:
        lo, hi, item = av
        if hi > 2:
            return None
        one = _seq_finite(item)
        if one is None:
            return None
        out, power = set(), {""}
        for k in range(hi + 1):
            if k >= lo:
                out |= power
            power = {p + x for p in power for x in one}
            if len(out) > _CAP or len(power) > _CAP:
                return None
        return frozenset(out)
    return None


def _seq_finite(items: Any) -> frozenset[str] | None:
    out: set[str] = {""}
    for op, av in items:
        one = _finite(op, av)
        if one is None or len(out) * len(one) > _CAP:
            return None
        out = {p + x for p in out for x in one}
    return frozenset(out)


def _needs(items: Any, ascii_text: bool = True) -> list[frozenset[str]]:
    """Sets of strings such that every match of this parsed sequence contains one string of EACH set.

    Consecutive items with few possible strings are multiplied out ("I" + ("'ve" | " have" | "") + " " gives
    "I ", "I've ", "I have "); groups, repeats with min >= 1, alternations (the union of one set per branch)
    and positive lookarounds (their text is in the string too) are read inside. Anything else adds nothing.
    """
    c = _sre_c
    needs: list[frozenset[str]] = []
    run: set[str] = {""}

    def emit() -> None:
        if "" not in run:
            needs.append(frozenset(run))

    for op, av in items:
        one = _finite(op, av)
        if one is not None and len(run) * len(one) <= _CAP:
            run = {p + x for p in run for x in one}
            continue
        emit()
        if one is not None:
            run = set(one)
            continue
        run = {""}
        if op is c.SUBPATTERN:
            needs += _needs(av[-1], ascii_text)
        elif op is _ATOMIC:
            needs += _needs(av, ascii_text)
        elif op in _REPEATS and av[0] >= 1:
            needs += _needs(av[2], ascii_text)
        elif op is c.BRANCH:
            best = [_best(_needs(b, ascii_text), ascii_text) for b in av[1]]
            if all(x is not None for x in best):
                needs.append(frozenset().union(*best))  # type: ignore[arg-type]
        elif op is c.ASSERT:
            needs += _needs(av[1], ascii_text)
    emit()
    return needs


def _usable(strings: frozenset[str], ascii_text: bool = True) -> frozenset[str] | None:
    """The set as lower-cased ASCII strings to look for in fold_lower(text); None when it cannot help.

    A non-ASCII character splits a string and its longest ASCII piece stands for it. For ASCII texts only
    (`ascii_text`), a string with a character no ASCII character matches (even ignoring case) cannot occur and
    is left out (an empty result: nothing of this set can match an ASCII text).
    """
    out: set[str] = set()
    for s in strings:
        pieces, cur, impossible = [], [], False
        for ch in s:
            form = _ascii_form(ch) if ascii_text else (ch if ch.isascii() else None)
            if form == "":
                impossible = True
                break
            if form is None:
                pieces.append("".join(cur))
                cur = []
            else:
                cur.append(form)
        if impossible:
            continue
        pieces.append("".join(cur))
        longest = max(pieces, key=len).lower()
        if len(longest) < 2:
            return None
        out.add(longest)
    keep: list[str] = []
    for x in sorted(out, key=len):  # a string containing another one adds nothing
        if not any(k in x for k in keep):
            keep.append(x)
    return frozenset(keep) if len(keep) <= 24 else None


def _score(s: frozenset[str]) -> tuple[int, int]:
    if not s:
        return (99, 0)  # never present in ASCII text: the best filter
    return (min(min(len(x) for x in s), 6), -len(s))


def _best(needs: list[frozenset[str]], ascii_text: bool = True) -> frozenset[str] | None:
    good = [u for u in (_usable(n, ascii_text) for n in needs) if u is not None]
    return max(good, key=_score) if good else None


Clause = tuple[tuple[str, ...], ...]  # every set must have one of its strings in the text


def prefilter(
    pattern: str | re.Pattern[str], per_clause: int = 2, *, ascii_text: bool = True
) -> tuple[Clause, ...] | None:
    """Necessary conditions for `pattern` to match a text, tested on fold_lower(text): a tuple of clauses (one per
    top-level alternative), each a tuple of sets of strings; when the pattern matches, some clause has a string
    of each of its sets in the folded text. None when no condition was found for some alternative.
    `ascii_text`: the conditions for ASCII texts (sharper: see _usable); else for any text.

    Where an ASCII pattern character matches a text character, both are equal ignoring case, or the text's is
    one of ASCII_FOLDS, whatever the flags; fold_lower maps both to the same lower-case ASCII letter. So the
    folded text holds the lower-cased strings wherever the pattern matches.
    """
    src = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    flags = pattern.flags if isinstance(pattern, re.Pattern) else 0
    try:
        tree = list(_sre_p.parse(src, flags & ~re.UNICODE))
    except Exception:  # noqa: BLE001 - an unreadable tree: no prefilter, the regex decides
        return None
    branches = [i for i, (op, _) in enumerate(tree) if op is _sre_c.BRANCH]
    if len(branches) == 1:  # prefix + (a | b | ...) + suffix: one clause per alternative
        i = branches[0]
        alternatives = [tree[:i] + list(b) + tree[i + 1 :] for b in tree[i][1][1]]
    else:
        alternatives = [tree]
    clauses = []
    for alt in alternatives:
        sets = sorted(
            {u for u in (_usable(n, ascii_text) for n in _needs(alt, ascii_text)) if u is not None},
            key=_score,
            reverse=True,
        )
        if not sets:
            return None
        chosen = sorted(sets[:per_clause], key=len)  # fewer strings first: the cheaper test
        clauses.append(tuple(tuple(sorted(x, key=len)) for x in chosen))
    return tuple(clauses)


def _passes(clauses: tuple[Clause, ...], low: str) -> bool:
    for clause in clauses:
        for alts in clause:
            for f in alts:
                if f in low:
                    break
            else:
                break  # this set has no string in the text: the clause fails
        else:
            return True
    return False


ASCII_FOLDS = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}
"""The non-ASCII characters that match an ASCII character in a pattern ignoring case (İ, ı, ſ, the Kelvin sign);
tests/test_checks_compiled.py checks the list against every code point."""
_FOLD_TABLE = str.maketrans(ASCII_FOLDS)


def fold_lower(s: str) -> str:
    """The text the prefilters read: lower-cased, the characters of ASCII_FOLDS replaced by their ASCII letter.

    Wherever a pattern's ASCII literal matches the text, this text holds that literal lower-cased: an ASCII
    character lower-cases one to one, and the only other characters such a literal matches are in ASCII_FOLDS.
    (Other characters may change length when lower-cased; that only adds text, it never removes an occurrence.)
    """
    return s.lower() if s.isascii() else s.translate(_FOLD_TABLE).lower()


ascii_lower = fold_lower  # the name of the first version


def searcher(rx: re.Pattern[str]) -> Callable[[str, str | None], bool]:
    """(text, fold_lower(text)) -> whether `rx.search(text)` finds a match, with the prefilter (low=None: none)."""
    search = rx.search
    for_ascii, for_any = prefilter(rx), prefilter(rx, ascii_text=False)
    if for_ascii is None:
        return lambda s, low: search(s) is not None
    if for_ascii == for_any and len(for_ascii) == 1 and len(for_ascii[0]) == 1 and len(for_ascii[0][0]) == 1:
        one = for_ascii[0][0][0]

        def found_one(s: str, low: str | None) -> bool:
            if low is not None and one not in low:
                return False
            return search(s) is not None

        return found_one

    def found(s: str, low: str | None) -> bool:
        if low is not None:
            clauses = for_ascii if s.isascii() else for_any
            if clauses is not None and not _passes(clauses, low):
                return False
        return search(s) is not None

    return found


_KeyTree = tuple  # (terminal: (multi-string sets per phrase, compiled regex) | None, ((key, _KeyTree), ...))


def _key_tree(items: list[tuple[str, frozenset[str], Clause]]) -> _KeyTree:
    """A tree of required pieces over phrases: (phrase, pieces still to test, sets of alternatives to test).

    At each level the piece most phrases share (longer pieces weighing more) becomes a key; the phrases holding
    it form the key's subtree, without it. A phrase with no piece left ends at its node: that node's regex is the
    alternation of the phrases ending there.
    """
    ending = [it for it in items if not it[1]]
    rest = [it for it in items if it[1]]
    nodes = []
    while rest:
        counts: dict[str, int] = {}
        for _p, pieces, _m in rest:
            for x in pieces:
                counts[x] = counts.get(x, 0) + 1
        key = max(counts, key=lambda x: (counts[x] * min(len(x), 5), len(x), x))
        inside = [(p, pieces - {key}, m) for p, pieces, m in rest if key in pieces]
        rest = [it for it in rest if key not in it[1]]
        nodes.append((key, _key_tree(inside)))
    term = None
    if ending:
        term = (tuple(m for _p, _x, m in ending), phrase_regex(tuple(p for p, _x, _m in ending)))
    return (term, tuple(nodes))


def _tree_found(tree: _KeyTree, s: str, low: str) -> bool:
    term, nodes = tree
    if term is not None:
        multis, rx = term
        for sets in multis:
            for alts in sets:
                for f in alts:
                    if f in low:
                        break
                else:
                    break  # a piece of this phrase is missing
            else:  # this phrase may match: the node's regex decides for all phrases ending here
                if rx.search(s) is not None:
                    return True
                break
    for key, sub in nodes:
        if key in low and _tree_found(sub, s, low):
            return True
    return False


def _phrase_trees(phrases: tuple[str, ...]) -> tuple[Any, _KeyTree | None, _KeyTree | None]:
    """(the whole alternation's search, key tree for ASCII texts, key tree for other texts); no trees when some
    phrase has nothing to test."""
    whole = phrase_regex(phrases).search
    trees = []
    for ascii_text in (True, False):
        items = []
        for p in phrases:
            clauses = prefilter(phrase_regex((p,)), per_clause=8, ascii_text=ascii_text)
            if clauses is None or len(clauses) != 1:
                return whole, None, None
            pieces = frozenset(x[0] for x in clauses[0] if len(x) == 1)
            if not pieces and any(not x for x in clauses[0]):
                continue  # cannot match such a text at all
            items.append((p, pieces, tuple(x for x in clauses[0] if len(x) != 1)))
        trees.append(_key_tree(items))
    return whole, trees[0], trees[1]


def phrase_searcher(phrases: tuple[str, ...]) -> Callable[[str, str | None], bool]:
    """(text, fold_lower(text)) -> whether `phrase_regex(phrases).search(text)` finds a match.

    A phrase can only match when every piece its regex requires is in the folded text ("I can't help with"
    needs "can't", "help", "with"); the pieces are tested along a tree of keys shared by many phrases, and a
    regex runs only for phrases whose pieces are all there. Each phrase is in exactly one node's regex, so the
    answer is the whole alternation's.
    """
    whole, for_ascii, for_any = _phrase_trees(phrases)
    if for_ascii is None or for_any is None:
        return lambda s, low: whole(s) is not None

    def found(s: str, low: str | None) -> bool:
        if low is None:
            return whole(s) is not None
        return _tree_found(for_ascii if s.isascii() else for_any, s, low)  # type: ignore[arg-type]

    return found


# the same tests as Python source, for the generated function: no call per piece


def _any_in(alts: tuple[str, ...], low: str) -> str:
    return "(" + " or ".join(f"{a!r} in {low}" for a in alts) + ")" if alts else "False"


def _clauses_source(clauses: tuple[Clause, ...], low: str) -> str:
    return (
        "("
        + " or ".join(
            "(" + (" and ".join(_any_in(alts, low) for alts in clause) or "True") + ")" for clause in clauses
        )
        + ")"
    )


def _tree_source(tree: _KeyTree, s: str, low: str, const: Callable[[Any], str]) -> str:
    term, nodes = tree
    parts = []
    if term is not None:
        multis, rx = term
        may = [" and ".join(_any_in(alts, low) for alts in sets) for sets in multis]
        found = f"{const(rx)}.search({s}) is not None"
        parts.append(
            f"({found})" if not all(may) else f"(({' or '.join(f'({m})' for m in may)}) and {found})"
        )
    for key, sub in nodes:
        parts.append(f"({key!r} in {low} and {_tree_source(sub, s, low, const)})")
    return "(" + " or ".join(parts) + ")" if parts else "False"


def searcher_source(rx: re.Pattern[str], s: str, low: str, asc: str, const: Callable[[Any], str]) -> str:
    """A Python expression: whether rx finds a match in the text variable `s` (`low` its fold_lower, `asc` whether
    it is ASCII), the prefilter written out as `in` tests."""
    search = const(rx.search)
    for_ascii, for_any = prefilter(rx), prefilter(rx, ascii_text=False)
    if for_ascii is None:
        return f"({search}({s}) is not None)"
    pa = _clauses_source(for_ascii, low)
    pn = _clauses_source(for_any, low) if for_any is not None else "True"
    pre = pa if pa == pn else f"({pa} if {asc} else {pn})"
    return f"({pre} and {search}({s}) is not None)"


def phrase_searcher_source(
    phrases: tuple[str, ...], s: str, low: str, asc: str, const: Callable[[Any], str]
) -> str:
    """phrase_searcher as a Python expression over the variables `s`, `low`, `asc` (see searcher_source)."""
    whole, for_ascii, for_any = _phrase_trees(phrases)
    if for_ascii is None or for_any is None:
        return f"({const(whole)}({s}) is not None)"
    ta, tn = _tree_source(for_ascii, s, low, const), _tree_source(for_any, s, low, const)
    return ta if ta == tn else f"({ta} if {asc} else {tn})"


def count_questions_fast(s: str) -> int:
    """curate.checks.text_checks.count_questions (runs of '?' or '？'), without a regex for the usual text."""
    if "？" in s or "??" in s:
        return count_questions(s)
    return s.count("?")
