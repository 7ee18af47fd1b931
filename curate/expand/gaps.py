"""Gap filling: make cases for every coverage cell under its target, and say how many per cell.

For a cell (category, rule) outside `negative`, a donor is a valid example whose response makes the rule pass;
its prompt is recast into the category (typical: a paraphrase template; edge: a paraphrase or mixed-language
wrapper with typo/casing noise; adversarial: a pressure pattern whose bait targets this very rule), it keeps the
donor's response, and it counts only when every automatic rule still passes and this rule applies. For a
`negative` cell, a donor's response is mutated to break the rule (curate.expand.mutators) and kept as a
preference pair (category negative; its rejected side counts in the cell). Prompts made for a cell whose response would not pass go to labeling. Cells that no donor can
serve are reported with the reason (e.g. no example where the rule applies: write or label one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from curate.expand import adversarial as adv
from curate.expand import edge
from curate.expand.mutators import mutate
from curate.expand.parents import Parent, protected_values
from curate.steps.coverage import compute_coverage, record_hits

if TYPE_CHECKING:
    from curate.expand.generate import Expander

GEN = "curate.expand.gaps"
ATTEMPTS_PER_DONOR = 4


def _maker(ex: Expander, category: str, parent: Parent, rule: Any, attempt: int) -> Callable[[int], Any]:
    """make(k) for Expander.recast: the parent's prompt recast into `category` with k context sentences."""
    text = parent.last_user
    protect = protected_values(parent.response, text)

    def make(k: int) -> tuple[str, tuple[str, ...], dict[str, Any]] | None:
        rng = ex.rng("gaps", category, rule.id, parent.id, attempt, k)
        if category == "adversarial":
            pats = [p for p in adv.patterns(ex.spec) if adv.KEEPS_ANSWER.get(p, True)] or [
                "ignore_instructions"
            ]
            a = adv.attack(ex.spec, text, rng.choice(pats), rule, rng, extra=k)
            return (
                a.text,
                a.tags,
                {"pattern": a.pattern, "rule": rule.id, "template": a.template, "bait": a.bait},
            )
        if category == "edge":
            v = edge.variant(
                text, rng, rng.choice(("paraphrase", "mixed_language")), protect=protect, context=k
            )
        else:
            v = edge.variant(text, rng, "paraphrase", protect=protect, extra_noise=False, context=k)
        if v is None:
            return None
        tags = tuple(f"edge:{t}" for t in v.transforms) if category == "edge" else ()
        return v.text, tags, {"transforms": list(v.transforms), "rule": rule.id, **v.params}

    return make


def _seed_prompts(ex: Expander, category: str, rule: Any, n: int) -> int:
    """Up to n prompts for labeling made from the spec's seeds, for a cell no donor could fill."""
    seeds = [
        s
        for case in (category, "typical", "edge")
        if case in ex.spec.cases
        for s in ex.spec.cases[case].seeds
    ]
    made = 0
    for i, seed in enumerate(seeds):
        if made >= n:
            break
        rng = ex.rng("gaps-seed", category, rule.id, i)
        if category == "adversarial":
            pats = adv.patterns(ex.spec)
            a = adv.attack(ex.spec, seed, pats[i % len(pats)], rule, rng)
            text, tags, params = (
                a.text,
                a.tags,
                {"pattern": a.pattern, "rule": rule.id, "template": a.template, "bait": a.bait},
            )
        else:
            v = edge.variant(
                seed,
                rng,
                "paraphrase" if category != "edge" else rng.choice(edge.PRIMARY),
                extra_noise=category == "edge",
            )
            if v is None:
                continue
            text, params = v.text, {"transforms": list(v.transforms), "rule": rule.id, **v.params}
            tags = tuple(f"edge:{t}" for t in v.transforms) if category == "edge" else ()
        if ex.novel(text, ("gaps-seed", category, rule.id, i)):
            ex.add_prompt(text, category, tags, GEN, params, f"seed:{i}")
            made += 1
    return made


