#!/usr/bin/env python
"""Benchmark the labeling loop on a real Label Studio: push N tasks, pull N annotated tasks.

    .venv/bin/python scripts/bench_labeling.py               # N=10000, baselines sampled on 200 tasks
    .venv/bin/python scripts/bench_labeling.py --n 2000 --json

Uses LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY when set, else starts its own server in a temporary folder (and
stops it). The records are the support-triage example data, repeated with numbered prompts so every one is
distinct; their responses (and so the share of tasks whose rule checks pre-tick a prediction) are the example's.

The baselines send one request per task, as a naive client would: push = one import call per task; pull = one
GET /api/tasks/<id> per task plus the same conversion. They are measured on --sample tasks and extrapolated to N
(said so in the output). Targets on this machine: push <= 10 s, pull <= 15 s for 10k tasks.

The timed pull is a FIRST (full) pull into an empty folder. Its own server runs with one reader process (as
`curate studio up` does), so the export's two halves are made in parallel; an external server's readers come
from LABEL_STUDIO_READER_URLS (comma-separated). Then, for the record, a second pull of the unchanged project
and a pull after --new new annotations (both incremental: only the tasks updated since the last pull).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.labeling import server
from curate.labeling.client import StudioClient
from curate.labeling.convert import convert_task
from curate.labeling.pull import MARGIN_S, pull
from curate.labeling.push import ensure_project, push, to_task
from curate.records import Message, SFTRecord, read_jsonl, record_from_native
from curate.spec import load_spec
from curate.steps.base import RunContext


def spec_copy(tmp: Path, name: str):
    src = REPO / "specs" / "support-triage"
    dst = tmp / name
    shutil.copytree(src, dst)
    text = (dst / "spec.yaml").read_text().splitlines()
    (dst / "spec.yaml").write_text(
        "\n".join(f"name: {name}" if ln.startswith("name:") else ln for ln in text) + "\n"
    )
    return load_spec(dst)


def make_records(spec, n: int) -> list[SFTRecord]:
    base = [
        record_from_native(o, spec=spec.ref)
        for _, o in read_jsonl(spec.data_paths()[0])
        if isinstance(o, dict) and "messages" in o
    ]
    base = [r for r in base if r.response_text()]
    out = []
    for i in range(n):
        r = base[i % len(base)]
        conv = list(r.conversation())
        users = [k for k, m in enumerate(conv) if m.role == "user"]
        k = users[-1]
        conv[k] = Message(role="user", content=f"{conv[k].content} (ticket #{i})")
        out.append(
            SFTRecord.build(
                messages=tuple(conv), category=r.category, tags=r.tags, violates=r.violates, spec=spec.ref
            )
        )
    return out


def annotation_for(i: int, rec: SFTRecord) -> list[dict]:
    def ch(name, vals):
        return {"from_name": name, "to_name": "response", "type": "choices", "value": {"choices": vals}}

    if i % 10 == 0:  # an edit with a correction that passes
        fixed = (
            '{"intent": "other", "entities": {}, "missing_info": ["account email"], '
            '"next_step": "Which email is on the account?"}'
        )
        return [
            ch("verdict", ["edit"]),
            {"from_name": "corrected", "to_name": "response", "type": "textarea", "value": {"text": [fixed]}},
            ch("violates", ["polite-and-brief"]),
        ]
    if i % 10 == 1:
        return [ch("verdict", ["reject"]), ch("violates", ["no-action-claims"])]
    return [ch("verdict", ["accept"])]


def server_cpu(pids: list[int]) -> float | None:
    """CPU seconds (user + system) used so far by the server processes we started (None for an external one)."""
    if not pids:
        return None
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--new", type=int, default=100, help="annotations added before the incremental pull")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    own = None
    pids: list[int] = []
    if os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"):
        url, token = os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"]
        readers = [u for u in os.environ.get("LABEL_STUDIO_READER_URLS", "").split(",") if u.strip()]
    else:
        own = tmp / "studio"
        info = server.start(own, from_template=True, timeout=300)
        url, token, readers = info.url, server.credentials(own)["token"], info.urls[1:]
        pids = [info.pid, *(int(r["pid"]) for r in info.readers)]
    tag = f"{os.getpid()}-{int(time.time()) % 100000}"
    out: dict = {"n": args.n, "sample": args.sample, "server": url, "reader_processes": len(readers)}
    try:
        with StudioClient(url, token, readers=readers) as client:
            # ---------------------------------------------------------------- push
            spec = spec_copy(tmp, f"bench-push-{tag}")
            records = make_records(spec, args.n)
            t = time.perf_counter()
            res = push(spec, "review", client=client, records=records)
            push_s = time.perf_counter() - t
            assert res.pushed == args.n, res
            with_pred = sum(1 for r in records[:2000] if "predictions" in to_task(spec, "review", r)) / min(
                2000, args.n
            )
            spec_b = spec_copy(tmp, f"bench-push1-{tag}")
            t = time.perf_counter()
            res_b = push(
                spec_b, "review", client=client, records=make_records(spec_b, args.sample), batch_size=1
            )
            per_task = (time.perf_counter() - t) / args.sample
            assert res_b.pushed == args.sample
            out["push"] = {
                "seconds": round(push_s, 2),
                "tasks": args.n,
                "share_with_prediction": round(with_pred, 3),
                "baseline_one_request_per_task_seconds_extrapolated": round(per_task * args.n, 1),
                "baseline_measured_on": args.sample,
                "speedup": round(per_task * args.n / push_s, 1),
                "target_seconds": 10,
            }
            # ---------------------------------------------------------------- pull
            spec_p = spec_copy(tmp, f"bench-pull-{tag}")
            project, _ = ensure_project(client, spec_p, "review")
            pid = project["id"]
            precs = make_records(spec_p, args.n)
            t = time.perf_counter()
            for lo in range(0, args.n, 1000):
                batch = []
                for i, r in enumerate(precs[lo : lo + 1000], start=lo):
                    task = to_task(spec_p, "review", r)
                    task["annotations"] = [{"result": annotation_for(i, r)}]
                    batch.append(task)
                client.import_tasks(pid, batch)
            setup_s = time.perf_counter() - t
            # the baseline first: it also puts more than the pull's margin between the last write and the pull
            ids = [
                x["id"] for x in itertools.islice(client.task_data(pid, page_size=args.sample), args.sample)
            ]
            ctx = RunContext()
            t = time.perf_counter()
            for tid in ids:
                task = client.get_json(f"/api/tasks/{tid}/")
                convert_task(spec_p, "review", task, annotators={}, ctx=ctx, project=pid)
            per_task = (time.perf_counter() - t) / len(ids)
            wait = MARGIN_S + 1.5 - (time.perf_counter() - t)  # the server's Date header has whole seconds
            if wait > 0:
                time.sleep(wait)
            pulled = tmp / "pull" / "pulled.jsonl"
            cpu0, own_cpu0 = server_cpu(pids), time.process_time()
            t = time.perf_counter()
            pres = pull(spec_p, client=client, out=pulled, kinds=["review"], ctx=RunContext())
            pull_s = time.perf_counter() - t
            cpu1, own_cpu1 = server_cpu(pids), time.process_time()
            assert pres.counts["annotations"] == args.n and pres.counts["accounted"], pres.counts
            assert pres.counts["full_exports"] == 1 and pres.counts["fetched_tasks"] == args.n, pres.counts
            t = time.perf_counter()
            again = pull(spec_p, client=client, out=pulled, kinds=["review"], ctx=RunContext())
            again_s = time.perf_counter() - t
            assert (
                again.counts["incremental_exports"] == 1 and again.counts["records"] == pres.counts["records"]
            )
            for tid in ids[: args.new]:
                client.create_annotation(
                    tid,
                    [
                        {
                            "from_name": "verdict",
                            "to_name": "response",
                            "type": "choices",
                            "value": {"choices": ["accept"]},
                        }
                    ],
                )
            t = time.perf_counter()
            more = pull(spec_p, client=client, out=pulled, kinds=["review"], ctx=RunContext())
            more_s = time.perf_counter() - t
            assert more.counts["annotations"] == args.n + args.new and more.counts["accounted"], more.counts
            out["pull"] = {
                "seconds": round(pull_s, 2),
                "annotated_tasks": args.n,
                "split_seconds": {k: round(v, 2) for k, v in pres.timings.items()},
                "records": pres.counts["records"],
                "quarantined": pres.counts["quarantined"],
                "setup_import_with_annotations_seconds": round(setup_s, 1),
                "baseline_one_request_per_task_seconds_extrapolated": round(per_task * args.n, 1),
                "baseline_measured_on": len(ids),
                "speedup": round(per_task * args.n / pull_s, 1),
                "target_seconds": 15,
                "cpu_seconds": {
                    "server_processes": None if cpu0 is None else round(cpu1 - cpu0, 2),
                    "client": round(own_cpu1 - own_cpu0, 2),
                },
                "second_pull_unchanged": {
                    "seconds": round(again_s, 2),
                    "fetched_tasks": again.counts["fetched_tasks"],
                    "split_seconds": {k: round(v, 2) for k, v in again.timings.items()},
                },
                "pull_after_new_annotations": {
                    "new": args.new,
                    "seconds": round(more_s, 2),
                    "fetched_tasks": more.counts["fetched_tasks"],
                    "new_or_changed": more.counts["new_or_changed_annotations"],
                    "full_exports": more.counts["full_exports"],
                },
            }
    finally:
        if own is not None:
            server.stop(own)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        p, q = out["push"], out["pull"]
        print(
            f"push {p['tasks']} tasks: {p['seconds']} s (target {p['target_seconds']} s); one request per task: "
            f"~{p['baseline_one_request_per_task_seconds_extrapolated']} s (extrapolated from {p['baseline_measured_on']}"
            f" tasks) -> {p['speedup']}x; {p['share_with_prediction']:.0%} of tasks carry a prediction"
        )
        print(
            f"pull {q['annotated_tasks']} annotated tasks: {q['seconds']} s (target {q['target_seconds']} s) -> "
            f"{q['records']} records, {q['quarantined']} quarantined; one request per task: "
            f"~{q['baseline_one_request_per_task_seconds_extrapolated']} s (extrapolated from "
            f"{q['baseline_measured_on']} tasks) -> {q['speedup']}x; split: "
            + ", ".join(f"{k} {v} s" for k, v in q["split_seconds"].items())
        )
        a, m = q["second_pull_unchanged"], q["pull_after_new_annotations"]
        c = q["cpu_seconds"]
        if c["server_processes"] is not None:
            print(
                f"pull CPU: server processes {c['server_processes']} s (all of them together), this client "
                f"{c['client']} s"
            )
        print(
            f"incremental: second pull of the unchanged project {a['seconds']} s ({a['fetched_tasks']} tasks "
            f"fetched); after {m['new']} new annotations {m['seconds']} s ({m['fetched_tasks']} tasks fetched, "
            f"{m['new_or_changed']} new or changed)"
        )
        print(
            f"{out['reader_processes']} reader process(es); load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
