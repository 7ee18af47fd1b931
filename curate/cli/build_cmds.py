"""`curate build`, `curate leakage`, `curate coverage`, `curate lint-export`: thin wrappers over curate.steps."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from curate.cli.common import (
    INPUT,
    emit_json,
    handle_errors,
    json_option,
    parse_mapping,
    quiet_option,
    say,
)
from curate.cli.progress import progress_for


def register(main: click.Group) -> None:
    @main.command("build")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.option(
        "--input",
        "-i",
        "inputs",
        multiple=True,
        type=INPUT,
        help="Input file or folder (repeatable), optionally with its format: chats.jsonl:sharegpt. "
        "Default: the spec's own `data:` files.",
    )
    @click.option(
        "--out", "-o", type=click.Path(file_okay=False), help="Output folder. Default: out/<name>/v<version>."
    )
    @click.option("--format", "fmt", help="Force the input format instead of detecting it.")
    @click.option(
        "--map",
        "mapping",
        multiple=True,
        metavar="OURS=THEIRS",
        help="Field mapping for odd column names (repeatable), e.g. --map prompt=question.",
    )
    @click.option(
        "--tokenizer",
        type=click.Path(exists=True, file_okay=False),
        help="Local tokenizer folder to count tokens (default: an estimate, characters / 4).",
    )
    @click.option(
        "--max-tokens", type=click.IntRange(min=1), help="Quarantine longer records (default: the spec's)."
    )
    @click.option(
        "--sft-format",
        type=click.Choice(["messages", "prompt-completion"]),
        help="TRL SFT layout (default: the spec's export.sft_format).",
    )
    @click.option(
        "--near-threshold",
        type=click.FloatRange(0.0, 1.0, min_open=True),
        default=None,
        help="Similarity from which two texts count as near duplicates (dedup, split groups, leakage; "
        "default: the spec's dedup.threshold, else 0.8).",
    )
    @click.option(
        "--jsonl/--no-jsonl",
        default=None,
        help="Write each split as JSON lines beside the Parquet files (default: the spec's export.jsonl, on).",
    )
    @click.option(
        "--lock",
        type=click.Path(exists=True, dir_okay=False),
        help="Held-out lock to keep (default: OUT/heldout.lock, else a sibling version's).",
    )
    @click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where the per-record steps run: this process, or Ray Data (local Ray on 127.0.0.1, or "
        "the cluster in RAY_ADDRESS; needs the `ray` extra).",
    )
    @click.option(
        "--strict",
        is_flag=True,
        help="Stop at an input file whose format cannot be detected (default: quarantine its records "
        "as unknown_format and build the other inputs).",
    )
    @json_option
    @quiet_option
    @handle_errors
    def build_cmd(
        spec_path: str,
        inputs: tuple[str, ...],
        out: str | None,
        fmt: str | None,
        mapping: tuple[str, ...],
        tokenizer: str | None,
        max_tokens: int | None,
        sft_format: str | None,
        near_threshold: float | None,
        jsonl: bool | None,
        lock: str | None,
        engine: str,
        strict: bool,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Build a training-ready dataset: import, validate, deduplicate, split, export for TRL.

        Nothing is lost: every record is exported, quarantined (quarantine/<step>.jsonl, with the reason) or
        removed as a duplicate (clusters.jsonl); the build checks this per input file.

        Progress goes to stderr: bars on a terminal, else a line per stage at least every 10 seconds with counts
        and rate (a log file, CI); --quiet silences both.

        \b
        Example:
          curate build specs/support-triage
          curate build specs/support-triage --input tickets.jsonl --out out/triage --json
          RAY_ADDRESS=ray://head:10001 curate build specs/support-triage --engine ray
        """
        from curate.spec import load_spec
        from curate.steps.pipeline import build

        spec = load_spec(spec_path)
        if jsonl is not None and jsonl != spec.export.jsonl:
            spec = spec.model_copy(update={"export": spec.export.model_copy(update={"jsonl": jsonl})})
        target = Path(out) if out else spec.default_out_dir()
        with progress_for("curate build", quiet=quiet, as_json=as_json) as update:
            result = build(
                spec,
                list(inputs) or None,
                target,
                format=fmt,
                mapping=parse_mapping(mapping),
                tokenizer=tokenizer,
                max_tokens=max_tokens,
                near_threshold=near_threshold,
                sft_format=sft_format,
                lock=lock,
                progress=update,
                engine=engine,
                strict=strict,
            )
        stale = result.manifest.get("stale_labels") or {}
        if stale.get("stale"):  # labels made under rules that changed since (curate.versioning)
            ex = stale["examples"][0]
            say(
                f"warning: {stale['stale']} of {stale['labeled']} labeled records were labeled under other "
                f"rules (e.g. {ex['where']}: {', '.join(ex['rules'])}); `curate label push {spec_path} --stale` "
                "re-queues them",
                quiet=quiet,
            )
        if as_json:
            emit_json(result.summary())
            return
        c = result.counts
        click.echo(
            f"{spec.ref}: {c['in']} in = {c['exported']} exported + {c['quarantined']} quarantined + "
            f"{c['duplicates']} duplicates"
        )
        unlabeled = "".join(  # unlabeled prompts, when the build has some (spec export.text_records)
            f"; {k}: {c[k]['train']} train / {c[k]['test']} test" for k in ("prompts", "text") if k in c
        )
        click.echo(
            f"sft: {c['sft']['train']} train / {c['sft']['test']} test; "
            f"dpo: {c['dpo']['train']} train / {c['dpo']['test']} test; negatives.jsonl: {c['negatives']}"
            + unlabeled
        )
        for key, n in result.manifest["quarantine"].items():
            click.echo(f"  quarantined {key}: {n}")
        under = [x for x in result.manifest["coverage"].get("cells", []) if not x.get("ok", True)]
        if under:
            click.echo(f"coverage: {len(under)} cells under target (curate coverage {result.out_dir})")
        lock_from = result.manifest["split"].get("lock_from")
        if lock_from:
            click.echo(
                f"held-out set kept from {lock_from} ({result.manifest['split']['locked_from_previous']} ids)"
            )
        for w in result.warnings:
            say(f"warning: {w}", quiet=quiet)
        say(
            f"wrote {result.out_dir}" + ("" if out else " (default folder for this spec version)"),
            quiet=quiet,
        )

    @main.command("leakage")
    @click.argument("a", type=click.Path(exists=True))
    @click.argument("b", type=click.Path(exists=True))
    @click.option(
        "--threshold",
        type=click.FloatRange(0.0, 1.0, min_open=True),
        default=0.8,
        show_default=True,
        help="Similarity for a near match.",
    )
    @json_option
    @quiet_option
    @handle_errors
    def leakage_cmd(a: str, b: str, threshold: float, as_json: bool, quiet: bool) -> None:
        """Count rows of B whose prompt matches a prompt of A exactly or nearly; exit 1 when any do.

        A and B are JSONL/JSON/Parquet files or folders (a build folder, a benchmark's question file).

        \b
        Example:
          curate leakage out/support-triage/v1/sft/train.jsonl out/support-triage/v1/sft/test.jsonl
          curate leakage out/support-triage/v1 ../benchmarks/mt_bench_question.jsonl
        """
        from curate.steps.leakcheck import dataset_texts, leakage

        ta, tb = dataset_texts(a), dataset_texts(b)
        rep = leakage(ta, tb, threshold=threshold)
        if as_json:
            emit_json({"a": a, "b": b, "rows_a": len(ta), "rows_b": len(tb), **rep.as_dict()})
        else:
            click.echo(
                f"{len(tb)} rows of {b} against {len(ta)} of {a}: {rep.exact} exact, {rep.near} near "
                f"(threshold {threshold})"
            )
            for ex in [] if quiet else rep.examples:
                click.echo(f"  {ex['method']} {ex['score']}: {ex['b']} ~ {ex['a']}: {ex['text'][:80]!r}")
        sys.exit(0 if rep.empty else 1)

    @main.command("coverage")
    @click.argument("target", metavar="SPEC|OUT_DIR", type=click.Path(exists=True))
    @click.option(
        "--input",
        "-i",
        "inputs",
        multiple=True,
        type=INPUT,
        help="With a SPEC: data files to count (default: the spec's own data).",
    )
    @json_option
    @quiet_option
    @handle_errors
    def coverage_cmd(target: str, inputs: tuple[str, ...], as_json: bool, quiet: bool) -> None:
        """Print the coverage matrix (case category x rule) against the spec's targets; name cells under target.

        With a build folder it shows the matrix of that build (manifest.json); with a spec it builds the spec's
        data (or --input files) into a temporary folder and shows that build's matrix: the same computation as
        `curate build` and the report, so the counts agree.

        \b
        Example:
          curate coverage specs/support-triage
          curate coverage out/support-triage/v1 --json
        """
        from curate.steps.pipeline import build_coverage

        cov, ref = build_coverage(target, list(inputs) or None)
        cells = cov.get("cells", [])
        under = [c for c in cells if not c.get("ok", True)]
        cats_under = [c for c in cov.get("categories", []) if not c.get("ok", True)]
        if as_json:
            emit_json({"spec": ref, **cov, "under_target": under, "categories_under_share": cats_under})
            return
        from rich.console import Console
        from rich.table import Table

        rules = list(dict.fromkeys(c["rule"] for c in cells))
        cats = list(dict.fromkeys(c["category"] for c in cells))
        by = {(c["category"], c["rule"]): c for c in cells}
        table = Table(title=f"coverage of {ref} (count/target)")
        table.add_column("category")
        for r in rules:
            table.add_column(r, justify="right")
        for cat in cats:
            row = []
            for r in rules:
                c = by.get((cat, r))
                row.append(
                    ""
                    if c is None
                    else (
                        f"{c['count']}/{c['target']}" if c["ok"] else f"[red]{c['count']}/{c['target']}[/red]"
                    )
                )
            table.add_row(cat, *row)
        Console(width=max(120, 14 * (len(rules) + 1))).print(table)
        for c in cov.get("categories", []):
            click.echo(
                f"{c['name']}: {c['count']} records, {c['share']:.1%} (min {c['min_share']:.0%})"
                + ("" if c["ok"] else "  UNDER SHARE")
            )
        for c in under:
            click.echo(f"under target: {c['category']} x {c['rule']}: {c['count']} of {c['target']}")
        if not under and not cats_under and not quiet:
            click.echo("every cell meets its target")

    @main.command("lint-export")
    @click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False))
    @click.option(
        "--tokenizer",
        type=click.Path(exists=True, file_okay=False),
        help="Local tokenizer (or model) folder whose chat template TRL will use.",
    )
    @click.option("--max-length", type=click.IntRange(min=1), help="TRL's max_length.")
    @click.option(
        "--assistant-only-loss/--no-assistant-only-loss",
        default=True,
        show_default=True,
        help="Whether SFT will train on assistant tokens only (needs generation markers).",
    )
    @json_option
    @quiet_option
    @handle_errors
    def lint_export_cmd(
        directory: str,
        tokenizer: str | None,
        max_length: int | None,
        assistant_only_loss: bool,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Check an export the way TRL will read it; exit 1 on errors.

        Reports the dataset type TRL detects from the first row, rows of another type, missing chat-template
        generation markers for assistant-only loss, and rows TRL would drop or truncate at --max-length.

        \b
        Example:
          curate lint-export out/support-triage/v1 --tokenizer models/base --max-length 1024
        """
        from curate.steps.lint_export import lint_export

        rep = lint_export(
            directory, tokenizer=tokenizer, max_length=max_length, assistant_only_loss=assistant_only_loss
        )
        if as_json:
            emit_json(rep.as_dict())
        else:
            for d in rep.datasets:
                click.echo(
                    f"{d['dataset']}: {d['type']}{' (conversational)' if d['conversational'] else ''}, "
                    f"rows {d['rows']}, dropped {d['dropped']}, truncated {d['truncated']}"
                )
            for f in rep.findings:
                click.echo(f"{f['level']}: {f['dataset']}: {f['code']}: {f['message']}")
                for ex in [] if quiet else f.get("examples", [])[:5]:
                    click.echo(f"    {ex}")
            click.echo("ok" if rep.ok else "errors found")
        sys.exit(0 if rep.ok else 1)
