#!/usr/bin/env python3
"""Where a build's resident memory goes: one build in a fresh process, its VmRSS sampled from outside.

    .venv/bin/python scripts/mem_profile.py --workload openai --n 50000
    .venv/bin/python scripts/mem_profile.py --workload templated --n 200000 --workdir /tmp/mem --keep

Writes bench_build's workload (`--workload`: openai, templated, chat) of `--n` records to a temporary folder,
runs `pipeline.build` on it in a child process, and reads the child's /proc/PID/status VmRSS every `--every`
seconds (0.2), with RssAnon / RssFile / RssShmem. Every sample is tagged with the last stage the build reported through `build(progress=...)` and
with the innermost of the marked functions (`MARKS`: the candidate stage, the cap, the split's steps, the export's
writer ...) the build is inside, wrapped in the child to print enter / leave lines. Prints a table: per tag, the
first and last second it was seen, RSS on entry and its peak; then the overall peak (VmHWM) and the tag it was
reached in. `--json` prints the same as one JSON document.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

# (module, attribute) pairs the child wraps to report when the build is inside them
MARKS = [
    ("curate.engine.compact", "read_validate_rows"),
    ("curate.engine.compact", "make_pairs_rows"),
    ("curate.steps.pipeline", "dedup"),
    ("curate.steps.dedup", "candidate_pairs_counted"),
    ("curate.steps.dedup", "key_pairs"),
    ("curate.steps.dedup", "cap_candidates"),
    ("curate.steps.dedup", "_greedy"),
    ("curate.steps.split", "split_rows"),
    ("curate.near", "text_pairs"),
    ("curate.near", "candidate_pairs_counted"),
    ("curate.near", "cap_candidates"),
    ("curate.near", "scored_pairs"),
    ("curate.steps.pipeline", "build_manifest"),
    ("curate.steps.pipeline", "write_split_batches"),
    ("curate.steps.pipeline", "write_jsonl"),
    ("curate.steps.lengths_file", "write_lengths"),
    ("curate.steps.pipeline", "dataset_card"),
    ("curate.report", "write_report"),
    ("curate.steps.pipeline", "file_hashes"),
]

_CHILD = r"""
import importlib, os, sys, time, functools
t0 = time.perf_counter()
def mark(what):
    sys.stderr.write(f"MARK {time.perf_counter() - t0:.3f} {what}\n"); sys.stderr.flush()
mark("start")
from curate.steps.pipeline import build
import curate.steps.split, curate.near, curate.steps.dedup, curate.engine.compact, curate.report, curate.steps.lengths_file
mark("imported")
for mod, name in MARKS:
    m = importlib.import_module(mod)
    fn = getattr(m, name, None)
    if fn is None:
        continue
    def wrap(fn, tag):
        @functools.wraps(fn)
        def inner(*a, **k):
            mark("+" + tag)
            try:
                return fn(*a, **k)
            finally:
                mark("-" + tag)
        return inner
    setattr(m, name, wrap(fn, f"{mod.rsplit('.', 1)[1]}.{name}"))
last = [None]
def progress(stage, done, total=None):
    if stage != last[0]:
        last[0] = stage
        mark("=" + stage)
