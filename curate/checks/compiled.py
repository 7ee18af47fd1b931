"""A spec's automatic rules compiled once into plain closures: the fast path of `check_response`.

    >>> from curate.spec import load_spec
    >>> from curate.checks.compiled import compile_rules
    >>> rules = compile_rules(load_spec("specs/support-triage"))
    >>> good = '{"intent": "other", "entities": {}, "missing_info": [], "next_step": "Send the hours page."}'
    >>> rules.failed(good, "when are you open?")
    ()
    >>> rules.failed('{"intent": "other"}', "hi")
    ('matches-schema',)

`failed()` gives exactly the verdicts of `curate.checks.check_response` (same pass / fail / skip semantics, `when`
conditions, field rules that skip when the response is not JSON or lacks the pointer) without building a pydantic
object or a context per rule: the response is parsed once with orjson, pointers are split at compile time, each rule
is one closure made from its kind and parameters, regexes are compiled once. `results()` gives the full list equal to
`check_response`'s: shared frozen objects for pass and skip, the reference check for the detail of a failure.
`python` checks go through the generic path (`curate.checks.run_rule`) because their function sees the context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from curate.checks import check_response, run_rule
from curate.checks.context import CheckContext, is_empty
from curate.checks.json_checks import _validator, schema_verdict
from curate.checks.semantic_checks import REFUSAL_PHRASES, _strings
from curate.checks.text_checks import compiled, count_questions, count_sentences, phrase_regex
from curate.records import CheckResult, normalize_text
from curate.spec import Rule, Spec

FAIL = object()
"""A rule closure returns None (pass), FAIL, the skip reason (a str), or a CheckResult (generic path, not a fail)."""

_NOJSON = object()  # the response is not JSON
_NOPTR = object()  # the JSON has no value at the pointer
NOT_JSON_REASON = "response is not valid JSON (reported by the JSON rules)"

Outcome = "None | object | str"
RuleFn = Callable[[str, Any, str, str, Any], Any]  # (response, doc, user_text, category, tags) -> outcome


class _Fallback(Exception):
    """This response needs the reference path (e.g. it cannot be encoded as UTF-8)."""


# ---------------------------------------------------------------- pointers and values

def _split_pointer(pointer: str) -> tuple[str, ...] | None:
    """RFC 6901 parts of `pointer`, as curate.checks.context.resolve_pointer reads them; None = the whole doc."""
    if pointer in ("", "/"):
        return None
    return tuple(raw.replace("~1", "/").replace("~0", "~") for raw in pointer.split("/")[1:])


def _resolver(pointer: str) -> Callable[[Any], Any]:
    """doc -> value at `pointer`, _NOPTR when missing, _NOJSON when doc is _NOJSON (same walk as resolve_pointer)."""
    parts = _split_pointer(pointer)
    if parts is None:
        return lambda doc: doc
    if len(parts) == 1 and not parts[0].isdigit():
        key = parts[0]

        def one(doc: Any) -> Any:
            if type(doc) is dict:
                return doc.get(key, _NOPTR)
            if doc is _NOJSON:
                return _NOJSON
            if isinstance(doc, dict):  # pragma: no cover - orjson gives plain dicts
                return doc.get(key, _NOPTR)
            return _NOPTR

        return one

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
                if not part.isdigit() or int(part) >= len(node):
                    return _NOPTR
                node = node[int(part)]
            else:
                return _NOPTR
        return node

    return walk


class _Field:
    """What a check looks at: the whole response text, or the JSON value at a pointer."""

    def __init__(self, pointer: str | None) -> None:
        self.pointer = pointer
        self.whole = not pointer
        self.resolve = None if self.whole else _resolver(pointer)  # type: ignore[arg-type]
        self.no_ptr_reason = f"response has no {pointer} (reported by the schema rule)"

    def value(self, response: str, doc: Any) -> Any:
        if self.whole:
            return response
        return self.resolve(doc)  # type: ignore[misc]

    def missing_reason(self, v: Any) -> str:
        return NOT_JSON_REASON if v is _NOJSON else self.no_ptr_reason


def _as_text(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode("utf-8")


# ---------------------------------------------------------------- `when` conditions

def _when(when: Any) -> Callable[[str, Any, str, Any], str] | None:
    """(response, doc, category, tags) -> '' when every condition holds, else the reason (as CheckContext.when_fails)."""
    if when is None:
        return None
    conds: list[Callable[[str, Any, str, Any], str]] = []
    if when.category is not None:
        want_cat, why_cat = when.category, f"applies to category {when.category} only"
        conds.append(lambda r, d, c, t: "" if c == want_cat else why_cat)
    if when.tag is not None:
        tag, why_tag = when.tag, f"applies to records tagged {when.tag} only"
        conds.append(lambda r, d, c, t: "" if tag in t else why_tag)
    if when.not_tag is not None:
        ntag, why_ntag = when.not_tag, f"does not apply to records tagged {when.not_tag}"
        conds.append(lambda r, d, c, t: why_ntag if ntag in t else "")
    for ptr, want_empty in ((when.nonempty, False), (when.empty, True)):
        if ptr is None:
            continue
        fld = _Field(ptr)
        why = f"applies only when {ptr} is {'empty' if want_empty else 'not empty'}"

        def emptiness(r: str, d: Any, c: str, t: Any, fld: _Field = fld, want: bool = want_empty,
                      why: str = why) -> str:
            v = fld.value(r, d)
            if v is _NOJSON:
                return NOT_JSON_REASON
            if v is _NOPTR:
                v = None
            return why if is_empty(v) != want else ""

        conds.append(emptiness)
    if when.equals is not None:
        efld, want_v = _Field(when.equals.pointer), when.equals.value
        why_eq = f"applies only when {when.equals.pointer} == {when.equals.value!r}"

        def equals(r: str, d: Any, c: str, t: Any) -> str:
            v = efld.value(r, d)
            if v is _NOJSON or v is _NOPTR or v != want_v:
                return why_eq
            return ""

        conds.append(equals)
    if not conds:
        return None
    if len(conds) == 1:
        return conds[0]

    def all_hold(r: str, d: Any, c: str, t: Any) -> str:
        for cond in conds:
            why = cond(r, d, c, t)
            if why:
                return why
        return ""

    return all_hold


# ---------------------------------------------------------------- one closure per check kind

def _text_rule(fld: _Field, passes: Callable[[str], bool]) -> RuleFn:
    """A check over the field's text: skip when missing, else pass/fail by `passes(text)`."""
    if fld.whole:
        def on_text(r: str, d: Any, u: str, c: str, t: Any) -> Any:
            return None if passes(r) else FAIL
        return on_text

    resolve, no_ptr = fld.resolve, fld.no_ptr_reason

    def on_field(r: str, d: Any, u: str, c: str, t: Any) -> Any:
        v = resolve(d)  # type: ignore[misc]
        if v is _NOJSON:
            return NOT_JSON_REASON
        if v is _NOPTR:
            return no_ptr
        return None if passes(v if isinstance(v, str) else orjson.dumps(v).decode("utf-8")) else FAIL

    return on_field


