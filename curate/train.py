"""Train on a curated export with TRL: SFT, DPO, LoRA adapters, SFT -> DPO. Local models only.

    >>> from curate.train import TrainOptions, train_sft, train_dpo
    >>> result = train_sft("out/support-triage/v1", TrainOptions(model="models/base", out="models/sft"))  # doctest: +SKIP
    >>> result = train_dpo("out/support-triage/v1", TrainOptions(model="models/sft", out="models/dpo"))   # doctest: +SKIP

`SPEC_OR_EXPORT` is an export folder written by `curate build` (sft/, dpo/, manifest.json) or a spec, whose
default build folder is used. The held-out split (`test`) is the evaluation set: the trainer evaluates every
epoch, keeps the checkpoint with the lowest eval loss and stops early when it stops improving.

Models are local: a folder (config.json + weights), a `.gguf` file (loaded dequantized through transformers'
`gguf_file=`), or the output folder of an earlier `curate train` run (a LoRA adapter is loaded on its base).
Nothing is downloaded and remote code is never trusted. Everything that would make TRL fail late, or silently
drop rows, is checked before training starts and raised as a TrainError naming the file and the fix.
The full configuration and the outcome are saved beside the model in `curate_train_config.json`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate._version import __version__
from curate.errors import TrainError
from curate.records import write_atomic

# the model, data, preflight and shared-prefix parts live in curate.training; the names tests, scripts and docs
# import from curate.train stay importable from here
from curate.training.data import SplitRows, manifest_max_tokens, read_split, resolve_export  # noqa: F401
from curate.training.models import (  # noqa: F401
    BUNDLED_MODELS,
    CONFIG_NAME,
    ModelRef,
    load_model,
    load_tokenizer,
    pick_device,
    quiet_hf,
    resolve_model,
    save_plain,
    smollm2_gguf,
)
from curate.training.prefix import (  # noqa: F401
    _SharedPrefixLM,
    shared_prefix_len,
    shared_prefix_logps,
    shared_prefix_loss,
)
from curate.training.preflight import (  # noqa: F401
    check_lengths,
    gguf_context_length,
    model_max_positions,
    preflight,
    to_completion_only,
)

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]


# ---------------------------------------------------------------- options and results


@dataclass
class TrainOptions:
    """What to train and how. Defaults are conservative: small LR, few epochs, early stopping, fixed seed."""

    model: str | Path
    out: str | Path
    lora: bool = False
    epochs: float = 3.0
    learning_rate: float | None = None  # None: 5e-5 full SFT, 2e-4 LoRA SFT, 5e-7 full DPO, 5e-6 LoRA DPO
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int | None = None  # None: the spec's export.max_tokens (manifest), else 1024
    max_steps: int = -1  # > 0: stop after this many optimizer steps (evaluates every half)
    seed: int = 13
    early_stopping_patience: int = 2
    select_best: bool = True  # keep the checkpoint with the lowest eval loss (False: the last one)
    warmup: float = 0.1
    weight_decay: float = 0.0
    beta: float = 0.1  # DPO
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    overwrite: bool = False
    keep_checkpoints: bool = False
    device: str = "auto"  # auto | cpu | cuda
    shared_prefix: bool = True  # SFT and full DPO: run the prefix all rows of a batch share (the
    # system prompt) once per batch; same loss and gradients, fewer tokens
    group_by_length: bool = True  # batches of rows of similar length (less padding)
    bf16: bool = False  # bf16 autocast (on a CPU without AMX it was slower than fp32)

    def lr(self, kind: str) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        if kind == "sft":
            return 2e-4 if self.lora else 5e-5
        return 5e-6 if self.lora else 5e-7


@dataclass
class TrainResult:
    kind: str
    out: Path
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "out": str(self.out), **self.config.get("result", {})}


# ---------------------------------------------------------------- training


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    import datasets
    import peft
    import torch
    import transformers
    import trl

    return {
        "curate": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "datasets": datasets.__version__,
    }


def _staging(out: Path, overwrite: bool) -> Path:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TrainError(f"{out} already exists and is not empty; pass --overwrite or choose another --out")
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def _publish(stage: Path, out: Path) -> None:
    """Move the finished model into place (a failed run leaves `out` as it was)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)


