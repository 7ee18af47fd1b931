"""A spec's automatic rules compiled once into one generated function: the fast path of `check_response`.

    >>> from curate.spec import load_spec
    >>> from curate.checks.compiled import compile_rules
    >>> rules = compile_rules(load_spec("specs/support-triage"))
    >>> good = '{"intent": "other", "entities": {}, "missing_info": [], "next_step": "Send the hours page."}'
    >>> rules.failed(good, "when are you open?")
    ()
    >>> rules.failed('{"intent": "other"}', "hi")
    ('matches-schema',)
    >>> rules.statuses('{"intent": "other"}', "hi")[:3]
    ('pass', 'fail', 'skip')

`failed()` and `statuses()` give exactly the verdicts of `curate.checks.check_response` (same pass / fail / skip
semantics, `when` conditions, field rules that skip when the response is not JSON or lacks the pointer), and
`results()` the full list equal to check_response's. How, without changing a verdict:

- the response is parsed once (orjson); every pointer the rules use is resolved once per response (split into
  keys at compile time) and its text made once;
- the rules become ONE Python function generated from their kinds and parameters (`CompiledRules.source` shows
  it): no pydantic object, no context, no call per rule on the pass path; `when` conditions are inline tests;
  spec text enters the source only as repr() literals or as named constants;
- regexes are compiled once, and run only when a prefilter lets them: strings every match must contain, read
  from re's parse tree (runs of literals; few-string items multiplied out, e.g. "I " / "we " / "I've " before
  one of the verbs; up to two such sets per top-level alternative), tested with `in` on `fold_lower(text)`
  (lower-cased, and the four non-ASCII letters that match an ASCII one ignoring case folded to it). That is a
  necessary condition whatever the flags, so a text it rejects cannot match; ASCII texts get sharper sets
  (strings with a character no ASCII character matches, like "I’ve", drop out);
- phrase lists (phrases_*, refusal) become a tree of such pieces ("I can't help with" needs "can't", "help",
  "with"), keyed by the pieces many phrases share; a node's regex (its phrases' alternation) runs only when all
  pieces of one of its phrases are there: the refusal list on support-agent's messages costs ~2 us, not ~90;
- `question_count` counts with str.count when no "??" or "？" is there; `max_words` splits only texts longer
  than 2 x max characters with enough spaces (n words need 2n - 1 characters and n - 1 whitespace characters;
  a printable string has no whitespace but " ");
- `values_in_input` accepts an ASCII value found in the ASCII user text as it is or lower-cased (it is then in
  the normal form too), and normalizes (NFKC, casefold, whitespace) only otherwise;
- json_schema uses the validators json_checks.py compiled: jsonschema-rs `is_valid` where it is safe, and when
  that says invalid (or is not used) the Python validator's `is_valid`, which is schema_verdict's verdict without
  collecting and sorting every error for the message;
- `python` checks (their function sees the context) and anything unusual (a response that cannot be encoded as
  UTF-8, a pointer index that is a non-ASCII digit) go through the reference path, which decides and raises
  exactly where check_response would.

Equality with check_response is tested on the example data, expand's mutants, model-output style inputs, every
check kind, random JSON shapes, and the prefilters on generated hits and near misses (tests/test_checks_compiled.py).
Speed: scripts/bench_checks.py.

`results()` returns shared frozen CheckResult objects for pass and skip, and the reference check's result for
each failing rule (its detail names the problem); it is meant for records that fail something.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import orjson

from curate.checks import check_response, run_rule
from curate.checks.context import CheckContext, is_empty
from curate.checks.json_checks import _validator
from curate.checks.semantic_checks import REFUSAL_PHRASES, _strings
from curate.checks.text_checks import compiled, count_questions, count_sentences, phrase_regex
from curate.records import CheckResult, normalize_text
from curate.spec_model import Rule, Spec

try:
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_p
except ImportError:  # pragma: no cover - Python < 3.11 (curate requires 3.11)
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_p  # type: ignore[no-redef]

FAIL = object()
"""`outcomes()` gives per rule None (pass), FAIL, or the skip reason (a str)."""

_NOJSON = object()  # the response is not JSON
_NOPTR = object()  # the JSON has no value at the pointer
NOT_JSON_REASON = "response is not valid JSON (reported by the JSON rules)"


class _Fallback(Exception):
    """This response needs the reference path."""


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


# ---------------------------------------------------------------- pointers and values


def _split_pointer(pointer: str) -> tuple[str, ...] | None:
    """RFC 6901 parts of `pointer`, as curate.checks.context.resolve_pointer reads them; None = the whole doc."""
    if pointer in ("", "/"):
        return None
    return tuple(raw.replace("~1", "/").replace("~0", "~") for raw in pointer.split("/")[1:])


def _resolver(pointer: str) -> Callable[[Any], Any]:
    """doc -> value at `pointer`, _NOPTR when missing, _NOJSON when doc is _NOJSON (the walk of resolve_pointer)."""
    parts = _split_pointer(pointer)
    if parts is None:
        return lambda doc: doc
    risky = any(p.isdigit() and not p.isascii() for p in parts)  # int() would raise where the reference does

    def walk(doc: Any) -> Any:
        if doc is _NOJSON:
            return _NOJSON
        node = doc
        for part in parts:
            if isinstance(node, dict):
                if part not in node:
                    return _NOPTR
                node = node[part]
            elif isinstance(node, list):
                if risky and part.isdigit() and not part.isascii():
                    raise _Fallback
                if not part.isdigit() or int(part) >= len(node):
                    return _NOPTR
                node = node[int(part)]
            else:
                return _NOPTR
        return node

    return walk


def _text(v: Any) -> str | None:
    """The value as text (JSON when not a string), None when missing: CheckContext.text."""
    if type(v) is str:
        return v
    if v is _NOJSON or v is _NOPTR:
        return None
    if isinstance(v, str):  # pragma: no cover - orjson gives plain str
        return v
    return orjson.dumps(v).decode("utf-8")


def _missing_reason(pointer: str, v: Any) -> str:
    return NOT_JSON_REASON if v is _NOJSON else f"response has no {pointer} (reported by the schema rule)"


# ---------------------------------------------------------------- what each rule needs


class _Plan:
    """One rule, taken apart: its `when`, its field, and a predicate saying whether it fails."""

    def __init__(self, spec: Spec, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id
        self.human = rule.check == "human"
        check = None if self.human else rule.check
        self.check = check
        self.kind = None if check is None else check.kind  # type: ignore[union-attr]
        self.field = None if check is None else (check.field or None)  # type: ignore[union-attr]
        self.when = None if check is None else check.when  # type: ignore[union-attr]
        self.generic = False
        self.found: Callable[[str, str | None], bool] | None = (
            None  # regex / phrase kinds: (text, lower) -> found
        )
        self.found_source: Callable[..., str] | None = None  # the same as a Python expression
        self.must_find = False
        # fails(text) for text rules; special kinds set their own
        self.text_fails: Callable[[str], bool] | None = None
        self.value_fails: Callable[[Any, str], bool] | None = None  # values_in_input: (value, user_text)
        self.schema_ok: Callable[[Any], bool] | None = None  # the Python validator's is_valid
        self.schema_fast: Callable[[Any], bool] | None = (
            None  # jsonschema-rs is_valid, where json_checks uses it
        )
        if check is None:
            return
        kind = self.kind
        if kind == "json_parse":
            return
        if kind == "json_schema":
            schema = check.schema_ if check.schema_ is not None else spec.output.schema_  # type: ignore[union-attr]
            slow, fast = _validator(schema)
            self.schema_fast = fast

            # json_checks.schema_verdict says valid when the fast validator does, else when the Python validator
            # finds no error: its is_valid stops at the first one (the message is for results() only)
            self.schema_ok = slow.is_valid
            return
        if kind in ("regex_present", "regex_absent") and not isinstance(compiled(check.pattern), re.Pattern):
            self.generic = (
                True  # a time-bounded pattern (text_checks.compiled): the reference path handles timeouts
            )
            return
        if kind in ("regex_present", "regex_absent", "phrases_present", "phrases_absent", "refusal"):
            if kind.startswith("regex"):
                found = searcher(compiled(check.pattern))  # type: ignore[union-attr]
            elif kind == "refusal":
                found = phrase_searcher(tuple(check.phrases or REFUSAL_PHRASES))  # type: ignore[union-attr]
            else:
                found = phrase_searcher(tuple(check.phrases))  # type: ignore[union-attr]
            must_find = kind.endswith("_present") or (kind == "refusal" and bool(check.expect))  # type: ignore
            self.found, self.must_find = found, must_find
            if kind.startswith("regex"):
                rx = compiled(check.pattern)  # type: ignore[union-attr]
                self.found_source = lambda s, low, asc, const: searcher_source(rx, s, low, asc, const)
            else:
                ph = tuple((check.phrases or REFUSAL_PHRASES) if kind == "refusal" else check.phrases)  # type: ignore
                self.found_source = lambda s, low, asc, const: phrase_searcher_source(ph, s, low, asc, const)
            self.text_fails = (
                (lambda s: not found(s, fold_lower(s))) if must_find else (lambda s: found(s, fold_lower(s)))
            )
        elif kind == "max_chars":
            mc = check.max  # type: ignore[union-attr]
            self.text_fails = lambda s: len(s) > mc
        elif kind == "max_words":
            mw = check.max  # type: ignore[union-attr]
            self.text_fails = lambda s: len(s) > 2 * mw and len(s.split()) > mw
        elif kind == "max_sentences":
            ms = check.max  # type: ignore[union-attr]
            self.text_fails = lambda s: count_sentences(s) > ms
        elif kind == "question_count":
            eq, lo, hi = check.equals, check.min, check.max  # type: ignore[union-attr]

            def questions_fail(s: str) -> bool:
                n = count_questions_fast(s)
                return (
                    (eq is not None and n != eq) or (lo is not None and n < lo) or (hi is not None and n > hi)
                )

            self.text_fails = questions_fail
        elif kind == "values_in_input":
            memo: list[Any] = [
                (None, "")
            ]  # (the last user text, its normal form): one slot, safe across threads

            def invented(value: Any, user: str) -> bool:
                t = type(value)
                items = value.values() if t is dict else value if t is list else (value,) if t is str else ()
                user_ascii, user_low = user.isascii(), None
                for item in items:
                    for s in (item,) if type(item) is str else _strings(item):
                        # an ASCII value inside the ASCII user text (as it is, or both lower-cased) is inside its
                        # normal form too: lower-casing ASCII keeps substrings, whitespace runs collapse alike
                        if user_ascii and s.isascii():
                            if s in user:
                                continue
                            if user_low is None:
                                user_low = user.lower()
                            if s.lower() in user_low:
                                continue
                        last = memo[0]
                        if last[0] is not user:
                            last = memo[0] = (user, normalize_text(user))
                        if s.strip() and normalize_text(s) not in last[1]:
                            return True
                return False

            self.value_fails = invented
        else:  # python checks, and kinds registered later: the reference path
            if kind == "python":  # refused before any record is checked unless the user allowed spec code
                from curate.checks.code import require

                require(check.function, spec.base_dir, rule.id)  # type: ignore[union-attr]
            self.generic = True

    @property
    def needs_doc(self) -> bool:
        if self.human:
            return False
        if self.kind in ("json_parse", "json_schema") or self.generic or self.field:
            return True
        w = self.when
        return w is not None and bool(w.nonempty or w.empty or w.equals is not None)

    def pointers(self) -> list[str]:
        """Every pointer this rule reads (its field and its `when` pointers); '' = the whole response."""
        out = []
        if self.field and not self.generic:
            out.append(self.field)
        w = self.when
        if w is not None:
            out += [
                p
                for p in (w.nonempty, w.empty, w.equals.pointer if w.equals is not None else None)
                if p is not None
            ]
        return out


def _generic(spec: Spec, rule: Rule) -> Callable[..., Any]:
    """The reference run of one rule (python checks): a CheckResult."""

    def run(r: str, u: str, c: str, t: Any) -> CheckResult:
        return run_rule(rule, CheckContext(spec=spec, response=r, user_text=u, category=c, tags=frozenset(t)))

    return run


# ---------------------------------------------------------------- the generated function


def _generate(
    spec: Spec, plans: list[_Plan]
) -> tuple[Callable[..., tuple[str, ...]], Callable[..., list[Any]]]:
    """Two functions generated from one source template, compiled for these rules:

    `statuses(r, u, c, t)` -> one of 'pass' / 'fail' / 'skip' per rule (a tuple);
    `outcomes(r, u, c, t)` -> per rule None (pass), FAIL, the skip reason (a str), or for a generic (python) rule
    that does not fail its CheckResult (a list).
    """
    ns: dict[str, Any] = {
        "_NOJSON": _NOJSON,
        "_NOPTR": _NOPTR,
        "_is_empty": is_empty,
        "_text": _text,
        "_loads": orjson.loads,
        "_JDE": orjson.JSONDecodeError,
        "_slow_doc": _slow_doc,
        "_FAIL": FAIL,
        "_fold": fold_lower,
    }
    consts: dict[int, str] = {}

    def const(obj: Any) -> str:
        name = consts.get(id(obj))
        if name is None:
            name = consts[id(obj)] = f"_k{len(consts)}"
            ns[name] = obj
        return name

    keep_alive: list[Any] = []
    lines = ["def \0NAME\0(r, u, c, t):"]
    if any(p.needs_doc for p in plans):
        lines += ["    try:", "        d = _loads(r)", "    except _JDE:", "        d = _slow_doc(r)"]
    else:
        lines += ["    d = _NOJSON"]
    # every pointer once: v<i> its value, s<i> its text (only where a text rule reads it)
    ptr_var: dict[str, int] = {}
    text_ptrs: set[str] = set()
    low_ptrs: set[str] = set()  # texts a prefilter reads lower-cased: l<i> (lr for the whole response)
    for p in plans:
        for ptr in p.pointers():
            ptr_var.setdefault(ptr, len(ptr_var))
        if p.text_fails is not None and p.field:
            text_ptrs.add(p.field)
        if p.found is not None and not p.generic:
            low_ptrs.add(p.field or "")
    if "" in low_ptrs:
        lines += ["    ar = r.isascii()", "    lr = r.lower() if ar else _fold(r)"]
    for ptr, i in ptr_var.items():
        parts = _split_pointer(ptr)
        if not ptr:
            lines.append(f"    v{i} = r")
        elif parts is not None and len(parts) == 1 and not parts[0].isdigit():
            res = _resolver(ptr)
            keep_alive.append(res)
            lines.append(f"    v{i} = d.get({parts[0]!r}, _NOPTR) if type(d) is dict else {const(res)}(d)")
        else:
            res = _resolver(ptr)
            keep_alive.append(res)
            lines.append(f"    v{i} = {const(res)}(d)")
        if ptr in text_ptrs:
            lines.append(f"    s{i} = v{i} if type(v{i}) is str else _text(v{i})")
        if ptr and ptr in low_ptrs:
            lines += [
                f"    a{i} = s{i} is not None and s{i}.isascii()",
                f"    l{i} = s{i}.lower() if a{i} else None if s{i} is None else _fold(s{i})",
            ]
    out_vars = []
    for j, p in enumerate(plans):
        x = f"x{j}"
        out_vars.append(x)
        if p.human:
            lines.append(f"    {x} = \0SKIP{j}\0")
            ns[f"_why{j}"] = lambda r, d, c, t: "judged by labelers"
            continue
        if p.generic:
            gen = const(_generic(spec, p.rule))
            lines.append(f"    {x} = \0GENERIC\0({gen}(r, u, c, t))")
            continue
        ns[f"_why{j}"] = _skip_reason(p)
        holds = _when_source(p.when, ptr_var, const)
        if p.kind == "json_parse":
            present, fails = "True", "d is _NOJSON"
        elif p.kind == "json_schema":
            ok = const(p.schema_ok)
            present = "True"
            v = f"v{ptr_var[p.field]}" if p.field else "d"
            valid = f"{ok}({v})" if p.schema_fast is None else f"({const(p.schema_fast)}({v}) or {ok}({v}))"
            fails = (
                f"d is _NOJSON or {v} is _NOPTR or not {valid}" if p.field else f"d is _NOJSON or not {valid}"
            )
        elif p.value_fails is not None:
            v = f"v{ptr_var[p.field]}" if p.field else "r"
            present = f"{v} is not _NOJSON and {v} is not _NOPTR" if p.field else "True"
            fails = f"{const(p.value_fails)}({v}, u)"
        else:
            s = f"s{ptr_var[p.field]}" if p.field else "r"
            low = f"l{ptr_var[p.field]}" if p.field else "lr"
            asc = f"a{ptr_var[p.field]}" if p.field else "ar"
            present = f"{s} is not None" if p.field else "True"
            fails = _fails_source(p, s, low, asc, const)
        applies = " and ".join(f"({e})" for e in (holds, present) if e != "True")
        if applies:
            lines += [f"    if not ({applies}):", f"        {x} = \0SKIP{j}\0", f"    elif {fails}:"]
        else:
            lines.append(f"    if {fails}:")
        lines += [f"        {x} = \0FAIL\0", "    else:", f"        {x} = \0PASS\0"]
    lines.append(
        "    return \0OPEN\0" + ", ".join(out_vars) + ("," if len(out_vars) == 1 else "") + "\0CLOSE\0"
    )
    template = "\n".join(lines) + "\n"  # \0NAME\0 marks a slot: repr() never writes a raw NUL

    def fill(**slots: str) -> str:
        parts = template.split("\0")
        return "".join(slots[x] if i % 2 else x for i, x in enumerate(parts))

    skips_st = {f"SKIP{j}": "'skip'" for j in range(len(plans))}
    skips_out = {f"SKIP{j}": f"_why{j}(r, d, c, t)" for j in range(len(plans))}
    ns["_status_of"] = lambda res: res.status
    ns["_outcome_of"] = lambda res: FAIL if res.status == "fail" else res
    sources = {
        "statuses": fill(
            NAME="statuses",
            FAIL="'fail'",
            PASS="'pass'",
            GENERIC="_status_of",
            OPEN="(",
            CLOSE=")",
            **skips_st,
        ),
        "outcomes": fill(
            NAME="outcomes",
            FAIL="_FAIL",
            PASS="None",
            GENERIC="_outcome_of",
            OPEN="[",
            CLOSE="]",
            **skips_out,
        ),
    }
    fns = []
    for name, source in sources.items():
        exec(compile(source, f"<curate rules {spec.ref}: {name}>", "exec"), ns)  # noqa: S102 - generated here
        fn = ns[name]
        fn.__curate_source__ = source
        fn.__curate_keep__ = keep_alive
        fns.append(fn)
    return fns[0], fns[1]


def _skip_reason(p: _Plan) -> Callable[[str, Any, str, Any], str]:
    """(response, doc, category, tags) -> why the rule is skipped (called only when it is): CheckContext's words."""
    cond = _when_closure(p.when)
    res = _resolver(p.field) if p.field else None
    field = p.field or ""

    def why(r: str, d: Any, c: str, t: Any) -> str:
        reason = cond(r, d, c, t) if cond is not None else ""
        if reason:
            return reason
        v = r if res is None else res(d)
        return _missing_reason(field, v)

    return why


