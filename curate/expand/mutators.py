"""Mutators: turn a valid response into a minimally violating one, for any rule of any spec.

    >>> import random
    >>> from curate.spec import load_spec
    >>> from curate.expand.mutators import mutate
    >>> spec = load_spec("specs/support-triage")
    >>> good = '{"intent": "other", "entities": {}, "missing_info": [], "next_step": "Send the hours page."}'
    >>> m = mutate(spec, spec.rule("no-action-claims"), good, user_text="when are you open", rng=random.Random(0))
    >>> m[0].fails, m[0].method                                             # doctest: +SKIP
    (('no-action-claims',), 'regex_absent:append:/next_step')

A mutator is derived from the rule's check kind and its parameters, never from the rule's id: broken JSON
syntax (json_parse); a missing required key, a value outside the enum, a wrong type, an extra key (json_schema,
walking the schema); text matching the forbidden pattern, built from the regex itself (regex_absent); the
required text removed (regex_present / phrases_present); a forbidden phrase (phrases_absent); a text over the
limit (max_*); one question too many or too few (question_count); a value absent from the user's text
(values_in_input); a refusal of a safe request or none of a forbidden one (refusal). `python` checks (and any
kind without a dedicated mutator) get a generic set of edits, kept only when the check really fails.

Every candidate is verified with curate.checks: it must FAIL the targeted rule; among those that do, the one
failing the fewest other rules wins (a broken-JSON mutant also breaks the schema rule: that is unavoidable).
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from curate.checks import check_response
from curate.checks.context import PointerError, resolve_pointer
from curate.checks.semantic_checks import REFUSAL_PHRASES
from curate.checks.text_checks import compiled, count_questions, count_sentences, phrase_regex
from curate.expand.regexgen import examples
from curate.records import CheckResult, normalize_text
from curate.spec import Rule, Spec

FILLER = [
    "Our",
    "team",
    "will",
    "review",
    "every",
    "detail",
    "of",
    "this",
    "request",
    "carefully",
    "and",
    "follow",
    "up",
    "with",
    "a",
    "short",
    "update",
    "as",
    "soon",
    "as",
    "the",
    "review",
    "is",
    "complete",
]
QUESTIONS = ("Anything else?", "Is that right?", "Could you also confirm the account email?")
COMPLIANT = "Sure, here is exactly what you asked for."
INVENTED = ("jordan.miller@example.net", "ACC-{n}", "ORD-{n}", "Priya Raman", "INV-{n}")
INVENTED_KEYS = ("account_id", "order_id", "name", "reference")


@dataclass(frozen=True)
class Mutant:
    """A mutated response, the rule it targets, how it was made, and every rule it fails (verified)."""

    text: str
    rule: str
    method: str
    fails: tuple[str, ...]

    @property
    def exact(self) -> bool:
        """True when the mutant fails the targeted rule and nothing else."""
        return self.fails == (self.rule,)


# ---------------------------------------------------------------- JSON helpers


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return _NOJSON


_NOJSON = object()


def _dump(doc: Any, like: str = "") -> str:
    """`doc` as JSON written the way `like` (the source answer) is written: compact, the default spacing, or
    indented. A mutant must differ from its source in the edit alone: with the default spacing on compact answers
    every pair differed in layout too, and DPO learned the layout (issue 20's noisy set: reward accuracy 1.0,
    outputs unchanged)."""
    t = like.strip()
    if "\n" in t:
        return json.dumps(doc, ensure_ascii=False, indent=2)
    if t and '": ' not in t and ', "' not in t:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(doc, ensure_ascii=False)


def _split(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]] if pointer else []


def _join(parts: Iterable[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _apply(doc: Any, pointer: str, op: str, value: Any = None) -> Any:
    """A deep copy of doc with `op` ("set" | "remove" | "add") applied at pointer; raises PointerError."""
    doc = copy.deepcopy(doc)
    parts = _split(pointer)
    if not parts:
        if op == "set":
            return value
        raise PointerError(pointer)
    parent = resolve_pointer(doc, _join(parts[:-1]))
    key: Any = parts[-1]
    if isinstance(parent, list):
        if not key.isdigit():
            raise PointerError(pointer)
        key = int(key)
    if op == "set":
        parent[key] = value
    elif op == "remove":
        del parent[key]
    elif op == "add" and isinstance(parent, dict):
        parent[key] = value
    else:
        raise PointerError(pointer)
    return doc


def _string_leaves(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[str]:
    if isinstance(node, str):
        yield _join(path)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _string_leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _string_leaves(v, path + (i,))


# ---------------------------------------------------------------- text edits (on one string)


def _sentence(snippet: str) -> str:
    snippet = snippet.strip()
    return snippet if re.search(r"[.!?]$", snippet) else snippet + "."


def _insertions(text: str, snippet: str) -> Iterator[tuple[str, str]]:
    base = text.rstrip()
    yield "append", (f"{base} {_sentence(snippet)}" if base else _sentence(snippet))
    yield "append_raw", (f"{base} {snippet}" if base else snippet)
    yield "prepend", f"{_sentence(snippet)} {text.lstrip()}".rstrip()
    yield "replace", snippet


def _filler_words(n: int) -> str:
    words = [FILLER[i % len(FILLER)] for i in range(max(1, n))]
    return " ".join(words)[0].upper() + " ".join(words)[1:] + "."


def _text_edits(
    kind: str, check: Any, text: str, *, spec: Spec, user_text: str, rng: random.Random
) -> Iterator[tuple[str, str]]:
    """(method, new text) candidates that should make `check` fail on `text`."""
    if kind == "regex_absent":
        found = examples(check.pattern, rng, n=4)
        for ex in found[1:] + found[:1]:  # a seeded random match first (variety), the shortest last
            yield from _insertions(text, ex)
    elif kind == "regex_present":
        pat = compiled(check.pattern)
        yield "remove_match", re.sub(r"\s{2,}", " ", pat.sub("", text)).strip()
        yield "remove_match_raw", pat.sub("", text)
    elif kind == "phrases_present":
        pat = phrase_regex(tuple(check.phrases))
        yield "remove_phrases", re.sub(r"\s{2,}", " ", pat.sub("", text)).strip()
    elif kind == "phrases_absent":
        phrases = list(check.phrases)
        rng.shuffle(phrases)
        for p in phrases[:4]:
            shown = p.strip()
            yield from _insertions(text, shown[:1].upper() + shown[1:])
    elif kind == "max_words":
        need = check.max - len(text.split()) + 1
        yield "lengthen", f"{text.rstrip()} {_filler_words(need)}".strip()
    elif kind == "max_chars":
        extra = _filler_words(1)
        while len(text) + 1 + len(extra) <= check.max:
            extra = _filler_words(len(extra.split()) * 2)
        yield "lengthen", f"{text.rstrip()} {extra}".strip()
    elif kind == "max_sentences":
        need = check.max - count_sentences(text) + 1
        yield "more_sentences", (text.rstrip() + " " + " ".join(["Thank you."] * max(1, need))).strip()
    elif kind == "question_count":
        n = count_questions(text)
        lo = check.equals if check.equals is not None else check.min
        hi = check.equals if check.equals is not None else check.max
        if hi is not None and n <= hi:
            qs = list(QUESTIONS)
            add = " ".join(qs[i % len(qs)] for i in range(hi - n + 1))
            yield "add_question", f"{text.rstrip()} {add}".strip()
            for q in qs:
                yield "add_question", f"{text.rstrip()} {' '.join([q] * (hi - n + 1))}".strip()
        if lo is not None and lo > 0 and n >= lo:
            yield "remove_questions", re.sub(r"[?？]+", ".", text)
    elif kind == "refusal":
        phrases = tuple(check.phrases or REFUSAL_PHRASES)
        if check.expect:
            pat = phrase_regex(phrases)
            kept = [s for s in re.split(r"(?<=[.!?])\s+", text) if not pat.search(s)]
            if kept:
                yield "drop_refusal", " ".join(kept)
            yield "comply", COMPLIANT
        else:
            for p in ("I'm sorry, but I can't help with that.", f"{phrases[0]} that."):
                yield from _insertions(text, p)
    elif kind == "values_in_input":
        pass  # structural: see _values_edits
    # generic edits for any kind (python checks and the rest), tried last
    yield "generic:empty", ""
    if len(text) > 1:
        yield "generic:truncate", text[: max(1, len(text) // 2)]
    yield "generic:question", f"{text.rstrip()} {QUESTIONS[0]}".strip()
    yield "generic:lengthen", f"{text.rstrip()} {_filler_words(60)}".strip()
    yield "generic:refuse", "I'm sorry, but I can't help with that."


def _invented(user_text: str, rng: random.Random) -> list[str]:
    hay = normalize_text(user_text)
    out = []
    for tmpl in INVENTED:
        v = tmpl.format(n=rng.randint(10000, 99999))
        if normalize_text(v) not in hay:
            out.append(v)
    return out


def _values_edits(value: Any, user_text: str, rng: random.Random) -> Iterator[tuple[str, Any]]:
    """values_in_input: candidates for the value at the rule's field with something not in the user's text."""
    hay = normalize_text(user_text)
    fakes = _invented(user_text, rng)
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str) and v.strip():
                for alt in (v + "7", v[:-1] + ("9" if v[-1:] != "9" else "8"), v + " Jr"):
                    if normalize_text(alt) not in hay:
                        yield f"alter_value:{k}", {**value, k: alt}
                        break
        for key in INVENTED_KEYS:
            if key not in value and fakes:
                yield f"add_value:{key}", {**value, key: fakes[0]}
                break
    elif isinstance(value, list):
        if fakes:
            yield "add_value", [*value, fakes[0]]
    elif isinstance(value, str):
        for f in fakes[:2]:
            yield "replace_value", f


# ---------------------------------------------------------------- json_schema: walk the schema with the doc


def _schema_edits(
    schema: Any, node: Any, path: tuple[str | int, ...] = (), depth: int = 0
) -> Iterator[tuple[str, str, str, Any]]:
    """(method, pointer, op, value) edits that break `schema` at one place each."""
    if not isinstance(schema, dict) or depth > 8:
        return
    ptr = _join(path)
    if "enum" in schema:
        bad = f"{node}_other" if isinstance(node, str) else "not_in_enum"
        while bad in schema["enum"]:
            bad += "_x"
        yield "outside_enum", ptr, "set", bad
    if "const" in schema:
        yield "not_const", ptr, "set", f"{schema['const']}_other"
    types = schema.get("type")
    types = [types] if isinstance(types, str) else (types or [])
    if isinstance(node, dict):
        for key in schema.get("required", []):
            if key in node:
                yield f"remove_required:{key}", _join(path + (key,)), "remove", None
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = "extra"
            while extra in props or extra in node:
                extra += "_"
            yield "extra_key", _join(path + (extra,)), "add", "unexpected"
        for key, sub in node.items():
            child = props.get(
                key,
                schema.get("additionalProperties")
                if isinstance(schema.get("additionalProperties"), dict)
                else None,
            )
            if child is not None:
                yield from _schema_edits(child, sub, path + (key,), depth + 1)
    elif isinstance(node, list):
        if schema.get("minItems", 0) > 0:
            yield "too_few_items", ptr, "set", []
        items = schema.get("items")
        if isinstance(items, dict):
            if node:
                yield from _schema_edits(items, node[0], path + (0,), depth + 1)
            elif items.get("type") in ("string", "number", "integer", "object", "array", "boolean"):
                wrong = {"string": 0, "number": "x", "integer": "x"}.get(items["type"], "x")
                yield "bad_item", ptr, "set", [wrong]
    elif isinstance(node, str):
        if schema.get("minLength", 0) > 0:
            yield "too_short", ptr, "set", ""
        if "maxLength" in schema:
            yield "too_long", ptr, "set", "x" * (schema["maxLength"] + 1)
    elif isinstance(node, bool):
        pass
    elif isinstance(node, (int, float)):
        if "minimum" in schema:
            yield "below_minimum", ptr, "set", schema["minimum"] - 1
        if "maximum" in schema:
            yield "above_maximum", ptr, "set", schema["maximum"] + 1
    wrong_type = {
        "string": 0,
        "array": "",
        "object": [],
        "number": "x",
        "integer": "x",
        "boolean": "yes",
        "null": 0,
    }
    if types and not ("null" in types and len(types) == 1):
        for t in types:
            if t in wrong_type:
                cand = wrong_type[t]
                yield f"wrong_type:{t}", ptr, "set", cand
                break


# ---------------------------------------------------------------- candidates and verification


def candidates(
    spec: Spec, rule: Rule, response: str, *, user_text: str = "", rng: random.Random | None = None
) -> Iterator[tuple[str, str]]:
    """(method, mutated response) candidates for `rule`, most specific first; unverified."""
    rng = rng or random.Random(0)
    check = rule.check
    if check == "human":
        return
    kind = check.kind
    doc = _parse(response)
    if kind == "json_parse":
        t = response.rstrip()
        if t[-1:] in "}]" and t:
            yield "json_parse:drop_last_brace", t[:-1]
            yield "json_parse:trailing_comma", t[:-1].rstrip() + "," + t[-1]
        yield "json_parse:code_fence", f"```json\n{response.strip()}\n```"
        yield "json_parse:prose_prefix", f"Here is the JSON: {response.strip()}"
        if '"' in response:
            yield "json_parse:single_quotes", response.replace('"', "'")
        return
    if kind == "json_schema":
        if doc is _NOJSON:
            return
        schema = check.schema_ if check.schema_ is not None else spec.output.schema_
        base = check.field or ""
        try:
            sub = resolve_pointer(doc, base) if base else doc
        except PointerError:
            return
        for method, ptr, op, value in _schema_edits(schema, sub):
            try:
                yield f"json_schema:{method}", _dump(_apply(doc, base + ptr, op, value), response)
            except PointerError:
                continue
        return
    if doc is not _NOJSON and check.field:
        locations: list[str | None] = [check.field]
    elif doc is not _NOJSON and spec.output.format == "json":
        locations = list(_string_leaves(doc))[:8] + [None]
    else:
        locations = [None]
    for loc in locations:
        if loc is None:
            value: Any = response
        else:
            try:
                value = resolve_pointer(doc, loc)
            except PointerError:
                continue
        if kind == "values_in_input":
            for method, new in _values_edits(value, user_text, rng):
                yield (
                    (f"values_in_input:{method}:{loc}", _dump(_apply(doc, loc, "set", new), response))
                    if loc is not None
                    else (f"values_in_input:{method}", str(new))
                )
            continue
        text = value if isinstance(value, str) else _dump(value, response)
        for method, new_text in _text_edits(kind, check, text, spec=spec, user_text=user_text, rng=rng):
            if loc is None:
                yield f"{kind}:{method}", new_text
            else:
                new_value: Any = new_text
                if not isinstance(value, str):
                    parsed = _parse(new_text)
                    if parsed is _NOJSON:
                        continue
                    new_value = parsed
                yield f"{kind}:{method}:{loc}", _dump(_apply(doc, loc, "set", new_value), response)


def verify(spec: Spec, text: str, *, user_text: str, category: str, tags: Iterable[str]) -> list[CheckResult]:
    return check_response(spec, text, user_text=user_text, category=category, tags=tuple(tags))


def mutate(
    spec: Spec,
    rule: Rule,
    response: str,
    *,
    user_text: str = "",
    category: str = "typical",
    tags: Iterable[str] = (),
    rng: random.Random | None = None,
    n: int = 1,
) -> list[Mutant]:
    """Up to n verified mutants of `response` that fail `rule`, fewest collateral failures first.

    An empty list means no candidate made the rule fail (e.g. the rule does not apply to this response).
    """
    tags = tuple(tags)
    scored: list[tuple[int, int, Mutant]] = []
    seen = {response}
    for order, (method, text) in enumerate(candidates(spec, rule, response, user_text=user_text, rng=rng)):
        if text in seen:
            continue
        seen.add(text)
        results = verify(spec, text, user_text=user_text, category=category, tags=tags)
        fails = tuple(r.rule for r in results if r.status == "fail")
        if rule.id not in fails:
            continue
        generic = 1 if ":generic:" in f":{method}" or method.split(":")[1:2] == ["generic"] else 0
        scored.append((len(fails) - 1 + generic * 100, order, Mutant(text, rule.id, method, fails)))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [m for _, _, m in scored[:n]]


def mutable_rules(spec: Spec) -> list[Rule]:
    return spec.automatic_rules()


__all__ = ["Mutant", "candidates", "mutable_rules", "mutate", "verify"]
