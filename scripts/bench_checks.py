"""Microbenchmark of the rule checks: check_response (the reference) vs compile_rules(spec).failed / .results.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_checks.py [--spec specs/support-triage] [--n 50000] [--runs 3]

The spec's example data (every SFT response and every preference pair's chosen and rejected side, with its user
text, category and tags) is repeated to --n records. Each run times, on the same records in the same process:
the reference `check_response` (the baseline), `CompiledRules.failed` (what a build calls per record),
`CompiledRules.statuses` (pass/fail/skip per rule) and `CompiledRules.results` (the full result list). The verdicts of all three are compared first (untimed). Prints
one JSON line: us per record (median of the runs, wall and CPU), the ratio reference / compiled, the share of
records failing something, and the load average (the machine is shared; quote figures taken under
`flock /tmp/curate-bench.lock`).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path

import orjson

from curate.checks import check_response
from curate.checks.compiled import compile_rules
from curate.records import PreferenceRecord, read_jsonl, record_from_native
from curate.spec import load_spec


def load_inputs(spec, n: int) -> list[tuple[str, str, str, tuple[str, ...]]]:
    base = []
    for path in spec.data_paths():
        for _line, obj in read_jsonl(path):
            rec = record_from_native(obj, spec=spec.ref)
            kw = (rec.user_text(), rec.category, tuple(rec.tags))
            base.append((rec.response_text(), *kw))
            if isinstance(rec, PreferenceRecord):
                base.append((rec.rejected_text(), *kw))
    reps = -(-n // len(base))
    # fresh string objects per repetition, so no identity shortcut sees the same object twice in a row
    return [(r + "", u + "", c, t) for _ in range(reps) for r, u, c, t in base][:n]


def timed(fn, inputs) -> tuple[float, float]:
    gc.collect()
    gc.disable()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for r, u, c, t in inputs:
            fn(r, u, c, t)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        gc.enable()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="specs/support-triage")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    spec = load_spec(Path(args.spec))
    inputs = load_inputs(spec, args.n)
    t0 = time.perf_counter()
    compiled = compile_rules(spec)
    compile_ms = (time.perf_counter() - t0) * 1e3

    def reference(r, u, c, t):
        return check_response(spec, r, user_text=u, category=c, tags=t)

    failing = 0
    for r, u, c, t in inputs[: min(len(inputs), 5000)]:  # untimed: all three agree
        ref = reference(r, u, c, t)
        want = tuple(x.rule for x in ref if x.status == "fail")
        assert compiled.failed(r, u, c, t) == want, r
        assert compiled.results(r, u, c, t) == ref, r
        assert compiled.statuses(r, u, c, t) == tuple(x.status for x in ref), r
        failing += bool(want)

    figures: dict[str, list[tuple[float, float]]] = {
        "reference": [],
        "failed": [],
        "statuses": [],
        "results": [],
    }
    for _ in range(args.runs):
        figures["reference"].append(timed(reference, inputs))
        figures["failed"].append(timed(compiled.failed, inputs))
        figures["statuses"].append(timed(compiled.statuses, inputs))
        figures["results"].append(timed(compiled.results, inputs))
    n = len(inputs)
    us = {k: round(statistics.median(w for w, _ in v) / n * 1e6, 2) for k, v in figures.items()}
    cpu_us = {k: round(statistics.median(c for _, c in v) / n * 1e6, 2) for k, v in figures.items()}
    print(
        orjson.dumps(
            {
                "spec": spec.ref,
                "rules": len(compiled.rules),
                "records": n,
                "runs": args.runs,
                "failing_share": round(failing / min(len(inputs), 5000), 3),
                "compile_ms": round(compile_ms, 1),
                "us_per_record": us,
                "cpu_us_per_record": cpu_us,
                "ratio_reference_over_failed": round(us["reference"] / us["failed"], 1),
                "ratio_reference_over_results": round(us["reference"] / us["results"], 1),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
