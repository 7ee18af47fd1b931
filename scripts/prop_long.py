"""The long run of tests/test_dedup_properties.py: the same checks on corpora up to 2,000 records, more examples.

    .venv/bin/python scripts/prop_long.py                  # 8 corpora of ~2,000 records, 10 builds
    .venv/bin/python scripts/prop_long.py --examples 3 --bases 600 --builds 2

Per corpus (random seed, planted families: see `corpus` in the test module):
- dedup vs brute force over every pair (`near_score` at 0.8): near rows are true pairs (precision), no kept pair
  at 0.85+ (recall), exact and continuation rows checked; recall of the LSH candidate stage alone by score band;
- disjoint vocabulary: the corpus with ~a third more Greek records makes the same decisions on the original ones;
- order: a shuffled corpus makes the same decisions;
then `--builds` builds of a temporary support-triage spec on three --input files, shuffled and reordered: the
exports must be byte-identical and hold no held-out/train pair at the leakage threshold.

Brute force at 2,000 records is 2M pairs: the prompts' Indel similarities come from rapidfuzz's `cdist` (the same
`fuzz.ratio` `text_score` uses, in C), and `near_score` itself is called for every pair whose prompts can match
(long prompts at the threshold, or a short prompt and an equal skeleton length); `--check-exact` compares that
with the plain all-pairs loop on one 300-record corpus first. Prints one table; exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_dedup_properties import (
    GREEK_VOCAB,
    RECALL_AT,
    T,
    _decisions,
    brute_pairs,
    build,
    check_dedup,
    corpus,
    export_hashes,
    lsh_recall,
    records_of,
    spec_copy,
    write_jsonl,
)

from curate.relation import View, is_short, near_score, skeleton
from curate.steps.dedup import dedup


def brute_pairs_fast(views: Sequence[View], t: float = T) -> dict[tuple[int, int], float]:
    """`brute_pairs` (every pair with near_score >= t) for thousands of views (see the module doc)."""
    prompts = [v.prompt for v in views]
    short = np.array([is_short(p) for p in prompts])
    skl = np.array([len(skeleton(p)) for p in prompts])
    sim = cdist(prompts, prompts, scorer=fuzz.ratio, score_cutoff=t * 100.0, dtype=np.float32, workers=1)
    could = (sim > 0) & ~short[:, None] & ~short[None, :]
    could |= (short[:, None] | short[None, :]) & (skl[:, None] == skl[None, :])
    could |= np.equal.outer(np.array(prompts, dtype=object), np.array(prompts, dtype=object))
    out = {}
    for i, j in zip(*np.nonzero(np.triu(could, 1))):
        s = near_score(views[int(i)], views[int(j)], t)
        if s:
            out[(int(i), int(j))] = s
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=8, help="random corpora (default 8)")
    ap.add_argument(
        "--bases", type=int, default=1400, help="unrelated conversations per corpus (~1.4 records each)"
    )
    ap.add_argument("--builds", type=int, default=10, help="random build permutations (default 10)")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument(
        "--check-exact", action="store_true", help="first compare the fast brute force with the plain one"
    )
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    failures: list[str] = []
    from test_dedup_properties import view_of

    if args.check_exact:
        dicts = [d for d, _, _ in corpus(rng.randrange(2**32), 200)]
        views = [view_of(d) for d in dicts]
        same = brute_pairs_fast(views) == brute_pairs(views)
        print(f"fast brute force == all-pairs loop on {len(views)} records: {same}", file=sys.stderr)
        if not same:
            failures.append("brute_pairs_fast differs from brute_pairs")

    rows = []
    bands: Counter[str] = Counter()
    found_bands: Counter[str] = Counter()
    for k in range(args.examples):
        seed = rng.randrange(2**32)
        json_answer = k % 2 == 1
        dicts = [d for d, _, _ in corpus(seed, args.bases, json_answer=json_answer)]
        t0 = time.perf_counter()
        try:
            figs = check_dedup(dicts, pairs_of=brute_pairs_fast)
            ok = "ok"
        except AssertionError as err:
            figs, ok = {}, f"FAIL {str(err)[:200]}"
            failures.append(f"dedup vs brute force, seed {seed}: {err}")
        dt = time.perf_counter() - t0
        for s, found in lsh_recall(dicts, pairs_of=brute_pairs_fast):
            band = "0.80-0.85" if s < RECALL_AT else "0.85-0.90" if s < 0.9 else "0.90-1.00"
            bands[band] += 1
            found_bands[band] += found
        # disjoint vocabulary and order
        recs = records_of(dicts, "a.jsonl")
        only = {r.source.where() for r in recs}
        kept, crow = dedup(recs, near_threshold=T)
        base_dec = _decisions(recs, crow, kept, only)
        extra = [
            d
            for d, _, _ in corpus(
                seed + 1, args.bases // 3, vocab=GREEK_VOCAB, countries=["Ελλάδα", "Κύπρος"]
            )
        ]
        mixed = recs + records_of(extra, "greek.jsonl")
        random.Random(seed).shuffle(mixed)
        kept_m, rows_m = dedup(mixed, near_threshold=T)
        disjoint_ok = _decisions(mixed, rows_m, kept_m, only) == base_dec
        shuffled = list(recs)
        random.Random(seed + 7).shuffle(shuffled)
        kept_s, rows_s = dedup(shuffled, near_threshold=T)
        order_ok = _decisions(shuffled, rows_s, kept_s, only) == base_dec
        if not disjoint_ok:
            failures.append(f"disjoint vocabulary changed decisions, seed {seed}")
        if not order_ok:
            failures.append(f"record order changed decisions, seed {seed}")
        rows.append(
            (
                seed,
                len(dicts),
                figs.get("pairs", "-"),
                figs.get("strong", "-"),
                figs.get("missed_strong", "-"),
                figs.get("rows", "-"),
                figs.get("continuations", "-"),
                disjoint_ok,
                order_ok,
                f"{dt:.1f}",
                ok,
            )
        )
        print(f"corpus {k + 1}/{args.examples} done ({dt:.1f} s)", file=sys.stderr)

    print(
        "| seed | records | true pairs >= 0.80 | >= 0.85 | missed >= 0.85 | cluster rows | continuations "
        "| disjoint vocab same | order same | check s | dedup vs brute force |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print()
    print("| LSH candidate stage alone (long texts), score band | pairs | found | recall |")
    print("|---|---|---|---|")
    for band in sorted(bands):
        print(f"| {band} | {bands[band]} | {found_bands[band]} | {found_bands[band] / bands[band]:.4f} |")
    strong = sum(bands[b] for b in bands if b != "0.80-0.85")
    strong_found = sum(found_bands[b] for b in bands if b != "0.80-0.85")
    if strong and strong_found / strong < 0.99:
        failures.append(f"LSH recall at 0.85+: {strong_found}/{strong}")

    with tempfile.TemporaryDirectory(prefix="curate-prop-") as tmp_s:
        tmp = Path(tmp_s)
        spec = spec_copy(tmp)
        ok_builds = 0
        for b in range(args.builds):
            seed = rng.randrange(2**32)
            dicts = [d for d, _, _ in corpus(seed, 150, json_answer=True, negatives=True)]
            try:
                files = [write_jsonl(tmp / f"in{b}a" / f"p{f}.jsonl", dicts[f::3]) for f in range(3)]
                build(spec, files, tmp / "o1")
                shuffled = list(dicts)
                random.Random(seed).shuffle(shuffled)
                files2 = [write_jsonl(tmp / f"in{b}b" / f"p{f}.jsonl", shuffled[f::3]) for f in range(3)]
                build(spec, files2[::-1], tmp / "o2")
                assert export_hashes(tmp / "o1") == export_hashes(tmp / "o2"), "exports differ"
                ok_builds += 1
            except Exception as err:  # noqa: BLE001 - an assertion of the check, or the build failing: both reported
                failures.append(f"build seed {seed}: {type(err).__name__}: {str(err)[:300]}")
        print()
        print(
            f"builds: {ok_builds}/{args.builds} permuted builds byte-identical with zero held-out/train leaks"
        )
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
