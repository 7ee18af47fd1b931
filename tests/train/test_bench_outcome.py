"""The training-outcome benchmark's own pieces (scripts/bench_training_outcome.py), without training: the raw arm's
rows, the figures with intervals, and the chart."""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from curate.evaluate import heldout_file, score
from curate.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load("bench_training_outcome")
mnd = _load("make_noisy_data")


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "specs" / "support-triage")


def test_raw_arm_keeps_every_trainable_row_with_its_noise(tmp_path: Path, spec) -> None:
    data = mnd.generate(0.3, 640, seed=13)
    mnd.write(data, tmp_path)
    rows, skipped = bench.raw_rows(spec, tmp_path / "raw.jsonl", data.truth)
    unusable = sum(
        1
        for line, t in zip(data.raw, data.truth)
        if t == "wrong_format" and ((obj := _obj(line)) is None or len(obj.get("messages", [])) < 2)
    )
    assert sum(skipped.values()) == skipped["wrong_format"] == unusable
    assert len(rows) == 640 - unusable
    kinds = {k for _, k, _ in rows}
    assert {
        "rule_breaking",
        "over_long",
        "exact_duplicate",
        "contradicting_label",
        "heldout_near_copy",
    } <= kinds
    assert all(
        r["messages"][0] == {"role": "system", "content": spec.system_prompt.strip()} for r, _, _ in rows
    )
    assert all(r["messages"][-1]["role"] == "assistant" for r, _, _ in rows)
    assert all(data.truth[line - 1] == k for _, k, line in rows)


def test_the_two_arms_are_drawn_together() -> None:
    """One order of raw lines for both arms: at 0% noise (every line kept but a few) the arms share nearly every row;
    the curated arm takes the next kept line where the raw arm has one the build dropped."""
    raw = {i: f"raw{i}" for i in range(1, 201)}
    cur = {i: f"cur{i}" for i in range(1, 201) if i % 10}  # the build kept 90% of the lines
    a, b = bench.paired_sample(raw, cur, 200, 40, seed=3)
    assert len(a) == len(b) == 40
    shared = {x[3:] for x in a} & {x[3:] for x in b}
    assert len(shared) >= 40 - 8  # only the dropped lines differ
    assert bench.paired_sample(raw, cur, 200, 40, seed=3) == (a, b)
    assert bench.paired_sample(raw, cur, 200, 40, seed=4) != (a, b)
    assert bench.source_line({"lineage": '{"source": "/tmp/x/raw.jsonl:17"}'}) == 17
    assert bench.source_line({"lineage": '{"source": "/tmp/x/negatives.jsonl:3"}'}) is None


def _obj(line: str):
    try:
        o = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return o if isinstance(o, dict) else None


def test_metrics_and_intervals_from_eval_reports(spec) -> None:
    prompts = heldout_file(ROOT / "specs" / "support-triage" / "bench" / "heldout.jsonl", spec)
    reps = []
    for k in (4, 2):  # two training repeats: every 4th / every 2nd answer broken
        answers = [
            p.reference["answer"] if i % k else "Sure! " + p.reference["answer"]
            for i, p in enumerate(prompts)
        ]
        rep = score(spec, prompts, answers)
        rep["general"] = {"per_question": [True, True, False, True]}
        reps.append(rep)
    rules = [r.id for r in spec.automatic_rules()]
    n = len(prompts)
    bad4, bad2 = len(range(0, n, 4)), len(range(0, n, 2))
    one = bench.metrics(reps[:1], rules, 500)
    assert one["all_rules"]["n"] == n and one["all_rules"]["rate"] == pytest.approx((n - bad4) / n)
    lo, hi = one["all_rules"]["ci"]
    assert lo < one["all_rules"]["rate"] < hi
    assert one["valid_json"]["rate"] == one["all_rules"]["rate"]
    assert one["intent"]["rate"] == pytest.approx((n - bad4) / n)  # no JSON, no intent
    assert one["rules"]["valid-json"]["n"] == n and one["rules"]["no-action-claims"]["n"] == n - bad4
    assert one["general"]["rate"] == 0.75 and one["general"]["n"] == 4
    assert bench.fmt(one["general"]).startswith("75.0 [")
    both = bench.metrics(reps, rules, 500)
    assert both["all_rules"]["n"] == 2 * n and both["all_rules"]["repeats"] == 2
    assert both["all_rules"]["per_repeat"] == pytest.approx([(n - bad4) / n, (n - bad2) / n])
    assert both["all_rules"]["rate"] == pytest.approx((2 * n - bad4 - bad2) / (2 * n))
    assert both["rules"]["no-action-claims"]["n"] == 2 * n - bad4 - bad2
    # resampling the repeats too: the interval is wider than the prompts-only one of the same pooled cells
    lo2, hi2 = both["all_rules"]["ci"]
    assert lo2 < both["all_rules"]["rate"] < hi2


def test_two_way_bootstrap_pairs_repeats_and_prompts() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    a = (rng.random((3, 96)) < 0.5).astype(float)
    assert bench.two_way_ci(a, a.copy(), boot=200) == (0.0, 0.0)  # the same cells: no difference at all
    b = a.copy()
    b[:, :24] = 1.0  # b passes 24 more prompt-runs where a failed some
    lo, hi = bench.two_way_ci(a, b, boot=400)
    assert 0 < lo <= float(b.mean() - a.mean()) <= hi
    # a repeat that differs from the others widens the interval of the mean
    c = a.copy()
    c[2] = 1.0
    w_a = np.subtract(*reversed(bench.two_way_ci(a, boot=400)))
    w_c = np.subtract(*reversed(bench.two_way_ci(c, boot=400)))
    assert w_c > w_a
    nan = np.full((2, 4), np.nan)
    assert bench.two_way_ci(nan, boot=50) is None
    assert bench.pooled(nan) == {"n": 0, "rate": None, "per_repeat": [None, None]}


