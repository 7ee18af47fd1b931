"""Regex patterns that may take exponential time (nested quantifiers, alternatives inside a repeat,
backreferences), and the time bound such a pattern runs under; read by the checks and by spec lint.

    >>> from curate.regex_risk import risky_pattern
    >>> risky_pattern(r"(a+)+$")
    'nested quantifiers (a repeated group holds another repeat, like (a+)+)'
    >>> risky_pattern(r"^[a-z]+$") is None
    True
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

REGEX_TIMEOUT_ENV = "CURATE_REGEX_TIMEOUT"  # seconds a risky pattern may search one text (default 1)


def regex_timeout() -> float:
    try:
        return max(0.001, float(os.environ.get(REGEX_TIMEOUT_ENV, "1")))
    except ValueError:
        return 1.0


def _walk_risk(items: Any, inside_repeat: bool) -> str | None:
    from re import _constants as C

    for op, av in items:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
            _lo, hi, body = av
            many = hi is C.MAXREPEAT or hi > 3  # a body repeated at most 3 times costs at most n^3
            if many and inside_repeat and op is not getattr(C, "POSSESSIVE_REPEAT", None):
                return "nested quantifiers (a repeated group holds another repeat, like (a+)+)"
            got = _walk_risk(
                body, inside_repeat or (many and op is not getattr(C, "POSSESSIVE_REPEAT", None))
            )
            if got:
                return got
        elif op is C.SUBPATTERN:
            got = _walk_risk(av[-1], inside_repeat)
            if got:
                return got
        elif op is C.BRANCH:
            if inside_repeat:
                return "alternatives inside a repeat (like (a|aa)+)"
            for alt in av[1]:
                got = _walk_risk(alt, inside_repeat)
                if got:
                    return got
        elif op in (C.ASSERT, C.ASSERT_NOT):
            got = _walk_risk(av[1], inside_repeat)
            if got:
                return got
        elif op in (C.GROUPREF, C.GROUPREF_EXISTS):
            return "a backreference"
    return None


@lru_cache(maxsize=512)
def risky_pattern(pattern: str) -> str | None:
    """Why a pattern may take exponential time (nested quantifiers, backreferences), or None."""
    from re import _parser

    try:
        return _walk_risk(_parser.parse(pattern), False)
    except (re.error, RecursionError, OverflowError):
        return None
