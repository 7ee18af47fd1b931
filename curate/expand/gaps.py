"""Gap filling: make cases for every coverage cell under its target, and say how many per cell.

For a cell (category, rule) outside `negative`, a donor is a valid example whose response makes the rule pass;
its prompt is recast into the category (typical: a paraphrase template; edge: a paraphrase or mixed-language
wrapper with typo/casing noise; adversarial: a pressure pattern whose bait targets this very rule), it keeps the
donor's response, and it counts only when every automatic rule still passes and this rule applies. For a
`negative` cell, a donor's response is mutated to break the rule (curate.expand.mutators) and kept as a negative
record and a pair. Prompts made for a cell whose response would not pass go to labeling. Cells that no donor can
serve are reported with the reason (e.g. no example where the rule applies: write or label one).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from curate.expand import adversarial as adv
from curate.expand import edge
from curate.expand.mutators import mutate
from curate.steps.coverage import compute_coverage, record_hits

if TYPE_CHECKING:
    from curate.expand.generate import Expander, Parent

GEN = "curate.expand.gaps"
ATTEMPTS_PER_DONOR = 4


def _variant(ex: "Expander", category: str, parent: "Parent", rule: Any, attempt: int) \
        -> tuple[str, tuple[str, ...], dict[str, Any]] | None:
    rng = ex.rng("gaps", category, rule.id, parent.id, attempt)
    text = parent.last_user
    if category == "adversarial":
        pats = [p for p in adv.patterns(ex.spec) if adv.KEEPS_ANSWER.get(p, True)] or ["ignore_instructions"]
        a = adv.attack(ex.spec, text, rng.choice(pats), rule, rng)
        return a.text, a.tags, {"pattern": a.pattern, "rule": rule.id, "template": a.template, "bait": a.bait}
    protect = set()
    from curate.expand.generate import protected_values

    protect = protected_values(parent.response, text)
    if category == "edge":
        v = edge.variant(text, rng, rng.choice(("paraphrase", "mixed_language")), protect=protect)
    else:
        v = edge.variant(text, rng, "paraphrase", protect=protect, extra_noise=False)
    if v is None:
        return None
    tags = tuple(f"edge:{t}" for t in v.transforms) if category == "edge" else ()
    return v.text, tags, {"transforms": list(v.transforms), "rule": rule.id, **v.params}


def fill_gaps(ex: "Expander") -> dict[str, Any]:
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
                ms = mutate(spec, rule, p.response, user_text=p.record.user_text(), category=p.record.category,
                            tags=p.record.tags, rng=ex.rng("gaps", "mutate", rule.id, p.id))
                if not ms:
                    continue
                n_before = len(ex.result.records), len(ex.result.pairs)
                ex.add_negative(p, ms[0])
                for rec in ex.result.records[n_before[0]:] + ex.result.pairs[n_before[1]:]:  # type: ignore[operator]
                    count(rec)
                made += 1
                continue
            for attempt in range(ATTEMPTS_PER_DONOR):
                got = _variant(ex, cell.category, p, rule, attempt)
                if got is None:
                    continue
                text, tags, params = got
                if not ex.novel(text, ("gaps", key, p.id, attempt)):
                    continue
                rec = ex.add_record(p, text, cell.category, tags, GEN, params, require=rule.id)
                if rec is None:
                    if to_label < cell.need:  # nothing made is lost: a person can answer it
                        ex.add_prompt(text, cell.category, tags, GEN, params, p.id, p.prompt)
                        to_label += 1
                    continue
                count(rec)
                made += 1
                break
        cells.append({"category": cell.category, "rule": cell.rule, "before": cell.count, "target": cell.target,
                      "made": made})
    for entry in cells:
        key = (entry["category"], entry["rule"])
        rule = spec.rule(entry["rule"])
        entry["after"] = counts[key]
        entry["ok"] = counts[key] >= entry["target"]
        if not entry["ok"]:
            entry["reason"] = ("no valid example where this rule applies and passes: write or label one"
                               if not any(p.passes(rule.id) for p in ex.parents) else
                               "every candidate was a near-duplicate or broke another rule")
    return {"cells": cells, "filled": sum(c["ok"] for c in cells), "unfilled": sum(not c["ok"] for c in cells),
            "made": sum(c["made"] for c in cells)}


__all__ = ["fill_gaps"]
