"""What each rule of a compiled rule set needs: the JSON pointers it reads (split into keys once), the texts it
tests, its prefilters (see curate.checks.compiled).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from curate.checks import run_rule
from curate.checks.context import CheckContext
from curate.checks.json_checks import _validator
from curate.checks.prefilter import (
    count_questions_fast,
    fold_lower,
    phrase_searcher,
    phrase_searcher_source,
    searcher,
    searcher_source,
)
from curate.checks.semantic_checks import REFUSAL_PHRASES, _strings
from curate.checks.text_checks import compiled, count_sentences
from curate.records import CheckResult, normalize_text
from curate.spec_model import Rule, Spec

FAIL = object()
"""`outcomes()` gives per rule None (pass), FAIL, or the skip reason (a str)."""

_NOJSON = object()  # the response is not JSON
_NOPTR = object()  # the JSON has no value at the pointer
NOT_JSON_REASON = "response is not valid JSON (reported by the JSON rules)"


class _Fallback(Exception):
    """This response needs the reference path."""


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
