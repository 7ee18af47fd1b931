"""`curate check SPEC FILE`: every automatic rule over a JSONL of records or model outputs."""

from __future__ import annotations

import sys

import click

from curate.cli.common import emit_json, handle_errors, json_option, quiet_option


def register(main: click.Group) -> None:
    @main.command("check")
    @click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True))
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @json_option
    @quiet_option
    @handle_errors
    def check(spec_path: str, file: str, as_json: bool, quiet: bool) -> None:
        """Run the spec's automatic rules over FILE and print a per-rule table.

        Exit 1 when a record does not behave as written: a normal record fails a rule, or a negative
        example does not fail exactly the rules in its `violates`.

        \b
        Example:
          curate check specs/support-triage specs/support-triage/data.jsonl
        """
        from rich.console import Console
        from rich.table import Table

        from curate.checks.runner import by_category, check_file
        from curate.spec import load_spec

        spec = load_spec(spec_path)
        report = check_file(spec, file)
        if as_json:
            emit_json(
                {"spec": spec.ref, "file": file, **report.as_dict(), "by_category": by_category(report)}
            )
        else:
            table = Table(title=f"{spec.ref} on {file} ({report.responses} responses)")
            for col in ("rule", "category", "pass", "fail", "skip", "pass rate"):
                table.add_column(
                    col, justify="right" if col in ("pass", "fail", "skip", "pass rate") else "left"
                )
            for st in report.rules.values():
                rate = "-" if st.pass_rate is None else f"{st.pass_rate:.1%}"
                table.add_row(st.rule, st.category, str(st.passed), str(st.failed), str(st.skipped), rate)
            console = Console(width=120)
            console.print(table)
            cats = by_category(report)
            console.print("failures by category: " + ", ".join(f"{c} {v['fail']}" for c, v in cats.items()))
            for u in [] if quiet else report.unexpected[:20]:
                click.echo(
                    f"unexpected: {u['where']}: expected to fail {u['expected_fail'] or 'nothing'}, "
                    f"failed {u['failed'] or 'nothing'} {u['details']}",
                    err=True,
                )
            for b in [] if quiet else report.bad_lines[:20]:
                click.echo(f"bad line: {b['where']}: {b['reason']}: {b['detail']}", err=True)
        sys.exit(1 if report.unexpected or report.bad_lines else 0)
