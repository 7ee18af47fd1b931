"""The frozen held-out set (`heldout.lock`): which ids and prompts a build held out and which it trained on.

    >>> lock = HeldoutLock(spec="x", ids={"b", "a"}, train_ids={"c"})
    >>> lock.as_dict()["ids"], HeldoutLock.load("/nonexistent/heldout.lock")
    (['a', 'b'], None)

`curate.steps.split` reads the previous lock (its held-out ids and prompts stay held out, its training ids and
prompt keys stay in training) and makes the new one after the leakage check (docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.errors import InputError

__all__ = ["HeldoutLock"]


@dataclass
class HeldoutLock:
    """The frozen held-out set: which ids and prompts are held out, and which were used for training."""

    spec: str = ""
    ids: set[str] = field(default_factory=set)
    prompt_keys: set[str] = field(default_factory=set)
    prompts: list[str] = field(default_factory=list)
    train_ids: set[str] = field(default_factory=set)
    train_prompt_keys: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: str | Path) -> HeldoutLock | None:
        """The lock at `path`, or None when there is none; a broken lock is an error (never silently reset)."""
        p = Path(path)
        if not p.is_file():
            return None
        try:
            data = orjson.loads(p.read_bytes())
            return cls(
                spec=str(data.get("spec", "")),
                ids=set(data.get("ids", [])),
                prompt_keys=set(data.get("prompt_keys", [])),
                prompts=list(data.get("prompts", [])),
                train_ids=set(data.get("train_ids", [])),
                train_prompt_keys=set(data.get("train_prompt_keys", [])),
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError) as err:
            raise InputError(
                f"{p}: not a valid held-out lock ({err}); restore it from the previous export or "
                "delete it to draw a new held-out set"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "ids": _sorted(self.ids),
            "prompt_keys": sorted(self.prompt_keys),
            "prompts": sorted(self.prompts),
            "train_ids": _sorted(self.train_ids),
            "train_prompt_keys": sorted(self.train_prompt_keys),
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2) + b"\n"


class _SortedSet(set):  # type: ignore[type-arg]
    """A set made from a sorted list that keeps the list: `HeldoutLock.as_dict` writes it without sorting again
    (`split_rows` makes the ids in id order)."""

    __slots__ = ("ordered",)

    def __init__(self, ordered: list[str]) -> None:
        super().__init__(ordered)
        self.ordered = ordered if len(self) == len(ordered) else sorted(self)  # repeats: sorted once here

    def __reduce__(self) -> tuple[Any, ...]:  # (copy, pickle: made again from its members, sorted)
        return (_SortedSet, (sorted(self),))


def _sorted_union(ordered: list[str], more: set[str]) -> _SortedSet:
    """set(ordered) | more, keeping the sorted list (`ordered`: sorted, no repeats): the members of `more` not in
    it are sorted and merged in (one sort of two sorted runs)."""
    extra = more.difference(ordered)
    if not extra:
        return _SortedSet(ordered)
    merged = ordered + sorted(extra)
    merged.sort()
    return _SortedSet(merged)


def _sorted(members: set[str]) -> list[str]:
    """sorted(members); a `_SortedSet`'s list while it still holds exactly the set's members (it has no repeats)."""
    got = getattr(members, "ordered", None)
    if got is not None and len(got) == len(members) and members.issuperset(got):
        return list(got)
    return sorted(members)
