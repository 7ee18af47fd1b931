"""LengthCounter with a tokenizer: the cached, piece-by-piece count equals apply_chat_template's, record by
record (SFT and preference records, with and without the spec's system prompt); tokenizers where cutting at added
tokens would not be exact take the plain path."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.records import PreferenceRecord
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.read import read_inputs
from curate.steps.validate import LengthCounter, _added_token_splitter, load_tokenizer

REPO = Path(__file__).resolve().parents[2]


def _exact(tok, msgs) -> int:
    ids = tok.apply_chat_template([m.to_trl() for m in msgs], tokenize=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory):
    from tests.tinymodel import build_tiny_model

    return load_tokenizer(build_tiny_model(tmp_path_factory.mktemp("tok") / "tiny"))


@pytest.mark.parametrize("spec_name", ["support-triage", "support-agent"])
def test_cached_counts_equal_the_chat_template(tiny_tok, spec_name: str) -> None:
    spec = load_spec(REPO / "specs" / spec_name)
    recs = list(read_inputs([REPO / "specs" / spec_name / "data.jsonl"], ctx=RunContext(), spec=spec))
    counter = LengthCounter(spec, tiny_tok)
    assert counter._split is not None  # the fast path is on
    for rec in recs:
        if isinstance(rec, PreferenceRecord):
            prompt = counter._with_system(rec.prompt)
            want = max(
                _exact(tiny_tok, prompt + list(rec.chosen)), _exact(tiny_tok, prompt + list(rec.rejected))
            )
        else:
            want = _exact(tiny_tok, counter._with_system(rec.conversation()))
        assert counter.measure(rec) == want, rec.source
    assert counter._pieces  # the shared pieces were cached


def test_cache_is_bounded(tiny_tok) -> None:
    spec = load_spec(REPO / "specs" / "support-triage")
    counter = LengthCounter(spec, tiny_tok)
    counter.CACHE_SIZE = 5
    recs = list(read_inputs([REPO / "specs" / "support-triage" / "data.jsonl"], ctx=RunContext(), spec=spec))[
        :20
    ]
    for rec in recs:
        counter.measure(rec)
        assert len(counter._pieces) <= 5 + 10  # emptied when full; one record adds a handful
    fresh = LengthCounter(spec, tiny_tok)
    assert [counter.lengths[r.id] for r in recs] == [fresh.measure(r) for r in recs]


def test_whitespace_stripping_added_tokens_take_the_plain_path(tiny_tok) -> None:
    from tokenizers import AddedToken

    tok = tiny_tok.__class__.from_pretrained(tiny_tok.name_or_path)
    assert _added_token_splitter(tok) is not None
    tok.add_tokens([AddedToken("<|tool|>", lstrip=True)])
    assert _added_token_splitter(tok) is None


def test_bundled_smollm2_tokenizer_counts_exactly() -> None:
    from curate.train import smollm2_gguf

    tok = load_tokenizer(smollm2_gguf().parent)
    spec = load_spec(REPO / "specs" / "support-triage")
    recs = [
        r
        for r in read_inputs([REPO / "specs" / "support-triage" / "data.jsonl"], ctx=RunContext(), spec=spec)
        if not isinstance(r, PreferenceRecord)
    ][:40]
    counter = LengthCounter(spec, tok)
    assert counter._split is not None
    for rec in recs:
        assert counter.measure(rec) == _exact(tok, counter._with_system(rec.conversation()))
