"""`pairs check`: every generated pair is provably valid; hand-made bad pairs are rejected with the reason."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.expand import expand, write_outputs
from curate.expand.pairs import check_pairs_file

GOOD = json.dumps(
    {
        "intent": "cancel_account",
        "entities": {},
        "missing_info": ["account email"],
        "next_step": "Which email is the account under?",
    }
)
CLAIM = json.dumps(
    {
        "intent": "cancel_account",
        "entities": {},
        "missing_info": ["account email"],
        "next_step": "Which email is the account under? I have cancelled it.",
    }
)
U = [{"role": "user", "content": "Cancel it."}]


def A(text):
    return [{"role": "assistant", "content": text}]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_every_generated_pair_is_valid(any_spec, tmp_path):
    res = expand(any_spec, seed=11, fill_gaps=True)
    paths = write_outputs(res, tmp_path)
    assert res.pairs, "mutants make pairs"
    rep = check_pairs_file(any_spec, paths["pairs.jsonl"])
    assert rep.problems == [] and rep.valid == rep.pairs == len(res.pairs)
    for p in res.pairs:
        assert p.violates and p.response_text() != p.rejected_text()
        assert p.source.generator == "curate.expand.mutate" and p.source.parent


BAD = [  # (row, expected reason)
    (
        {"prompt": U, "chosen": A(CLAIM), "rejected": A(GOOD), "violates": ["no-action-claims"]},
        "chosen_fails_rule",
    ),
    (
        {
            "prompt": U,
            "chosen": A(GOOD),
            "rejected": A(GOOD.replace("under", "registered under")),
            "violates": ["no-action-claims"],
        },
        "rejected_passes_named_rules",
    ),
    (
        {"prompt": U, "chosen": A(GOOD), "rejected": A(GOOD + " "), "violates": ["valid-json"]},
        "chosen_equals_rejected",
    ),
    ({"prompt": U, "chosen": A(GOOD), "rejected": A(CLAIM)}, "no_violates"),
    ({"prompt": U, "chosen": A(GOOD), "rejected": A(CLAIM), "violates": ["no-such-rule"]}, "unknown_rule"),
    (
        {
            "prompt": [{"role": "system", "content": "s"}],
            "chosen": A(GOOD),
            "rejected": A(CLAIM),
            "violates": ["no-action-claims"],
        },
        "empty_prompt",
    ),
    (
        {
            "chosen": U + A(GOOD),
            "rejected": [{"role": "user", "content": "Refund me."}] + A(CLAIM),
            "violates": ["no-action-claims"],
        },
        "prompt_mismatch",
    ),
    (
        {"prompt": U, "chosen": U + A(GOOD), "rejected": A(CLAIM), "violates": ["no-action-claims"]},
        "prompt_mismatch",
    ),
    ({"prompt": U, "chosen": A(GOOD), "rejected": [], "violates": ["no-action-claims"]}, "empty_response"),
    ({"messages": U + A(GOOD)}, "not_a_pair"),
    ("{'prompt': 'python dict'}", "python_literal"),
    ("{not json", "bad_json"),
]


@pytest.mark.parametrize("row,reason", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_pairs_are_rejected_with_reason(mini_spec, tmp_path, row, reason):
    f = _write(tmp_path / "p.jsonl", [row])
    rep = check_pairs_file(mini_spec, f)
    assert not rep.ok and rep.valid == 0
    assert reason in {p.reason for p in rep.problems}, rep.problems
    assert all(p.where == f"{f}:1" for p in rep.problems)


def test_good_pairs_pass_including_implicit_prompt_shape(mini_spec, tmp_path):
    rows = [
        {"prompt": U, "chosen": A(GOOD), "rejected": A(CLAIM), "violates": ["no-action-claims"]},
        {"chosen": U + A(GOOD), "rejected": U + A(CLAIM), "violates": ["no-action-claims"]},
        {"prompt": "Cancel it.", "chosen": GOOD, "rejected": "not json", "violates": ["valid-json"]},
    ]
    rep = check_pairs_file(mini_spec, _write(tmp_path / "p.jsonl", rows))
    assert rep.ok and rep.valid == 3, rep.problems


def test_human_rule_needs_a_person(mini_spec, tmp_path):
    row = {
        "prompt": U,
        "chosen": A(GOOD),
        "rejected": A(GOOD.replace("Which", "WHICH")),
        "violates": ["tone"],
    }
    rows = [
        row,
        {**row, "rejected": A(GOOD.replace("Which email", "Tell me which email, now"))},
        {
            **row,
            "rejected": A(GOOD.replace("Which email", "Tell me which email, now")),
            "source": {"project": 1, "task": 2, "annotation": 3},
        },
    ]
    rep = check_pairs_file(mini_spec, _write(tmp_path / "p.jsonl", rows))
    reasons = [(p.where.rsplit(":", 1)[1], p.reason) for p in rep.problems]
    assert ("1", "chosen_equals_rejected") in reasons
    assert ("2", "rejected_passes_named_rules") in reasons
    assert not any(w == "3" for w, _ in reasons)


def test_cli_pairs_check_exit_codes_and_reasons(mini_spec, tmp_path):
    f = _write(
        tmp_path / "p.jsonl",
        [
            {"prompt": U, "chosen": A(GOOD), "rejected": A(CLAIM), "violates": ["no-action-claims"]},
            {"prompt": U, "chosen": A(CLAIM), "rejected": A(GOOD), "violates": ["no-action-claims"]},
        ],
    )
    r = CliRunner().invoke(main, ["pairs", "check", str(mini_spec.path), str(f)])
    assert r.exit_code == 1
    assert f"{f}:2: chosen_fails_rule: no-action-claims: forbidden text 'I have cancelled'" in r.stdout
    assert f"{f}:1" not in r.stdout
    r = CliRunner().invoke(main, ["pairs", "check", str(mini_spec.path), str(f), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["pairs"] == 2 and doc["valid"] == 1 and not doc["ok"]
    assert {p["reason"] for p in doc["problems"]} == {"chosen_fails_rule", "rejected_passes_named_rules"}
    good = _write(
        tmp_path / "g.jsonl",
        [{"prompt": U, "chosen": A(GOOD), "rejected": A(CLAIM), "violates": ["no-action-claims"]}],
    )
    r = CliRunner().invoke(main, ["pairs", "check", str(mini_spec.path), str(good)])
    assert r.exit_code == 0 and r.stdout == ""


def test_prompts_to_label_are_label_push_write_input(any_spec, tmp_path):
    """prompts_to_label.jsonl is read by `curate label push --kind write` as it is: no quarantine, lineage kept."""
    from curate.labeling.push import read_records, to_task
    from curate.steps.base import RunContext

    paths = write_outputs(expand(any_spec, seed=3), tmp_path)
    ctx = RunContext()
    recs = list(read_records([paths["prompts_to_label.jsonl"]], spec=any_spec, ctx=ctx))
    assert recs and ctx.n_quarantined == 0
    assert all(r.response_text() == "" and r.is_generated and r.source.parent for r in recs)
    task = to_task(any_spec, "write", recs[0])
    assert task["data"]["messages"][-1]["role"] == "user" and task["data"]["curate_kind"] == "write"
