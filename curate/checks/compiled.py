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

from collections.abc import Iterable
from typing import Any

from curate.checks import check_response, run_rule
from curate.checks.codegen import _generate
from curate.checks.context import CheckContext
from curate.checks.plan import FAIL, _Fallback, _Plan
from curate.checks.prefilter import ASCII_FOLDS, fold_lower, phrase_searcher, prefilter, searcher
from curate.records import CheckResult
from curate.spec_model import Rule, Spec

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
