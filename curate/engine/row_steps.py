"""Pairing, coverage and lineage over the build's rows (`curate.engine.rows`), equal to the record path's.

rows, unpaired, made = make_pairs_rows(valid, spec, checker)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from curate.engine.rows import (
    Checker,
    Row,
    is_negative_sft,
    is_prompt_row,
    materialize,
    prompt_key,
    row_of,
    user_text,
)
from curate.records import PreferenceRecord, SFTRecord
from curate.steps.pairs import pair_of, partner_index

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord


def make_pairs_rows(rows: list[Row], spec: Any, checker: Checker) -> tuple[list[Row], list[Row], int]:
    """`curate.steps.pairs.make_pairs` over rows: (rows with the new pairs, unpaired negatives, pairs made)."""
    if not any(is_negative_sft(r) for r in rows):
        return rows, [], 0
    from collections import defaultdict

    good: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.kind == "sft" and not is_negative_sft(r) and not is_prompt_row(r):  # (a prompt has no answer)
            good[prompt_key(r)].append(r)
    for lst in good.values():
        lst.sort(key=lambda r: r.id)
    out: list[Row] = []
    unpaired: list[Row] = []
    paired = 0
    for r in rows:
        if not is_negative_sft(r):
            out.append(r)
            continue
        rec = r.rec
        assert isinstance(rec, SFTRecord)
        key = prompt_key(r)
        candidates = good.get(key)
        if not candidates:
            unpaired.append(r)
            continue
        partner = materialize(candidates[partner_index(rec.id, len(candidates))], spec, checker)
        assert isinstance(partner, SFTRecord)
        out.append(row_of(pair_of(rec, partner), spec))
        paired += 1
    return out, unpaired, paired


def row_hits(spec: Any, checker: Checker) -> Any:
    """The `hits` function of `compute_coverage` for rows (== record_hits of their records)."""
    from curate.steps.coverage import NEGATIVE

    def hits(row: Row, rules: list[Any]) -> list[tuple[str, str]]:
        if row.facts is not None:
            return list(row.facts.hits)  # record_hits of its record, made when it was stored
        cat = row.category
        st = row.statuses or ()
        if row.kind == "sft":
            want = "fail" if cat == NEGATIVE else "pass"
            return [(cat, r.id) for r, s in zip(rules, st) if s == want]
        out = [(cat, r.id) for r, s in zip(rules, st) if s == "pass"] if cat != NEGATIVE else []
        obj = row.obj()
        rej = checker.statuses(obj["rejected"][-1]["content"], user_text(row, obj), cat, row.tags)
        return out + [(NEGATIVE, r.id) for r, s in zip(rules, rej) if s == "fail"]

    return hits


def lineage(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """== records.lineage_counts of the records (a fast row is a native line, imported as it is)."""
    from curate.records import lineage_counts

    return lineage_counts(
        (r.fmt or "native", "", "", "as imported") if r.facts is None else r.facts.origin for r in rows
    )


def coverage(spec: Any, rows: Iterable[Row], split_of: Any, checker: Checker) -> Any:
    """`compute_coverage(spec, records, split_of=...)` over rows: fast SFT rows are counted by (category, rule
    statuses, split), the rest one by one (a pair's rejected side is checked here)."""
    from collections import Counter, defaultdict

    from curate.steps.coverage import coverage_from_counts

    rules = spec.automatic_rules()
    hits = row_hits(spec, checker)
    counts: Counter[tuple[str, str]] = Counter()
    cell_splits: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    cat_counts: Counter[str] = Counter()
    cat_splits: dict[str, Counter[str]] = defaultdict(Counter)
    groups: Counter[tuple[str, tuple[str, ...], str]] = Counter()
    total = 0
    for row in rows:
        total += 1
        split = split_of(row)
        if row.facts is None and row.kind == "sft":
            groups[(row.category, row.statuses or (), split)] += 1
            continue
        cat_counts[row.category] += 1
        cat_splits[row.category][split] += 1
        for key in hits(row, rules):
            counts[key] += 1
            cell_splits[key][split] += 1
    from curate.steps.coverage import NEGATIVE

    for (cat, st, split), n in groups.items():
        cat_counts[cat] += n
        cat_splits[cat][split] += n
        want = "fail" if cat == NEGATIVE else "pass"
        for r, s in zip(rules, st):
            if s == want:
                counts[(cat, r.id)] += n
                cell_splits[(cat, r.id)][split] += n
    return coverage_from_counts(
        spec, rules, counts, cell_splits, cat_counts, cat_splits, total, with_splits=True
    )


__all__ = ["coverage", "lineage", "make_pairs_rows", "row_hits"]
