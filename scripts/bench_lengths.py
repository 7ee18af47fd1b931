#!/usr/bin/env python
"""Token counting with a tokenizer (`curate build --tokenizer`): LengthCounter's cached, batched count against the
plain one (apply_chat_template per record, the in-run baseline), and a whole build with and without --tokenizer.

    .venv/bin/python scripts/bench_lengths.py [--tokenizer DIR] [--copies 3]

Default tokenizer: the bundled SmolLM2's (GGUF). Prints seconds and ratios; the counts must be equal.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[k] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.pipeline import build
from curate.steps.read import read_inputs
from curate.steps.validate import LengthCounter, load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--spec", default=str(REPO / "specs" / "support-triage"))
    args = ap.parse_args()
    if args.tokenizer is None:
        from curate.train import smollm2_gguf

        args.tokenizer = str(smollm2_gguf().parent)
    spec = load_spec(args.spec)
    data = [str(p) for p in spec.data_paths()]
    recs = list(read_inputs(data, ctx=RunContext(), spec=spec))
    tok = load_tokenizer(args.tokenizer)
    plain = LengthCounter(spec, tok)
    plain._split = None  # the path every record took before: apply_chat_template(tokenize=True)
    fast = LengthCounter(spec, tok)
    t = time.perf_counter()
    a = [plain.measure(r) for r in recs]
    t_plain = time.perf_counter() - t
    t = time.perf_counter()
    b = [fast.measure(r) for r in recs]
    t_fast = time.perf_counter() - t
    assert a == b, "counts differ"
    print(f"{len(recs)} records ({spec.ref}), tokenizer {args.tokenizer}")
    print(f"count tokens: plain {t_plain:.2f} s, cached+batched {t_fast:.2f} s: {t_plain / t_fast:.1f}x")
    with tempfile.TemporaryDirectory() as tmp:
        build(spec, data, Path(tmp) / "warm")  # imports and compiled kernels, not timed
        t = time.perf_counter()
        build(spec, data, Path(tmp) / "a")
        t_none = time.perf_counter() - t
        t = time.perf_counter()
        build(spec, data, Path(tmp) / "b", tokenizer=tok)
        t_tok = time.perf_counter() - t
    print(f"build: without --tokenizer {t_none:.2f} s, with {t_tok:.2f} s ({t_tok / t_none:.1f}x the time)")


if __name__ == "__main__":
    main()