def _compile_check(spec: Spec, rule: Rule) -> RuleFn:
    check = rule.check
    kind = check.kind  # type: ignore[union-attr]
    fld = _Field(check.field)  # type: ignore[union-attr]

    if kind == "json_parse":
        return lambda r, d, u, c, t: FAIL if d is _NOJSON else None

    if kind == "json_schema":
        schema = check.schema_ if check.schema_ is not None else spec.output.schema_  # type: ignore[union-attr]
        slow, fast = _validator(schema)
        sub = None if not check.field else fld  # type: ignore[union-attr]

        def schema_rule(r: str, d: Any, u: str, c: str, t: Any) -> Any:
            if d is _NOJSON:
                return FAIL
            if sub is not None:
                d = sub.value(r, d)
                if d is _NOPTR:
                    return FAIL
            if fast is not None:
                if fast(d):
                    return None
            elif slow.is_valid(d):
                return None
            return None if schema_verdict(schema, d)[0] else FAIL

        return schema_rule

    if kind in ("regex_present", "regex_absent"):
        search = compiled(check.pattern).search  # type: ignore[union-attr]
        if kind == "regex_present":
            return _text_rule(fld, lambda s: search(s) is not None)
        return _text_rule(fld, lambda s: search(s) is None)

    if kind in ("phrases_present", "phrases_absent"):
        psearch = phrase_regex(tuple(check.phrases)).search  # type: ignore[union-attr]
        if kind == "phrases_present":
            return _text_rule(fld, lambda s: psearch(s) is not None)
        return _text_rule(fld, lambda s: psearch(s) is None)

    if kind == "max_chars":
        mx = check.max  # type: ignore[union-attr]
        return _text_rule(fld, lambda s: len(s) <= mx)

    if kind == "max_words":
        mw = check.max  # type: ignore[union-attr]
        # n words need at least 2n - 1 characters: a text of <= 2 * max characters cannot have more than max
        return _text_rule(fld, lambda s: len(s) <= 2 * mw or len(s.split()) <= mw)

    if kind == "max_sentences":
        ms = check.max  # type: ignore[union-attr]
        return _text_rule(fld, lambda s: count_sentences(s) <= ms)

    if kind == "question_count":
        eq, lo, hi = check.equals, check.min, check.max  # type: ignore[union-attr]

        def questions_ok(s: str) -> bool:
            n = count_questions(s)
            return not ((eq is not None and n != eq) or (lo is not None and n < lo) or (hi is not None and n > hi))

        return _text_rule(fld, questions_ok)

    if kind == "values_in_input":
        memo: list[Any] = [None, ""]  # the last user text and its normal form

        def values_rule(r: str, d: Any, u: str, c: str, t: Any) -> Any:
            v = fld.value(r, d)
            if v is _NOJSON or v is _NOPTR:
                return fld.missing_reason(v)
            if memo[0] is not u:
                memo[0], memo[1] = u, normalize_text(u)
            hay = memo[1]
            for s in _strings(v):
                if s.strip() and normalize_text(s) not in hay:
                    return FAIL
            return None

        return values_rule

    if kind == "refusal":
        rsearch = phrase_regex(tuple(check.phrases or REFUSAL_PHRASES)).search  # type: ignore[union-attr]
        expect = bool(check.expect)  # type: ignore[union-attr]
        return _text_rule(fld, lambda s: (rsearch(s) is not None) == expect)

    # python checks (and any kind registered later): the reference path, one context per call
    def generic(r: str, d: Any, u: str, c: str, t: Any) -> Any:
        ctx = CheckContext(spec=spec, response=r, user_text=u, category=c, tags=frozenset(t))
        res = run_rule(rule, ctx)
        return FAIL if res.status == "fail" else res  # a passing python check may carry a detail

    return generic


