"""The coverage matrix: records per (case category x automatic rule) cell, and category shares.

    >>> from curate.spec import load_spec
    >>> from curate.steps.coverage import compute_coverage
    >>> cov = compute_coverage(load_spec("specs/support-triage"), records)     # doctest: +SKIP
    >>> [(c.category, c.rule, c.count, c.target) for c in cov.under_target()]  # doctest: +SKIP
    [('negative', 'no-secrets-requested', 1, 2)]
    >>> cov.as_dict()["cells"][0]                                               # doctest: +SKIP
    {'category': 'typical', 'rule': 'valid-json', 'count': 41, 'target': 2, 'ok': True}

A cell (category, rule) counts the records of that category where the rule applies and passes; in the
`negative` category it counts the records whose response violates the rule. A preference pair counts its rejected
side in `negative` (a rejected answer is a negative example) and, unless the pair's own category is `negative`
(as the build's and expand's pairs are), its chosen side in its own category. A cell whose rule can never apply to that category (a
`when: {category: X}` for another X) has target 0.

Category shares count every record once, by its `category`, against the spec's `min_share`.

`split_of` (optional) maps a record to its split name ("train"/"test"); each cell then also says how many of its
records fell in each split (`"splits": {"test": 1, "train": 3}`), as do the categories.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from curate.checks import check_response
from curate.records import CheckResult, PreferenceRecord, SFTRecord
from curate.spec import Rule, Spec

NEGATIVE = "negative"


@dataclass(frozen=True)
class Cell:
    category: str
    rule: str
    count: int
    target: int
    splits: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.count >= self.target

    @property
    def need(self) -> int:
        """How many more records this cell needs to reach its target."""
        return max(0, self.target - self.count)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "category": self.category,
            "rule": self.rule,
            "count": self.count,
            "target": self.target,
            "ok": self.ok,
        }
        if self.splits is not None:
            out["splits"] = dict(sorted(self.splits.items()))
        return out


@dataclass(frozen=True)
class CategoryShare:
    name: str
    count: int
    share: float
    min_share: float
    splits: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.share + 1e-12 >= self.min_share

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "count": self.count,
            "share": round(self.share, 6),
            "min_share": self.min_share,
            "ok": self.ok,
        }
        if self.splits is not None:
            out["splits"] = dict(sorted(self.splits.items()))
        return out


@dataclass(frozen=True)
class Coverage:
    cells: list[Cell]
    categories: list[CategoryShare]
    total: int = 0
    _index: dict[tuple[str, str], Cell] = field(default_factory=dict, repr=False, compare=False)

    def cell(self, category: str, rule: str) -> Cell:
        if not self._index:
            self._index.update({(c.category, c.rule): c for c in self.cells})
        return self._index[(category, rule)]

    def under_target(self) -> list[Cell]:
        """Cells with fewer records than their target, in matrix order."""
        return [c for c in self.cells if not c.ok]

    def categories_under_share(self) -> list[CategoryShare]:
        return [c for c in self.categories if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.under_target() and not self.categories_under_share()

    def as_dict(self) -> dict[str, Any]:
        """The manifest's "coverage" value (docs/contracts.md)."""
        return {
            "cells": [c.as_dict() for c in self.cells],
            "categories": [c.as_dict() for c in self.categories],
        }


def cell_target(spec: Spec, category: str, rule: Rule) -> int:
    """min_per_cell, or 0 where the rule's `when: {category: X}` excludes this category."""
    check = rule.check
    if check != "human" and check.when is not None and check.when.category not in (None, category):
        return 0
    return spec.coverage.min_per_cell


def _results(spec: Spec, rec: SFTRecord | PreferenceRecord, rules: list[Rule]) -> list[CheckResult]:
    """Check results of the record's response (SFT) or chosen side (pairs); reuse stored checks when complete."""
    have = {c.rule: c for c in rec.checks}
    if all(r.id in have for r in rules):
        return [have[r.id] for r in rules]
    return check_response(
        spec,
        rec.response_text(),
        user_text=rec.user_text(),
        category=rec.category,
        tags=rec.tags,
        rules=rules,
    )


