"""The one Python function a compiled rule set runs, generated from the rules' plans: inline `when` tests, spec
text only as repr() literals or named constants (see curate.checks.compiled), and the skip reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from curate.checks.context import is_empty
from curate.checks.plan import (
    _NOJSON,
    _NOPTR,
    FAIL,
    NOT_JSON_REASON,
    _Fallback,
    _generic,
    _missing_reason,
    _Plan,
    _resolver,
    _split_pointer,
    _text,
)
from curate.checks.prefilter import fold_lower
from curate.checks.text_checks import count_questions
from curate.spec_model import Spec

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
