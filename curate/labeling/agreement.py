"""Inter-annotator agreement per question and per rule (Label Studio keeps this in its paid edition).

    >>> from curate.labeling.agreement import agreement
    >>> items = {1: {"ann": "accept", "bob": "accept"}, 2: {"ann": "reject", "bob": "accept"},
    ...          3: {"ann": "reject", "bob": "reject"}, 4: {"ann": "accept", "bob": "accept"}}
    >>> round(agreement(items)["value"], 3)
    0.5

Two annotators: Cohen's kappa (scikit-learn). More than two: Krippendorff's alpha, nominal (`krippendorff`),
which also copes with items that not everyone labeled. Only items with at least two answers count. When every
answer is the same value the coefficient is undefined (None) and `observed` (the share of agreeing pairs) says 1.0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from itertools import combinations
from typing import Any

import numpy as np

from curate.labeling.convert import Answer


def agreement(items: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """Agreement over {item: {annotator: value}} (values hashable; None = not answered)."""
    rows = {k: {a: v for a, v in ans.items() if v is not None} for k, ans in items.items()}
    rows = {k: v for k, v in rows.items() if len(v) >= 2}
    annotators = sorted({a for ans in rows.values() for a in ans})
    out: dict[str, Any] = {
        "items": len(rows),
        "annotators": len(annotators),
        "method": None,
        "value": None,
        "observed": None,
    }
    if not rows:
        return out
    pairs = agree = 0
    for ans in rows.values():
        for x, y in combinations(list(ans.values()), 2):
            pairs += 1
            agree += x == y
    out["observed"] = round(agree / pairs, 4) if pairs else None
    values = sorted({repr(v) for ans in rows.values() for v in ans.values()})
    code = {v: i for i, v in enumerate(values)}
    if len(annotators) == 2:
        from sklearn.metrics import cohen_kappa_score

        a, b = annotators
        ya = [code[repr(ans[a])] for ans in rows.values()]
        yb = [code[repr(ans[b])] for ans in rows.values()]
        out["method"] = "cohen_kappa"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = (
                float(cohen_kappa_score(ya, yb, labels=list(range(len(values)))))
                if len(values) > 1
                else math.nan
            )
        out["value"] = None if math.isnan(k) else round(k, 4)
    else:
        import krippendorff

        matrix = np.full((len(annotators), len(rows)), np.nan)
        for j, ans in enumerate(rows.values()):
            for i, who in enumerate(annotators):
                if who in ans:
                    matrix[i, j] = code[repr(ans[who])]
        out["method"] = "krippendorff_alpha"
        if len(values) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
            out["value"] = None if math.isnan(alpha) else round(alpha, 4)
    return out


def questions(kind: str, rule_ids: Iterable[str]) -> list[tuple[str, str, str | None]]:
    """(question name, control, rule) for a kind: the main question, the category, and one per rule."""
    rules = list(rule_ids)
    if kind == "review":
        return [("verdict", "verdict", None), ("category", "category", None)] + [
            (f"rule:{r}", "violates", r) for r in rules
        ]
    if kind == "pairwise":
        return [("comparison", "comparison", None)] + [(f"rule:{r}", "loser_violates", r) for r in rules]
    return []


def task_agreement(
    kind: str, rule_ids: Iterable[str], answers_by_task: dict[Any, list[Answer]]
) -> dict[str, Any]:
    """Agreement for every question of `kind` over tasks with several answers; per-rule questions are yes/no."""
    out: dict[str, Any] = {}
    for name, control, rule in questions(kind, rule_ids):
        items: dict[Any, dict[str, Any]] = {}
        for task, answers in answers_by_task.items():
            if len(answers) < 2:
                continue
            row: dict[str, Any] = {}
            for a in answers:
                v = a.values.get(control)
                if rule is not None:
                    v = rule in (v or ())
                row[a.annotator] = v
            items[task] = row
        out[name] = agreement(items)
    return out