def record_hits(
    spec: Spec, rec: SFTRecord | PreferenceRecord, rules: list[Rule] | None = None
) -> list[tuple[str, str]]:
    """The (category, rule) cells one record counts in."""
    rules = spec.automatic_rules() if rules is None else rules
    hits: list[tuple[str, str]] = []
    if isinstance(rec, PreferenceRecord):
        if rec.category != NEGATIVE:
            hits += [(rec.category, r.rule) for r in _results(spec, rec, rules) if r.status == "pass"]
        rejected = check_response(
            spec,
            rec.rejected_text(),
            user_text=rec.user_text(),
            category=rec.category,
            tags=rec.tags,
            rules=rules,
        )
        hits += [(NEGATIVE, r.rule) for r in rejected if r.status == "fail"]
        return hits
    results = _results(spec, rec, rules)
    want = "fail" if rec.category == NEGATIVE else "pass"
    return [(rec.category, r.rule) for r in results if r.status == want]


def compute_coverage(
    spec: Spec,
    records: Iterable[SFTRecord | PreferenceRecord],
    *,
    split_of: Callable[[SFTRecord | PreferenceRecord], str | None] | None = None,
    hits: Callable[[Any, list[Rule]], list[tuple[str, str]]] | None = None,
) -> Coverage:
    """The coverage matrix of `records` against the spec's targets (one pass, memory O(cells)).

    `hits(item, rules)` gives the cells of one item (default: `record_hits`; the compact build passes its own
    for its rows, which have `.category` like records)."""
    rules = spec.automatic_rules()
    if hits is None:

        def hits(rec: Any, rules: list[Rule]) -> list[tuple[str, str]]:
            return record_hits(spec, rec, rules)

    counts: Counter[tuple[str, str]] = Counter()
    cell_splits: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    cat_counts: Counter[str] = Counter()
    cat_splits: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for rec in records:
        total += 1
        cat_counts[rec.category] += 1
        split = split_of(rec) if split_of is not None else None
        if split is not None:
            cat_splits[rec.category][split] += 1
        for key in hits(rec, rules):
            counts[key] += 1
            if split is not None:
                cell_splits[key][split] += 1
    return coverage_from_counts(
        spec, rules, counts, cell_splits, cat_counts, cat_splits, total, with_splits=split_of is not None
    )


def coverage_from_counts(
    spec: Spec,
    rules: list[Rule],
    counts: Counter[tuple[str, str]],
    cell_splits: dict[tuple[str, str], Counter[str]],
    cat_counts: Counter[str],
    cat_splits: dict[str, Counter[str]],
    total: int,
    *,
    with_splits: bool,
) -> Coverage:
    """The matrix from counted hits (cell -> records, per split) and categories (what compute_coverage counts)."""
    categories = list(spec.cases) + sorted(c for c in cat_counts if c not in spec.cases)
    cells = []
    for cat in categories:
        for rule in rules:
            key = (cat, rule.id)
            target = cell_target(spec, cat, rule) if cat in spec.cases else 0
            cells.append(
                Cell(
                    cat,
                    rule.id,
                    counts.get(key, 0),
                    target,
                    dict(cell_splits.get(key, {})) if with_splits else None,
                )
            )
    shares = []
    for cat in categories:
        n = cat_counts.get(cat, 0)
        min_share = spec.cases[cat].min_share if cat in spec.cases else 0.0
        shares.append(
            CategoryShare(
                cat,
                n,
                n / total if total else 0.0,
                min_share,
                dict(cat_splits.get(cat, {})) if with_splits else None,
            )
        )
    return Coverage(cells=cells, categories=shares, total=total)


__all__ = [
    "CategoryShare",
    "Cell",
    "Coverage",
    "cell_target",
    "compute_coverage",
    "coverage_from_counts",
    "record_hits",
]