def _compile_rule(spec: Spec, rule: Rule) -> RuleFn:
    if rule.check == "human":
        return lambda r, d, u, c, t: "judged by labelers"
    body = _compile_check(spec, rule)
    cond = _when(rule.check.when)  # type: ignore[union-attr]
    if cond is None:
        return body

    def guarded(r: str, d: Any, u: str, c: str, t: Any) -> Any:
        why = cond(r, d, c, t)
        return why if why else body(r, d, u, c, t)

    return guarded


def _needs_doc(rule: Rule) -> bool:
    check = rule.check
    if check == "human":
        return False
    if check.kind in ("json_parse", "json_schema", "python"):  # type: ignore[union-attr]
        return True
    if check.field:  # type: ignore[union-attr]
        return True
    w = check.when  # type: ignore[union-attr]
    return w is not None and bool(w.nonempty or w.empty or w.equals is not None)


# ---------------------------------------------------------------- the compiled rule set

class CompiledRules:
    """A spec's automatic rules as closures; build with `compile_rules(spec)`."""

    def __init__(self, spec: Spec, rules: Iterable[Rule] | None = None) -> None:
        self.spec = spec
        self.rules: tuple[Rule, ...] = tuple(rules if rules is not None else spec.automatic_rules())
        self.ids: tuple[str, ...] = tuple(r.id for r in self.rules)
        self._fns: tuple[RuleFn, ...] = tuple(_compile_rule(spec, r) for r in self.rules)
        self._pairs = tuple(zip(self.ids, self._fns))
        self._parse = any(_needs_doc(r) for r in self.rules)
        self._pass = {r.id: CheckResult(rule=r.id, category=r.category, status="pass", detail="") for r in self.rules}
        self._skips: dict[tuple[str, str], CheckResult] = {}

    def _doc(self, response: str) -> Any:
        try:
            return orjson.loads(response)
        except orjson.JSONDecodeError:
            pass
        try:  # exactly CheckContext.parsed: str.strip() removes more than JSON whitespace
            return orjson.loads(response.strip().encode("utf-8"))
        except orjson.JSONDecodeError:
            return _NOJSON
        except UnicodeEncodeError:  # lone surrogates: the reference path decides (and raises where it would)
            raise _Fallback from None

    def outcomes(self, response: str, user_text: str = "", category: str = "typical",
                 tags: Iterable[str] = frozenset()) -> list[Any]:
        """Per rule: None (pass), FAIL, or the skip reason."""
        doc = self._doc(response) if self._parse else _NOJSON
        return [f(response, doc, user_text, category, tags) for f in self._fns]

    def failed(self, response: str, user_text: str = "", category: str = "typical",
               tags: Iterable[str] = frozenset()) -> tuple[str, ...]:
        """Ids of the automatic rules `response` fails, in spec order (== check_response's "fail" results)."""
        if isinstance(tags, str):
            tags = frozenset(tags)
        try:
            doc = self._doc(response) if self._parse else _NOJSON
        except _Fallback:
            return tuple(r.rule for r in self._reference(response, user_text, category, tags) if r.status == "fail")
        return tuple([rid for rid, f in self._pairs if f(response, doc, user_text, category, tags) is FAIL])

    def results(self, response: str, user_text: str = "", category: str = "typical",
                tags: Iterable[str] = frozenset()) -> list[CheckResult]:
        """The full list, equal to `check_response(spec, response, ...)` (pass and skip results are shared objects)."""
        if isinstance(tags, str):
            tags = frozenset(tags)
        try:
            outs = self.outcomes(response, user_text, category, tags)
        except _Fallback:
            return self._reference(response, user_text, category, tags)
        res: list[CheckResult] = []
        ctx: CheckContext | None = None
        for rule, out in zip(self.rules, outs):
            if out is None:
                res.append(self._pass[rule.id])
            elif isinstance(out, CheckResult):
                res.append(out)
            elif out is FAIL:
                if ctx is None:
                    ctx = CheckContext(spec=self.spec, response=response, user_text=user_text, category=category,
                                       tags=frozenset(tags))
                res.append(run_rule(rule, ctx))
            else:
                hit = self._skips.get((rule.id, out))
                if hit is None:
                    if len(self._skips) > 10_000:
                        self._skips.clear()
                    hit = self._skips[(rule.id, out)] = CheckResult(rule=rule.id, category=rule.category,
                                                                    status="skip", detail=out)
                res.append(hit)
        return res

    def _reference(self, response: str, user_text: str, category: str, tags: Iterable[str]) -> list[CheckResult]:
        return check_response(self.spec, response, user_text=user_text, category=category, tags=tags,
                              rules=self.rules)


def compile_rules(spec: Spec, rules: Iterable[Rule] | None = None) -> CompiledRules:
    """Compile `spec`'s automatic rules (or the given ones) once; reuse the result for every record."""
    return CompiledRules(spec, rules)


__all__ = ["FAIL", "CompiledRules", "compile_rules"]