def _progress_callback(progress: Progress | None) -> Any:
    from transformers import TrainerCallback

    class _Cb(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if progress is not None:
                progress("train", state.global_step, state.max_steps)
            if state.global_step % max(1, args.logging_steps) == 0:
                log.info("step %s/%s", state.global_step, state.max_steps)

    return _Cb()


def _common_args(
    kind: str, opts: TrainOptions, stage: Path, has_eval: bool, max_length: int, device: str
) -> dict[str, Any]:
    every: dict[str, Any]
    if opts.max_steps > 0:
        every = {
            "eval_strategy": "steps" if has_eval else "no",
            "save_strategy": "steps",
            "eval_steps": max(1, opts.max_steps // 2),
            "save_steps": max(1, opts.max_steps // 2),
        }
    else:
        every = {"eval_strategy": "epoch" if has_eval else "no", "save_strategy": "epoch"}
    return {
        "output_dir": str(stage / "checkpoints"),
        "num_train_epochs": opts.epochs,
        "max_steps": opts.max_steps,
        "learning_rate": opts.lr(kind),
        "per_device_train_batch_size": opts.batch_size,
        "per_device_eval_batch_size": opts.batch_size,
        "gradient_accumulation_steps": opts.grad_accum,
        "lr_scheduler_type": "cosine",
        "warmup_steps": opts.warmup,
        "weight_decay": opts.weight_decay,
        "seed": opts.seed,
        "data_seed": opts.seed,
        "max_length": max_length,
        "load_best_model_at_end": has_eval and opts.select_best,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False if has_eval else None,
        "save_total_limit": 2 if has_eval else 1,
        "logging_steps": 1,
        "logging_strategy": "steps",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": opts.bf16,
        "fp16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "save_only_model": True,
        "train_sampling_strategy": "group_by_length" if kind == "sft" and opts.group_by_length else "random",
        "trust_remote_code": False,
        **every,
    }


def _sft_trainer_class(shared_prefix: bool) -> Any:
    """TRL's SFTTrainer, or a subclass whose loss runs the batch's shared prefix once (see shared_prefix_loss)."""
    from trl import SFTTrainer

    if not shared_prefix:
        return SFTTrainer

    class SharedPrefixSFTTrainer(SFTTrainer):
        shared_prefix_batches = 0

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            got = (
                None
                if return_outputs or self.aux_loss_enabled
                else shared_prefix_loss(model, inputs, num_items_in_batch)
            )
            if got is None:
                return super().compute_loss(
                    model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                )
            loss, info = got
            mode = "train" if self.model.training else "eval"
            self.shared_prefix_batches += 1
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            self._metrics[mode]["entropy"].append(info["entropy"])
            self._metrics[mode]["mean_token_accuracy"].append(info["mean_token_accuracy"])
            if mode == "train":
                self._total_train_tokens += info["tokens"]
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return SharedPrefixSFTTrainer


def _dpo_trainer_class(shared_prefix: bool) -> Any:
    """TRL's DPOTrainer, or a subclass whose policy and reference forwards run the batch's shared prefix (the system
    prompt) once, as SFT does (see shared_prefix_logps). Same losses and gradients."""
    from trl import DPOTrainer

    if not shared_prefix:
        return DPOTrainer

    class SharedPrefixDPOTrainer(DPOTrainer):
        shared_prefix_batches = 0

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            if return_outputs or self.aux_loss_enabled or self.use_weighting or self.precompute_ref_logps:
                return super()._compute_loss(model, inputs, return_outputs)
            policy = _SharedPrefixLM(model)
            ref_model = self.ref_model
            ref = _SharedPrefixLM(ref_model) if ref_model is not None else None
            try:
                if ref is not None:
                    self.ref_model = ref
                loss = super()._compute_loss(policy, inputs, return_outputs)
            finally:
                self.ref_model = ref_model
            self.shared_prefix_batches += policy.shared > 0
            return loss

    return SharedPrefixDPOTrainer


def _lora_config(opts: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=opts.lora_r,
        lora_alpha=opts.lora_alpha,
        lora_dropout=opts.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _run(
    kind: str,
    spec_or_export: str | Path,
    opts: TrainOptions,
    *,
    from_sft: str | Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    export, spec = resolve_export(spec_or_export)
    base_src = from_sft if from_sft is not None else opts.model
    ref = resolve_model(base_src)
    out = Path(opts.out)
    device = pick_device(opts.device)
    max_length = (
        opts.max_length
        or (spec.export.max_tokens if spec is not None else None)
        or manifest_max_tokens(export)
        or 1024
    )

    with quiet_hf(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames, not the user's concern
        tokenizer = load_tokenizer(ref)
        positions = model_max_positions(ref, tokenizer)
        if positions is not None and not opts.max_length and max_length > positions:
            max_length = positions  # the spec's (or the default) limit, cut to what the model takes
        train, test, aol = preflight(kind, export, tokenizer, max_length, positions)
        stage = _staging(out, opts.overwrite)
        try:
            result = _train(
                kind,
                export,
                spec,
                ref,
                tokenizer,
                train,
                test,
                aol,
                opts,
                stage,
                max_length,
                device,
                from_sft,
                progress,
            )
            _publish(stage, out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return TrainResult(kind=kind, out=out, config=result)


def _train(
    kind: str,
    export: Path,
    spec: Any,
    ref: ModelRef,
    tokenizer: Any,
    train: SplitRows,
    test: SplitRows | None,
    aol: bool,
    opts: TrainOptions,
    stage: Path,
    max_length: int,
    device: str,
    from_sft: str | Path | None,
    progress: Progress | None,
) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, set_seed

    set_seed(opts.seed)
    train_rows, test_rows = train.rows, (test.rows if test else None)
    loss_mode = "dpo"
    if kind == "sft":
        if aol and "messages" in train_rows[0]:
            loss_mode = "assistant_only"
        else:
            train_rows = to_completion_only(train_rows)
            test_rows = to_completion_only(test_rows) if test_rows else None
            loss_mode = "completion_only"
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(test_rows) if test_rows else None
    has_eval = eval_ds is not None
    if not has_eval:
        log.warning("%s has no test split: training without evaluation or early stopping", export)

    model = load_model(ref, merge=True, device=device)
    args_kw = _common_args(kind, opts, stage, has_eval, max_length, device)
    callbacks = [_progress_callback(progress)]
    if has_eval and opts.select_best and opts.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=opts.early_stopping_patience))
    peft_config = _lora_config(opts) if opts.lora else None

    if kind == "sft":
        from trl import SFTConfig

        args = SFTConfig(**args_kw, assistant_only_loss=loss_mode == "assistant_only", packing=False)
        trainer = _sft_trainer_class(opts.shared_prefix)(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=peft_config,
        )
    else:
        from trl import DPOConfig

        ref_model = None if opts.lora else load_model(ref, merge=True, device=device)
        args = DPOConfig(**args_kw, beta=opts.beta)
        dpo_class = _dpo_trainer_class(opts.shared_prefix and not opts.lora)
        trainer = dpo_class(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=peft_config,
        )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # library code never prints: logs stay in state.log_history
    trainer.remove_callback(ProgressCallback)
    n_train = len(trainer.train_dataset)
    if n_train < len(train_rows):  # preflight should make this impossible; never lose rows silently
        raise TrainError(
            f"TRL dropped {len(train_rows) - n_train} of {len(train_rows)} training rows; raise --max-length"
        )
    out = trainer.train()
    state = trainer.state
    eval_losses = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    trainer.save_model(str(stage))
    tokenizer.save_pretrained(str(stage))
    if not opts.keep_checkpoints:
        shutil.rmtree(stage / "checkpoints", ignore_errors=True)

    files = {}
    for split in (train, test):
        if split is not None:
            files[str(split.path)] = _sha256(split.path)
    manifest = export / "manifest.json"
    spec_ref = None
    if manifest.exists():
        with contextlib.suppress(Exception):
            spec_ref = (orjson.loads(manifest.read_bytes()).get("spec") or {}).get("ref")
    if spec_ref is None and spec is not None:
        spec_ref = spec.ref
    args_dict = {k: v for k, v in args.to_dict().items() if not k.startswith("_")}
    args_dict["output_dir"] = "checkpoints"
    best_ckpt = state.best_model_checkpoint
    config = {
        "tool": {"name": "curate", "version": __version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "kind": kind,
        "base_model": ref.describe()
        if ref.adapter is None
        else {"path": str(ref.path), "gguf_file": ref.gguf_file},
        "started_from": str(from_sft) if from_sft is not None else None,
        "merged_adapter_from": str(ref.adapter) if ref.adapter else None,
        "data": {
            "export": str(export),
            "spec": spec_ref,
            "train_rows": len(train.rows),
            "test_rows": len(test.rows) if test else 0,
            "sha256": files,
        },
        "loss": loss_mode,
        "lora": (
            {
                "r": opts.lora_r,
                "alpha": opts.lora_alpha,
                "dropout": opts.lora_dropout,
                "target_modules": "all-linear",
            }
            if opts.lora
            else None
        ),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "trainer_args": args_dict,
        "device": device,
        "versions": _versions(),
        "result": {
            "train_loss": out.training_loss,
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "epochs_run": state.epoch,
            "eval_losses": eval_losses,
            "best_eval_loss": state.best_metric,
            "best_checkpoint": Path(best_ckpt).name if best_ckpt else None,
            "kept": ("best eval loss" if has_eval and opts.select_best else "last"),
            "stopped_early": bool(has_eval and state.global_step < state.max_steps),
            "shared_prefix_batches": getattr(trainer, "shared_prefix_batches", 0),
            "log_history": state.log_history,
        },
    }
    write_atomic(stage / CONFIG_NAME, orjson.dumps(config, option=orjson.OPT_INDENT_2, default=str))
    return config


def train_sft(
    spec_or_export: str | Path, opts: TrainOptions, *, progress: Progress | None = None
) -> TrainResult:
    """Supervised fine-tuning on `sft/` of the export; see the module docstring."""
    return _run("sft", spec_or_export, opts, progress=progress)


def train_dpo(
    spec_or_export: str | Path,
    opts: TrainOptions,
    *,
    from_sft: str | Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """DPO on `dpo/` of the export, starting from `from_sft` (an SFT output) when given, else `opts.model`."""
    return _run("dpo", spec_or_export, opts, from_sft=from_sft, progress=progress)


__all__ = [
    "ModelRef",
    "TrainOptions",
    "TrainResult",
    "load_model",
    "load_tokenizer",
    "resolve_export",
    "resolve_model",
    "save_plain",
    "smollm2_gguf",
    "train_dpo",
    "train_sft",
]
