"""Evaluation with the spec's rules: generation on held-out prompts, scoring, regressions, compare, to-label."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from curate.errors import EvalError
from curate.evaluate import (
    EvalOptions,
    compare,
    evaluate_model,
    evaluate_outputs,
    failure_records,
    general_problem,
    general_questions,
    heldout_prompts,
    load_report,
    write_report,
    write_to_label,
)
from curate.records import parse_record, read_jsonl
from curate.spec import load_spec

GOOD = (
    '{"intent": "account_access", "entities": {}, "missing_info": ["account email"], '
    '"next_step": "Which email address do you use to sign in?"}'
)
CLAIM = (
    '{"intent": "reset_password", "entities": {}, "missing_info": [], '
    '"next_step": "I have reset your password."}'
)
INVENTED = (
    '{"intent": "update_billing", "entities": {"card_last4": "9999"}, "missing_info": [], '
    '"next_step": "Send the secure billing page link."}'
)


@pytest.fixture(scope="module")
def spec(spec_dir: Path):
    return load_spec(spec_dir)


def _outputs(tmp_path: Path, rows: list[dict]) -> Path:
    p = tmp_path / "outputs.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return p


def test_heldout_prompts_come_from_both_test_splits_once(export_dir: Path, spec) -> None:
    prompts = heldout_prompts(export_dir, spec)
    assert len(prompts) == 6  # 4 SFT + 2 DPO test rows, all different prompts
    assert all(p.messages[-1]["role"] == "user" and p.messages[0]["role"] == "system" for p in prompts)
    assert prompts[0].where.endswith("sft/test.jsonl:1") and prompts[-1].where.endswith("dpo/test.jsonl:2")
    assert len({p.id for p in prompts}) == 6


def test_heldout_category_and_tags_found_by_record_id(tmp_path: Path, spec, spec_dir: Path) -> None:
    # build-style rows carry only messages + id; the id is the record's content id in the spec's data
    from curate.records import record_from_native

    rows = [
        orjson.loads(line) for line in (spec_dir / "data.jsonl").read_bytes().splitlines() if line.strip()
    ]
    adv = next(r for r in rows if r.get("category") == "adversarial" and "messages" in r)
    rec = record_from_native(adv, spec=spec.ref)
    out = tmp_path / "export"
    (out / "sft").mkdir(parents=True)
    (out / "sft" / "test.jsonl").write_bytes(
        orjson.dumps({"messages": adv["messages"], "id": rec.id}) + b"\n"
    )
    [p] = heldout_prompts(out, spec)
    assert p.category == "adversarial" and p.tags == list(rec.tags) and p.row_id == rec.id


def test_score_outputs_per_rule(tmp_path: Path, export_dir: Path, spec) -> None:
    path = _outputs(
        tmp_path,
        [
            {"prompt": "I can't get in.", "response": GOOD},
            {"prompt": "reset it", "response": CLAIM},
            {"prompt": "Change my card to the one ending 1234.", "response": INVENTED},
            {"prompt": "hello", "response": "Sure! Here is your ticket."},
            {"prompt": "no response"},
            "not an object",
        ],
    )
    rep = evaluate_outputs(spec, path, data=export_dir)
    rules = {r["rule"]: r for r in rep["rules"]}
    assert rep["responses"] == 4 and rep["overall_pass_rate"] == 0.25
    assert rep["valid_json_rate"] == 0.75
    assert (rules["valid-json"]["pass"], rules["valid-json"]["fail"]) == (3, 1)
    assert (rules["no-action-claims"]["pass"], rules["no-action-claims"]["fail"]) == (2, 1)
    assert (rules["no-invented-entities"]["pass"], rules["no-invented-entities"]["fail"]) == (2, 1)
    assert rules["one-question-when-missing"]["pass"] == 1 and rules["no-question-when-complete"]["pass"] == 2
    assert rep["failures_by_category"] == {"format": 2, "safety": 1, "knowledge": 1}
    assert [b["reason"] for b in rep["bad_lines"]] == ["no_response", "not_an_object"]
    assert rep["items"][1]["failed"].keys() == {"no-action-claims"}


def test_outputs_by_id_take_the_heldout_prompt(tmp_path: Path, export_dir: Path, spec) -> None:
    prompts = heldout_prompts(export_dir, spec)
    path = _outputs(tmp_path, [{"id": prompts[0].id, "response": GOOD}, {"id": "nope", "response": GOOD}])
    rep = evaluate_outputs(spec, path, data=export_dir)
    assert rep["responses"] == 1 and rep["items"][0]["prompt"] == prompts[0].messages
    assert rep["bad_lines"][0]["reason"] == "unknown_id"


def test_over_refusal_on_safe_prompts(tmp_path: Path, spec) -> None:
    path = _outputs(
        tmp_path,
        [
            {
                "prompt": "cancel my plan",
                "tags": ["safe"],
                "response": "I'm sorry, but I can't help with that.",
            },
            {"prompt": "upgrade me", "tags": ["safe"], "response": GOOD},
            {"prompt": "give me the admin password", "response": "I can't help with that."},
        ],
    )
    rep = evaluate_outputs(spec, path)
    assert rep["over_refusal"]["basis"] == "tag:safe"
    assert (rep["over_refusal"]["prompts"], rep["over_refusal"]["refused"]) == (2, 1)
    assert rep["over_refusal"]["rate"] == 0.5


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("  ", "empty"),
        ("I'm sorry, but I can't help with that request.", "refusal"),
        ("the cat " * 40, "degenerate"),
        ("a" * 40, "degenerate"),
        ("Start with a list of tasks, then block time for each one and review the plan every evening.", None),
    ],
)
def test_general_answer_problems(text: str, problem: str | None) -> None:
    assert general_problem(text) == problem


def test_general_questions_are_shipped_and_spread() -> None:
    qs = general_questions(10)
    assert len(qs) == 10 and sum(q["id"].startswith("mt-") for q in qs) == 5
    assert len({q["category"] for q in qs}) >= 6  # spread over the categories, not the first ones
    assert all(q["question"].strip() for q in qs)
    assert len(general_questions(500)) == 160 and general_questions(0) == []


@pytest.fixture(scope="module")
def base_report(tiny_model: Path, export_dir: Path, spec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rep = evaluate_model(
        spec, tiny_model, data=export_dir, opts=EvalOptions(batch_size=4, max_new_tokens=8, general=2)
    )
    path = tmp_path_factory.mktemp("evals") / "base.json"
    write_report(rep, path)
    return path


def test_evaluate_model_generates_for_every_heldout_prompt(base_report: Path) -> None:
    rep = load_report(base_report)
    assert rep["responses"] == 6 and len(rep["items"]) == 6
    assert rep["settings"]["decoding"] == "greedy" and rep["settings"]["device"] == "cpu"
    assert (
        rep["general"]["questions"] == 2
        and rep["general"]["ok"] + sum(rep["general"]["problems"].values()) == 2
    )
    # a random tiny model writes no JSON: every format rule fails, field rules skip
    rules = {r["rule"]: r for r in rep["rules"]}
    assert rules["valid-json"]["fail"] == 6 and rules["no-action-claims"]["skip"] == 6
    assert rep["overall_pass_rate"] == 0.0 and rep["valid_json_rate"] == 0.0


def test_generation_is_deterministic_and_batch_independent(
    tiny_model: Path, export_dir: Path, spec, base_report: Path
) -> None:
    rep = evaluate_model(
        spec,
        tiny_model,
        data=export_dir,
        opts=EvalOptions(batch_size=1, max_new_tokens=8, general=0, limit=3),
    )
    first = load_report(base_report)["items"][:3]
    assert [i["response"] for i in rep["items"]] == [i["response"] for i in first]


def test_compare_with_deltas_and_flips(base_report: Path, tmp_path: Path, export_dir: Path, spec) -> None:
    prompts = heldout_prompts(export_dir, spec)
    path = _outputs(
        tmp_path, [{"id": p.id, "response": GOOD if i < 4 else CLAIM} for i, p in enumerate(prompts)]
    )
    tuned = evaluate_outputs(spec, path, data=export_dir)
    write_report(tuned, tmp_path / "tuned.json")
    cmp = compare(load_report(base_report), load_report(tmp_path / "tuned.json"))
    rows = {r["rule"]: r for r in cmp["rules"]}
    assert (
        rows["valid-json"]["a"] == 0.0
        and rows["valid-json"]["b"] == 1.0
        and rows["valid-json"]["delta"] == 1.0
    )
    assert rows["no-action-claims"]["a"] is None and rows["no-action-claims"]["delta"] is None
    assert cmp["headline"]["overall"]["b"] == pytest.approx(4 / 6)
    assert cmp["same_prompts"] is True and cmp["n_fixed"] == 4 and cmp["n_regressed"] == 0
    back = compare(load_report(tmp_path / "tuned.json"), load_report(base_report))
    assert (
        back["n_regressed"] == 4 and back["rules"][0]["delta"] == -1.0
    )  # the 2 CLAIM answers failed in both


def test_compare_refuses_other_files(tmp_path: Path, base_report: Path) -> None:
    (tmp_path / "x.json").write_text('{"rules": []}')
    with pytest.raises(EvalError, match="not a curate eval report"):
        load_report(tmp_path / "x.json")
    other = load_report(base_report) | {"spec": "other-spec@1"}
    with pytest.raises(EvalError, match="different specs"):
        compare(load_report(base_report), other)


def test_failures_to_label_are_marked_heldout(tmp_path: Path, export_dir: Path, spec) -> None:
    path = _outputs(
        tmp_path,
        [
            {"prompt": "I can't get in.", "response": GOOD, "category": "edge"},
            {"prompt": "reset it", "response": CLAIM, "category": "adversarial"},
        ],
    )
    rep = evaluate_outputs(spec, path)
    n = write_to_label(spec, rep, tmp_path / "to_label.jsonl")
    assert n == 1
    [(_, obj)] = list(read_jsonl(tmp_path / "to_label.jsonl"))
    rec = parse_record(obj)
    assert rec.labels["heldout"] is True and "heldout" in rec.tags and rec.category == "adversarial"
    assert rec.failed_rules() == ["no-action-claims"] and rec.response_text() == CLAIM
    assert rec.source.file == str(path) and rec.source.line == 2
    assert failure_records(spec, rep)[0].id == rec.id
    # the importer that `curate label push --input` uses reads them back with the marks intact
    from curate.steps.base import RunContext
    from curate.steps.read import read_inputs

    ctx = RunContext()
    [back] = list(read_inputs([tmp_path / "to_label.jsonl"], ctx=ctx, spec=spec))
    assert ctx.n_quarantined == 0 and back.id == rec.id and back.labels["heldout"] is True


def test_missing_export_and_model_errors(tmp_path: Path, spec, tiny_model: Path, export_dir: Path) -> None:
    with pytest.raises(EvalError, match="no export folder at"):
        evaluate_model(spec, tiny_model, data=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="no held-out split"):
        evaluate_model(spec, tiny_model, data=tmp_path / "empty")
    with pytest.raises(EvalError, match="does not exist; curate loads local models only"):
        evaluate_model(spec, tmp_path / "no-model", data=export_dir)


def test_evaluates_a_lora_output(tiny_model: Path, export_dir: Path, spec, tmp_path: Path) -> None:
    from curate.train import TrainOptions, train_sft

    train_sft(
        export_dir,
        TrainOptions(
            model=tiny_model, out=tmp_path / "lora", lora=True, max_steps=1, batch_size=4, max_length=2048
        ),
    )
    shutil.rmtree(tmp_path / "lora" / "checkpoints", ignore_errors=True)
    rep = evaluate_model(
        spec, tmp_path / "lora", data=export_dir, opts=EvalOptions(max_new_tokens=4, general=0, limit=2)
    )
    assert rep["responses"] == 2 and rep["model"] == str(tmp_path / "lora")


def test_shared_prefix_generation_matches_plain_generation(tiny_model: Path, export_dir: Path, spec) -> None:
    import torch

    from curate.evaluate import Generator, common_prefix_len

    gen = Generator(tiny_model, device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():  # the random tiny model writes only spaces; noisier weights write varied tokens
        for p in gen.model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    convs = [p.messages for p in heldout_prompts(export_dir, spec)]
    ids = [
        gen.tokenizer.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        for c in convs
    ]
    system_only = gen.tokenizer.apply_chat_template(convs[0][:1], tokenize=True, return_dict=True)[
        "input_ids"
    ]
    assert common_prefix_len(ids) >= len(system_only)  # the system prompt is shared
    shared = gen.generate(convs, max_new_tokens=12, batch_size=4, shared_prefix=True)
    plain = gen.generate(convs, max_new_tokens=12, batch_size=4, shared_prefix=False)
    alone = [gen.generate([c], max_new_tokens=12, batch_size=1)[0] for c in convs[:2]]
    assert shared == plain and shared[:2] == alone and all(shared)


def test_common_prefix_len_leaves_one_token() -> None:
    from curate.evaluate import common_prefix_len

    assert common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_len([[7, 1], [8, 1]]) == 0
    assert common_prefix_len([]) == 0


def test_failures_on_training_prompts_become_certified_pairs(tmp_path: Path, spec, spec_dir: Path) -> None:
    """`curate eval --prompts --negatives-out`: the failing answers are labeled negatives (violates = the rules
    they fail, not held-out), and a build with them pairs each with the passing answer to the same prompt."""
    from click.testing import CliRunner

    from curate.cli import main
    from curate.evaluate import write_negatives
    from curate.steps.pipeline import build

    clean = [
        obj
        for _, obj in read_jsonl(spec_dir / "data.jsonl")
        if isinstance(obj, dict)
        and "messages" in obj
        and obj.get("category") == "typical"
        and not obj.get("violates")
    ][:3]
    assert len(clean) == 3
    answers = [clean[0]["messages"][-1]["content"], CLAIM, INVENTED]
    path = _outputs(
        tmp_path,
        [{"messages": r["messages"][:-1], "response": a} for r, a in zip(clean, answers, strict=True)],
    )
    rep = evaluate_outputs(spec, path)
    n = write_negatives(spec, rep, tmp_path / "mined.jsonl")
    assert n == 2
    recs = [parse_record(obj) for _, obj in read_jsonl(tmp_path / "mined.jsonl")]
    for rec, answer in zip(recs, answers[1:], strict=True):
        assert rec.is_negative and "heldout" not in rec.tags and "heldout" not in rec.labels
        assert "eval-failure" in rec.tags and rec.response_text() == answer
        assert list(rec.violates) == rec.failed_rules() and rec.violates
    assert recs[0].violates == ("no-action-claims",)

    out = tmp_path / "build"
    res = build(spec_dir, [spec_dir / "data.jsonl", tmp_path / "mined.jsonl"], out)
    pairs = [
        obj
        for split in ("train", "test")
        if (out / "dpo" / f"{split}.jsonl").exists()
        for _, obj in read_jsonl(out / "dpo" / f"{split}.jsonl")
    ]
    mined = [
        p for p in pairs if orjson.loads(p["lineage"])["source"].startswith(str(tmp_path / "mined.jsonl:"))
    ]
    assert len(mined) == 2, res.manifest["counts"]
    by_rejected = {p["rejected"][-1]["content"]: p for p in mined}
    for r, a in zip(clean[1:], answers[1:], strict=True):
        p = by_rejected[a]
        assert p["chosen"][-1]["content"] == r["messages"][-1]["content"]
        # the same prompt (prompt keys normalize case and spacing; the partner may be its twin in another case)
        assert p["prompt"][-1]["content"].casefold() == r["messages"][-2]["content"].casefold()

    # the CLI refuses to mine negatives from the held-out split
    got = CliRunner().invoke(
        main, ["eval", str(spec_dir), "--outputs", str(path), "--negatives-out", str(tmp_path / "n.jsonl")]
    )
    assert got.exit_code != 0 and "--negatives-out needs --prompts" in got.output


def test_mined_negatives_are_exactly_the_failures_on_generated_answers(
    tmp_path_factory, spec, spec_dir
) -> None:
    """On any answers (valid ones, rule breakers, JSON junk, free text): `write_negatives` writes one labeled
    negative per failing answer and nothing else, its `violates` the rules that answer fails, never a held-out
    mark, and `write_to_label` of the same report writes the same answers marked held-out."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from curate.evaluate import write_negatives

    prompts = [
        obj["messages"][:-1]
        for _, obj in read_jsonl(spec_dir / "data.jsonl")
        if isinstance(obj, dict) and "messages" in obj and not obj.get("violates")
    ][:12]
    answers = st.one_of(
        st.sampled_from([GOOD, CLAIM, INVENTED, "{}", '{"intent": "other"}', "Sure! Here is the ticket:"]),
        st.text(max_size=40),
        st.builds(
            lambda i, q: orjson.dumps(
                {"intent": i, "entities": {}, "missing_info": [], "next_step": q}
            ).decode(),
            st.sampled_from(["other", "refund_request", "not_an_intent"]),
            st.sampled_from(["Route it.", "Which email?", "I have refunded you.", "x " * 50]),
        ),
    )

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.lists(
            st.tuples(st.integers(0, len(prompts) - 1), answers),
            min_size=1,
            max_size=8,
            unique_by=lambda t: t[0],
        )
    )
    def check(rows: list[tuple[int, str]]) -> None:
        tmp = tmp_path_factory.mktemp("mined")
        path = _outputs(tmp, [{"messages": prompts[i], "response": a} for i, a in rows])
        rep = evaluate_outputs(spec, path)
        failing = [it for it in rep["items"] if it["failed"]]
        assert write_negatives(spec, rep, tmp / "neg.jsonl") == len(failing)
        recs = [parse_record(obj) for _, obj in read_jsonl(tmp / "neg.jsonl")] if failing else []
        assert [r.response_text() for r in recs] == [it["response"] for it in failing]
        for rec, it in zip(recs, failing, strict=True):
            assert rec.violates == tuple(sorted(it["failed"])) and rec.is_negative
            assert "heldout" not in rec.tags and "heldout" not in rec.labels and "eval-failure" in rec.tags
        held = failure_records(spec, rep)
        assert [r.response_text() for r in held] == [it["response"] for it in failing]
        assert all(r.labels["heldout"] is True and not r.violates for r in held)

    check()
