"""lint-export with a tokenizer whose chat template has no generation markers (SmolLM2's, or one `curate train`
saved from such a model): it lints what `curate train` does with it (completion-only loss on the last answer), a
warning and not an error, and judges dropped rows by the turns before the LAST answer."""

from __future__ import annotations

from pathlib import Path

from curate.records import Message, SFTRecord
from curate.spec import load_spec
from curate.steps.export import sft_row, write_splits
from curate.steps.lint_export import lint_export

REPO = Path(__file__).resolve().parents[2]


def _msg(role: str, content: str) -> Message:
    return Message(role=role, content=content)


def test_tokenizer_without_generation_markers(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tests.tinymodel import build_tiny_model

    spec = load_spec(REPO / "tests" / "data" / "build")
    tok = AutoTokenizer.from_pretrained(str(build_tiny_model(tmp_path / "tiny")))
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    answer = _msg("assistant", '{"answer": "ok"}')
    short = [
        sft_row(SFTRecord.build(messages=(_msg("user", f"question {i}"), answer)), spec) for i in range(4)
    ]
    # two turns: the first answer comes early, but the LAST answer (what curate train learns) comes after a long turn
    long_second = sft_row(
        SFTRecord.build(messages=(_msg("user", "hi"), answer, _msg("user", "word " * 400), answer)), spec
    )
    write_splits(tmp_path / "b" / "sft", {"train": short + [long_second], "test": short[:1]})
    rep = lint_export(tmp_path / "b", tokenizer=tok, max_length=200)
    codes = {f["code"]: f["level"] for f in rep.findings}
    assert codes["no_generation_markers"] == "warning"
    assert codes["rows_dropped"] == "error" and rep.datasets[0]["dropped"] == 1  # judged on the last answer
    rep = lint_export(tmp_path / "b", tokenizer=tok, max_length=4000)
    assert rep.ok and [f["code"] for f in rep.findings] == ["no_generation_markers"]