build(sys.argv[1], sys.argv[2:-1], sys.argv[-1], progress=progress, engine=os.environ.get("CURATE_PROFILE_ENGINE", "local"))
mark("done")
"""


def _kb(pid: int, key: str) -> int:
    return _status(pid).get(key.rstrip(":"), 0)


def _status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS = RssAnon + RssFile + RssShmem)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return {
                k: int(v.split()[0]) for k, _, v in (x.partition(":") for x in fh) if v.strip().endswith("kB")
            }
    except OSError:
        return {}


def profile(inputs: list[Path], out: Path, every: float, engine: str = "local") -> dict:
    code = f"MARKS = {MARKS!r}\n" + _CHILD
    env = {
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
        "CURATE_PROFILE_ENGINE": engine,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(REPO / "specs" / "support-triage"), *map(str, inputs), str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    stage = ["launch"]
    stack: list[str] = []
    tags: dict[str, dict] = {}
    lock = threading.Lock()
    start = time.perf_counter()
    err: list[str] = []

    def tag() -> str:
        return stage[0] + (" / " + stack[-1] if stack else "")

    def reader() -> None:
        for raw in proc.stderr:  # type: ignore[union-attr]
            line = raw.decode(errors="replace").rstrip()
            if not line.startswith("MARK "):
                err.append(line)
                continue
            _, _, what = line.split(" ", 2)
            with lock:
                if what.startswith("="):
                    stage[0] = what[1:]
                elif what.startswith("+"):
                    stack.append(what[1:])
                elif what.startswith("-") and stack:
                    stack.pop()
                else:
                    stage[0] = what
                note(_status(proc.pid))

    def note(st: dict[str, int]) -> None:
        kb = st.get("VmRSS", 0)
        t = round(time.perf_counter() - start, 2)
        got = tags.setdefault(tag(), {"first_s": t, "last_s": t, "rss_in_mb": kb // 1024, "peak_mb": 0})
        got["last_s"] = t
        if (
            kb // 1024 >= got["peak_mb"]
        ):  # what the peak is made of: anonymous memory, files (libraries), shmem
            got["peak_mb"] = kb // 1024
            got["at_peak_mb"] = [st.get(k, 0) // 1024 for k in ("RssAnon", "RssFile", "RssShmem")]

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    hwm = 0
    while proc.poll() is None:
        st = _status(proc.pid)
        hwm = max(hwm, st.get("VmHWM", 0))
        with lock:
            if st.get("VmRSS"):
                note(st)
        time.sleep(every)
    th.join()
    if proc.returncode:
        raise SystemExit("build failed:\n" + "\n".join(err[-40:]))
    top = max(tags.items(), key=lambda kv: kv[1]["peak_mb"])
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_hwm_mb": hwm // 1024,
        "peak_tag": top[0],
        "tags": tags,
    }


def main() -> None:
    import bench_build

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="openai", choices=sorted(bench_build.WORKLOADS))
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--every", type=float, default=0.2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated workload in --workdir")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="the build's engine (ray: the driver's memory)",
    )
    ap.add_argument("--input", type=Path, action="append", help="build these files instead of a workload")
    args = ap.parse_args()
    if args.input:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            got = profile(args.input, Path(tmp) / "out", args.every, args.engine)
        args.workload, args.n = ",".join(p.name for p in args.input), 0
        got["n"], got["workload"] = 0, args.workload
    else:
        got = _workload(args)
    if args.json:
        print(json.dumps(got))
        return
    _table(args, got)


def _workload(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(args.workdir or tmp) / f"{args.workload}-{args.n}"
        if not (folder / "truth.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            truth = __import__("bench_build").WORKLOADS[args.workload](folder, args.n)
            if args.keep:
                (folder / "truth.json").write_text(json.dumps({"files": truth["files"]}))
        else:
            truth = json.loads((folder / "truth.json").read_text())
        got = profile([folder / f for f in truth["files"]], Path(tmp) / "out", args.every, args.engine)
        got["n"] = args.n
        got["workload"] = args.workload
    return got


def _table(args: argparse.Namespace, got: dict) -> None:
    print(
        f"{args.workload} n={args.n}: wall {got['wall_s']} s, peak (VmHWM) {got['peak_hwm_mb']} MB in {got['peak_tag']}"
    )
    print(f"{'tag':56} {'from s':>7} {'to s':>7} {'in MB':>6} {'peak MB':>7}  anon/file/shmem at peak")
    for name, t in got["tags"].items():
        parts = "/".join(map(str, t.get("at_peak_mb", [])))
        print(
            f"{name[:56]:56} {t['first_s']:7.1f} {t['last_s']:7.1f} {t['rss_in_mb']:6d} {t['peak_mb']:7d}  {parts}"
        )


if __name__ == "__main__":
    main()
