"""Benchmark the importer: records/s of read_inputs on a generated OpenAI-chat JSONL (~600 bytes a line).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_read.py [--lines 200000] [--tools]

Prints one JSON line: lines, bytes, seconds, records/s, MB/s, CPU seconds (the machine is shared: records per
CPU second is the steadier figure) and the load average. The file is generated into a temporary folder
(deterministic content, every line distinct) and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import orjson

from curate.steps.base import RunContext
from curate.steps.read import read_inputs

WORDS = [
    "account",
    "password",
    "reset",
    "cancel",
    "order",
    "refund",
    "shipping",
    "invoice",
    "login",
    "error",
    "please",
    "help",
    "my",
    "the",
    "a",
    "to",
    "is",
    "not",
    "when",
    "can",
    "you",
    "I",
    "it",
    "was",
    "of",
    "and",
    "for",
    "on",
    "with",
    "order-1234",
    "yesterday",
    "today",
    "urgent",
    "thanks",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(path: Path, lines: int, tools: bool) -> int:
    rng = random.Random(13)
    with open(path, "wb") as fh:
        for i in range(lines):
            msgs = [
                {"role": "system", "content": "You are the triage assistant for Acme support."},
                {"role": "user", "content": f"#{i} " + sentence(rng, 38)},
                {
                    "role": "assistant",
                    "content": orjson.dumps(
                        {"intent": rng.choice(WORDS), "next_step": sentence(rng, 25)}
                    ).decode(),
                },
            ]
            if tools:
                msgs[2]["tool_calls"] = [
                    {
                        "type": "function",
                        "id": f"c{i}",
                        "function": {
                            "name": "lookup_order",
                            "arguments": orjson.dumps({"order": i}).decode(),
                        },
                    }
                ]
            fh.write(orjson.dumps({"messages": msgs}) + b"\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--tools", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        size = generate(path, args.lines, args.tools)
        ctx = RunContext()
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(1 for _ in read_inputs([path], ctx=ctx))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert n == args.lines == ctx.counters[f"in:{path}"], (n, ctx.counters)
        print(
            orjson.dumps(
                {
                    "lines": n,
                    "bytes": size,
                    "avg_line_bytes": round(size / n),
                    "seconds": round(dt, 2),
                    "records_per_s": round(n / dt),
                    "mb_per_s": round(size / dt / 1e6, 1),
                    "cpu_seconds": round(cpu, 2),
                    "records_per_cpu_s": round(n / cpu),
                    "load_avg_1m": os.getloadavg()[0],
                }
            ).decode()
        )


if __name__ == "__main__":
    main()
