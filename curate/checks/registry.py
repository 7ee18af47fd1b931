"""The registry of check kinds: `register(kind)` makes a function the implementation of that kind; `get(kind)`
finds it.

    >>> from curate.checks.registry import kinds
    >>> import curate.checks  # the implementations register themselves on import
    >>> "regex_absent" in kinds()
    True

A check function takes (check params, context) and returns (passed, detail) or None for "not applicable".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curate.checks.context import CheckContext
from curate.errors import CheckError

CheckFn = Callable[[Any, CheckContext], "tuple[bool, str] | None"]
_REGISTRY: dict[str, CheckFn] = {}


def register(kind: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: make `fn` the implementation of check kind `kind`."""

    def deco(fn: CheckFn) -> CheckFn:
        _REGISTRY[kind] = fn
        return fn

    return deco


def get(kind: str) -> CheckFn:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise CheckError(f"unknown check kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def kinds() -> list[str]:
    return sorted(_REGISTRY)
