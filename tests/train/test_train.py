"""Real TRL trainers on a tiny local model: SFT, LoRA, DPO, SFT -> DPO, and the checks before training."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from curate.errors import TrainError
from curate.train import TrainOptions, resolve_model, train_dpo, train_sft

pytestmark = pytest.mark.train


def _opts(model: Path, out: Path, **kw: object) -> TrainOptions:
    base = {"epochs": 2.0, "batch_size": 4, "max_length": 2048}
    base.update(kw)
    return TrainOptions(model=model, out=out, **base)  # type: ignore[arg-type]


def _config(out: Path) -> dict:
    return orjson.loads((out / "curate_train_config.json").read_bytes())


@pytest.fixture(scope="module")
def sft_full(tiny_model: Path, export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "sft"
    steps: list[tuple[str, int, int | None]] = []
    train_sft(export_dir, _opts(tiny_model, out, learning_rate=1e-3), progress=lambda *a: steps.append(a))
    assert steps and steps[-1][1] == steps[-1][2] == 8
    return out


def test_sft_trains_evaluates_each_epoch_and_saves_config(
    sft_full: Path, tiny_model: Path, export_dir: Path
) -> None:
    from transformers import AutoModelForCausalLM

    cfg = _config(sft_full)
    res = cfg["result"]
    assert cfg["kind"] == "sft" and cfg["loss"] == "assistant_only"  # the tiny template has generation marks
    assert res["global_step"] == 8 and res["epochs_run"] == 2.0  # 16 rows / batch 4 * 2 epochs
    assert len(res["eval_losses"]) == 2  # evaluated every epoch
    assert res["best_eval_loss"] == min(res["eval_losses"])  # best checkpoint by eval loss
    assert res["eval_losses"][-1] < res["eval_losses"][0]  # it learned something
    ta = cfg["trainer_args"]
    assert ta["load_best_model_at_end"] is True and ta["metric_for_best_model"] == "eval_loss"
    assert ta["seed"] == 13 and ta["assistant_only_loss"] is True and ta["max_length"] == 2048
    assert cfg["data"] == {**cfg["data"], "train_rows": 16, "test_rows": 4, "spec": "support-triage@1"}
    assert cfg["base_model"]["path"] == str(tiny_model)
    assert not (sft_full / "checkpoints").exists()
    assert not list(sft_full.parent.glob(".sft.partial-*"))
    # the saved model is a normal folder that differs from the base
    import torch

    a = AutoModelForCausalLM.from_pretrained(sft_full).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_result(sft_full: Path, tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    train_sft(export_dir, _opts(tiny_model, tmp_path / "again", learning_rate=1e-3))
    assert _config(tmp_path / "again")["result"]["eval_losses"] == _config(sft_full)["result"]["eval_losses"]


def test_lora_sft_then_dpo_from_it(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    lora = tmp_path / "lora"
    train_sft(export_dir, _opts(tiny_model, lora, lora=True))
    assert (lora / "adapter_config.json").exists() and not (lora / "model.safetensors").exists()
    cfg = _config(lora)
    assert cfg["lora"]["r"] == 16 and cfg["trainer_args"]["learning_rate"] == 2e-4
    ref = resolve_model(lora)  # an adapter resolves to its base + the adapter
    assert ref.adapter == lora and ref.path == tiny_model

    dpo = tmp_path / "dpo"
    res = train_dpo(export_dir, _opts(tiny_model, dpo), from_sft=lora)
    cfg = _config(dpo)
    assert (
        cfg["kind"] == "dpo" and cfg["started_from"] == str(lora) and cfg["merged_adapter_from"] == str(lora)
    )
    assert cfg["data"]["train_rows"] == 8 and res.config["result"]["global_step"] == 4
    assert cfg["trainer_args"]["beta"] == 0.1 and len(cfg["result"]["eval_losses"]) == 2
    assert (dpo / "model.safetensors").exists()  # full DPO on the merged SFT model


def test_dpo_lora_from_base(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    res = train_dpo(export_dir, _opts(tiny_model, tmp_path / "dpo-lora", lora=True, max_steps=2))
    cfg = _config(tmp_path / "dpo-lora")
    assert res.config["result"]["global_step"] == 2 and cfg["loss"] == "dpo" and cfg["lora"] is not None
    assert (tmp_path / "dpo-lora" / "adapter_config.json").exists()


def test_template_without_generation_marks_uses_completion_only_loss(
    tiny_model: Path, export_dir: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain)
    tmpl = (plain / "chat_template.jinja").read_text()
    tmpl = tmpl.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    (plain / "chat_template.jinja").write_text(tmpl)
    train_sft(export_dir, _opts(plain, tmp_path / "out", max_steps=1))
    cfg = _config(tmp_path / "out")
    assert cfg["loss"] == "completion_only" and cfg["trainer_args"]["assistant_only_loss"] is False


# ---------------------------------------------------------------- errors before training


def test_missing_model_path_is_a_clear_error(export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"does not exist; curate loads local models only.*never downloads"):
        train_sft(export_dir, _opts(tmp_path / "HuggingFaceTB/SmolLM2-135M", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_folder_that_is_not_a_model(export_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="no config.json and no .gguf file"):
        train_sft(export_dir, _opts(tmp_path / "empty", tmp_path / "out"))


def test_no_chat_template(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    (bare / "chat_template.jinja").unlink()
    tc = orjson.loads((bare / "tokenizer_config.json").read_bytes())
    tc.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_bytes(orjson.dumps(tc))
    with pytest.raises(TrainError, match="has no chat template"):
        train_sft(export_dir, _opts(bare, tmp_path / "out"))


def test_rows_trl_would_drop_or_truncate(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        TrainError,
        match=r"20 rows are longer than max_length 64 \(TRL would drop 20 and "
        r"truncate 0 .*train.jsonl:1 .*pass --max-length \d+",
    ):
        train_sft(export_dir, _opts(tiny_model, tmp_path / "out", max_length=64))


def test_wrong_dataset_type(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "export"
    shutil.copytree(export_dir, bad)
    shutil.copy(bad / "dpo" / "train.jsonl", bad / "sft" / "train.jsonl")
    with pytest.raises(
        TrainError,
        match=r"sft/train.jsonl:1: a preference row, but the SFT trainer needs "
        r"messages or prompt_completion rows; use `curate train dpo`",
    ):
        train_sft(bad, _opts(tiny_model, tmp_path / "out"))


def test_mixed_row_types(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "export"
    shutil.copytree(export_dir, bad)
    rows = (bad / "sft" / "train.jsonl").read_bytes().splitlines()
    pc = orjson.loads(rows[1])
    pc = {"prompt": pc["messages"][:-1], "completion": pc["messages"][-1:]}
    rows[1] = orjson.dumps(pc)
    (bad / "sft" / "train.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(TrainError, match=r"train.jsonl:2: a prompt_completion row among messages rows"):
        train_sft(bad, _opts(tiny_model, tmp_path / "out"))


def test_export_without_dpo(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "export"
    shutil.copytree(export_dir, bad)
    shutil.rmtree(bad / "dpo")
    with pytest.raises(TrainError, match=r"dpo/train.jsonl not found: the export has no dpo data"):
        train_dpo(bad, _opts(tiny_model, tmp_path / "out"))


def test_existing_out_is_kept_without_overwrite(tiny_model: Path, export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(TrainError, match="already exists and is not empty; pass --overwrite"):
        train_sft(export_dir, _opts(tiny_model, out, max_steps=1))
    train_sft(export_dir, _opts(tiny_model, out, max_steps=1, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "curate_train_config.json").exists()


def test_spec_path_resolves_to_its_default_build(
    tiny_model: Path, export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec_dir: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainError, match=r"no export at out/support-triage/v1 .*run `curate build"):
        train_sft(spec_dir, _opts(tiny_model, tmp_path / "out"))
    shutil.copytree(export_dir, tmp_path / "out" / "support-triage" / "v1")
    train_sft(spec_dir, _opts(tiny_model, tmp_path / "model", max_steps=1))
    assert _config(tmp_path / "model")["data"]["export"] == "out/support-triage/v1"


def test_max_length_defaults_to_the_build_manifest(
    tiny_model: Path, export_dir: Path, tmp_path: Path
) -> None:
    ex = tmp_path / "export"
    shutil.copytree(export_dir, ex)
    m = orjson.loads((ex / "manifest.json").read_bytes())
    m["lengths"] = {"unit": "tokens", "max_tokens": 100}
    (ex / "manifest.json").write_bytes(orjson.dumps(m))
    with pytest.raises(TrainError, match=r"rows are longer than max_length 100 "):
        train_sft(ex, TrainOptions(model=tiny_model, out=tmp_path / "out"))


def _batch(tokenizer, rows: list[dict]) -> dict:
    """Right-padded SFT batch with the loss on the last assistant turn, as TRL's collator builds it."""
    import torch

    ids, labels = [], []
    for r in rows:
        full = tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
        prompt = tokenizer.apply_chat_template(
            r["messages"][:-1], tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        ids.append(full)
        labels.append([-100] * len(prompt) + full[len(prompt) :])
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([x + [pad] * (width - len(x)) for x in ids]),
        "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
        "labels": torch.tensor([x + [-100] * (width - len(x)) for x in labels]),
    }


