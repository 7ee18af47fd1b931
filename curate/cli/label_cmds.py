"""`curate label push | pull | conflicts`: the labeling loop against a real Label Studio."""

from __future__ import annotations

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

SERVER_HELP = (
    "Server: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY when set, else the one `curate studio up` "
    "started in --studio-dir."
)


def _client(studio_dir: str):
    from curate.labeling.client import connect

    return connect(workspace=studio_dir)


def register(main: click.Group) -> None:
    @main.group("label")
    def label() -> None:
        """Label in Label Studio: push tasks compiled from the spec, pull annotations back as records.

        \b
        Example:
          curate studio up
          curate label push specs/support-triage --kind review --overlap 2
          curate label pull specs/support-triage --out-file pulled.jsonl
          curate build specs/support-triage --input pulled.jsonl
        """

    studio_dir = click.option("--studio-dir", default=".curate/studio", show_default=True, help=SERVER_HELP)

    @label.command("push")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.option(
        "--kind",
        type=click.Choice(["review", "pairwise", "write"]),
        default="review",
        show_default=True,
        help="review: judge responses (SFT); pairwise: pick the better of two; write: write responses.",
    )
    @click.option(
        "--input",
        "inputs",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Records to push (our JSONL); default: the spec's data files. Repeatable.",
    )
    @click.option(
        "--overlap",
        type=click.IntRange(1, 20),
        default=None,
        help="Annotators per task (agreement and conflicts need 2 or more); default: 1 for a new "
        "project, the project's own for an existing one (a rework push keeps it).",
    )
    @click.option("--batch-size", type=click.IntRange(1, 10000), default=1000, show_default=True)
    @click.option(
        "--predictions",
        type=click.Choice(["failing", "all"]),
        default="failing",
        show_default=True,
        help="Attach the checks as a prediction where a rule fails (pre-ticked), or to every task.",
    )
    @click.option(
        "--stale",
        is_flag=True,
        help="Push no new records: re-queue the labeled tasks (of this spec version or an earlier one) "
        "whose rules changed since they were labeled, with the old label as a prior (curate.labeling.stale).",
    )
    @click.option(
        "--order",
        type=click.Choice(["input", "value"]),
        default="input",
        show_default=True,
        help="Task order: as the input, or most valuable review first (curate.review_order).",
    )
    @click.option(
        "--drafts",
        "drafts_model",
        default=None,
        metavar="MODEL",
        help="Fill empty (write) or failing (review) answers with a model's draft, shown as the "
        "prediction with its rule checks: a model folder, a .gguf file, smollm2, or an "
        "OpenAI-compatible base URL (key from CURATE_DRAFTS_API_KEY or OPENAI_API_KEY).",
    )
    @click.option(
        "--drafts-model",
        "drafts_name",
        default=None,
        metavar="NAME",
        help="The model name to ask an OpenAI-compatible --drafts endpoint for.",
    )
    @studio_dir
    @json_option
    @quiet_option
    @handle_errors
    def push_cmd(
        spec_path: str,
        kind: str,
        inputs: tuple[str, ...],
        overlap: int | None,
        batch_size: int,
        predictions: str,
        stale: bool,
        order: str,
        drafts_model: str | None,
        drafts_name: str | None,
        studio_dir: str,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Create or update the project for SPEC's version and KIND and import the records it lacks.

        Idempotent: a second push adds only records the server does not hold. Each task carries the record id
        and the rule-check results (as a prediction where a rule fails). Records that cannot be labeled as KIND
        (and unreadable lines) are listed in .curate/labeling/NAME/vVERSION/quarantine/label_push.jsonl.

        \b
        Example:
          curate label push specs/support-triage --kind review --overlap 2
          curate label push specs/support-triage --stale          # after a rule changed
          curate label push specs/support-triage --order value    # errors first
          curate label push specs/support-triage --kind write --drafts smollm2   # model drafts to edit
        """
        from curate.labeling.push import push
        from curate.spec import load_spec
        from curate.steps.base import RunContext

        spec = load_spec(spec_path)
        if stale:
            from curate.labeling.stale import requeue_stale

            with _client(studio_dir) as client:
                summary = requeue_stale(spec, kind, client=client)
            if as_json:
                emit_json({"spec": spec.ref, **summary})
            else:
                say(f"{summary['stale']} stale {kind} tasks, {summary['requeued']} re-queued", quiet=quiet)
            return
        ctx = RunContext()
        records = None
        if order == "value":
            from curate.review_order import ordered_for_push

            records = ordered_for_push(spec, list(inputs) or None, ctx=ctx)
        drafter = None
        if drafts_model:
            from curate.labeling.drafts import make_drafter

            say(f"loading {drafts_model} for drafts", quiet=quiet or as_json)
            drafter = make_drafter(drafts_model, endpoint_model=drafts_name)
        bar, update = make_progress(show_progress(quiet, as_json))
        with bar, _client(studio_dir) as client:
            res = push(
                spec,
                kind,
                client=client,
                inputs=list(inputs) or None,
                overlap=overlap,
                records=records,
                batch_size=batch_size,
                ctx=ctx,
                progress=update,
                predictions=predictions,
                drafts=drafter,
            )
        out = {
            "spec": spec.ref,
            **res.as_dict(),
            "quarantine": {f"{s}/{r}": n for (s, r), n in sorted(ctx.reasons.items())},
        }
        if ctx.n_quarantined:
            from curate.labeling.pull import default_out_dir

            files = ctx.flush_quarantine(default_out_dir(spec) / "quarantine")
            out["quarantine_files"] = [str(f) for f in files]
        if as_json:
            emit_json(out)
        else:
            click.echo(res.project_url)
            say(
                f"{res.pushed} tasks pushed, {res.already} already there, {res.quarantined} not labelable as "
                f"{kind} ({', '.join(out['quarantine']) or 'none'}) in {res.seconds:.1f} s",
                quiet=quiet,
            )

    @deprecated_options({"--out": "--out-file", "--out-dir": "--build-dir"})
    @label.command("pull")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.option(
        "--out-file",
        "out",
        type=click.Path(dir_okay=False),
        default=None,
        help="Records file (JSONL); default .curate/labeling/NAME/vVERSION/pulled.jsonl. Quarantine, "
        "rework, conflicts and agreement.json are written beside it.",
    )
    @click.option(
        "--kind",
        "kinds",
        multiple=True,
        type=click.Choice(["review", "pairwise", "write"]),
        help="Only these kinds (default: every project of the spec).",
    )
    @click.option(
        "--adjudicator", default=None, help="Annotator (email) whose annotation wins a disagreement."
    )
    @click.option(
        "--since-last", is_flag=True, help="Write only records of tasks with new or changed annotations."
    )
    @click.option(
        "--full",
        is_flag=True,
        help="Export every task again (default: only the tasks updated since the "
        "last pull into the same folder, merged with what it fetched).",
    )
    @click.option(
        "--build-dir",
        "report_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="A build folder to copy agreement.json into (the report shows it).",
    )
    @studio_dir
    @json_option
    @quiet_option
    @handle_errors
    def pull_cmd(
        spec_path: str,
        out: str | None,
        kinds: tuple[str, ...],
        adjudicator: str | None,
        since_last: bool,
        full: bool,
        report_dir: str | None,
        studio_dir: str,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Export annotations (snapshot API) and turn them into records, pairs, agreement and conflicts.

        accept -> SFT; edit -> SFT + preference pair; reject -> negative; pairwise -> DPO pair; write -> SFT.

        \b
        Example:
          curate label pull specs/support-triage --out-file pulled.jsonl
          curate build specs/support-triage --input pulled.jsonl
        """
        import shutil
        from pathlib import Path

        from curate.labeling.config import KINDS
        from curate.labeling.pull import pull
        from curate.spec import load_spec
        from curate.steps.base import RunContext

        spec = load_spec(spec_path)
        bar, update = make_progress(show_progress(quiet, as_json))
        with bar, _client(studio_dir) as client:
            res = pull(
                spec,
                client=client,
                out=out,
                kinds=kinds or KINDS,
                adjudicator=adjudicator,
                since_last=since_last,
                ctx=RunContext(),
                progress=update,
                full=full,
            )
        if report_dir:
            Path(report_dir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(res.files["agreement"], Path(report_dir) / "agreement.json")
        if as_json:
            emit_json({"spec": spec.ref, **res.as_dict()})
        else:
            c = res.counts
            click.echo(res.files["records"])
            say(
                f"{c['annotations']} annotations -> {c['sft']} SFT records and {c['preference']} preference pairs; "
                f"{c['quarantined']} quarantined, {c['conflicts']} conflicts, {c['rework']} to rework; "
                f"{c['new_or_changed_annotations']} new or changed since the last pull",
                quiet=quiet,
            )

    @label.command("conflicts")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @studio_dir
    @json_option
    @quiet_option
    @handle_errors
    def conflicts_cmd(spec_path: str, studio_dir: str, as_json: bool, quiet: bool) -> None:
        """List tasks whose annotators disagree, beside the agreement per question and per rule.

        No majority on the verdict or the picked response, or different corrections of one response, is a
        conflict. Resolve them by adding an adjudicator's annotation and pulling with --adjudicator EMAIL.
        Agreement: Cohen's kappa (2 annotators) or Krippendorff's alpha, and the observed share of agreeing pairs.

        \b
        Example:
          curate label conflicts specs/support-triage --json
        """
        from curate.labeling.pull import conflicts_and_agreement
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        with _client(studio_dir) as client:
            rows, agreement = conflicts_and_agreement(spec, client=client)
        if as_json:
            emit_json({"spec": spec.ref, "conflicts": rows, "agreement": agreement})
        else:
            for kind, per_question in agreement.items():
                for question, fig in per_question.items():
                    if not fig.get("items"):
                        continue
                    value = "undefined" if fig.get("value") is None else f"{fig['value']:.3f}"
                    click.echo(
                        f"{kind} agreement {question}: {fig.get('method') or 'n/a'} {value}, observed "
                        f"{fig.get('observed')} over {fig['items']} tasks"
                    )
            for row in rows:
                answers = ", ".join(f"{who}: {v}" for who, v in row["answers"].items())
                click.echo(f"{row['kind']} task {row['task']} ({row['question']}): {answers}")
            say(f"{len(rows)} conflicts", quiet=quiet)

    @deprecated_options({"--build": "--build-dir"})
    @main.command("explain")
    @click.argument("record_id", metavar="ID")
    @click.option(
        "--build-dir",
        "build_dir",
        type=click.Path(exists=True, file_okay=False),
        required=True,
        help="The build folder (what `curate build --out` wrote).",
    )
    @json_option
    @quiet_option
    @handle_errors
    def explain_cmd(record_id: str, build_dir: str, as_json: bool, quiet: bool) -> None:
        """Print one row's history in a build: its input line and lineage, duplicates, quarantine, export.

        ID is a record id as in the exported rows' `id` column (6 or more leading characters do when unique).

        \b
        Example:
          curate explain 3f2a9c01d4e5 --build-dir out/support-triage/v1
        """
        from curate.labeling.lineage import explain, render

        story = explain(build_dir, record_id)
        if as_json:
            emit_json(story)
        else:
            for line in render(story):
                click.echo(line)
