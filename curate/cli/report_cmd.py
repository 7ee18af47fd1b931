"""`curate report OUT_DIR`: the self-contained HTML report of a build output folder."""

from __future__ import annotations

from pathlib import Path

import click

from curate.cli.common import deprecated_options, emit_json, handle_errors, json_option, quiet_option, say


def register(main: click.Group) -> None:
    @deprecated_options({"--out": "--out-file"})
    @main.command("report")
    @click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option(
        "--out-file",
        "out_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the HTML here instead of OUT_DIR/report.html.",
    )
    @click.option(
        "--open-path",
        is_flag=True,
        help="Print a file:// URL to open in a browser instead of the plain path.",
    )
    @json_option
    @quiet_option
    @handle_errors
    def report(out_dir: Path, out_path: Path | None, open_path: bool, as_json: bool, quiet: bool) -> None:
        """Write OUT_DIR/report.html: counts and conservation, coverage heatmap, lengths, quarantine reasons,
        duplicate clusters, leakage, and labeling agreement and evaluations when present.

        The page is one file with inline SVG charts: no script, nothing fetched, safe to open offline.
        Prints the path of the report on stdout.

        \b
        Example:
          curate report out/support-triage/v1
          curate report out/support-triage/v1 --open-path     # file:///.../report.html
        """
        from curate.records import write_atomic
        from curate.report import load_report_data
        from curate.report.render import render_html, section_ids

        data = load_report_data(out_dir)
        target = out_path if out_path is not None else out_dir / "report.html"
        write_atomic(target, render_html(data).encode("utf-8"))
        target = target.resolve()
        for w in data.warnings:
            say(f"warning: {w}", quiet=quiet or as_json)
        if as_json:
            emit_json(
                {
                    "report": str(target),
                    "url": target.as_uri(),
                    "warnings": data.warnings,
                    "sections": [sid for sid, _ in section_ids(data)],
                }
            )
        else:
            click.echo(target.as_uri() if open_path else str(target))
