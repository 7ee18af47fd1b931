"""The long fuzz run (#16): the hypothesis properties of tests/test_safety_readers.py with many more cases.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fuzz.py [--cases 10000] [--builds 200] [--only jsonl,json] \
        [--quarantine-lines 1000000]

Each property (the JSONL, JSON, CSV/TSV, Parquet/Arrow readers, mixed formats under any file name, spec loading,
whole builds over a fuzzed file) runs in its own pytest process with CURATE_FUZZ_EXAMPLES=--cases (builds:
--builds), random (not derandomized) data; the properties: the read or build finishes, conservation holds per
file (in = records + quarantined [+ duplicates]), every dropped unit has a snake_case reason and a file:line
detail, everything read can be written, a damaged spec gives a Spec or one SpecError. Prints one line per
property (cases, outcome counts, quarantine reasons met, seconds) and a JSON summary on stdout.

`--quarantine-lines N` also reads a file of N bad JSONL lines and reports the peak RSS with the quarantine rows
spilled to disk (steps.base.StepRows) against holding them all in memory (SPILL_ROWS set past N): the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROPS = {
    "jsonl": "test_fuzz_jsonl_reader",
    "json": "test_fuzz_json_reader",
    "csv": "test_fuzz_csv_reader",
    "parquet_arrow": "test_fuzz_parquet_and_arrow_readers",
    "mixed": "test_fuzz_mixed_formats_and_wrong_extensions",
    "spec": "test_fuzz_spec_loading",
    "spec_values": "test_fuzz_spec_values",
    "build": "test_fuzz_build_finishes_and_conserves",
}

RSS = r"""
import resource, sys, time
from curate.steps import base
from curate.steps.base import RunContext
from curate.steps.read import read_inputs
if sys.argv[2] == "memory":
    base.SPILL_ROWS = 1 << 62
ctx = RunContext()
t0 = time.perf_counter()
n = sum(1 for _ in read_inputs([sys.argv[1]], ctx=ctx))
ctx.flush_quarantine(__import__("pathlib").Path(sys.argv[3]))
print(ctx.n_quarantined, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, round(time.perf_counter() - t0, 2))
"""


def run_prop(name: str, cases: int, builds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="curate-fuzz-") as tmp:
        stats = Path(tmp) / "stats.json"
        env = {
            **os.environ,
            "CURATE_FUZZ_EXAMPLES": str(cases),
            "CURATE_FUZZ_BUILDS": str(builds),
            "CURATE_FUZZ_STATS": str(stats),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                f"tests/test_safety_readers.py::{PROPS[name]}",
                "--basetemp",
                str(Path(tmp) / "t"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        secs = time.perf_counter() - t0
        got = json.loads(stats.read_text()) if stats.exists() else {}
    return {
        "property": name,
        "ok": proc.returncode == 0,
        "seconds": round(secs, 1),
        "stats": got,
        "failure": None if proc.returncode == 0 else proc.stdout[-4000:],
    }


def quarantine_rss(lines: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="curate-fuzz-") as tmp:
        f = Path(tmp) / "bad.jsonl"
        with open(f, "w") as fh:
            fh.writelines(f"{{'not': 'json', 'line': {i}, 'pad': '{'x' * 60}'}}\n" for i in range(lines))
        out = {}
        for mode in ("memory", "spill"):
            r = subprocess.run(
                [sys.executable, "-c", RSS, str(f), mode, str(Path(tmp) / mode)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                check=True,
            )
            n, rss_kb, secs = r.stdout.split()
            out[mode] = {
                "quarantined": int(n),
                "peak_rss_mb": round(int(rss_kb) / 1024, 1),
                "seconds": float(secs),
            }
        out["rss_ratio_memory_over_spill"] = round(
            out["memory"]["peak_rss_mb"] / out["spill"]["peak_rss_mb"], 2
        )
        out["lines"] = lines
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000, help="cases per reader property (default 10,000)")
    ap.add_argument("--builds", type=int, default=200, help="fuzzed whole builds (default 200)")
    ap.add_argument("--only", default="", help="comma-separated properties: " + ", ".join(PROPS))
    ap.add_argument("--quarantine-lines", type=int, default=0, help="also measure RSS reading N bad lines")
    args = ap.parse_args()
    names = [n for n in (args.only.split(",") if args.only else PROPS) if n]
    results = []
    for name in names:
        res = run_prop(name, args.cases, args.builds)
        results.append(res)
        st = res["stats"]
        cases = sum(v for k, v in st.items() if k.endswith(":cases"))
        reasons = sorted({k.split(":quarantined:")[1] for k in st if ":quarantined:" in k})
        outcomes: dict[str, int] = {}
        for k, v in st.items():
            if k.count(":") == 1 and not k.endswith(":cases"):
                outcomes[k.split(":", 1)[1]] = outcomes.get(k.split(":", 1)[1], 0) + v
        print(
            f"{name:14s} {'ok' if res['ok'] else 'FAILED'} cases={cases} {outcomes} reasons={reasons} "
            f"{res['seconds']} s",
            file=sys.stderr,
        )
        if not res["ok"]:
            print(res["failure"], file=sys.stderr)
    summary: dict = {"cases_per_property": args.cases, "builds": args.builds, "results": results}
    if args.quarantine_lines:
        summary["quarantine_rss"] = quarantine_rss(args.quarantine_lines)
        print(
            f"quarantine of {args.quarantine_lines:,} bad lines: {summary['quarantine_rss']}", file=sys.stderr
        )
    print(json.dumps(summary, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
