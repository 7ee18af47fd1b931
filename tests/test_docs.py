"""The docs' examples run: docs/walkthrough.md, command by command, in an empty folder (a real Label Studio, real
TRL training), and each ```text block after a command is what that command printed.

Two stand-ins, both said in the walkthrough: `--model smollm2` becomes a tiny local model (SmolLM2 takes minutes
on a CPU; its outputs are the ```output blocks, shown but not compared), and the ten labels are made through
Label Studio's API, as a person's clicks would make them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WALKTHROUGH = REPO / "docs" / "walkthrough.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return [
        (m.group(1), m.group(2))
        for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    ]


def line_pattern(expected: str) -> re.Pattern[str]:
    """An expected output line as a pattern: numbers may differ (timings, ports, pids, ids), nothing else."""
    out = []
    for part in re.split(r"(\d+(?:\.\d+)?)", expected.strip()):
        out.append(r"\d+(?:\.\d+)?" if re.fullmatch(r"\d+(?:\.\d+)?", part) else re.escape(part))
    return re.compile("".join(out))


def test_line_pattern() -> None:
    p = line_pattern("26 tasks pushed, 0 already there in 0.7 s")
    assert p.fullmatch("26 tasks pushed, 0 already there in 12.25 s")
    assert not p.fullmatch("26 tasks pushed, 0 already here in 0.7 s")


# the labeler's ten clicks: two edits (the answers whose rules arrive ticked) and eight accepts
FIXES = {
    "My notes vanished after the update": {
        "answer": "Sorry! Open Trash from the menu: deleted notes stay there for "
        "30 days and you can restore them.",
        "confidence": 0.8,
    },
    "how do i rename a notebook": {
        "answer": "Press and hold the notebook, then tap Rename.",
        "confidence": 0.9,
    },
}


def label_ten(studio_dir: Path) -> None:
    from curate.labeling.client import connect

    def choice(name: str, value: str) -> dict:
        return {"from_name": name, "to_name": "response", "type": "choices", "value": {"choices": [value]}}

    def user_text(task: dict) -> str:
        return next(m["content"] for m in task["data"]["messages"] if m["role"] == "user")

    with connect(workspace=studio_dir) as c:
        project = next(p for p in c.projects() if p["title"].startswith("faq-bot") and "review" in p["title"])
        tasks = sorted(c.task_data(project["id"]), key=lambda t: t["id"])
        fix = [t for t in tasks if user_text(t) in FIXES]
        accept = [t for t in tasks if user_text(t) not in FIXES][:8]
        assert len(fix) == 2 and len(accept) == 8
        for t in fix:
            c.create_annotation(
                t["id"],
                [
                    choice("verdict", "edit"),
                    {
                        "from_name": "corrected",
                        "to_name": "response",
                        "type": "textarea",
                        "value": {"text": [json.dumps(FIXES[user_text(t)])]},
                    },
                ],
            )
        for t in accept:
            c.create_annotation(t["id"], [choice("verdict", "accept")])


@pytest.mark.studio
@pytest.mark.train
def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    from curate.labeling import server
    from tests.tinymodel import build_tiny_model

    work = tmp_path / "empty"
    work.mkdir()
    tiny = build_tiny_model(tmp_path / "tiny")
    studio_dir = work / ".curate" / "studio"
    # the walkthrough's `curate studio up` finds this server running (a migrated database copied in: ~30 s saved)
    server.start(studio_dir, timeout=300, from_template=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COLUMNS": "120",
    }
    env.pop("CURATE_DEBUG", None)
    ran = 0
    last_output = None
    try:
        for lang, code in blocks(WALKTHROUGH.read_text()):
            if lang == "bash":
                if "/path/to/curate" in code:
                    continue  # the activation line, with a placeholder path
                script = code.replace("--model smollm2", f"--model {tiny}")
                r = subprocess.run(
                    ["bash", "-eo", "pipefail", "-c", script],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
                assert r.returncode == 0, (
                    f"{code}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
                )
                last_output = [ln.strip() for ln in (r.stdout + "\n" + r.stderr).splitlines()]
                ran += 1
                if "curate label push" in code:
                    label_ten(studio_dir)
            elif lang == "text":
                assert last_output is not None, "an output block before any command"
                for expected in code.splitlines():
                    if expected.strip():
                        pat = line_pattern(expected)
                        assert any(pat.fullmatch(got) for got in last_output), (
                            f"expected line not printed: {expected!r}\nprinted:\n"
                            + "\n".join(last_output[-40:])
                        )
                last_output = None  # one output block per command
    finally:
        server.stop(studio_dir)
    assert ran >= 10
    # what the walkthrough promises at its end: a trained model and two comparable evaluations
    assert (work / "runs" / "faq-sft" / "curate_train_config.json").is_file()
    before, after = (json.loads((work / "evals" / f).read_text()) for f in ("base.json", "sft.json"))
    assert before["spec"] == after["spec"] and after["responses"] == before["responses"] > 0
    manifest = json.loads((work / "out" / "faq-bot" / "v1" / "manifest.json").read_text())
    assert manifest["counts"]["dpo"]["train"] == 2 and manifest["conservation"]["ok"]


def test_readme_python_example_runs(tmp_path: Path) -> None:
    """The README's Python API block, as printed, from a folder that has the example specs."""
    code = next(c for lang, c in blocks((REPO / "README.md").read_text()) if lang == "python")
    (tmp_path / "specs").symlink_to(REPO / "specs", target_is_directory=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (
        "out/support-triage/v1" in r.stdout
        and (tmp_path / "out" / "support-triage" / "v1" / "manifest.json").is_file()
    )
