#!/usr/bin/env python3
"""Benchmark `curate build` end to end against in-run baselines; prints ONE JSON line on stdout.

    .venv/bin/python scripts/bench_build.py                      # N=200k, 3 runs, plus one 1M run for memory
    .venv/bin/python scripts/bench_build.py --n 50000 --runs 1 --memory-n 0    # quick look

Workload (seeded, written to a temporary folder): N chat records (~600 bytes a line) for the support-triage
spec, whose answers pass every automatic rule; 5% exact duplicates (half of them differ only in case or
whitespace), 10% near-duplicates (1-12 word edits of a known original, the "families"); plus a preference
file (5% of N pairs) whose chosen and rejected answers are near-duplicates by design and must not be flagged.

Measured in the same run, on the same files (after one untimed warm-up build on the first 10k lines, which
compiles the numba kernels the first time after an edit of curate/near.py: `warmup_build_s`):
- `build`: `curate.steps.pipeline.build(spec, inputs, out)` in a fresh process per run (read, validate against the
  spec, pair, exact + near dedup, split with leakage check, export JSONL + Parquet + card + manifest): records/s
  over the build call, process wall time, peak RSS of that process; medians over `--runs`.
- `parse_floor`: orjson parsing every line, streaming (the JSON parse floor), records/s.
- `datasketch`: a pipeline with datasketch's MinHash (128 permutations, character 5-grams) and MinHashLSH
  (threshold 0.8): parse, exact dedup by sha256 of the normalized text, near dedup by LSH query + insert; on the
  first `--baseline-n` records (it runs at ~1-2k records/s), records/s.
- `dedup_pipeline`: the datasketch pipeline's job (parse, exact, near) done with curate.near, on the same
  records and on all of them, records/s, and its ratio to datasketch.
- `dedup_only`: curate's dedup step alone on already built records (exact + near), records/s.
- `build_records_per_cpu_s`: records per CPU second of the build process (less sensitive to a busy machine).
- `workers_cpu_s`, `workers_peak_rss_mb`: CPU seconds of the build's fork workers (the compact read's pool), and
  the largest peak resident memory of one worker (getrusage of the children; it includes the pages it shares
  with the build process, copy-on-write, from the fork).
- `peak_rss_mb`: the build process's own peak resident memory (VmHWM). `ru_maxrss_mb` is getrusage's figure, which
  on Linux also holds this script's resident memory at the moment it started the build (kept across fork + exec):
  rounds 1 and 2 quoted that one, so their peaks include up to the script's own size (workload, baselines).
- near-duplicate precision and recall against the known families, from the build's clusters.jsonl; and the
  number of preference pairs flagged (must be 0).
- With `--memory-n M` (default 1,000,000): one more build at M records for peak RSS (target: <= 1 KB per record
  + 300 MB).

Targets (issue 7, 2 cores): >= 25k records/s end to end; >= 15x datasketch; precision >= 0.99, recall >= 0.98.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "support-triage"

INTENTS = ["reset_password", "update_billing", "cancel_account", "refund_request", "change_plan", "report_bug",
           "account_access", "update_email", "delete_data", "other"]
STEPS = ["Route the ticket to the {team} team with order {order} attached.",
         "Point the customer to the {team} page and mention order {order} in the reply.",
         "Forward order {order} to the {team} queue for review today."]
TEAMS = ["billing", "accounts", "support", "engineering", "security", "success"]


def _vocab(rng: random.Random, n: int = 30000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(n)]


def _user(rng: random.Random, vocab: list[str], order: str) -> str:
    words = [rng.choice(vocab) for _ in range(rng.randint(44, 56))]
    words.insert(rng.randrange(len(words)), f"order {order}")
    return " ".join(words)


def _answer(rng: random.Random, order: str, intent: str | None = None) -> str:
    step = rng.choice(STEPS).format(team=rng.choice(TEAMS), order=order)
    return orjson.dumps({"intent": intent or rng.choice(INTENTS), "entities": {"order": order},
                         "missing_info": [], "next_step": step}).decode()


def _edit(rng: random.Random, vocab: list[str], text: str, k: int) -> str:
    head, sep, tail = text.partition("order ")  # keep the order number (an entity) intact
    order_no, _, rest = tail.partition(" ")
    w = (head + rest).split()
    for _ in range(k):
        i = rng.randrange(len(w))
        op = rng.random()
        if op < 0.4:
            w[i] = rng.choice(vocab)
        elif op < 0.7:
            w.insert(i, rng.choice(vocab))
        elif len(w) > 5:
            w.pop(i)
    w.insert(min(len(w), len(head.split())), f"order {order_no}")
    return " ".join(w)


def _chat(user: str, answer: str, category: str = "typical") -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                         "category": category})


def make_workload(folder: Path, n: int, seed: int = 7) -> dict:
    """Write chat.jsonl (n lines) and pairs.jsonl (n/20 lines); return the ground truth."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    cats = ["typical"] * 6 + ["edge"] * 2 + ["adversarial"]
    lines: list[bytes] = []
    family: list[int] = []  # per line: the base line (0-based) it derives from, or itself
    kind: list[str] = []
    bases: list[tuple[str, str, str]] = []
    for i in range(n_base):
        order = f"{rng.randrange(10**7, 10**8)}"
        user, ans = _user(rng, vocab, order), _answer(rng, order)
        cat = rng.choice(cats)
        bases.append((user, ans, cat))
        lines.append(_chat(user, ans, cat))
        family.append(i)
        kind.append("base")
    extra: list[tuple[bytes, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        user, ans, cat = bases[b]
        if rng.random() < 0.5:
            user = rng.choice([user.upper(), "  " + user.replace(" ", "  ") + " ", user.title()])
        extra.append((_chat(user, ans, cat), b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        user, ans, cat = bases[b]
        extra.append((_chat(_edit(rng, vocab, user, rng.randint(1, 12)), ans, cat), b, "near"))
    # scatter the copies after their originals: insert each at a random later position
    rng.shuffle(extra)
    out_lines: list[bytes] = []
    out_family: list[int] = []
    out_kind: list[str] = []
    pending = sorted(((rng.randint(b + 1, n_base), line, b, k) for line, b, k in extra), key=lambda t: t[0])
    p = 0
    for i in range(n_base + 1):
        while p < len(pending) and pending[p][0] == i:
            _, line, b, k = pending[p]
            out_lines.append(line)
            out_family.append(b)
            out_kind.append(k)
            p += 1
        if i < n_base:
            out_lines.append(lines[i])
            out_family.append(family[i])
            out_kind.append(kind[i])
    (folder / "chat.jsonl").write_bytes(b"\n".join(out_lines) + b"\n")
    n_pairs = n // 20
    pairs = []
    for _ in range(n_pairs):
        order = f"{rng.randrange(10**7, 10**8)}"
        user = _user(rng, vocab, order)
        good = _answer(rng, order, "reset_password")
        bad = good.replace('"next_step":"', '"next_step":"I have reset the password. ')
        pairs.append(orjson.dumps({"prompt": [{"role": "user", "content": user}],
                                   "chosen": [{"role": "assistant", "content": good}],
                                   "rejected": [{"role": "assistant", "content": bad}],
                                   "category": "adversarial", "violates": ["no-action-claims"]}))
    (folder / "pairs.jsonl").write_bytes(b"\n".join(pairs) + b"\n")
    return {"family": out_family, "kind": out_kind, "n_chat": len(out_lines), "n_pairs": n_pairs}


# ---------------------------------------------------------------- one build in a fresh process

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from curate.steps.pipeline import build
t1 = time.perf_counter()
c1 = time.process_time()
res = build(sys.argv[1], sys.argv[2:-1], sys.argv[-1])
t2 = time.perf_counter()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # this process's own peak: ru_maxrss also holds the parent's RSS at fork (Linux keeps it across exec)
    with open("/proc/self/status") as fh:
        hwm = next(int(x.split()[1]) / 1024 for x in fh if x.startswith("VmHWM:"))
except (OSError, StopIteration):
    hwm = maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the compact read's fork pool (one build: its workers)
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "build_cpu_s": time.process_time() - c1,
                  "workers_cpu_s": kids.ru_utime + kids.ru_stime, "workers_peak_rss_mb": kids.ru_maxrss / 1024,
                  "counts": res.manifest["counts"],
                  "conservation": res.manifest["conservation"], "dedup": res.manifest["dedup"],
                  "peak_rss_mb": hwm, "ru_maxrss_mb": maxrss}))
"""


def run_build(inputs: list[Path], out: Path, env: dict[str, str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(SPEC), *map(str, inputs), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    doc = json.loads(stdout.decode().strip().splitlines()[-1])
    doc["wall_s"] = wall
    return doc


# ---------------------------------------------------------------- baselines

def parse_floor(path: Path) -> float:
    n = 0
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
            n += 1
    return n / (time.perf_counter() - t)


def _key_text(obj: dict) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in obj["messages"] if m["role"] != "system")


def datasketch_pipeline(path: Path, limit: int) -> float:
    import hashlib

    from datasketch import MinHash, MinHashLSH

    from curate.records import normalize_text

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    seen: set[bytes] = set()
    n = 0
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            if n >= limit:
                break
            obj = orjson.loads(line)
            text = normalize_text(_key_text(obj))
            n += 1
            key = hashlib.sha256(text.encode()).digest()
            if key in seen:
                continue
            seen.add(key)
            m = MinHash(num_perm=128)
            m.update_batch([text[i:i + 5].encode() for i in range(max(1, len(text) - 4))])
            if lsh.query(m):
                continue
            lsh.insert(str(n), m)
    return n / (time.perf_counter() - t)


def curate_dedup_pipeline(path: Path, limit: int) -> float:
    """The datasketch pipeline's job done with curate.near: parse, exact dedup, near dedup (records/s)."""
    import hashlib

    from curate.near import near_pairs
    from curate.records import normalize_text

    near_pairs(["warm up the compiled kernel", "warm up the compiled kernels"])
    t = time.perf_counter()
    seen: set[bytes] = set()
    texts = []
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if n >= limit:
                break
            n += 1
            text = normalize_text(_key_text(orjson.loads(line)))
            key = hashlib.sha256(text.encode()).digest()
            if key not in seen:
                seen.add(key)
                texts.append(text)
    dropped = {j for _, j, _ in near_pairs(texts, normalized=True)}
    assert len(dropped) < len(texts)
    return n / (time.perf_counter() - t)


def dedup_only(path: Path, limit: int) -> dict:
    from curate.records import record_from_native
    from curate.steps.dedup import dedup

    recs = []
    with open(path, "rb") as fh:
        for line in fh:
            if len(recs) >= limit:
                break
            recs.append(record_from_native(orjson.loads(line)))
    t = time.perf_counter()
    kept, rows = dedup(recs)
    dt = time.perf_counter() - t
    return {"n": len(recs), "records_per_s": round(len(recs) / dt), "removed": len(rows)}


def near_quality(out: Path, truth: dict) -> dict:
    """Precision/recall of near-duplicate removal against the known families (chat file only)."""
    family, kind = truth["family"], truth["kind"]
    tp = fp = 0
    removed_near_variants = set()
    flagged_pairs = 0
    for line in (out / "clusters.jsonl").read_bytes().splitlines():
        row = orjson.loads(line)
        kf, _, kl = row["kept_source"].rpartition(":")
        df, _, dl = row["dropped_source"].rpartition(":")
        if df.endswith("pairs.jsonl") or kf.endswith("pairs.jsonl"):
            flagged_pairs += 1
            continue
        k, d = int(kl) - 1, int(dl) - 1
        same = family[k] == family[d]
        if row["method"] == "near":
            tp += same
            fp += not same
        if same:  # a near variant is found when a row links it to its own family, on either side
            for x in (k, d):
                if kind[x] == "near":
                    removed_near_variants.add(x)
    n_near = sum(1 for k in kind if k == "near")
    return {"precision": round(tp / max(1, tp + fp), 5), "recall": round(len(removed_near_variants) / max(1, n_near), 5),
            "near_rows": tp + fp, "near_variants": n_near, "pairs_flagged": flagged_pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory-n", type=int, default=1_000_000, help="one more build at this size for peak RSS; 0: skip")
    ap.add_argument("--baseline-n", type=int, default=20_000, help="records the datasketch baseline runs on")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        t = time.perf_counter()
        truth = make_workload(data, args.n)
        gen_s = time.perf_counter() - t
        inputs = [data / "chat.jsonl", data / "pairs.jsonl"]
        n_in = truth["n_chat"] + truth["n_pairs"]

        # one untimed build on the first 10k lines: compiles the numba kernels (cached on disk) the first time after
        # an edit of curate/near.py, so the timed runs measure the steady state
        warm = tmp / "warm.jsonl"
        with open(inputs[0], "rb") as src, open(warm, "wb") as dst:
            for _, line in zip(range(10_000), src):
                dst.write(line)
        warm_s = run_build([warm], tmp / "outwarm", env)["wall_s"]
        runs = []
        for r in range(args.runs):
            runs.append(run_build(inputs, tmp / f"out{r}", env))
        quality = near_quality(tmp / "out0", truth)
        build_rate = statistics.median(n_in / x["build_s"] for x in runs)
        wall_rate = statistics.median(n_in / x["wall_s"] for x in runs)
        floor = statistics.median(parse_floor(inputs[0]) for _ in range(3))
        ds_rate = datasketch_pipeline(inputs[0], min(args.baseline_n, truth["n_chat"]))
        ours_same_n = curate_dedup_pipeline(inputs[0], min(args.baseline_n, truth["n_chat"]))
        ours_all = curate_dedup_pipeline(inputs[0], truth["n_chat"])
        dd = dedup_only(inputs[0], min(args.n, truth["n_chat"]))
        result = {
            "n": n_in, "runs": args.runs, "cores": os.cpu_count(), "workload_s": round(gen_s, 1),
            "warmup_build_s": round(warm_s, 2),
            "build_records_per_s": round(build_rate), "process_records_per_s": round(wall_rate),
            "build_s": [round(x["build_s"], 2) for x in runs], "import_s": round(runs[0]["import_s"], 2),
            "build_cpu_s": [round(x["build_cpu_s"], 2) for x in runs],
            "build_records_per_cpu_s": round(statistics.median(n_in / x["build_cpu_s"] for x in runs)),
            "workers_cpu_s": [round(x.get("workers_cpu_s", 0.0), 2) for x in runs],
            "workers_peak_rss_mb": round(max(x.get("workers_peak_rss_mb", 0.0) for x in runs), 1),
            "peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs), 1),
            "ru_maxrss_mb": round(max(x["ru_maxrss_mb"] for x in runs), 1),
            "parse_floor_records_per_s": round(floor), "datasketch_records_per_s": round(ds_rate),
            "datasketch_n": min(args.baseline_n, truth["n_chat"]),
            "ratio_to_parse_floor": round(build_rate / floor, 4), "ratio_to_datasketch": round(build_rate / ds_rate, 2),
            "dedup_pipeline_records_per_s": {"same_n_as_datasketch": round(ours_same_n), "all": round(ours_all)},
            "dedup_pipeline_ratio_to_datasketch": round(ours_same_n / ds_rate, 1),
            "dedup_only": dd, "near": quality, "counts": runs[0]["counts"], "dedup": runs[0]["dedup"],
            "conservation_ok": all(x["conservation"]["ok"] for x in runs),
        }
        targets = {"records_per_s>=25000": build_rate >= 25000, "x_datasketch>=15": build_rate / ds_rate >= 15,
                   "dedup_pipeline_x_datasketch>=15": ours_same_n / ds_rate >= 15,
                   "precision>=0.99": quality["precision"] >= 0.99, "recall>=0.98": quality["recall"] >= 0.98,
                   "pairs_flagged==0": quality["pairs_flagged"] == 0}
        if args.memory_n:
            big = tmp / "big"
            big.mkdir()
            truth_m = make_workload(big, args.memory_n, seed=8)
            m_in = truth_m["n_chat"] + truth_m["n_pairs"]
            del truth_m
            mrun = run_build([big / "chat.jsonl", big / "pairs.jsonl"], tmp / "outbig", env)
            budget = m_in / 1024 + 300
            result["memory"] = {"n": m_in, "peak_rss_mb": round(mrun["peak_rss_mb"], 1),
                                "ru_maxrss_mb": round(mrun["ru_maxrss_mb"], 1),
                                "budget_mb": round(budget, 1), "build_s": round(mrun["build_s"], 1),
                                "build_records_per_s": round(m_in / mrun["build_s"])}
            targets["rss<=1KB/record+300MB"] = mrun["peak_rss_mb"] <= budget
        result["targets"] = targets
    print(json.dumps(result))


if __name__ == "__main__":
    main()
