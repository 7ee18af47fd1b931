"""Plain text records (`{"text": ...}`) and unlabeled prompts (issue #19): read, deduplicated by the same
`curate.relation` rules as every record (a view whose response is empty), split with the rest, and exported as
the spec's `export.text_records` says: TRL prompt-only rows in `prompts/` (default) or language-modeling rows in
`text/`. Nothing is lost: per input file, in = exported + quarantined + duplicates."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.cli import main
from curate.records import parse_record
from curate.relation import near_score, view
from curate.steps.dedup import dedup
from curate.steps.lint_export import dataset_type, lint_export
from curate.steps.pipeline import build
from tests.test_dedup_properties import VOCAB, T, _edit, _noisy_case, check_dedup, corpus

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "support-triage"


def _answer(step: str) -> str:
    return json.dumps({"intent": "other", "entities": {}, "missing_info": [], "next_step": step})


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prompt(text: str) -> dict[str, Any]:
    """An unlabeled prompt as the `text` reader makes it (one user turn, tag `unlabeled`)."""
    return {"messages": [{"role": "user", "content": text}], "tags": ["unlabeled"]}


# ------------------------------------------------------------------ the relation


@pytest.mark.parametrize(
    "answer",
    ["Thanks!", "The.", "Open Billing, then Receipts.", "ok"],
)
def test_a_prompt_is_never_the_near_twin_of_an_answered_record(answer: str) -> None:
    """An empty response is compared with empty responses only: not with "Thanks!" (whose skeleton is empty
    too: without the rule the strict short-text rule would call the two equal)."""
    p = [{"role": "user", "content": "Where can I download my receipts?"}]
    alone, answered = view(p), view([*p, {"role": "assistant", "content": answer}])
    assert near_score(alone, answered, T) == 0.0 and near_score(answered, alone, T) == 0.0
    assert near_score(alone, view([{"role": "user", "content": "where can i download my reciepts"}]), T) >= T


# ------------------------------------------------------------------ dedup against brute force


def prompt_corpus(seed: int, n_base: int) -> list[dict[str, Any]]:
    """`corpus` (answered conversations with planted families) plus unlabeled prompts: the prompts of some of
    its records alone, their exact and near copies, long texts of their own and short look-alikes."""
    rng = random.Random(seed)
    dicts = [d for d, _, _ in corpus(seed, n_base)]
    out = list(dicts)
    for d in rng.sample(dicts, k=min(len(dicts), max(1, len(dicts) // 3))):
        words = d["messages"][0]["content"].split()
        out.append(_prompt(" ".join(words)))  # the prompt of an answered record, alone
        roll = rng.random()
        if roll < 0.3:
            out.append(_prompt(_noisy_case(rng, words)))  # an exact copy
        elif roll < 0.6:
            out.append(_prompt(" ".join(_edit(rng, words, rng.randint(1, 3), VOCAB))))  # a near copy
    for _ in range(n_base // 3):  # long texts of their own, some with a near copy
        words = [rng.choice(VOCAB) for _ in range(rng.randint(40, 90))]
        out.append(_prompt(" ".join(words)))
        if rng.random() < 0.5:
            out.append(_prompt(" ".join(_edit(rng, words, rng.randint(1, 4), VOCAB))))
    for c in rng.sample(["France", "Spain", "Chile", "Peru", "Japan"], 3):  # short: kept apart but a typo
        out.append(_prompt(f"What is the capital of {c}?"))
    out.append(_prompt("What is the captial of Chile?"))
    rng.shuffle(out)
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(3, 60))
def test_prompt_dedup_agrees_with_brute_force(seed: int, n_base: int) -> None:
    """dedup over answered records and unlabeled prompts together: every removal is a true pair under
    `relation.near_score` / `exact_key`, no two kept records are a pair (brute force over every pair), and no
    prompt is ever removed as the twin of an answered record, nor the other way round."""
    dicts = prompt_corpus(seed, n_base)
    check_dedup(dicts)
    recs = [
        parse_record({"kind": "sft", **d, "source": {"file": "c.jsonl", "line": i + 1}})
        for i, d in enumerate(dicts)
    ]
    rel: list[dict[str, Any]] = []
    kept, rows = dedup(recs, near_threshold=T, relations=rel)
    alone = {f"c.jsonl:{i + 1}" for i, d in enumerate(dicts) if len(d["messages"]) == 1}
    for row in rows:
        assert (row["kept_source"] in alone) == (row["dropped_source"] in alone), row
    # a kept prompt that starts a kept answered conversation is reported as its prefix (a continuation)
    views = {r.source.where(): view([m.model_dump() for m in r.messages]) for r in kept}
    got = {(x["a_source"], x["b_source"]) for x in rel}
    for a in alone & views.keys():
        for b, vb in views.items():
            if b not in alone and vb.turns[:1] == views[a].turns:
                assert (a, b) in got, (a, b)


def test_drop_prefixes_drops_an_answered_prompt() -> None:
    """`dedup.drop_prefixes`: an unlabeled prompt that an answered conversation starts with is dropped (method
    continuation, the answered record named as kept); without it both are kept and related."""
    answered = {
        "messages": [
            {"role": "user", "content": "where are  my RECEIPTS?"},  # the same turn, normalized
            {"role": "assistant", "content": "Under Billing."},
        ]
    }
    recs = [
        parse_record({"kind": "sft", **d, "source": {"file": "c.jsonl", "line": i + 1}})
        for i, d in enumerate(
            [_prompt("Where are my receipts?"), answered, _prompt("Where are my invoices?")]
        )
    ]
    rel: list[dict[str, Any]] = []
    kept, rows = dedup(recs, near_threshold=T, relations=rel)
    assert len(kept) == 3 and rows == []
    assert [(x["a_source"], x["b_source"]) for x in rel] == [("c.jsonl:1", "c.jsonl:2")]
    kept, rows = dedup(recs, near_threshold=T, drop_prefixes=True, relations=[])
    assert [r.source.line for r in kept] == [2, 3]
    assert [(r["method"], r["kept_source"], r["dropped_source"]) for r in rows] == [
        ("continuation", "c.jsonl:2", "c.jsonl:1")
    ]


# ------------------------------------------------------------------ builds

CHAT = {
    "messages": [
        {"role": "user", "content": "Where can I download my receipts from last year?"},
        {"role": "assistant", "content": _answer("Open Billing, then Receipts, and pick the year.")},
    ]
}
MIXED = [
    {
        "text": "My invoice for March shows a charge of 40 dollars I do not recognise, can you explain it to me?"
    },
    {
        "text": " my invoice for march  shows a charge of 40 dollars i do not RECOGNISE, can you explain it to me?"
    },
    {
        "text": "My invoice for March shows a charge of 40 dollars I do not recognize, could you explain it to me?"
    },
    {"text": "Where can I download my receipts from last year?"},  # the chat's prompt, unanswered
    {"text": "What is the capital of France?", "category": "edge", "tags": ["web"]},
    {"text": "What is the capital of Spain?"},  # a different request: kept
    {"text": "   "},  # empty: quarantined (read/empty_turn)
    CHAT,
    {"messages": [{"role": "user", "content": "Cancel my plan"}], "tags": ["unlabeled"]},  # a native prompt
]


def _conservation(res: Any) -> None:
    assert res.manifest["conservation"]["ok"]
    for i in res.manifest["inputs"]:
        assert i["in"] == i["exported"] + i["quarantined"] + i["duplicates"], i


def _rows(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(x) for f in ("train", "test") for x in (folder / f"{f}.jsonl").read_text().splitlines()
    ]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    import os

    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_mixed_file_builds_prompts(tmp_path: Path) -> None:
    """A file of plain texts and chats with the spec's own data: the texts are deduplicated (exact, near; the
    short rule keeps France and Spain apart), split with the rest (a prompt and its answered twin share a split)
    and exported as prompt-only rows; the chat is an SFT row; nothing is lost; the card's load snippet loads the
    prompts config and lint-export accepts the folder."""
    f = _jsonl(tmp_path / "mixed.jsonl", MIXED)
    res = build(SPEC, [SPEC / "data.jsonl", f], tmp_path / "out")
    out = res.out_dir
    _conservation(res)
    mine = next(i for i in res.manifest["inputs"] if i["file"] == str(f))
    assert (mine["in"], mine["exported"], mine["quarantined"], mine["duplicates"]) == (9, 6, 1, 2)
    assert res.manifest["quarantine"] == {"read/empty_turn": 1}
    assert res.manifest["exported_formats"] == ["sft", "dpo", "prompts"]
    counts = res.counts["prompts"]
    assert counts["train"] + counts["test"] == 5 and "text" not in res.counts
    rows = _rows(out / "prompts")
    users = sorted(r["prompt"][-1]["content"] for r in rows)
    assert users == sorted(
        [
            "My invoice for March shows a charge of 40 dollars I do not recognize, could you explain it to me?",
            "Where can I download my receipts from last year?",
            "What is the capital of France?",
            "What is the capital of Spain?",
            "Cancel my plan",
        ]
    )
    assert all(dataset_type(r) == ("prompt_only", True) and r["prompt"][0]["role"] == "system" for r in rows)
    assert all(len(r["prompt"]) == 2 and {"id", "lineage"} <= r.keys() for r in rows)
    # the duplicates: one row each in clusters.jsonl, naming the kept twin
    clusters = [json.loads(x) for x in (out / "clusters.jsonl").read_text().splitlines()]
    ours = [c for c in clusters if c["dropped_source"].startswith(str(f))]
    # (lines 1 and 2 are exact copies: one stays; line 3 is their near twin, longer, kept first)
    assert sorted(c["method"] for c in ours) == ["exact", "near"]
    assert {c["dropped_source"] for c in ours} == {f"{f}:1", f"{f}:2"}
    near = next(c for c in ours if c["method"] == "near")
    exact = next(c for c in ours if c["method"] == "exact")
    assert near["kept_source"] == f"{f}:3" and exact["kept_source"] == near["dropped_source"]
    # the chat is an SFT row; its unanswered prompt is in the same split
    side = {}
    for split in ("train", "test"):
        for fmt in ("sft", "prompts"):
            for x in (out / fmt / f"{split}.jsonl").read_text().splitlines():
                r = json.loads(x)
                turns = r.get("messages") or r.get("prompt")
                side.setdefault(turns[1]["content"], set()).add((fmt, split))
    receipts = side["Where can I download my receipts from last year?"]
    assert {fmt for fmt, _ in receipts} == {"sft", "prompts"} and len({s for _, s in receipts}) == 1
    rel = [json.loads(x) for x in (out / "relations.jsonl").read_text().splitlines()]
    assert [(x["a_source"], x["b_source"]) for x in rel if x["a_source"].startswith(str(f))] == [
        (f"{f}:4", f"{f}:8")
    ]  # the prompt starts the answered chat: a continuation (dedup.drop_prefixes would drop the prompt)
    # coverage counts answers only; lengths per kind
    total = sum(c["count"] for c in res.manifest["coverage"]["categories"])
    assert (
        total
        == res.counts["sft"]["train"]
        + res.counts["sft"]["test"]
        + res.counts["dpo"]["train"]
        + (res.counts["dpo"]["test"])
    )
    assert res.manifest["lengths"]["prompts"]["train"]["rows"] == counts["train"]
    # the card's load snippet loads every config, prompts included
    card = (out / "README.md").read_text()
    assert "- config_name: prompts" in card and "`prompts/` holds unlabeled prompts" in card
    load = next(b for b in card.split("```python\n")[1:] if 'load_dataset(folder, "prompts")' in b)
    load = load.split("```")[0]
    r = _run(load + "\nprint('PROMPTS', sum(len(s) for s in prompts.values()))", cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"PROMPTS {counts['train'] + counts['test']}" in r.stdout
    report = (out / "report.html").read_text()
    assert f"prompts {counts['train']} / {counts['test']}" in report and "<td>prompts</td>" in report
    rep = lint_export(out)
    assert rep.ok, rep.findings
    assert ("prompt_only", True) in {(d["type"], d["conversational"]) for d in rep.datasets}


def test_text_mode_exports_language_modeling_rows(tmp_path: Path) -> None:
    """`export.text_records: text`: the same records as `{"text": ...}` rows in text/ (no system prompt),
    deduplicated on the text; a corpus of texts alone builds (no SFT rows: a warning, not an error); the card
    loads and trains on the `text` config with SFTTrainer (language modeling)."""
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    yaml = (
        (SPEC / "spec.yaml")
        .read_text()
        .replace(
            "export: {formats: [sft, dpo], sft_format: messages, max_tokens: 1024}",
            "export: {formats: [sft, dpo], sft_format: messages, max_tokens: 1024, text_records: text}",
        )
    )
    assert "text_records: text" in yaml
    (spec_dir / "spec.yaml").write_text(yaml)
    f = _jsonl(tmp_path / "corpus.jsonl", [x for x in MIXED if "text" in x])
    res = build(spec_dir / "spec.yaml", [f], tmp_path / "out")
    _conservation(res)
    assert res.manifest["exported_formats"] == ["sft", "dpo", "text"] and "prompts" not in res.counts
    assert res.counts["text"]["train"] + res.counts["text"]["test"] == 4
    rows = _rows(res.out_dir / "text")
    assert sorted(r["text"] for r in rows) == sorted(
        [
            "My invoice for March shows a charge of 40 dollars I do not recognize, could you explain it to me?",
            "Where can I download my receipts from last year?",
            "What is the capital of France?",
            "What is the capital of Spain?",
        ]
    )
    assert all(dataset_type(r) == ("language_modeling", False) for r in rows)
    assert (res.counts["in"], res.counts["exported"], res.counts["duplicates"]) == (7, 4, 2)
    r = CliRunner().invoke(
        main, ["build", str(spec_dir / "spec.yaml"), "-i", str(f), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 0, r.output
    assert f"; text: {res.counts['text']['train']} train / {res.counts['text']['test']} test" in r.stdout
    r = CliRunner().invoke(main, ["lint-export", str(res.out_dir), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["ok"], doc
    card = (res.out_dir / "README.md").read_text()
    load = next(b for b in card.split("```python\n")[1:] if 'load_dataset(folder, "text")' in b).split("```")[
        0
    ]
    got = _run(load + "\nprint('TEXT', sum(len(s) for s in text.values()))", cwd=res.out_dir)
    assert got.returncode == 0, got.stderr[-3000:]
    assert "TEXT 4" in got.stdout


@pytest.mark.train
def test_text_config_trl_snippet_runs(tmp_path: Path) -> None:
    """The card's SFTTrainer snippet for the `text` config trains (MODEL replaced by a tiny local model)."""
    from tests.tinymodel import build_tiny_model

    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "spec.yaml").write_text(
        (SPEC / "spec.yaml")
        .read_text()
        .replace("max_tokens: 1024}", "max_tokens: 1024, text_records: text}")
        .replace("data: [data.jsonl]", "data: []")
    )
    rng = random.Random(7)
    texts = [{"text": " ".join(rng.choice(VOCAB) for _ in range(30))} for _ in range(12)]
    res = build(spec_dir / "spec.yaml", [_jsonl(tmp_path / "c.jsonl", texts)], tmp_path / "out")
    card = (res.out_dir / "README.md").read_text()
    block = next(b for b in card.split("```python\n")[1:] if "SFTTrainer(" in b).split("```")[0]
    assert 'load_dataset(str(Path(".").resolve()), "text")' in block
    model = build_tiny_model(tmp_path / "tiny")
    code = block.replace('MODEL = "path/to/a/local/model"', f"MODEL = {str(model)!r}")
    code = code.replace("num_train_epochs=1", "max_steps=2, report_to='none'")
    r = _run(code + "\nprint('TRAINED', trainer.state.global_step)", cwd=res.out_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TRAINED 2" in r.stdout


def test_real_fixture_text_field(tmp_path: Path, real_fixtures: Path) -> None:
    """data-juicer's Alpaca-CoT demo carries each example's full text in `text`: read as plain text records
    (`FILE:text`), every line is accounted for and exported as a prompt or removed as a duplicate."""
    src = real_fixtures / "data-juicer" / "alpaca-cot.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()
    res = build(SPEC, [f"{src}:text"], tmp_path / "out")
    _conservation(res)
    assert res.counts["in"] == len(lines) and res.counts["quarantined"] == 0
    assert res.counts["exported"] + res.counts["duplicates"] == len(lines)
    assert res.counts["prompts"]["train"] + res.counts["prompts"]["test"] == res.counts["exported"]
    texts = {json.loads(x)["text"] for x in lines}
    got = {r["prompt"][-1]["content"] for r in _rows(res.out_dir / "prompts")}
    assert got <= texts and len(got) == res.counts["exported"]