def _fails_source(p: _Plan, s: str, low: str, asc: str, const: Callable[[Any], str]) -> str:
    """A Python expression over the text variable `s` (`low`: its fold_lower, `asc`: whether it is ASCII) that is
    true when the rule fails."""
    check = p.check
    if p.found_source is not None:
        return f"{'not ' if p.must_find else ''}{p.found_source(s, low, asc, const)}"
    if p.kind == "max_chars":
        return f"len({s}) > {int(check.max)}"  # type: ignore[union-attr]
    if p.kind == "max_words":  # n words need 2n - 1 characters and n - 1 whitespace characters
        m = int(check.max)  # type: ignore[union-attr]
        return (
            f"len({s}) > {2 * m} and (not {s}.isprintable() or {s}.count(' ') >= {m}) "
            f"and len({s}.split()) > {m}"
        )
    if p.kind == "question_count":
        n = f"({s}.count('?') if '？' not in {s} and '??' not in {s} else {const(count_questions)}({s}))"
        eq, lo, hi = check.equals, check.min, check.max  # type: ignore[union-attr]
        tests = [
            f"n != {int(eq)}" if eq is not None else "",
            f"n < {int(lo)}" if lo is not None else "",
            f"n > {int(hi)}" if hi is not None else "",
        ]
        tests = [x for x in tests if x]
        if len(tests) == 1:
            return f"{n} {tests[0][2:]}"
        return f"(lambda n: {' or '.join(tests)})({n})"
    return f"{const(p.text_fails)}({s})"


