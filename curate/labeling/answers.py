"""Annotations read against the labeling config: one `Answer` per annotation (control name -> value), results that
do not match the config refused (`Mismatch`), and the main answer of a task resolved over its annotations
(majority, or the adjudicator's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from curate.labeling.config import PAIRWISE_SIDES, VERDICTS, Control, controls
from curate.records import normalize_text
from curate.spec_model import Spec

MAIN_QUESTION = {"review": "verdict", "pairwise": "comparison", "write": None}


@dataclass
class Answer:
    """One annotation, read against the config: control name -> value (str, list[str]) and who made it."""

    annotation: int | str
    annotator: str
    values: dict[str, Any]
    created_at: str = ""


class Mismatch(ValueError):
    """An annotation result that does not match the config."""


def _textarea(value: dict[str, Any]) -> str:
    text = value.get("text")
    if isinstance(text, str):
        return text
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        return "\n".join(text)
    raise Mismatch(f"textarea text is {type(text).__name__}, expected text")


def read_answer(annotation: dict[str, Any], ctrls: dict[str, Control]) -> dict[str, Any]:
    """The values of one annotation's results, each checked against the config; raises Mismatch."""
    values: dict[str, Any] = {}
    for item in annotation.get("result") or []:
        if not isinstance(item, dict):
            raise Mismatch(f"a result item is a {type(item).__name__}, not an object")
        name = item.get("from_name")
        ctrl = ctrls.get(name)  # type: ignore[arg-type]
        if ctrl is None:
            raise Mismatch(f"unknown control {name!r} (the config has: {', '.join(sorted(ctrls))})")
        if item.get("type", ctrl.type) != ctrl.type:
            raise Mismatch(f"control {name!r} gave a {item.get('type')!r} result, expected {ctrl.type!r}")
        if item.get("to_name", ctrl.to_name) != ctrl.to_name:
            raise Mismatch(f"control {name!r} points at {item.get('to_name')!r}, expected {ctrl.to_name!r}")
        value = item.get("value")
        if not isinstance(value, dict):
            raise Mismatch(f"control {name!r} has no value object")
        if ctrl.type == "choices":
            chosen = value.get("choices")
            if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
                raise Mismatch(f"control {name!r}: choices must be a list of strings")
            chosen = [c.removeprefix("\u200b") for c in chosen]  # a guarded leading `$` (see config._attr)
            unknown = [c for c in chosen if ctrl.values is not None and c not in ctrl.values]
            if unknown:
                raise Mismatch(
                    f"control {name!r}: unknown choice {unknown[0]!r} (allowed: "
                    f"{', '.join(sorted(ctrl.values or ()))})"
                )
            if not ctrl.multiple and len(chosen) > 1:
                raise Mismatch(f"control {name!r} allows one choice, got {len(chosen)}")
            values[name] = list(dict.fromkeys(chosen)) if ctrl.multiple else (chosen[0] if chosen else None)
        elif ctrl.type == "pairwise":
            side = value.get("selected")
            if side not in (ctrl.values or ()):
                raise Mismatch(f"control {name!r}: selected must be left or right, got {side!r}")
            values[name] = side
        else:  # textarea
            values[name] = _textarea(value)
    return values


def _main_key(kind: str, ans: Answer) -> Any:
    """What annotations must agree on: the verdict (and, for edits, the corrected text), or the picked side."""
    main = MAIN_QUESTION[kind]
    value = ans.values.get(main) if main else None
    if kind == "review" and value == "edit":
        return ("edit", normalize_text(ans.values.get("corrected") or ""))
    return value


def _resolve(
    kind: str, valid: list[Answer], adjudicator: str | None
) -> tuple[list[Answer] | None, dict[str, Any] | None]:
    """(the agreeing answers that win, conflict) over a task's valid answers under majority / adjudicator rules.

    Corrections are compared by their normalized text: two different corrections are a conflict to adjudicate.
    """
    main = MAIN_QUESTION[kind]
    if main is None or len(valid) == 1:
        return valid[:1], None
    if adjudicator:
        judge = next((a for a in valid if a.annotator == adjudicator), None)
        if judge is not None:
            key = _main_key(kind, judge)
            return [judge] + [a for a in valid if a is not judge and _main_key(kind, a) == key], None
    counts = Counter(_main_key(kind, a) for a in valid)
    (top, n), *_rest = counts.most_common()
    if n * 2 > len(valid) and top is not None:
        return [a for a in valid if _main_key(kind, a) == top], None
    edits = {a.values.get(main) for a in valid} == {"edit"}
    question = "corrected" if edits else main
    return None, {
        "question": question,
        "answers": {a.annotator: (a.values.get("corrected") if edits else a.values.get(main)) for a in valid},
        "annotations": [a.annotation for a in valid],
    }


def loose_controls(kind: str) -> dict[str, Control]:
    """The controls of `kind` when the spec is not at hand: rule and category values are not checked."""
    out = (
        [
            Control("verdict", "choices", "response", frozenset(VERDICTS), required=True),
            Control("corrected", "textarea", "response"),
            Control("violates", "choices", "response", None, multiple=True),
            Control("category", "choices", "response", None),
            Control("note", "textarea", "response"),
        ]
        if kind == "review"
        else [
            Control("comparison", "pairwise", "comparison", frozenset(PAIRWISE_SIDES), required=True),
            Control("loser_violates", "choices", "left", None, multiple=True),
            Control("rationale", "textarea", "left"),
        ]
        if kind == "pairwise"
        else [Control("ideal", "textarea", "prompt", required=True)]
    )
    return {c.name: c for c in out}


_CONTROLS: dict[tuple[int, str], tuple[Spec | None, dict[str, Control]]] = {}


def _controls(spec: Spec | None, kind: str) -> dict[str, Control]:
    """controls(spec, kind) (or the loose ones without a spec), made once per spec object and kind."""
    key = (id(spec), kind)
    hit = _CONTROLS.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    ctrls = controls(spec, kind) if spec is not None else loose_controls(kind)
    if len(_CONTROLS) > 64:
        _CONTROLS.clear()
    _CONTROLS[key] = (spec, ctrls)
    return ctrls
