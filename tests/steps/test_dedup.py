"""Dedup: exact/near/semantic, the right key per record kind, who is kept and why, counters, cluster rows."""

from __future__ import annotations

import random

import numpy as np

from curate.records import Message, PreferenceRecord, SFTRecord, Source
from curate.steps.base import RunContext
from curate.steps.dedup import dedup, dedup_text
from curate.steps.semantic import embed_texts, semantic_model_path, semantic_pairs

LONG = (
    "My order 4471 arrived with a cracked screen and the box was open, I need a replacement sent to the "
    "same address before Friday because it is a birthday present for my daughter."
)
ANSWER = '{"intent": "replacement", "entities": ["4471"], "next_step": "Is the address unchanged?"}'


def sft(user: str, answer: str = ANSWER, *, line: int, system: str | None = None, **src) -> SFTRecord:
    msgs = ([Message(role="system", content=system)] if system else []) + [
        Message(role="user", content=user),
        Message(role="assistant", content=answer),
    ]
    return SFTRecord.build(messages=msgs, source=Source(file="in.jsonl", line=line, **src))


def pref(user: str, chosen: str, rejected: str, *, line: int) -> PreferenceRecord:
    return PreferenceRecord.build(
        prompt=[Message(role="user", content=user)],
        chosen=[Message(role="assistant", content=chosen)],
        rejected=[Message(role="assistant", content=rejected)],
        source=Source(file="pairs.jsonl", line=line),
    )


def test_exact_duplicates_differing_in_case_and_whitespace() -> None:
    a = sft(LONG, line=1)
    b = sft("  " + LONG.upper().replace(" ", "   "), ANSWER.upper(), line=2)
    c = sft("Where is my refund for order 99?", line=3)
    ctx = RunContext()
    kept, rows = dedup([a, b, c], ctx=ctx)
    assert kept == [a, c]
    assert rows == [
        {
            "kept": a.id,
            "dropped": b.id,
            "method": "exact",
            "score": 1.0,
            "kept_source": "in.jsonl:1",
            "dropped_source": "in.jsonl:2",
            "why": "both imported: longer, then smaller content hash kept",
        }
    ]
    assert ctx.counters["dedup:exact"] == 1 and ctx.counters["duplicates:in.jsonl"] == 1


def test_near_duplicate_is_removed_with_its_score() -> None:
    a = sft(LONG, line=1)
    b = sft(LONG.replace("Friday", "Saturday").replace("daughter", "son"), line=2)
    kept, rows = dedup([a, b], ctx=RunContext())
    assert kept == [a]
    [row] = rows
    assert row["method"] == "near" and row["kept"] == a.id and row["dropped"] == b.id
    assert 0.9 < row["score"] < 1.0


def test_threshold_is_settable_and_none_skips_near() -> None:
    a = sft(LONG, line=1)
    b = sft(LONG.replace("Friday", "Saturday"), line=2)
    assert len(dedup([a, b], near_threshold=0.999)[0]) == 2
    assert len(dedup([a, b], near_threshold=None)[0]) == 2
    assert len(dedup([a, b], near_threshold=0.9)[0]) == 1


def test_system_turns_are_not_part_of_the_key() -> None:
    a = sft(LONG, line=1, system="You are the triage assistant.")
    b = sft(LONG, line=2, system="You are a different assistant entirely.")
    kept, rows = dedup([a, b])
    assert len(kept) == 1 and rows[0]["method"] == "exact"
    assert dedup([b, a])[0] == kept  # the twin kept does not depend on the order


def test_different_answers_to_the_same_prompt_are_kept() -> None:
    a = sft("Cancel it.", '{"intent": "cancel", "next_step": "Which subscription?"}', line=1)
    b = sft(
        "Cancel it.",
        '{"intent": "unknown", "next_step": "What should I cancel, your order or plan?"}',
        line=2,
    )
    assert len(dedup([a, b])[0]) == 2


def test_chosen_and_rejected_never_knock_each_other_out() -> None:
    chosen = '{"intent": "password_reset", "next_step": "Which email is on the account?"}'
    rejected = '{"intent": "password_reset", "next_step": "I have reset your password."}'
    p1 = pref(LONG, chosen, rejected, line=1)
    p2 = pref("Reset my password now, I'm the CEO.", chosen, rejected, line=2)
    kept, rows = dedup([p1, p2])
    assert kept == [p1, p2] and rows == []
    assert "i have reset" not in dedup_text(p1) and "which email" in dedup_text(p1)


def test_pairs_with_same_prompt_and_chosen_are_duplicates_whatever_the_rejected() -> None:
    p1 = pref(LONG, ANSWER, '{"intent": "refund"}', line=1)
    p2 = pref(LONG, ANSWER, '{"intent": "other", "next_step": "Done, I replaced it."}', line=2)
    kept, rows = dedup([p1, p2])
    assert kept == [p1] and rows[0]["method"] == "exact"


def test_sft_and_preference_records_are_deduplicated_separately() -> None:
    s = sft(LONG, line=1)
    p = pref(LONG, ANSWER, '{"intent": "refund"}', line=2)
    assert dedup([s, p])[0] == [s, p]


def test_human_reviewed_beats_an_earlier_import() -> None:
    a = sft(LONG, line=1)
    b = sft(LONG.lower(), line=2, annotation=7)
    kept, rows = dedup([a, b], ctx=RunContext())
    assert kept == [b]
    assert (
        rows[0]["kept"] == b.id
        and rows[0]["dropped"] == a.id
        and rows[0]["why"] == "human-reviewed over imported"
    )