def _when_source(when: Any, ptr_var: dict[str, int], const: Callable[[Any], str]) -> str:
    """A Python expression that is true when every `when` condition holds (CheckContext.when_fails == '')."""
    if when is None:
        return "True"
    parts = []
    if when.category is not None:
        parts.append(f"c == {const(when.category)}")
    if when.tag is not None:
        parts.append(f"{const(when.tag)} in t")
    if when.not_tag is not None:
        parts.append(f"{const(when.not_tag)} not in t")
    if when.nonempty is not None:
        v = f"v{ptr_var[when.nonempty]}"
        parts.append(f"({v} is not _NOJSON and {v} is not _NOPTR and not _is_empty({v}))")
    if when.empty is not None:
        v = f"v{ptr_var[when.empty]}"
        parts.append(f"({v} is not _NOJSON and ({v} is _NOPTR or _is_empty({v})))")
    if when.equals is not None:
        v = f"v{ptr_var[when.equals.pointer]}"
        parts.append(
            f"({v} is not _NOJSON and {v} is not _NOPTR and not ({v} != {const(when.equals.value)}))"
        )
    return " and ".join(parts) if parts else "True"


def _slow_doc(response: str) -> Any:
    """Exactly CheckContext.parsed (str.strip() removes more than JSON whitespace), after orjson refused `response`."""
    try:
        return orjson.loads(response.strip().encode("utf-8"))
    except orjson.JSONDecodeError:
        return _NOJSON
    except UnicodeEncodeError:  # lone surrogates: the reference path decides (and raises where it would)
        raise _Fallback from None