def test_chart_is_valid_svg_with_every_arm(spec) -> None:
    def pt(rate: float) -> dict:
        return {"n": 96, "rate": rate, "ci": (rate - 0.05, min(1.0, rate + 0.05))}

    svg = bench.chart_svg(
        {
            "SFT raw": [(0.0, pt(0.8)), (0.15, pt(0.7)), (0.3, pt(0.6))],
            "SFT curated": [(0.0, pt(0.8)), (0.15, pt(0.8)), (0.3, pt(0.78))],
        },
        {"SFT + DPO": {"x": 0.3, "m": pt(0.85)}, "untuned": {"x": None, "m": pt(0.0)}},
        "a <title> & more",
    )
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "a <title> & more" in texts
    assert {"SFT raw", "SFT curated", "SFT + DPO", "untuned", "30%"} <= set(texts)
    assert len(list(root.iter("{http://www.w3.org/2000/svg}circle"))) == 6


def test_missing_info_decision_against_the_reference() -> None:
    rep = {
        "items": [
            {"where": "h.jsonl:1", "response": '{"missing_info": ["account email"], "next_step": "Which?"}'},
            {"where": "h.jsonl:2", "response": '{"missing_info": ["account email"], "next_step": "Which?"}'},
            {"where": "h.jsonl:3", "response": "Sure! no JSON"},
        ]
    }
    bench.mark_missing_decision(rep, {1: True, 2: False, 3: True})
    assert [it["missing_ok"] for it in rep["items"]] == [True, False, None]
    refs = bench.heldout_missing(ROOT / "specs" / "support-triage" / "bench" / "heldout.jsonl")
    assert len(refs) == 96 and sum(refs.values()) == 40


@pytest.mark.train
def test_tiny_smoke_run_writes_the_tables_and_the_chart(tmp_path: Path) -> None:
    """`--tiny` end to end (one noise rate, fewer raw rows, in one process): data, build, every arm trained and
    evaluated on the tiny model, then bench.md, bench.json and chart.svg in the work folder."""
    import subprocess

    work = tmp_path / "work"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_training_outcome.py"),
            "--tiny",
            "--work",
            str(work),
            "--noise",
            "0.3",
            "--rows",
            "240",
            "--parallel",
            "1",
            "--boot",
            "50",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (work / "bench.md").read_text("utf-8")
    assert "frozen held-out set (16 prompts), tiny test model" in md
    assert "1 training repeat(s) per arm" in md  # the default setting
    for part in (
        "## Noise 30% (72 of 240 raw rows",
        "| **all rules pass** |",
        "SFT + DPO",
        "## Targets at 30% noise",
    ):
        assert part in md
    assert "Not evaluated" not in md
    assert "one training run per arm: the intervals resample the prompts only" in md
    assert {f.stem for f in (work / "evals").glob("*.json")} == {
        "untuned",
        "sft-raw-30-r0",
        "sft-curated-30-r0",
        "dpo-30-r0",
    }
    # the DPO pairs: the curated SFT model's failures on 16 training prompts first, paired by the build
    mine = orjson.loads((work / "data" / "dpo-30-r0" / "mine.json").read_bytes())
    # (the tiny model's answers are empty: the build quarantines them as empty turns; nothing is lost)
    assert mine["prompts"] == 16 and 1 <= mine["failures"] <= 16
    assert mine["mined_pairs"] + sum(mine["mined_quarantined"].values()) <= mine["failures"]
    assert mine["used"] == min(56, mine["mined_pairs"] + mine["static_pairs"])
    assert mine["used_mined"] == min(mine["mined_pairs"], mine["used"])
    answers = {
        it["response"]
        for it in orjson.loads((work / "data" / "mine-30-r0" / "eval.json").read_bytes())["items"]
    }
    pairs = [
        orjson.loads(x)
        for x in (work / "data" / "dpo-30-r0" / "dpo" / "train.jsonl").read_bytes().splitlines()
    ]
    assert len(pairs) == mine["used"]
    assert all(p["rejected"][-1]["content"] in answers for p in pairs[: mine["used_mined"]])
    heldout = {
        p.messages[-1]["content"] for p in heldout_file(ROOT / "specs/support-triage/bench/heldout.jsonl")
    }
    assert not any(p["prompt"][-1]["content"] in heldout for p in pairs)
    assert f"DPO took {mine['used']} ({mine['used_mined']} mined)" in md
    out = orjson.loads((work / "bench.json").read_bytes())
    assert out["settings"]["repeats"] == 1 and out["settings"]["noise"] == [0.3]
    assert out["metrics"]["sft-curated-30"]["all_rules"]["n"] == 16
    assert out["timing"]["total_s"] > 0 and out["timing"]["load_1min_mean"] >= 0
    root = ET.fromstring((work / "chart.svg").read_text("utf-8"))
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"SFT raw", "SFT curated", "SFT + DPO", "untuned"} <= texts
