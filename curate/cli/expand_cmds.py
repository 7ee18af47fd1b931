"""`curate expand SPEC` and `curate pairs check SPEC FILE`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from curate.cli.common import emit_json, handle_errors, json_option, quiet_option, say


def expand_messages(summary: dict[str, Any]) -> list[str]:
    """What `curate expand` did, for people: what was made by which generator, then what --fill-gaps did."""
    c = summary["counts"]
    made = {
        k.split(":", 1)[1].rsplit(".", 1)[-1]: n
        for k, n in sorted(c.items())
        if k.startswith("records:") and n
    }
    lines = [
        f"made {c['records']} records"
        + (f" ({', '.join(f'{g}: {n}' for g, n in made.items())})" if made else "")
        + f", {c['pairs']} pairs, {c['prompts_to_label']} prompts to label; "
        f"near-duplicates dropped: {c.get('dropped_near_duplicate', 0)}"
    ]
    gaps = summary.get("gaps")
    if gaps is None:
        return lines
    shares = gaps.get("shares", [])
    share_made = sum(s["made"] for s in shares)
    if not gaps["cells"]:
        lines.append("fill-gaps: no coverage cell was under its target, so no cell needed cases")
    for cell in gaps["cells"]:
        state = "ok" if cell["ok"] else f"UNDER TARGET: {cell.get('reason', '')}"
        lines.append(
            f"fill-gaps: cell {cell['category']} x {cell['rule']}: {cell['before']} -> {cell['after']} "
            f"(target {cell['target']}, made {cell['made']}) {state}"
        )
    for share in shares:
        state = "ok" if share["ok"] else "UNDER min_share"
        lines.append(
            f"fill-gaps: share {share['category']}: {share['before']} -> {share['after']} records, "
            f"{share['share']:.1%} (min {share['min_share']:.0%}, made {share['made']}) {state}"
        )
    lines.append(
        f"fill-gaps made {gaps.get('made', 0)} records and pairs for coverage cells and {share_made} for "
        f"category shares (included in the counts above)"
    )
    return lines


def register(main: click.Group) -> None:
    @main.command("expand")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False),
        help="Output folder (default: out/<spec name>/v<version>-expand, beside the build folder).",
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same data: same output.")
    @click.option(
        "--fill-gaps",
        is_flag=True,
        help="Also make cases for every coverage cell under its target, then for categories under "
        "their min_share.",
    )
    @click.option(
        "--model",
        "model_path",
        help="A local model folder or .gguf file (or smollm2, the bundled one) for paraphrases and draft "
        "answers (never the hub).",
    )
    @click.option(
        "--drafts",
        "max_drafts",
        type=int,
        default=50,
        show_default=True,
        help="With --model: at most this many model drafts (a CPU model is slow).",
    )
    @click.option(
        "--variants", type=int, default=2, show_default=True, help="Edge variants per source prompt."
    )
    @click.option(
        "--per-pattern",
        type=int,
        default=6,
        show_default=True,
        help="Adversarial prompts per pressure pattern.",
    )
    @click.option(
        "--per-rule", type=int, default=4, show_default=True, help="Negatives (and pairs) per rule."
    )
    @json_option
    @quiet_option
    @handle_errors
    def expand_cmd(
        spec_path: str,
        out_dir: str | None,
        seed: int,
        fill_gaps: bool,
        model_path: str | None,
        max_drafts: int,
        variants: int,
        per_pattern: int,
        per_rule: int,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Generate edge, adversarial and negative cases and preference pairs from SPEC and its data.

        Writes OUT/records.jsonl (edge/adversarial variants with their parent's answer, each a new conversation
        for the build's dedup), OUT/pairs.jsonl (chosen = valid response, rejected = a mutant that breaks one rule),
        OUT/prompts_to_label.jsonl (new prompts for `curate label push --kind write`) and OUT/summary.json.
        With --fill-gaps, exit 1 when some coverage cell could not be brought to its target (the outputs are
        still written, and the cell is named with the reason).

        \b
        Example:
          curate expand specs/support-triage --seed 7 --fill-gaps --out out/expand
          curate pairs check specs/support-triage out/expand/pairs.jsonl
        """
        from curate.expand import expand, write_outputs
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        model = None
        if model_path:
            from curate.expand.local_model import LocalModel

            model = LocalModel(model_path)
        res = expand(
            spec,
            seed=seed,
            fill_gaps=fill_gaps,
            model=model,
            variants=variants,
            per_pattern=per_pattern,
            per_rule=per_rule,
            max_drafts=max_drafts,
        )
        out = Path(out_dir) if out_dir else spec.default_expand_dir()
        paths = write_outputs(res, out)
        summary = res.summary
        if as_json:
            emit_json({**summary, "files": {k: str(v) for k, v in paths.items()}})
            return
        c = summary["counts"]
        click.echo(f"{paths['records.jsonl']}\t{c['records']} records")
        click.echo(f"{paths['pairs.jsonl']}\t{c['pairs']} pairs")
        click.echo(f"{paths['prompts_to_label.jsonl']}\t{c['prompts_to_label']} prompts to label")
        click.echo(f"{paths['summary.json']}")
        for line in expand_messages(summary):
            say(line, quiet=quiet)
        gaps = summary.get("gaps")
        if gaps is not None and gaps["unfilled"]:
            sys.exit(1)

    @main.group("pairs")
    def pairs_group() -> None:
        """Preference pairs: prove them valid."""

    @pairs_group.command("check")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @json_option
    @quiet_option
    @handle_errors
    def pairs_check(spec_path: str, file: str, as_json: bool, quiet: bool) -> None:
        """Prove every preference pair in FILE valid; exit 1 with the reason for each pair that is not.

        Valid: one shared prompt; chosen passes every automatic rule; rejected fails at least one rule named
        in `violates`; chosen != rejected.

        \b
        Example:
          curate pairs check specs/support-triage out/expand/pairs.jsonl
        """
        from curate.expand.pairs import check_pairs_file
        from curate.spec import load_spec

        report = check_pairs_file(load_spec(spec_path), file)
        if as_json:
            emit_json(report.as_dict())
        else:
            for p in report.problems:
                click.echo(f"{p.where}: {p.reason}: {p.detail}")
            say(f"{report.valid}/{report.pairs} pairs valid", quiet=quiet)
        sys.exit(0 if report.ok else 1)
