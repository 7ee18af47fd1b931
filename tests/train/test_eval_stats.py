"""Evaluation on the compiled checks (== the per-response path), the frozen held-out file with reference intents,
and the bootstrap intervals the training-outcome benchmark reports."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from curate.checks import check_response
from curate.errors import EvalError
from curate.evaluate import Prompt, bootstrap_ci, heldout_file, paired_bootstrap_ci, score, score_general
from curate.expand.mutators import mutate
from curate.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "specs" / "support-triage" / "bench" / "heldout.jsonl"


@pytest.fixture(scope="module")
def spec(spec_dir: Path):
    return load_spec(spec_dir)


@pytest.fixture(scope="module")
def prompts(spec):
    return heldout_file(HELDOUT, spec)


def _responses(spec, prompts: list[Prompt]) -> list[str]:
    """Per held-out prompt one answer: its reference, a mutant breaking some rule, or model-style junk."""
    rng = random.Random(7)
    rules = spec.automatic_rules()
    out = []
    for i, p in enumerate(prompts):
        ref = p.reference["answer"]
        k = i % 6
        if k == 0:
            out.append(ref)
        elif k in (1, 2, 3):
            got = mutate(
                spec,
                rules[i % len(rules)],
                ref,
                user_text=p.user_text(),
                category=p.category,
                tags=p.tags,
                rng=rng,
            )
            out.append(got[0].text if got else ref)
        elif k == 4:
            out.append(
                rng.choice(
                    [
                        "Sure! Here is the ticket: " + ref,
                        "```json\n" + ref + "\n```",
                        ref[:40],
                        "I'm sorry, but I can't help with that.",
                        "",
                        "{}",
                        "[1, 2]",
                        '{"intent": 5, "entities": [], "missing_info": {}, "next_step": null}',
                    ]
                )
            )
        else:
            doc = orjson.loads(ref)
            doc["next_step"] = rng.choice(
                [
                    "I've reset your password. Anything else?",
                    "What is your CVV?",
                    "Which plan? And which email?",
                    "Done.",
                ]
            )
            out.append(orjson.dumps(doc).decode())
    return out


def test_compiled_evaluation_equals_the_per_response_path(spec, prompts) -> None:
    responses = _responses(spec, prompts)

    def reference(response: str, user: str, category: str, tags: frozenset[str]) -> list:
        return check_response(spec, response, user_text=user, category=category, tags=tags)

    fast, slow = score(spec, prompts, responses), score(spec, prompts, responses, check=reference)
    assert fast == slow
    assert 0 < fast["overall_pass_rate"] < 1 and fast["failures_by_category"]
    assert {r["rule"] for r in fast["rules"] if r["fail"]} == {r.id for r in spec.automatic_rules()}


def test_heldout_file_prompts_and_intent_accuracy(spec, prompts) -> None:
    assert len(prompts) >= 80 and {p.category for p in prompts} == {"typical", "edge", "adversarial"}
    assert all(p.messages[0] == {"role": "system", "content": spec.system_prompt.strip()} for p in prompts)
    assert all(p.messages[-1]["role"] == "user" and p.reference["intent"] for p in prompts)
    refs = [p.reference["answer"] for p in prompts]
    rep = score(spec, prompts, refs)
    assert rep["overall_pass_rate"] == 1.0 and rep["valid_json_rate"] == 1.0
    assert rep["intent_accuracy"] == {"prompts": len(prompts), "correct": len(prompts), "rate": 1.0}
    wrong = [
        r.replace(f'"intent":"{p.reference["intent"]}"', '"intent":"other"')
        if p.reference["intent"] != "other"
        else r.replace('"intent":"other"', '"intent":"report_bug"')
        for p, r in zip(prompts, refs)
    ]
    rep = score(spec, prompts, wrong[:10] + refs[10:])
    assert rep["intent_accuracy"]["correct"] == len(prompts) - 10
    assert [it["intent_ok"] for it in rep["items"][:11]] == [False] * 10 + [True]
    assert rep["items"][0]["valid_json"] is True
    assert sum(it["refused"] is not None for it in rep["items"]) == rep["over_refusal"]["prompts"] > 0


def test_heldout_file_errors_name_the_line(tmp_path: Path, spec) -> None:
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"nothing": 1}\n')
    with pytest.raises(EvalError, match=r"h\.jsonl:2: a row with neither messages nor prompt"):
        heldout_file(bad, spec)
    bad.write_text('{"prompt": "hi"}\n{"prompt": "HI "}\n')
    with pytest.raises(EvalError, match=r"h\.jsonl:2: the same prompt twice"):
        heldout_file(bad, spec)
    with pytest.raises(EvalError, match="does not exist"):
        heldout_file(tmp_path / "none.jsonl", spec)


def test_bootstrap_ci_contains_the_mean_is_seeded_and_narrows_with_more_prompts() -> None:
    rng = random.Random(1)
    small = [rng.random() < 0.7 for _ in range(40)]
    big = [rng.random() < 0.7 for _ in range(400)]
    lo, hi = bootstrap_ci(small)
    assert lo <= sum(small) / 40 <= hi
    assert bootstrap_ci(small) == bootstrap_ci(small, seed=0) and bootstrap_ci(small, seed=1) != (lo, hi)
    blo, bhi = bootstrap_ci(big)
    assert (bhi - blo) < (hi - lo) / 2
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0) and bootstrap_ci([]) is None


def test_bootstrap_ci_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = random.Random(3)
    hits = 0
    for trial in range(200):
        xs = [rng.random() < 0.8 for _ in range(80)]
        lo, hi = bootstrap_ci(xs, n_boot=500, seed=trial)
        hits += lo <= 0.8 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_bootstrap_ci_of_a_difference() -> None:
    a = [0, 0, 1, 1, 0, 1, 0, 0, 1, 0] * 8
    b = [1, 1, 1, 1, 0, 1, 1, 0, 1, 1] * 8
    lo, hi = paired_bootstrap_ci(a, b)
    assert 0 < lo <= 0.4 <= hi < 0.7
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError, match="different lengths"):
        paired_bootstrap_ci(a, b[:-1])


def test_general_scores_per_question() -> None:
    qs = [{"id": "a", "question": "q1"}, {"id": "b", "question": "q2"}, {"id": "c", "question": "q3"}]
    g = score_general(qs, ["A fine answer about France.", "", "I'm sorry, but I can't help with that."])
    assert g["per_question"] == [True, False, False] and g["ok"] == 1
