"""train's length checks know how many tokens the model takes (config max_position_embeddings, a GGUF file's
context_length), and `--model smollm2` names the bundled SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.errors import TrainError
from curate.train import (
    SplitRows,
    check_lengths,
    gguf_context_length,
    model_max_positions,
    resolve_model,
    smollm2_gguf,
)


class _Tok:
    """A stand-in tokenizer: one token per whitespace-separated word of every message."""

    model_max_length = int(1e30)  # transformers' "unknown"

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False, **kw):
        return {"input_ids": [0] * sum(len(m["content"].split()) for m in messages)}


def _split(tmp_path: Path, words: int) -> SplitRows:
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "w " * words}]}]
    return SplitRows(path=tmp_path / "train.jsonl", rows=rows, lines=[1])


def test_hint_never_suggests_more_than_the_model_takes(tmp_path: Path) -> None:
    split = _split(tmp_path, 3000)
    with pytest.raises(TrainError, match="pass --max-length 3001 or lower"):
        check_lengths([split], _Tok(), 1024, "sft")  # no limit known: the longest row
    with pytest.raises(TrainError) as err:
        check_lengths([split], _Tok(), 1024, "sft", max_positions=2048)
    msg = str(err.value)
    assert (
        "the model takes at most 2048 tokens" in msg
        and "--max-length 2048" in msg
        and "3001" not in msg.split(";")[-1]
    )
    with pytest.raises(TrainError, match=r"max_length 4096 is more than the model takes \(2048 positions\)"):
        check_lengths([_split(tmp_path, 5)], _Tok(), 4096, "sft", max_positions=2048)
    check_lengths([_split(tmp_path, 5)], _Tok(), 1024, "sft", max_positions=2048)  # fits: no error


def test_max_positions_from_config_and_tokenizer(tmp_path: Path) -> None:
    from tests.tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    ref = resolve_model(model)
    assert model_max_positions(ref) == 2048  # LlamaConfig(max_position_embeddings=2048)
    tok = _Tok()
    tok.model_max_length = 512
    assert model_max_positions(ref, tok) == 512  # the tokenizer's real limit is lower


def test_gguf_context_length_reads_the_header(tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "m.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(4096)
    w.add_token_list([b"a", b"b", b"c"])  # an array of strings, skipped on the way
    w.add_tensor("t", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert gguf_context_length(path) == 4096
    (tmp_path / "x.gguf").write_bytes(b"nope")
    assert gguf_context_length(tmp_path / "x.gguf") is None


def test_smollm2_by_name() -> None:
    ref = resolve_model("smollm2")
    assert ref.gguf_file == smollm2_gguf().name and (ref.path / ref.gguf_file).is_file()
    assert model_max_positions(ref) == 8192


def test_expand_model_smollm2_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`curate expand --model smollm2` resolves like train/eval (shown without loading 135M weights: the bundled
    file is swapped for a file that is no model, which LocalModel then names)."""
    import curate.train
    from curate.errors import CurateError
    from curate.expand.local_model import LocalModel

    fake = tmp_path / "not-a-model.bin"
    fake.write_bytes(b"x")
    monkeypatch.setattr(curate.train, "smollm2_gguf", lambda: fake)
    with pytest.raises(CurateError, match="not-a-model.bin: give a model folder or a .gguf file"):
        LocalModel("smollm2")
