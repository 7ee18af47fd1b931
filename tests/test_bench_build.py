"""scripts/bench_build.py stays runnable: a tiny run prints one JSON line with sane figures (no speed asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_build.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_build", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_build_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--n",
            "400",
            "--runs",
            "1",
            "--memory-n",
            "0",
            "--baseline-n",
            "100",
            "--workdir",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = proc.stdout.strip().splitlines()
    doc = json.loads(line)
    assert doc["n"] == 420 and doc["conservation_ok"] is True
    assert doc["counts"]["duplicates"] == doc["dedup"]["exact"] + doc["dedup"]["near"] == 60
    assert doc["near"] == {
        "precision": 1.0,
        "recall": 1.0,
        "near_rows": 40,
        "near_variants": 40,
        "pairs_flagged": 0,
    }
    assert (
        doc["build_records_per_s"] > 0
        and doc["datasketch_records_per_s"] > 0
        and doc["rensa_records_per_s"] > 0
    )
    assert set(doc["targets"]) >= {"records_per_s>=25000", "precision>=0.99", "recall>=0.98"}
    # the issue-15 workloads, each with both baselines and its families
    assert set(doc["workloads"]) == {"openai", "templated", "mixed", "short"}
    for name, w in doc["workloads"].items():
        assert w["n"] == 400 and w["conservation_ok"] is True and "failed" not in w, name
        assert w["counts"]["in"] == 400 and w["counts"]["duplicates"] == 60, name
        assert w["near"]["precision"] == w["near"]["recall"] == 1.0 and w["near"]["near_variants"] == 40, name
        assert w["build_records_per_s"] > 0 and w["ratio_to_datasketch"] > 0 and w["ratio_to_rensa"] > 0, name
        assert w["rensa"]["n"] == 400 and w["rensa"]["exact"] == 20 and 0 <= w["rensa"]["precision"] <= 1, (
            name
        )
        assert w["peak_rss_mb"] > 0 and w["budget_mb"] == round(400 / 1024 + 300, 1), name
    assert {
        "openai:records_per_s>=25000",
        "openai:x_rensa>=2",
        "templated:records_per_s>=openai/2",
        "mixed:records_per_s>=0.9*openai",
        "short:records_per_s>=openai/2",
    } <= set(doc["targets"])
    assert list(tmp_path.iterdir()) == []  # the workload folder is removed


def test_workloads_have_their_families(tmp_path: Path) -> None:
    bench = _script()
    for name, make in bench.WORKLOADS.items():
        folder = tmp_path / name
        folder.mkdir()
        truth = make(folder, 1000)
        files = bench.family_files(truth)
        lines = [x for f in files for x in (folder / f).read_bytes().splitlines()]
        assert len(lines) == len(truth["family"]) == len(truth["kind"]), name
        assert bytes(truth["kind"]).count(b"e") == 50 and bytes(truth["kind"]).count(b"n") == 100, name
        rows = [json.loads(x) for x in lines]
        if name == "mixed":  # three files, one format each; families across files (a line's place: its file)
            n_base = bytes(truth["kind"]).count(b"b")
            assert sorted(f for f, k in zip(truth["family"], truth["kind"]) if k == ord("b")) == list(
                range(n_base)
            )
            assert all(0 <= f < n_base for f in truth["family"])
            assert len({r["id"] for r in rows}) == len(rows) and all(
                isinstance(r["metadata"], dict) for r in rows
            )
            at = [f for f in files for _ in range(truth["family_counts"][f])]
            homes: dict[int, set[str]] = {}
            for fam, f in zip(truth["family"], at):
                homes.setdefault(fam, set()).add(f)
            assert sum(len(h) > 1 for h in homes.values()) > 50  # copies in another file and format
            texts = {bench._key_text(r) for r in rows}  # the same record in each format: one text
            assert n_base <= len(texts) <= n_base + 150
            continue
        bases = 0
        for fam, kind in zip(truth["family"], truth["kind"]):
            if kind == ord("b"):
                assert fam == bases, name  # the k-th base record is family k
                bases += 1
            else:
                assert fam < bases, name  # every copy comes after its original
        if name == "openai":
            assert len({r["id"] for r in rows}) == len(rows)  # every line its own id, copies included
            assert all(r["messages"][0]["role"] == "system" and isinstance(r["metadata"], dict) for r in rows)
        if name == "short":  # short user texts (the strict rule's), ids and metadata; each near copy one typo
            from curate.relation import is_short, is_typo

            assert len({r["id"] for r in rows}) == len(rows) and all(
                isinstance(r["metadata"], dict) for r in rows
            )
            users = [r["messages"][1]["content"] for r in rows]
            assert all(is_short(u) for u in users)
            first = {}
            for fam, kind, u in zip(truth["family"], truth["kind"], users):
                if kind == ord("b"):
                    first[fam] = u
                elif kind == ord("n"):
                    diff = [(a, b) for a, b in zip(first[fam].split(), u.split()) if a != b]
                    assert len(diff) == 1 and is_typo(*diff[0]), (first[fam], u)
        # multiturn: ShareGPT conversations with ids; each prefix copy a strict prefix of its base
        if name == "multiturn":
            assert len({r["id"] for r in rows}) == len(rows) and bytes(truth["kind"]).count(b"p") == 50
            base: dict[int, list] = {}
            for fam, kind, r in zip(truth["family"], truth["kind"], rows):
                conv = r["conversations"]
                if kind == ord("b"):
                    base[fam] = conv
                    assert conv[0]["from"] == "system" and len(conv) >= 5  # system + 2-4 exchanges
                elif kind == ord("p"):
                    assert len(conv) < len(base[fam]) and base[fam][: len(conv)] == conv
        if name == "templated":
            words = {w for r in rows for w in r["messages"][0]["content"].lower().split() if not w.isdigit()}
            assert words <= set(bench.SMALL_VOCAB) | set(bench.NAMES) | {"dear"}  # a few dozen words


def test_build_killed_above_memory_cap(tmp_path: Path) -> None:
    bench = _script()
    bench.make_chat_workload(tmp_path, 200)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    got = bench.run_build([tmp_path / "chat.jsonl"], tmp_path / "out", env, max_rss_mb=20)
    assert got["failed"] == "killed above 20 MB resident (--max-rss-mb)" and not (tmp_path / "out").exists()


def test_memory_run_reports_peak_budget_and_slope(tmp_path: Path) -> None:
    import argparse

    bench = _script()
    args = argparse.Namespace(timeout=600, max_rss_mb=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    got = bench.memory_run("openai", 300, tmp_path, args, env, {"n": 200, "peak_rss_mb": 100.0})
    assert (
        got["n"] == 300 and got["budget_mb"] == round(300 / 1024 + 300, 1) and got["conservation_ok"] is True
    )
    assert got["peak_rss_mb"] > 100 and got["build_records_per_s"] > 0
    want = (got["peak_rss_mb"] - 100.0) * 2**20 / 100  # (peak_rss_mb is rounded to 0.1 MB)
    assert abs(got["slope_bytes_per_record"] - want) <= 0.06 * 2**20 / 100
    assert list(tmp_path.iterdir()) == []  # its workload and output are removed
