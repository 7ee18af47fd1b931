"""Time `curate expand --fill-gaps` on the example specs (library call, one process, warm imports).

    .venv/bin/python scripts/bench_expand.py [--repeat 3]

Prints one JSON line per spec: seconds (best of N), records, pairs, prompts to label, near-duplicates dropped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from curate.expand import expand
from curate.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for spec_dir in sorted((ROOT / "specs").glob("*/spec.yaml")):
        spec = load_spec(spec_dir.parent)
        best = float("inf")
        res = None
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = expand(spec, seed=0, fill_gaps=True)
            best = min(best, time.perf_counter() - t)
        assert res is not None
        c = res.summary["counts"]
        print(
            json.dumps(
                {
                    "spec": spec.ref,
                    "seconds": round(best, 2),
                    "data": res.summary["data"]["records"],
                    "records": c["records"],
                    "pairs": c["pairs"],
                    "prompts_to_label": c["prompts_to_label"],
                    "dropped_near_duplicate": c.get("dropped_near_duplicate", 0),
                }
            )
        )


if __name__ == "__main__":
    main()
