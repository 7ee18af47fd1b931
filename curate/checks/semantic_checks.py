"""Checks that read meaning rather than form: values_in_input, refusal, python."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from curate.checks.context import MISSING, CheckContext
from curate.checks.registry import register
from curate.checks.text_checks import phrase_regex
from curate.errors import CheckError
from curate.records import normalize_text

REFUSAL_PHRASES: tuple[str, ...] = (
    "I can't help with",
    "I cannot help with",
    "I can't help you with",
    "I can't assist",
    "I cannot assist",
    "can't assist with",
    "I can't do that",
    "I cannot do that",
    "I'm not able to",
    "I am not able to",
    "I'm unable to",
    "I am unable to",
    "I won't",
    "I will not",
    "I can't share",
    "I cannot share",
    "I can't provide",
    "I cannot provide",
    "not allowed to",
    "against our policy",
    "against policy",
    "I must decline",
    "I have to decline",
    "I'm sorry, but I can't",
    "I can not",
) + tuple(
    f"I {neg} {verb}"
    for neg in ("can't", "cannot", "won't", "will not", "am not able to", "'m not able to")
    for verb in (
        "access",
        "bypass",
        "skip",
        "unlock",
        "reveal",
        "disclose",
        "give out",
        "share",
        "change",
        "override",
        "make an exception",
        "comply",
        "grant",
        "hand over",
        "look up",
        "break into",
    )
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@register("values_in_input")
def values_in_input(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    value = ctx.value(check.field)
    if value is MISSING:
        return None
    haystack = normalize_text(ctx.user_text)
    invented = [s for s in _strings(value) if s.strip() and normalize_text(s) not in haystack]
    if not invented:
        return True, ""
    return False, "not in the user's text: " + ", ".join(repr(s) for s in invented[:5])


@register("refusal")
def refusal(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    m = phrase_regex(tuple(check.phrases or REFUSAL_PHRASES)).search(text)
    refused = m is not None
    if refused == check.expect:
        return True, ""
    if check.expect:
        return False, "does not refuse a request the policy forbids"
    return False, f"refuses a safe request ({m.group(0)!r})"  # type: ignore[union-attr]


@lru_cache(maxsize=64)
def _import(target: str, base_dir: str) -> Any:
    """`module:function`: a module file beside the spec wins (loaded under a name private to that spec folder,
    so two specs may each have their own checks.py); otherwise an installed module."""
    module, _, name = target.partition(":")
    local = Path(base_dir, *module.split(".")).with_suffix(".py")
    try:
        if local.is_file():
            unique = f"_curate_spec_checks_{hashlib.sha1(str(local.resolve()).encode()).hexdigest()[:12]}"
            spec = importlib.util.spec_from_file_location(unique, local)
            mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[unique] = mod
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        else:
            mod = importlib.import_module(module)
        return getattr(mod, name)
    except (ImportError, AttributeError, SyntaxError) as err:
        raise CheckError(
            f"python check {target!r}: cannot import ({err}); put the module beside the spec or install it"
        ) from None


@register("python")
def python_check(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    from curate.checks.code import require

    require(check.function, ctx.spec.base_dir)  # CheckError unless the user allowed this spec's code
    fn = _import(check.function, str(ctx.spec.base_dir))
    text = ctx.text(check.field)
    if text is None:
        return None
    got = fn(text, ctx, **(check.model_extra or {}))
    if isinstance(got, tuple):
        ok, detail = got
        return bool(ok), str(detail)
    return bool(got), "" if got else f"{check.function} returned false"