def fill_gaps(ex: Expander) -> dict[str, Any]:
    """Fill every under-target cell of the coverage matrix (data + what `ex` made so far); returns the report."""
    spec = ex.spec
    rules = spec.automatic_rules()
    counts: Counter[tuple[str, str]] = Counter()

    def count(rec: Any) -> None:
        for key in record_hits(spec, rec, rules):
            counts[key] += 1

    for rec in [*ex.data, *ex.result.records, *ex.result.pairs]:
        count(rec)
    before = compute_coverage(spec, [*ex.data, *ex.result.records, *ex.result.pairs])
    cells: list[dict[str, Any]] = []
    for cell in before.under_target():
        key = (cell.category, cell.rule)
        rule = spec.rule(cell.rule)
        made = 0
        rng = ex.rng("gaps", *key)
        donors = [p for p in ex.parents if p.passes(rule.id)]
        rng.shuffle(donors)
        when = rule.check.when if rule.check != "human" else None
        if when is not None and when.category == cell.category:
            # the rule applies only in this category: donors from elsewhere skip it but may pass once recast
            donors += [p for p in ex.parents if p.status.get(rule.id) == "skip"]
        to_label = 0
        for p in donors:
            if counts[key] >= cell.target:
                break
            if cell.category == "negative":
                ms = mutate(
                    spec,
                    rule,
                    p.response,
                    user_text=p.record.user_text(),
                    category="negative",
                    tags=p.record.tags,
                    rng=ex.rng("gaps", "mutate", rule.id, p.id),
                )
                pair = ex.add_pair(p, ms[0]) if ms else None
                if pair is not None:
                    count(pair)
                    made += 1
                continue
            for attempt in range(ATTEMPTS_PER_DONOR):
                n_records = len(ex.result.records)
                outcome = ex.recast(
                    p,
                    _maker(ex, cell.category, p, rule, attempt),
                    cell.category,
                    GEN,
                    key=("gaps", key, p.id, attempt),
                    require=rule.id,
                    to_label=to_label < cell.need,
                    budget=False,
                )
                if outcome == "prompt":
                    to_label += 1
                if outcome == "record":
                    for rec in ex.result.records[n_records:]:
                        count(rec)
                    made += 1
                    break
        if counts[key] < cell.target and cell.category != "negative":
            to_label += _seed_prompts(ex, cell.category, rule, cell.target - counts[key] - to_label)
        cells.append(
            {
                "category": cell.category,
                "rule": cell.rule,
                "before": cell.count,
                "target": cell.target,
                "made": made,
                "to_label": to_label,
            }
        )
    for entry in cells:
        key = (entry["category"], entry["rule"])
        rule = spec.rule(entry["rule"])
        entry["after"] = counts[key]
        entry["ok"] = counts[key] >= entry["target"]
        if not entry["ok"]:
            entry["reason"] = (
                "no valid example where this rule applies and passes: write or label one"
                if not any(p.passes(rule.id) for p in ex.parents)
                else "every candidate was a near-duplicate (prompt or whole conversation) or broke "
                "another rule; its prompts went to labeling"
            )
    shares = fill_shares(ex)
    return {
        "cells": cells,
        "filled": sum(c["ok"] for c in cells),
        "unfilled": sum(not c["ok"] for c in cells),
        "made": sum(c["made"] for c in cells),
        "shares": shares,
        "shares_unfilled": sum(not c["ok"] for c in shares),
    }


def fill_shares(ex: Expander, passes: int = 6) -> list[dict[str, Any]]:
    """Categories under their min_share get records (recast prompts; pairs for `negative`) until they reach it,
    as far as the donors allow. Shares count data + everything made, by category; filling one category lowers
    the others' shares, so this runs a few passes until nothing changes."""
    spec = ex.spec
    wanted = {name: case.min_share for name, case in spec.cases.items() if case.min_share}
    before = {name: ex.cat_counts.get(name, 0) for name in wanted}
    made: Counter[str] = Counter()
    used: set[tuple[str, str, int]] = set()
    rules = spec.automatic_rules()
    for n in range(passes):
        progress = 0
        for name, share in wanted.items():
            donors = list(ex.parents)
            ex.rng("shares", name, n).shuffle(donors)
            for i, p in enumerate(donors):
                total = sum(ex.cat_counts.values())
                if not total or ex.cat_counts.get(name, 0) / total >= share or not rules:
                    break
                if (name, p.id, n) in used:
                    continue
                used.add((name, p.id, n))
                rule = rules[i % len(rules)]
                if name == "negative":
                    if not p.passes(rule.id):
                        continue
                    ms = mutate(
                        spec,
                        rule,
                        p.response,
                        user_text=p.record.user_text(),
                        category="negative",
                        tags=p.record.tags,
                        rng=ex.rng("shares", "mutate", rule.id, p.id),
                    )
                    ok = bool(ms) and ex.add_pair(p, ms[0]) is not None
                else:
                    ok = (
                        ex.recast(
                            p,
                            _maker(ex, name, p, rule, n),
                            name,
                            GEN,
                            key=("shares", name, p.id, n),
                            to_label=False,
                            budget=False,
                        )
                        == "record"
                    )
                made[name] += ok
                progress += ok
        if not progress:
            break
    total = sum(ex.cat_counts.values())
    return [
        {
            "category": name,
            "before": before[name],
            "made": made[name],
            "after": ex.cat_counts.get(name, 0),
            "share": round(ex.cat_counts.get(name, 0) / total, 6) if total else 0.0,
            "min_share": share,
            "ok": bool(total) and ex.cat_counts.get(name, 0) / total + 1e-12 >= share,
        }
        for name, share in wanted.items()
    ]
