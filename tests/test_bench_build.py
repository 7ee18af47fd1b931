"""scripts/bench_build.py stays runnable: a tiny run prints one JSON line with sane figures (no speed asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_build_smoke(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_build.py"), "--n", "400", "--runs", "1",
                           "--memory-n", "0", "--baseline-n", "100", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = proc.stdout.strip().splitlines()
    doc = json.loads(line)
    assert doc["n"] == 420 and doc["conservation_ok"] is True
    assert doc["counts"]["duplicates"] == doc["dedup"]["exact"] + doc["dedup"]["near"] == 60
    assert doc["near"] == {"precision": 1.0, "recall": 1.0, "near_rows": 40, "near_variants": 40,
                           "pairs_flagged": 0}
    assert doc["build_records_per_s"] > 0 and doc["datasketch_records_per_s"] > 0
    assert set(doc["targets"]) >= {"records_per_s>=25000", "precision>=0.99", "recall>=0.98"}
    assert list(tmp_path.iterdir()) == []  # the workload folder is removed
