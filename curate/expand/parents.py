"""What the expanders start from and hand back: a parent example (`Parent`), the result (`ExpandResult`), and the
small text helpers the generators and gap filling share (protected values, plausible paraphrases).

    >>> from curate.expand.parents import protected_values
    >>> sorted(protected_values('{"order": "A-1234"}', "where is order A-1234?"))
    ['A-1234']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from curate.records import (
    Message,
    PreferenceRecord,
    SFTRecord,
)
from curate.spec import Spec

GEN = "curate.expand"


@dataclass
class Parent:
    """A valid example the generators start from: its prompt turns, its response, and its rule results."""

    record: SFTRecord | PreferenceRecord
    prompt: tuple[Message, ...]
    response: str
    status: dict[str, str]

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def last_user(self) -> str:
        for m in reversed(self.prompt):
            if m.role == "user":
                return m.content
        return ""

    def passes(self, rule_id: str) -> bool:
        return self.status.get(rule_id) == "pass"


@dataclass
class ExpandResult:
    spec: Spec
    records: list[SFTRecord] = field(default_factory=list)
    pairs: list[PreferenceRecord] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def with_user(prompt: tuple[Message, ...], text: str) -> tuple[Message, ...]:
    """The prompt turns with the last user turn's text replaced (earlier turns kept)."""
    out = list(prompt)
    for i in range(len(out) - 1, -1, -1):
        if out[i].role == "user":
            out[i] = out[i].model_copy(update={"content": text})
            return tuple(out)
    return tuple(out) + (Message(role="user", content=text),)


def protected_values(response: str, user_text: str) -> set[str]:
    """Strings of the response (JSON string values, or words) that are copied from the user's text."""
    try:
        doc = orjson.loads(response)
    except orjson.JSONDecodeError:
        doc = None
    vals: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            vals.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    low = user_text.lower()
    return {v for v in vals if 0 < len(v) <= 80 and v.lower() in low}


def plausible_paraphrase(para: str, text: str, keep: set[str]) -> bool:
    """A small model's rewording is kept only when it looks like one: similar length, every value the answer
    copies from the message still there, and no echo of the instruction."""
    low = para.lower()
    return (
        0.4 * len(text) <= len(para) <= 2.5 * len(text) + 20
        and not low.startswith(("rewrite", "here is"))
        and all(v.lower() in low for v in keep)
    )


def dedup_text_prompt(prompt: Iterable[Message]) -> str:
    """The prompt as the build's pairs step matches it: every non-system turn, normalized."""
    return "\n".join(f"{m.role}: {m.content}" for m in prompt if m.role != "system")