# ---------------------------------------------------------------- skip reasons


def _when_closure(when: Any) -> Callable[[str, Any, str, Any], str] | None:
    """(response, doc, category, tags) -> '' when every condition holds, else the reason (CheckContext.when_fails)."""
    if when is None:
        return None

    def value(ptr: str, r: str, d: Any) -> Any:
        return r if not ptr else _resolver(ptr)(d)

    def reason(r: str, d: Any, c: str, t: Any) -> str:
        if when.category is not None and c != when.category:
            return f"applies to category {when.category} only"
        if when.tag is not None and when.tag not in t:
            return f"applies to records tagged {when.tag} only"
        if when.not_tag is not None and when.not_tag in t:
            return f"does not apply to records tagged {when.not_tag}"
        for ptr, want_empty in ((when.nonempty, False), (when.empty, True)):
            if ptr is None:
                continue
            v = value(ptr, r, d)
            if v is _NOJSON:
                return NOT_JSON_REASON
            if v is _NOPTR:
                v = None
            if is_empty(v) != want_empty:
                return f"applies only when {ptr} is {'empty' if want_empty else 'not empty'}"
        if when.equals is not None:
            v = value(when.equals.pointer, r, d)
            if v is _NOJSON or v is _NOPTR or v != when.equals.value:
                return f"applies only when {when.equals.pointer} == {when.equals.value!r}"
        return ""

    return reason