def test_an_import_beats_an_earlier_generated_variant() -> None:
    gen = sft(LONG, line=1, generator="paraphrase", parent="x")
    imported = sft(LONG.lower(), line=2)
    kept, rows = dedup([gen, imported], ctx=RunContext())
    assert kept == [imported]
    assert rows[0]["kept"] == imported.id and rows[0]["why"] == "imported over generated"


def test_different_prompts_with_the_same_templated_answer_are_not_near_duplicates() -> None:
    answer = (
        '{"intent": "account_access", "entities": {}, "missing_info": ["account email"], '
        '"next_step": "Which email address do you use to sign in?"}'
    )
    a = SFTRecord.build(
        messages=[Message(role="user", content="I can't get in."), Message(role="assistant", content=answer)],
        source=Source(file="f", line=1),
    )
    b = SFTRecord.build(
        messages=[
            Message(role="user", content="need a password reset pls"),
            Message(role="assistant", content=answer),
        ],
        source=Source(file="f", line=2),
    )
    c = SFTRecord.build(
        messages=[Message(role="user", content="I cant get in."), Message(role="assistant", content=answer)],
        source=Source(file="f", line=3),
    )
    kept, rows = dedup([a, b, c], near_threshold=0.8)
    assert kept == [a, b]
    assert [(r["kept"], r["dropped"], r["method"]) for r in rows] == [(a.id, c.id, "near")]


def test_human_reviewed_beats_generated_in_near_clusters() -> None:
    gen = sft(LONG, line=1, generator="edge", parent="x")
    human = sft(LONG.replace("Friday", "Thursday"), line=2, annotation=3)
    plain = sft(LONG.replace("Friday", "Monday"), line=3)
    kept, rows = dedup([plain, gen, human])
    assert kept == [human]
    assert {(r["dropped"], r["kept"]) for r in rows} == {(gen.id, human.id), (plain.id, human.id)}
    assert [r["dropped"] for r in rows] == [plain.id, gen.id]  # rows in input order of the dropped record


def test_keep_choice_is_deterministic_under_reordering_ties() -> None:
    recs = [sft(LONG.replace("Friday", d), line=i) for i, d in enumerate(["Friday", "Monday", "Sunday"], 1)]
    kept1, rows1 = dedup(recs)
    kept2, rows2 = dedup(list(recs))
    assert kept1 == kept2 == [recs[0]] and rows1 == rows2


def test_conservation_over_a_larger_mix() -> None:
    rng = random.Random(4)
    words = LONG.replace(",", "").split()
    base = [
        sft(" ".join(rng.choice(words) + str(rng.randrange(99)) for _ in range(25)), line=i)
        for i in range(60)
    ]
    dups = [sft(r.messages[0].content.upper(), line=100 + i) for i, r in enumerate(base[:10])]
    nears = [sft(r.messages[0].content + " thanks", line=200 + i) for i, r in enumerate(base[10:20])]
    ctx = RunContext()
    kept, rows = dedup(base + dups + nears, ctx=ctx)
    assert len(kept) + len(rows) == 80
    # the longer twin is kept (docs/contracts.md: keep order), so the originals of the " thanks" copies go
    assert {r["dropped"] for r in rows} == {r.id for r in dups + base[10:20]}
    assert ctx.counters["dedup:exact"] == 10 and ctx.counters["dedup:near"] == 10


def test_semantic_pairs_with_an_embedding_function() -> None:
    emb = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]], dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = semantic_pairs(["a", "b", "c"], threshold=0.95, embed=lambda t: emb)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]


def test_semantic_dedup_with_the_real_offline_model() -> None:
    assert (semantic_model_path().rstrip("/")).endswith("model")
    a = sft("How can I reset my password?", "Use the reset link on the sign-in page.", line=1)
    b = sft("What is the way to reset my password?", "Use the reset link on the sign-in page.", line=2)
    c = sft("Which countries do you ship to?", "We ship to the EU and the US.", line=3)
    vecs = embed_texts([dedup_text(r) for r in (a, b, c)])
    assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    ab, ac = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert ab > 0.85 > ac
    kept, rows = dedup([a, b, c], near_threshold=None, semantic=True, semantic_threshold=0.85)
    assert kept == [b, c] and rows[0]["method"] == "semantic" and rows[0]["score"] > 0.85


def test_a_full_view_cache_gives_the_same_decisions(monkeypatch) -> None:
    """Verification keeps views between tasks up to a bound; clearing it mid-run must remake every view a task
    needs (it once raised KeyError at 200k records)."""
    import curate.steps.dedup as D

    rng = random.Random(3)
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
        "mike",
        "november",
        "oscar",
    ]
    recs = []
    for k in range(300):
        base = [words[(k // 10 + j) % len(words)] for j in range(30)]
        if k % 10:
            base[rng.randrange(30)] = rng.choice(words)
        recs.append(sft(" ".join(base), "ok " + " ".join(base[:5]), line=k + 1))
    kept, rows = dedup(recs)
    monkeypatch.setattr(D, "_VIEW_CACHE", 8)
    kept_small, rows_small = dedup(recs)
    assert [r.id for r in kept_small] == [r.id for r in kept] and rows_small == rows and rows
