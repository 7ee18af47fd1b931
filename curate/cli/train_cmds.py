"""`curate train sft|dpo SPEC_OR_EXPORT --model PATH --out DIR`: TRL on the curated export, local models only."""

from __future__ import annotations

from typing import Any

import click

from curate.cli.common import (
    emit_json,
    handle_errors,
    json_option,
    make_progress,
    quiet_option,
    say,
    show_progress,
)


def _common(fn: Any) -> Any:
    opts = [
        click.argument("spec_or_export", metavar="SPEC_OR_EXPORT", type=click.Path(exists=True)),
        click.option(
            "--out",
            "out",
            required=True,
            type=click.Path(file_okay=False),
            help="Folder for the trained model (or LoRA adapter) and curate_train_config.json.",
        ),
        click.option("--lora", is_flag=True, help="Train a LoRA adapter (peft) instead of all weights."),
        click.option(
            "--epochs",
            type=float,
            default=3.0,
            show_default=True,
            help="Training epochs (upper bound: "
            "early stopping ends sooner when the eval loss stops improving).",
        ),
        click.option(
            "--lr",
            "learning_rate",
            type=float,
            default=None,
            help="Learning rate [default: 5e-5 SFT, 2e-4 LoRA SFT, 5e-7 DPO, 5e-6 LoRA DPO].",
        ),
        click.option("--batch-size", type=int, default=8, show_default=True),
        click.option("--grad-accum", type=int, default=1, show_default=True),
        click.option(
            "--max-length",
            type=int,
            default=None,
            help="Token limit per row [default: the spec's export.max_tokens, else 1024].",
        ),
        click.option(
            "--max-steps", type=int, default=-1, help="Stop after N optimizer steps (overrides --epochs)."
        ),
        click.option("--seed", type=int, default=13, show_default=True),
        click.option(
            "--patience",
            "early_stopping_patience",
            type=int,
            default=2,
            show_default=True,
            help="Early stopping: evaluations without improvement before stopping (0: off).",
        ),
        click.option(
            "--keep-last",
            "select_best",
            flag_value=False,
            default=True,
            help="Keep the last model instead of the checkpoint with the lowest eval loss (no early "
            "stopping); the eval loss can rise while the rule pass rate still improves.",
        ),
        click.option("--lora-r", type=int, default=16, show_default=True),
        click.option("--lora-alpha", type=int, default=32, show_default=True),
        click.option(
            "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
        ),
        click.option(
            "--shared-prefix/--no-shared-prefix",
            default=True,
            show_default=True,
            help="SFT: run the prefix every row of a batch shares (the system prompt) once per batch; "
            "same loss and gradients, several times fewer tokens.",
        ),
        click.option(
            "--group-by-length/--no-group-by-length",
            default=True,
            show_default=True,
            help="SFT: batch rows of similar length together (less padding).",
        ),
        click.option(
            "--bf16", is_flag=True, help="bf16 autocast (on CPUs without AMX it is slower than fp32)."
        ),
        click.option("--overwrite", is_flag=True, help="Replace --out when it exists."),
        click.option(
            "--keep-checkpoints", is_flag=True, help="Keep the per-epoch checkpoints under OUT/checkpoints."
        ),
        json_option,
        quiet_option,
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _opts(model: str, out: str, **kw: Any) -> Any:
    from curate.train import TrainOptions

    return TrainOptions(model=model, out=out, **kw)


def _render(result: Any, as_json: bool, quiet: bool) -> None:
    d = result.as_dict()
    d.pop("log_history", None)
    if as_json:
        emit_json(d)
        return
    best = d.get("best_eval_loss")
    click.echo(
        f"{result.kind}: {d['global_step']} steps, {d['epochs_run']:.2f} epochs, train loss "
        f"{d['train_loss']:.4f}, best eval loss {'-' if best is None else f'{best:.4f}'}"
        f"{' (stopped early)' if d.get('stopped_early') else ''} -> {d['out']}"
    )


def register(main: click.Group) -> None:
    @main.group("train")
    def train() -> None:
        """Fine-tune a local model on a curated export with TRL (SFT, DPO, LoRA).

        \b
        Example:
          curate train sft out/support-triage/v1 --model ./base --out models/sft
          curate train dpo out/support-triage/v1 --from models/sft --out models/dpo
        """

    @train.command("sft")
    @click.option(
        "--model", required=True, help="A local model folder, a .gguf file, or a `curate train` output."
    )
    @_common
    @handle_errors
    def sft(spec_or_export: str, model: str, out: str, as_json: bool, quiet: bool, **kw: Any) -> None:
        """Supervised fine-tuning on the export's sft/ split; the held-out split is the eval set.

        SPEC_OR_EXPORT is an export folder from `curate build`, or a spec (its default build folder is used).
        Evaluates every epoch, keeps the best checkpoint by eval loss, stops early; loss on assistant tokens only.

        \b
        Example:
          curate train sft specs/support-triage --model ./SmolLM2-135M-Instruct.Q4_1.gguf --out models/sft --lora
        """
        from curate.train import train_sft

        progress, update = make_progress(show_progress(quiet, as_json))
        say(f"training SFT on {spec_or_export} from {model} ...", quiet=quiet or as_json)
        with progress:
            result = train_sft(spec_or_export, _opts(model, out, **kw), progress=update)
        _render(result, as_json, quiet)

    @train.command("dpo")
    @click.option(
        "--model", default=None, help="A local model folder, a .gguf file, or a `curate train` output."
    )
    @click.option(
        "--from",
        "from_sft",
        default=None,
        type=click.Path(exists=True, file_okay=False),
        help="Start from this `curate train sft` output (SFT -> DPO).",
    )
    @click.option("--beta", type=float, default=0.1, show_default=True, help="DPO beta.")
    @_common
    @handle_errors
    def dpo(
        spec_or_export: str,
        model: str | None,
        from_sft: str | None,
        out: str,
        as_json: bool,
        quiet: bool,
        **kw: Any,
    ) -> None:
        """Preference tuning (DPO) on the export's dpo/ split; the reference is the starting model.

        \b
        Example:
          curate train dpo out/support-triage/v1 --from models/sft --out models/dpo
        """
        from curate.train import train_dpo

        if (model is None) == (from_sft is None):
            raise click.UsageError("give exactly one of --model and --from")
        progress, update = make_progress(show_progress(quiet, as_json))
        say(f"training DPO on {spec_or_export} from {model or from_sft} ...", quiet=quiet or as_json)
        with progress:
            result = train_dpo(
                spec_or_export, _opts(model or from_sft, out, **kw), from_sft=from_sft, progress=update
            )
        _render(result, as_json, quiet)
