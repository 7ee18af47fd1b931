"""`curate eval SPEC --model PATH`: score a model (or given outputs) with the spec; `--compare A B`."""

from __future__ import annotations

from typing import Any

import click

from curate.cli.common import (
    deprecated_options,
    emit_json,
    handle_errors,
    json_option,
    make_progress,
    quiet_option,
    say,
    show_progress,
)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _delta(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}"


def _print_report(rep: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    who = rep.get("model") or rep.get("outputs_file")
    table = Table(title=f"{rep['spec']}: {who} on {rep['responses']} held-out prompts")
    for col in ("rule", "category", "pass", "fail", "skip", "pass rate"):
        table.add_column(col, justify="left" if col in ("rule", "category") else "right")
    for r in rep["rules"]:
        table.add_row(
            r["rule"], r["category"], str(r["pass"]), str(r["fail"]), str(r["skip"]), _pct(r["pass_rate"])
        )
    console.print(table)
    lines = [f"overall (all rules pass): {_pct(rep['overall_pass_rate'])}"]
    if rep.get("valid_json_rate") is not None:
        lines.append(f"valid JSON: {_pct(rep['valid_json_rate'])}")
    lines.append(
        "failures by category: " + ", ".join(f"{c} {v['fail']}" for c, v in rep["by_category"].items())
    )
    o = rep.get("over_refusal") or {}
    lines.append(
        f"over-refusal ({o.get('basis')}): {o.get('refused', 0)}/{o.get('prompts', 0)} "
        f"= {_pct(o.get('rate'))}"
    )
    g = rep.get("general")
    if g:
        lines.append(
            f"general ability (MT-bench/Vicuna): {g['ok']}/{g['questions']} acceptable {g['problems'] or ''}"
        )
    for line in lines:
        click.echo(line)
    for ex in rep.get("failing_examples", [])[:5]:
        click.echo(f"  fail {ex['where']}: {', '.join(f'{k}: {v}' for k, v in ex['failed'].items())}")
        click.echo(f"       response: {ex['response'][:200]!r}")


def _print_compare(cmp: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(title=f"{cmp['spec']}: A = {cmp['a']['model']}  vs  B = {cmp['b']['model']}")
    for col in ("rule", "category", "A", "B", "delta (points)"):
        table.add_column(col, justify="left" if col in ("rule", "category") else "right")
    for r in cmp["rules"]:
        table.add_row(r["rule"], r["category"] or "", _pct(r["a"]), _pct(r["b"]), _delta(r["delta"]))
    for key, h in cmp["headline"].items():
        if h["a"] is None and h["b"] is None:
            continue
        table.add_row(key.replace("_", " "), "", _pct(h["a"]), _pct(h["b"]), _delta(h["delta"]))
    console.print(table)
    click.echo(
        f"fixed: {cmp['n_fixed']}  regressed: {cmp['n_regressed']}"
        + ("" if cmp["same_prompts"] else "  (the two evaluations cover different prompts)")
    )


def register(main: click.Group) -> None:
    @deprecated_options({"--data": "--build-dir"})
    @main.command("eval")
    @click.argument("spec_path", metavar="SPEC", required=False, type=click.Path(exists=True))
    @click.option("--model", default=None, help="A local model folder, .gguf file, or `curate train` output.")
    @click.option(
        "--build-dir",
        "data",
        default=None,
        type=click.Path(exists=True, file_okay=False),
        help="Build folder with the held-out split [default: the spec's build folder].",
    )
    @click.option(
        "--outputs",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="Score responses produced elsewhere (JSONL: response + messages/prompt/id).",
    )
    @click.option(
        "--compare",
        nargs=2,
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        metavar="A B",
        help="Compare two eval JSON files (from --json-out): B relative to A.",
    )
    @click.option(
        "--json-out",
        default=None,
        type=click.Path(dir_okay=False),
        help="Also write the full report (with every response) to this file.",
    )
    @click.option(
        "--to-label",
        default=None,
        type=click.Path(dir_okay=False),
        help="Write the failing responses as held-out-marked records for `curate label push`.",
    )
    @click.option(
        "--prompts",
        "prompts_file",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="Evaluate on the prompts of this JSONL file (rows with messages or prompt; a trailing answer is "
        "dropped) instead of the held-out split, e.g. training prompts for --negatives-out.",
    )
    @click.option(
        "--negatives-out",
        default=None,
        type=click.Path(dir_okay=False),
        help="Write the failing responses as labeled negatives (violates = the rules they fail) for the next "
        "build's DPO pairs. Needs --prompts (training prompts, never the held-out set).",
    )
    @click.option("--batch-size", type=int, default=8, show_default=True)
    @click.option("--max-new-tokens", type=int, default=256, show_default=True)
    @click.option(
        "--general",
        type=int,
        default=16,
        show_default=True,
        help="MT-bench/Vicuna-bench questions for the regression check (0: skip).",
    )
    @click.option("--limit", type=int, default=None, help="Only the first N held-out prompts.")
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
    @json_option
    @quiet_option
    @handle_errors
    def eval_(
        spec_path: str | None,
        model: str | None,
        data: str | None,
        outputs: str | None,
        compare: tuple[str, str] | None,
        json_out: str | None,
        to_label: str | None,
        prompts_file: str | None,
        negatives_out: str | None,
        batch_size: int,
        max_new_tokens: int,
        general: int,
        limit: int | None,
        device: str,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Evaluate a model on the held-out prompts with every automatic rule of the spec.

        Prints the pass rate per rule, failures by category (format, instruction, knowledge, safety), the
        overall pass rate, over-refusal on safe prompts and general-ability regressions.

        \b
        Example:
          curate eval specs/support-triage --model models/sft --json-out evals/sft.json
          curate eval specs/support-triage --outputs responses.jsonl
          curate eval --compare evals/base.json evals/sft.json
          curate eval specs/support-triage --model models/sft \\
              --prompts out/support-triage/sft/train.jsonl --negatives-out specs/support-triage/mined.jsonl

        The last line mines the model's own mistakes on training prompts: add the file to the spec's data and
        the next `curate build` pairs each with a passing answer to the same prompt (DPO pairs).
        """
        from curate import evaluate as ev

        if compare:
            if model or outputs or spec_path:
                raise click.UsageError("--compare takes two eval files and nothing else")
            cmp = ev.compare(ev.load_report(compare[0]), ev.load_report(compare[1]))
            if json_out:
                ev.write_report(cmp, json_out)
            emit_json(cmp) if as_json else _print_compare(cmp)
            return
        if spec_path is None:
            raise click.UsageError("give SPEC (or --compare A B)")
        if (model is None) == (outputs is None):
            raise click.UsageError("give exactly one of --model and --outputs")
        from curate.spec import load_spec

        if negatives_out and not prompts_file:
            raise click.UsageError(
                "--negatives-out needs --prompts (training prompts): failures on held-out prompts go to "
                "--to-label, never into training"
            )
        if prompts_file and (outputs or data):
            raise click.UsageError(
                "--prompts takes the prompts from its file: give --model, not --outputs or --build-dir"
            )
        spec = load_spec(spec_path)
        if outputs:
            rep = ev.evaluate_outputs(spec, outputs, data=data)
        else:
            opts = ev.EvalOptions(
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                general=general,
                limit=limit,
                device=device,
            )
            progress, update = make_progress(show_progress(quiet, as_json))
            say(f"evaluating {model} on {spec.ref} ...", quiet=quiet or as_json)
            with progress:
                prompts = ev.heldout_file(prompts_file, spec) if prompts_file else None
                rep = ev.evaluate_model(spec, model, data=data, opts=opts, progress=update, prompts=prompts)
        if json_out:
            ev.write_report(rep, json_out)
        if to_label:
            n = ev.write_to_label(spec, rep, to_label)
            say(f"wrote {n} failing responses to {to_label} (marked heldout)", quiet=quiet or as_json)
        if negatives_out:
            n = ev.write_negatives(spec, rep, negatives_out)
            say(f"wrote {n} failing responses to {negatives_out} (labeled negatives)", quiet=quiet or as_json)
        if as_json:
            emit_json(rep)
        else:
            _print_report(rep)
