#!/usr/bin/env python
"""How long the report takes on a large build folder, and how much memory it holds.

    .venv/bin/python scripts/bench_report.py                 # 300k clusters rows, 300k quarantine rows, 1M lengths
    .venv/bin/python scripts/bench_report.py --rows 1000000

The folder is the tests' synthetic one, grown with generated rows. The report streams quarantine/*.jsonl and
clusters.jsonl (counts, a few examples, the largest clusters), so time grows linearly and memory stays flat.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "report")]

from synthetic import make_out_dir

from curate.report import write_report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rows", type=int, default=300_000, help="rows added to clusters.jsonl and to quarantine"
    )
    ap.add_argument("--lengths", type=int, default=1_000_000, help="lengths in the manifest for sft/train")
    args = ap.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = make_out_dir(Path(tmp))
        n = args.rows
        with open(out / "clusters.jsonl", "a") as fh:
            fh.writelines(
                json.dumps(
                    {
                        "kept": f"k{rng.randint(0, n // 3):015x}",
                        "dropped": f"d{i:015x}",
                        "method": "near",
                        "score": round(rng.uniform(0.8, 1), 3),
                        "kept_source": f"data/x.jsonl:{i}",
                        "dropped_source": f"data/x.jsonl:{i + n}",
                        "why": "both imported: earliest kept",
                    }
                )
                + "\n"
                for i in range(n)
            )
        with open(out / "quarantine" / "validate.jsonl", "a") as fh:
            fh.writelines(
                json.dumps(
                    {
                        "step": "validate",
                        "reason": rng.choice(["rule_failed", "too_long"]),
                        "detail": "x",
                        "source": {"file": "a.jsonl", "line": i},
                        "original": {"messages": [{"role": "user", "content": "hello " * 30}]},
                    }
                )
                + "\n"
                for i in range(n)
            )
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["lengths"]["sft"]["train"] = [rng.randint(10, 2000) for _ in range(args.lengths)]
        (out / "manifest.json").write_text(json.dumps(manifest))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        path = write_report(out)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"rows: clusters {n:,} + quarantine {n:,}, lengths {args.lengths:,}")
        print(
            f"report: {seconds:.2f} s, {path.stat().st_size / 1024:.0f} KiB html, "
            f"peak RSS {peak:.0f} MiB (before the report {before:.0f} MiB)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
