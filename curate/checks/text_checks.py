"""Text checks: regexes, phrase lists, lengths, question counts."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from curate.checks.context import CheckContext
from curate.checks.registry import register
from curate.regex_risk import REGEX_TIMEOUT_ENV, regex_timeout, risky_pattern  # noqa: F401 (moved; old home)


class BoundedPattern:
    """A risky pattern run by the `regex` module with a time bound: search/sub raise TimeoutError past it."""

    def __init__(self, pattern: str) -> None:
        import regex

        self.pattern = pattern
        self._rx = regex.compile(pattern, flags=regex.VERSION0)
        self.flags = re.compile(pattern).flags

    def search(self, text: str) -> Any:
        return self._rx.search(text, timeout=regex_timeout())

    def sub(self, repl: Any, text: str) -> str:
        try:
            return self._rx.sub(repl, text, timeout=regex_timeout())
        except TimeoutError:
            return text


@lru_cache(maxsize=512)
def compiled(pattern: str) -> re.Pattern[str] | BoundedPattern:
    """The compiled rule pattern: `re` for ordinary ones, a time-bounded `BoundedPattern` for risky ones."""
    if risky_pattern(pattern):
        return BoundedPattern(pattern)
    return re.compile(pattern)


def _timed_out(check: Any) -> tuple[bool, str]:
    return False, (
        f"pattern {check.pattern!r} gave up after {regex_timeout():g} s on this text "
        f"({risky_pattern(check.pattern)}): counted as failed; simplify the pattern"
    )


@lru_cache(maxsize=256)
def phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive, word-bounded alternation; apostrophes match both ' and ’."""
    parts = []
    for p in sorted(phrases, key=len, reverse=True):
        body = re.escape(p.strip()).replace("'", "['’]").replace(r"\ ", r"\s+")
        left = r"\b" if re.match(r"\w", p.strip()) else ""
        right = r"\b" if re.search(r"\w$", p.strip()) else ""
        parts.append(f"{left}{body}{right}")
    return re.compile("|".join(parts), re.IGNORECASE)


def _snippet(text: str, m: re.Match[str]) -> str:
    a, b = max(0, m.start() - 20), min(len(text), m.end() + 20)
    return ("…" if a else "") + text[a:b].replace("\n", " ") + ("…" if b < len(text) else "")


@register("regex_present")
def regex_present(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    try:
        if compiled(check.pattern).search(text):
            return True, ""
    except TimeoutError:
        return _timed_out(check)
    return False, f"pattern {check.pattern!r} not found" + (f" in {check.field}" if check.field else "")


@register("regex_absent")
def regex_absent(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    try:
        m = compiled(check.pattern).search(text)
    except TimeoutError:
        return _timed_out(check)
    if m is None:
        return True, ""
    return False, f"forbidden text {m.group(0)!r} in “{_snippet(text, m)}”"


@register("phrases_present")
def phrases_present(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    if phrase_regex(tuple(check.phrases)).search(text):
        return True, ""
    return False, "none of the required phrases found: " + ", ".join(repr(p) for p in check.phrases[:5])


@register("phrases_absent")
def phrases_absent(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    m = phrase_regex(tuple(check.phrases)).search(text)
    if m is None:
        return True, ""
    return False, f"forbidden phrase {m.group(0)!r} in “{_snippet(text, m)}”"


_SENTENCE_END = re.compile(r"[.!?。！？]+(?=\s|$)")
_QUESTION = re.compile(r"[?？]+")


def count_sentences(text: str) -> int:
    text = text.strip()
    if not text:
        return 0
    ends = _SENTENCE_END.findall(text)
    tail = 0 if _SENTENCE_END.search(text[-1:] + " ") else 1
    return len(ends) + tail


def count_questions(text: str) -> int:
    """Questions are runs of '?' ('Really?? Sure?' is two)."""
    return len(_QUESTION.findall(text))


@register("max_chars")
def max_chars(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    n = len(text)
    return (n <= check.max, f"{n} characters > {check.max}" if n > check.max else "")


@register("max_words")
def max_words(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    n = len(text.split())
    return (n <= check.max, f"{n} words > {check.max}" if n > check.max else "")


@register("max_sentences")
def max_sentences(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    n = count_sentences(text)
    return (n <= check.max, f"{n} sentences > {check.max}" if n > check.max else "")


@register("question_count")
def question_count(check: Any, ctx: CheckContext) -> tuple[bool, str] | None:
    text = ctx.text(check.field)
    if text is None:
        return None
    n = count_questions(text)
    where = f" in {check.field}" if check.field else ""
    if check.equals is not None and n != check.equals:
        return False, f"{n} questions{where}, expected exactly {check.equals}"
    if check.min is not None and n < check.min:
        return False, f"{n} questions{where}, expected at least {check.min}"
    if check.max is not None and n > check.max:
        return False, f"{n} questions{where}, expected at most {check.max}"
    return True, ""
