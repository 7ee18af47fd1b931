"""validate: every structural reason, the spec's rules (normal vs negative), length with and without a tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.records import Message, PreferenceRecord, SFTRecord, Source
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.pairs import make_pairs
from curate.steps.validate import LengthCounter, structure_problem, validate

DATA = Path(__file__).resolve().parents[1] / "data" / "build"


@pytest.fixture(scope="module")
def spec():
    return load_spec(DATA)


def U(text: str) -> Message:
    return Message(role="user", content=text)


def A(answer: str | None = None, raw: str | None = None, **kw) -> Message:
    return Message(role="assistant", content=raw if raw is not None else json.dumps({"answer": answer}), **kw)


def sft(*msgs: Message, **kw) -> SFTRecord:
    return SFTRecord.build(messages=msgs, source=Source(file="t.jsonl", line=1), **kw)


def pref(prompt, chosen, rejected, **kw) -> PreferenceRecord:
    return PreferenceRecord.build(
        prompt=prompt, chosen=chosen, rejected=rejected, source=Source(file="t.jsonl", line=1), **kw
    )


GOOD = A("Open the settings page and pick a new plan.")

STRUCTURE_CASES = [
    ("empty_conversation", sft()),
    ("empty_turn", sft(U("   "), GOOD)),
    ("empty_turn", sft(U("hi"), A(raw=""))),
    ("bad_role", sft(U("hi"), Message(role="system", content="late system"), GOOD)),
    ("no_user_turn", sft(Message(role="system", content="s"), GOOD)),
    ("no_assistant_turn", sft(U("hi"))),
    ("no_assistant_turn", sft(U("hi"), GOOD, U("and?"))),
    ("missing_chosen", pref((U("q"),), (), (A("x"),))),
    ("missing_rejected", pref((U("q"),), (A("x"),), ())),
    ("prompt_mismatch", pref((U("q"),), (U("other question"), A("x")), (A("y"),))),
    ("bad_role", pref((U("q"),), (A("x"), Message(role="tool", content="result")), (A("y"),))),
    ("chosen_equals_rejected", pref((U("q"),), (A("Same answer"),), (A("same   ANSWER"),))),
    ("no_user_turn", pref((Message(role="system", content="s"),), (A("x"),), (A("y"),))),
]


@pytest.mark.parametrize(
    "reason,rec", STRUCTURE_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(STRUCTURE_CASES)]
)
def test_structure_reasons(spec, reason, rec):
    assert structure_problem(rec)[0] == reason
    ctx = RunContext()
    assert list(validate([rec], spec=spec, ctx=ctx)) == []
    assert dict(ctx.reasons) == {("validate", reason): 1}
    row = ctx.quarantined["validate"][0]
    assert row["source"] == {"file": "t.jsonl", "line": 1} and row["record_id"] == rec.id
    assert row["original"]["id"] == rec.id  # the whole record is kept in quarantine


def test_well_formed_records_pass_with_checks(spec):
    ctx = RunContext()
    recs = [
        sft(U("How do I change plans?"), GOOD),
        sft(Message(role="system", content="own system"), U("q"), GOOD),
        pref(
            (U("Cancel order 55?"),),
            (A("Support will confirm order 55 by email."),),
            (A("I have cancelled it."),),
        ),
    ]
    out = list(validate(recs, spec=spec, ctx=ctx))
    assert [r.id for r in out] == [r.id for r in recs]
    assert ctx.n_quarantined == 0
    assert all(r.spec == spec.ref for r in out)
    assert {c.rule for c in out[0].checks} == {r.id for r in spec.automatic_rules()}
    # a pair that named no violated rule gets the rules its rejected answer breaks
    assert out[2].violates == ("no-action-claims",)


def test_rule_failure_names_the_rule(spec):
    ctx = RunContext()
    bad = sft(U("q"), A("I have reset your password, done."))
    long_answer = sft(U("q"), A(" ".join(["word"] * 31)))
    assert list(validate([bad, long_answer], spec=spec, ctx=ctx)) == []
    rows = ctx.quarantined["validate"]
    assert [r["reason"] for r in rows] == ["rule_failed", "rule_failed"]
    assert rows[0]["detail"].startswith("no-action-claims")
    assert rows[1]["detail"].startswith("brief")


def test_chosen_failing_a_rule_is_quarantined(spec):
    ctx = RunContext()
    p = pref((U("q"),), (A("I've refunded you."),), (A("whatever"),))
    assert list(validate([p], spec=spec, ctx=ctx)) == []
    row = ctx.quarantined["validate"][0]
    assert row["reason"] == "rule_failed" and "chosen fails no-action-claims" in row["detail"]


def test_negatives_become_rejected_candidates(spec):
    ctx = RunContext()
    neg = sft(U("Reset it"), A("I have reset it."), category="negative", violates=("no-action-claims",))
    unnamed = sft(U("Reset it again"), A("I've reset it again."), category="negative")
    harmless = sft(U("x"), A("Nothing claimed here."), category="negative", violates=("no-action-claims",))
    human_only = sft(U("y"), A("Rude but valid."), category="negative", violates=("tone",))
    out = list(validate([neg, unnamed, harmless, human_only], spec=spec, ctx=ctx))
    assert [r.id for r in out] == [neg.id, unnamed.id, human_only.id]
    assert out[1].violates == ("no-action-claims",)  # filled from the failed rules
    assert ctx.quarantined["validate"][0]["reason"] == "negative_passes_rules"
    assert ctx.quarantined["validate"][0]["record_id"] == harmless.id


def test_violates_must_name_rules_of_the_spec(spec):
    ctx = RunContext()
    typo = sft(U("Reset it"), A("I have reset it."), category="negative", violates=("no-action-claim",))
    assert list(validate([typo], spec=spec, ctx=ctx)) == []
    row = ctx.quarantined["validate"][0]
    assert row["reason"] == "unknown_rule" and row["detail"].startswith(
        "violates names no-action-claim, not a rule"
    )


def test_too_long_estimate(spec):
    ctx = RunContext()
    lc = LengthCounter(spec)
    short = sft(U("q"), GOOD)
    long = sft(U("lorem ipsum " * 500), GOOD)
    out = list(validate([short, long], spec=spec, ctx=ctx, lengths=lc, max_tokens=300))
    assert [r.id for r in out] == [short.id]
    row = ctx.quarantined["validate"][0]
    assert row["reason"] == "too_long" and "> max 300" in row["detail"]
    # the estimate: ceil(chars / 4) + 4 per turn, the spec's system prompt included
    chars = len(spec.system_prompt.strip()) + 1 + len(GOOD.content)
    assert lc.lengths[short.id] == -(-chars // 4) + 4 * 3
    # max_tokens defaults to the spec's export.max_tokens (400)
    ctx2 = RunContext()
    assert list(validate([long], spec=spec, ctx=ctx2)) == []
    assert "> max 400" in ctx2.quarantined["validate"][0]["detail"]


def test_length_with_a_real_tokenizer(spec, tmp_path):
    from transformers import AutoTokenizer

    from tests.tinymodel import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    lc = LengthCounter(spec, model_dir)
    assert lc.unit == "tokens"
    rec = sft(U("How do I change plans?"), GOOD)
    n = lc.measure(rec)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    msgs = [{"role": "system", "content": spec.system_prompt.strip()}, *[m.to_trl() for m in rec.messages]]
    ids = tok.apply_chat_template(msgs, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert n == len(ids) > 10
    ctx = RunContext()
    assert list(validate([rec], spec=spec, ctx=ctx, lengths=lc, max_tokens=n - 1)) == []
    assert ctx.quarantined["validate"][0]["detail"] == f"{n} tokens > max {n - 1}"


def test_tokenizer_must_be_a_local_folder(tmp_path, spec):
    from curate.errors import InputError

    with pytest.raises(InputError, match="not a folder"):
        LengthCounter(spec, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="cannot load a tokenizer"):
        LengthCounter(spec, tmp_path / "empty")


def test_pairs_from_negatives(spec):
    good = sft(U("Reset it"), GOOD)
    good2 = sft(U("Reset it"), A("Use the reset link on the sign-in page."))
    n1 = sft(U("reset  IT"), A("I have reset it."), category="negative", violates=("no-action-claims",))
    n2 = sft(U("Reset it"), A("I've reset it."), category="negative", violates=("no-action-claims",))
    lone = sft(
        U("Something else"), A("I've refunded it."), category="negative", violates=("no-action-claims",)
    )
    res = make_pairs([good, n1, good2, n2, lone])
    assert res.paired == 2 and [r.id for r in res.unpaired] == [lone.id]
    pairs = [r for r in res.records if isinstance(r, PreferenceRecord)]
    assert len(res.records) == 4  # two SFT + two pairs
    partners = sorted([good, good2], key=lambda r: r.id)
    from curate.steps.pairs import partner_index

    for p, neg in zip(pairs, (n1, n2)):  # each negative's partner follows from its own id, not from the order
        partner = partners[partner_index(neg.id, 2)]
        assert p.chosen == (partner.messages[-1],) and p.rejected == (neg.messages[-1],)
        assert p.violates == ("no-action-claims",) and p.category == "negative"
        assert p.source.parent == partner.id and p.source.file == "t.jsonl"
    flipped = make_pairs([n2, good2, lone, n1, good])  # another order: the same pairs
    assert sorted(r.id for r in flipped.records) == sorted(r.id for r in res.records)


@pytest.mark.parametrize("mark", [{"tags": ("heldout",)}, {"labels": {"heldout": True}}])
def test_heldout_marked_records_are_refused(spec, mark: dict) -> None:
    ok = sft(U("what is 2+2"), A("4"))
    marked = sft(U("what is 3+3"), A("6"), **mark)
    ctx = RunContext()
    assert list(validate([ok, marked], spec=spec, ctx=ctx)) and ctx.n_quarantined == 1
    [row] = ctx.quarantined["validate"]
    assert row["reason"] == "heldout_marked" and row["record_id"] == marked.id
    assert "held-out prompts never go into training" in row["detail"]