def test_shared_prefix_loss_and_gradients_equal_the_plain_forward(tiny_model: Path, export_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.train import read_split, shared_prefix_len, shared_prefix_loss

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    rows = read_split(export_dir / "sft" / "train.jsonl", "sft").rows[:5]
    batch = _batch(tok, rows)
    system = tok.apply_chat_template(rows[0]["messages"][:1], tokenize=True, return_dict=True)["input_ids"]
    n = shared_prefix_len(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert len(system) <= n < int((batch["labels"][0] != -100).nonzero()[0, 0])
    plain = model(**batch)
    plain.loss.backward()
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    loss, info = shared_prefix_loss(model, batch)
    loss.backward()
    assert info["prefix_tokens"] == n and 0 <= info["mean_token_accuracy"] <= 1 and info["entropy"] > 0
    assert torch.allclose(loss, plain.loss, rtol=1e-5, atol=1e-6)
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, want[k], rtol=1e-3, atol=1e-6), k
    # rows with nothing in common: the plain path is used
    other = dict(batch, input_ids=batch["input_ids"].clone())
    other["input_ids"][1, 0] = (other["input_ids"][0, 0] + 1) % len(tok)
    assert shared_prefix_loss(model, other) is None
    model.config.final_logit_softcapping = 30.0  # logits capped after the head (Gemma-style): plain path
    assert shared_prefix_loss(model, batch) is None


def test_shared_prefix_training_matches_plain_training(
    tiny_model: Path, export_dir: Path, tmp_path: Path
) -> None:
    res = {}
    for shared in (True, False):
        train_sft(
            export_dir,
            _opts(tiny_model, tmp_path / str(shared), epochs=1.0, learning_rate=1e-3, shared_prefix=shared),
        )
        res[shared] = _config(tmp_path / str(shared))["result"]
    assert res[True]["shared_prefix_batches"] >= 4 + 1 and res[False]["shared_prefix_batches"] == 0
    assert res[True]["eval_losses"][0] == pytest.approx(res[False]["eval_losses"][0], rel=1e-3)
    assert res[True]["train_loss"] == pytest.approx(res[False]["train_loss"], rel=1e-3)


def test_keep_last_skips_best_checkpoint_and_early_stopping(
    tiny_model: Path, export_dir: Path, tmp_path: Path
) -> None:
    train_sft(
        export_dir,
        _opts(
            tiny_model, tmp_path / "last", learning_rate=1e-3, select_best=False, early_stopping_patience=1
        ),
    )
    cfg = _config(tmp_path / "last")
    assert cfg["result"]["kept"] == "last" and cfg["result"]["global_step"] == 8  # all 2 epochs run
    assert cfg["trainer_args"]["load_best_model_at_end"] is False
    assert len(cfg["result"]["eval_losses"]) == 2  # still evaluated every epoch


def _dpo_batch(tokenizer, rows: list[dict]) -> dict:
    """A DPO batch as TRL's collator makes it: [chosen rows, rejected rows], right-padded, completion mask."""
    import torch

    ids, comp = [], []
    for side in ("chosen", "rejected"):
        for r in rows:
            p = tokenizer.apply_chat_template(
                r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
            c = tokenizer(r[side][0]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
            ids.append(p + c)
            comp.append([0] * len(p) + [1] * len(c))
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    completion = torch.tensor([x + [0] * (width - len(x)) for x in comp])
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "labels": input_ids.masked_fill(completion == 0, -100),
    }


def test_dpo_shared_prefix_logps_and_gradients_equal_trls_fused_head(
    tiny_model: Path, export_dir: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head

    from curate.train import _SharedPrefixLM, read_split, shared_prefix_logps

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    rows = read_split(export_dir / "dpo" / "train.jsonl", "dpo").rows[:3]
    batch = _dpo_batch(tok, rows)
    plain = model(**batch, fused_lm_head=True, use_cache=False)
    (plain.log_probs.sum(1) * torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])).sum().backward()
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    lm = _SharedPrefixLM(model)
    got = lm(**batch, fused_lm_head=True, use_cache=False)
    assert lm.shared == 1 and got.prefix_tokens >= 8
    assert got.log_probs.shape == plain.log_probs.shape
    assert torch.allclose(got.log_probs, plain.log_probs, rtol=1e-4, atol=1e-5)
    keep = got.label_mask
    assert torch.allclose(got.entropy[keep], plain.entropy[keep], rtol=1e-4, atol=1e-5)
    assert torch.equal(got.is_top1, plain.is_top1)
    (got.log_probs.sum(1) * torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])).sum().backward()
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, want[k], rtol=1e-3, atol=1e-5), k
    other = dict(batch, input_ids=batch["input_ids"].clone())
    other["input_ids"][1, 0] = (other["input_ids"][0, 0] + 1) % len(tok)
    assert shared_prefix_logps(model, other) is None  # nothing shared: TRL's own path
    assert lm(**other, fused_lm_head=True).log_probs.shape == plain.log_probs.shape and lm.shared == 1


def test_dpo_shared_prefix_training_matches_plain_training(
    tiny_model: Path, export_dir: Path, tmp_path: Path
) -> None:
    res = {}
    for shared in (True, False):
        train_dpo(
            export_dir,
            _opts(tiny_model, tmp_path / str(shared), epochs=1.0, learning_rate=1e-3, shared_prefix=shared),
        )
        res[shared] = _config(tmp_path / str(shared))["result"]
    assert res[True]["shared_prefix_batches"] >= 2 and res[False]["shared_prefix_batches"] == 0
    assert res[True]["train_loss"] == pytest.approx(res[False]["train_loss"], rel=1e-3)
    assert res[True]["eval_losses"][0] == pytest.approx(res[False]["eval_losses"][0], rel=1e-3)
