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
    kinds = {k for _, k in rows}
    assert {
        "rule_breaking",
        "over_long",
        "exact_duplicate",
        "contradicting_label",
        "heldout_near_copy",
    } <= kinds
    assert all(r["messages"][0] == {"role": "system", "content": spec.system_prompt.strip()} for r, _ in rows)
    assert all(r["messages"][-1]["role"] == "assistant" for r, _ in rows)


def _obj(line: str):
    try:
        o = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return o if isinstance(o, dict) else None


def test_metrics_and_intervals_from_an_eval_report(spec) -> None:
    prompts = heldout_file(ROOT / "specs" / "support-triage" / "bench" / "heldout.jsonl", spec)
    answers = [
        p.reference["answer"] if i % 4 else "Sure! " + p.reference["answer"] for i, p in enumerate(prompts)
    ]
    rep = score(spec, prompts, answers)
    rep["general"] = {"per_question": [True, True, False, True]}
    rules = [r.id for r in spec.automatic_rules()]
    m = bench.metrics(rep, rules, 500)
    n = len(prompts)
    bad = len(range(0, n, 4))
    assert m["all_rules"]["n"] == n and m["all_rules"]["rate"] == pytest.approx((n - bad) / n)
    lo, hi = m["all_rules"]["ci"]
    assert lo < m["all_rules"]["rate"] < hi
    assert m["valid_json"]["rate"] == m["all_rules"]["rate"]
    assert m["intent"]["rate"] == pytest.approx((n - bad) / n)  # no JSON, no intent
    assert m["rules"]["valid-json"]["n"] == n and m["rules"]["no-action-claims"]["n"] == n - bad
    assert m["general"] == {"n": 4, "rate": 0.75, "ci": m["general"]["ci"]}
    assert bench.per_prompt(rep, "all_rules") == [float(i % 4 != 0) for i in range(n)]
    assert bench.fmt(m["general"]).startswith("75.0 [")


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