# ---------------------------------------------------------------- the compiled rule set

_STATUS_CACHE_MAX = 4096


class CompiledRules:
    """A spec's automatic rules (or the given ones), compiled once; build with `compile_rules(spec)`.

    Per response (all equal to what `check_response(spec, response, user_text=..., category=..., tags=...)`
    says, in rule order; `tags` any container of strings):
    - `statuses(...)` -> ("pass" | "fail" | "skip", ...): the cheapest full answer (a shared tuple);
    - `failed(...)` -> ids of the failing rules (a shared tuple, () when all pass);
    - `outcomes(...)` -> [None (pass) | FAIL | skip reason, ...];
    - `results(...)` -> [CheckResult, ...] (the failing rules' details come from the reference checks).
    """

    def __init__(self, spec: Spec, rules: Iterable[Rule] | None = None) -> None:
        self.spec = spec
        self.rules: tuple[Rule, ...] = tuple(rules if rules is not None else spec.automatic_rules())
        self.ids: tuple[str, ...] = tuple(r.id for r in self.rules)
        plans = [_Plan(spec, r) for r in self.rules]
        self._statuses, self._outcomes = _generate(spec, plans)
        self._generic = any(p.generic for p in plans)  # only these make CheckResult outcomes
        self._shared: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._pass = {
            r.id: CheckResult(rule=r.id, category=r.category, status="pass", detail="") for r in self.rules
        }
        self._skips: dict[tuple[str, str], CheckResult] = {}
        self._lists: dict[tuple[Any, ...], tuple[CheckResult, ...]] = {}

    @property
    def source(self) -> str:
        """The generated Python source of `statuses` (for reading and debugging; `outcomes` differs only in the
        values it assigns)."""
        return self._statuses.__curate_source__  # type: ignore[attr-defined, no-any-return]

    def _intern(self, st: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        hit = self._shared.get(st)
        if hit is None:
            if len(self._shared) > _STATUS_CACHE_MAX:
                self._shared.clear()
            hit = self._shared[st] = (st, tuple([i for i, s in zip(self.ids, st) if s == "fail"]))
        return hit

    def _status_tuple(
        self, response: str, user_text: str, category: str, tags: Iterable[str]
    ) -> tuple[str, ...]:
        """The generated function's statuses, or the reference path's where it bows out (_Fallback)."""
        if isinstance(tags, str):
            tags = frozenset(tags)
        try:
            return self._statuses(response, user_text, category, tags)
        except _Fallback:
            return tuple(r.status for r in self._reference(response, user_text, category, tags))

    def statuses(
        self, response: str, user_text: str = "", category: str = "typical", tags: Iterable[str] = frozenset()
    ) -> tuple[str, ...]:
        """Per rule "pass" / "fail" / "skip", in rule order (== the statuses of check_response). Shared tuples."""
        return self._intern(self._status_tuple(response, user_text, category, tags))[0]

    def failed(
        self, response: str, user_text: str = "", category: str = "typical", tags: Iterable[str] = frozenset()
    ) -> tuple[str, ...]:
        """Ids of the rules `response` fails, in rule order (== check_response's "fail" results). Shared tuples."""
        return self._intern(self._status_tuple(response, user_text, category, tags))[1]

    def outcomes(
        self, response: str, user_text: str = "", category: str = "typical", tags: Iterable[str] = frozenset()
    ) -> list[Any]:
        """Per rule: None (pass), FAIL, or the skip reason (a str), as check_response decides."""
        if isinstance(tags, str):
            tags = frozenset(tags)
        try:
            outs = self._outcomes(response, user_text, category, tags)
        except _Fallback:
            ref = self._reference(response, user_text, category, tags)
            return [None if r.status == "pass" else FAIL if r.status == "fail" else r.detail for r in ref]
        if not self._generic:
            return outs  # type: ignore[no-any-return]
        return [(None if o.status == "pass" else o.detail) if type(o) is CheckResult else o for o in outs]

    def results(
        self, response: str, user_text: str = "", category: str = "typical", tags: Iterable[str] = frozenset()
    ) -> list[CheckResult]:
        """The full list, equal to `check_response(spec, response, ...)` (pass and skip results are shared objects)."""
        if isinstance(tags, str):
            tags = frozenset(tags)
        try:
            outs = self._outcomes(response, user_text, category, tags)
        except _Fallback:
            return self._reference(response, user_text, category, tags)
        if FAIL not in outs and not self._generic:  # only pass and skip: the same list for the same outcomes
            key = tuple(outs)
            hit = self._lists.get(key)
            if hit is None:
                if len(self._lists) > 10_000:
                    self._lists.clear()
                hit = self._lists[key] = tuple(self._assemble(outs, response, user_text, category, tags))
            return list(hit)
        return self._assemble(outs, response, user_text, category, tags)

    def _assemble(
        self, outs: list[Any], response: str, user_text: str, category: str, tags: Iterable[str]
    ) -> list[CheckResult]:
        res: list[CheckResult] = []
        ctx: CheckContext | None = None
        for rule, out in zip(self.rules, outs):
            if out is None:
                res.append(self._pass[rule.id])
            elif type(out) is CheckResult:
                res.append(out)
            elif out is FAIL:
                if ctx is None:
                    ctx = CheckContext(
                        spec=self.spec,
                        response=response,
                        user_text=user_text,
                        category=category,
                        tags=frozenset(tags),
                    )
                res.append(run_rule(rule, ctx))
            else:
                hit = self._skips.get((rule.id, out))
                if hit is None:
                    if len(self._skips) > 10_000:
                        self._skips.clear()
                    hit = self._skips[(rule.id, out)] = CheckResult(
                        rule=rule.id, category=rule.category, status="skip", detail=out
                    )
                res.append(hit)
        return res

    def _reference(
        self, response: str, user_text: str, category: str, tags: Iterable[str]
    ) -> list[CheckResult]:
        return check_response(
            self.spec, response, user_text=user_text, category=category, tags=tags, rules=self.rules
        )


def compile_rules(spec: Spec, rules: Iterable[Rule] | None = None) -> CompiledRules:
    """Compile `spec`'s automatic rules (or the given ones) once; reuse the result for every record."""
    return CompiledRules(spec, rules)


__all__ = [
    "ASCII_FOLDS",
    "FAIL",
    "CompiledRules",
    "compile_rules",
    "fold_lower",
    "phrase_searcher",
    "prefilter",
    "searcher",
]
