#!/usr/bin/env python
"""Screenshots of the labeling page for each config (review, pairwise, write), as a labeler sees it.

    .venv/bin/python scripts/screenshot_labeling.py                 # writes docs/screenshots/labeling-*.png
    .venv/bin/python scripts/screenshot_labeling.py --spec specs/support-agent --out /tmp/shots

Uses LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY when set, else starts its own Label Studio in a temporary folder
(and stops it). Pushes a few of the spec's records under a throw-away spec name, signs a new labeler up through
the invite link in headless Chromium (Debian's chromium, driven over the DevTools protocol) and captures one
task per kind: for review, a response whose automatic checks fail, so the pre-ticked rules show.

Then a scripted labeler labels every pushed task in the browser the way a person does (review: accept a response
that passes, or pick edit and correct the pre-filled answer in place; write: type an answer; pairwise: click the
response that passes) and the script prints the seconds per task (page load to saved annotation), per kind.
"""

from __future__ import annotations

import argparse
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
from curate.labeling.push import find_project, prompt_record, push
from curate.labeling.screens import LabelerBrowser
from curate.records import read_jsonl, record_from_native
from curate.spec import load_spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(REPO / "specs" / "support-triage"))
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="curate-shots-"))
    own = None
    try:
        if os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"):
            url, token = os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"]
        else:
            own = tmp / "studio"
            info = server.start(own, from_template=True, timeout=300)
            url, token = info.url, server.credentials(own)["token"]
        src = Path(args.spec)
        src = src if src.is_dir() else src.parent
        dst = tmp / "spec"
        shutil.copytree(src, dst)
        spec0 = load_spec(dst)
        name = f"{spec0.name}-shots-{int(time.time()) % 100000}"
        text = (dst / "spec.yaml").read_text().splitlines()
        (dst / "spec.yaml").write_text(
            "\n".join(f"name: {name}" if ln.startswith("name:") else ln for ln in text) + "\n"
        )
        spec = load_spec(dst)
        records = [
            record_from_native(o, spec=spec.ref)
            for p in spec.data_paths()
            for _, o in read_jsonl(p)
            if isinstance(o, dict)
        ]
        sft = [r for r in records if r.kind == "sft" and r.response_text()]
        failing = [r for r in sft if r.category == "negative"][:2]
        pairs = [r for r in records if r.kind == "preference"][:2]
        out = Path(args.out)
        with StudioClient(url, token) as client:
            push(spec, "review", client=client, records=failing + sft[:3])
            push(spec, "pairwise", client=client, records=pairs)
            push(spec, "write", client=client, records=sft[:2])
            with LabelerBrowser(client, width=1400, height=2000) as browser:
                for kind, rec in (("review", failing[0]), ("pairwise", pairs[0]), ("write", sft[0])):
                    pid = find_project(client, spec, kind)["id"]
                    want = prompt_record(rec).id if kind == "write" else rec.id  # one write task per prompt
                    task = next(t for t in client.task_data(pid) if t["data"]["curate_id"] == want)
                    browser.open_task(pid, task["id"])
                    path = browser.screenshot(out / f"labeling-{kind}.png")
                    print(path)
                times = label_everything(client, spec, browser)
        for kind, secs in times.items():
            if secs:
                print(
                    f"scripted labeler, {kind}: {len(secs)} tasks, {sum(secs) / len(secs):.2f} s per task "
                    f"(min {min(secs):.2f}, max {max(secs):.2f})"
                )
    finally:
        if own is not None:
            server.stop(own)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def label_everything(client: StudioClient, spec, browser: LabelerBrowser) -> dict[str, list[float]]:
    """Label every task of the three projects in the browser; {kind: [seconds per task]}."""
    from curate.checks import run_rules
    from curate.labeling.push import pretty

    times: dict[str, list[float]] = {}
    for kind in ("review", "write", "pairwise"):
        pid = find_project(client, spec, kind)["id"]
        times[kind] = []
        for task in client.task_data(pid):
            rec = record_from_native(task["meta"]["record"])
            t0 = time.perf_counter()
            browser.open_task(pid, task["id"])
            if kind == "review":
                if any(c.status == "fail" for c in run_rules(spec, rec)):
                    browser.tick("edit")
                    browser.edit_text(
                        "corrected",
                        pretty(
                            '{"intent": "other", "entities": {}, "missing_info": [], '
                            '"next_step": "Ask what is needed."}'
                        ),
                    )
                else:
                    browser.tick("accept")
            elif kind == "write":
                browser.write_text(
                    "ideal",
                    '{"intent": "other", "entities": {}, "missing_info": [], '
                    '"next_step": "Ask what is needed."}',
                )
            else:
                side = "left" if task["data"]["left"] == rec.response_text() else "right"
                browser.pick(task["data"][side])
            browser.submit(task["id"])
            times[kind].append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    sys.exit(main())
