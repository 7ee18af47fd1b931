"""Simulate review by value: plant label errors in a spec's example data and count how many a labeler finds in
the first 20% of reviews, in value order (curate.review_order) and in random order.

    .venv/bin/python scripts/sim_review_order.py                       # support-triage, 20 seeds
    .venv/bin/python scripts/sim_review_order.py specs/support-agent --rate 0.1 --seeds 50 --json

Planted errors, one kind drawn at random per planted record (the kinds a labeling pass really produces):
- false_violation: a good response marked negative, breaking an automatic rule it does not break;
- missed_violation: a negative response relabeled as good (its `violates` dropped), though it breaks rules;
- human_rule_tick: a good response marked as breaking a human-only rule (no check can see this one);
- wrong_category: a typical record labeled edge or the other way round (no check can see this one either).
  Prints the share of planted errors found in the first 20% of reviews for both orders and their ratio,
  overall and per kind. Timing-free: the numbers depend only on the data and the seeds.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.records import LineError, SFTRecord, read_jsonl, record_from_native
from curate.review_order import value_order
from curate.spec import load_spec

KINDS = ("false_violation", "missed_violation", "human_rule_tick", "wrong_category")


def load_records(spec):  # type: ignore[no-untyped-def]
    out = []
    for path in spec.data_paths():
        for _line, obj in read_jsonl(path):
            if isinstance(obj, LineError):
                continue
            try:
                out.append(record_from_native(obj, spec=spec.ref))
            except (ValueError, TypeError):
                continue
    return out


def plant(spec, records, rate, rng):  # type: ignore[no-untyped-def]
    """(records with errors planted, {index: kind}) -- only SFT records are touched."""
    auto = [r.id for r in spec.automatic_rules()]
    human = [r.id for r in spec.human_rules() if not r.judge]
    sft = [i for i, r in enumerate(records) if isinstance(r, SFTRecord)]
    n = max(1, round(rate * len(records)))
    planted: dict[int, str] = {}
    out = list(records)
    for i in rng.sample(sft, len(sft)):
        if len(planted) >= n:
            break
        rec = out[i]
        kinds = [k for k in KINDS if _fits(k, rec, human)]
        if not kinds:
            continue
        kind = rng.choice(kinds)
        if kind == "false_violation":
            out[i] = rec.model_copy(update={"category": "negative", "violates": (rng.choice(auto),)})
        elif kind == "missed_violation":
            out[i] = rec.model_copy(update={"category": "typical", "violates": ()})
        elif kind == "human_rule_tick":
            out[i] = rec.model_copy(update={"category": "negative", "violates": (rng.choice(human),)})
        else:
            out[i] = rec.model_copy(update={"category": "edge" if rec.category == "typical" else "typical"})
        planted[i] = kind
    return out, planted


def _fits(kind, rec, human):  # type: ignore[no-untyped-def]
    if kind == "missed_violation":
        return rec.is_negative
    if kind == "human_rule_tick":
        return not rec.is_negative and bool(human)
    if kind == "wrong_category":
        return rec.category in ("typical", "edge")
    return not rec.is_negative


def found_in_first(order, planted, share):  # type: ignore[no-untyped-def]
    k = max(1, int(share * len(order)))
    first = set(order[:k])
    return {i: (i in first) for i in planted}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default="specs/support-triage")
    ap.add_argument("--rate", type=float, default=0.1, help="share of records given a planted error")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--share", type=float, default=0.2, help="the first share of reviews counted")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    spec = load_spec(args.spec)
    records = load_records(spec)
    tot = {"value": 0, "random": 0, "planted": 0}
    per_kind = {k: {"value": 0, "random": 0, "planted": 0} for k in KINDS}
    for seed in range(args.seeds):
        rng = random.Random(seed)
        recs, planted = plant(spec, records, args.rate, rng)
        value = [s.index for s in value_order(spec, recs)]
        rand = list(range(len(recs)))
        rng.shuffle(rand)
        fv, fr = found_in_first(value, planted, args.share), found_in_first(rand, planted, args.share)
        for i, kind in planted.items():
            for bucket in (tot, per_kind[kind]):
                bucket["planted"] += 1
                bucket["value"] += fv[i]
                bucket["random"] += fr[i]

    def rates(b):  # type: ignore[no-untyped-def]
        v = b["value"] / b["planted"] if b["planted"] else None
        r = b["random"] / b["planted"] if b["planted"] else None
        return {
            "planted": b["planted"],
            "value_found": v,
            "random_found": r,
            "ratio": (v / r) if v is not None and r else None,
        }

    report = {
        "spec": spec.ref,
        "records": len(records),
        "rate": args.rate,
        "seeds": args.seeds,
        "first_share": args.share,
        "overall": rates(tot),
        "by_kind": {k: rates(b) for k, b in per_kind.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    o = report["overall"]
    print(
        f"{spec.ref}: {len(records)} records, {args.rate:.0%} planted errors, {args.seeds} seeds; "
        f"errors found in the first {args.share:.0%} of reviews"
    )
    print(f"  value order  {o['value_found']:.1%}")
    print(f"  random order {o['random_found']:.1%}")
    print(f"  ratio        {o['ratio']:.2f}x")
    for k, r in report["by_kind"].items():
        if r["planted"]:
            print(
                f"    {k:<17} n={r['planted']:<4} value {r['value_found']:.1%}  "
                f"random {r['random_found']:.1%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
