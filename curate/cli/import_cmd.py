"""`curate import FILE... --out FILE.jsonl`: any supported input format -> our native JSONL, with accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from curate.cli.common import (
    INPUT,
    deprecated_options,
    emit_json,
    handle_errors,
    json_option,
    load_spec_arg,
    make_progress,
    parse_mapping,
    quiet_option,
    say,
    show_progress,
)


def _given_format(path: Path) -> str | None:
    from curate.readers.containers import InputPath

    return path.format if isinstance(path, InputPath) else None


def _detected(path: Path, maps: dict[str, str] | None) -> str:
    from curate.errors import InputError
    from curate.steps.read import detect_format

    try:
        return detect_format(path, maps, default="none")
    except InputError:
        return "unknown"  # read_inputs quarantines the file (unknown_format) or, with --strict, stops


def register(main: click.Group) -> None:
    from curate.steps.read import FORMATS

    @deprecated_options({"--out": "--out-file", "-o": "--out-file"})
    @main.command("import")
    @click.argument("files", nargs=-1, required=True, type=INPUT)
    @click.option(
        "--out-file",
        "out",
        required=True,
        type=click.Path(dir_okay=False),
        help="Output JSONL (native format).",
    )
    @click.option(
        "--spec",
        "spec_path",
        metavar="SPEC",
        help="Spec the records belong to: its path, or name@version (looked up as specs/NAME/).",
    )
    @click.option(
        "--format", "fmt", type=click.Choice(FORMATS), help="Force the input format instead of detecting it."
    )
    @click.option(
        "--map",
        "mapping",
        multiple=True,
        metavar="OURS=THEIRS",
        help="Field mapping for odd column names (repeatable), e.g. --map instruction=question.",
    )
    @click.option(
        "--strict",
        is_flag=True,
        help="Stop at a file whose format cannot be detected (default: quarantine its records).",
    )
    @json_option
    @quiet_option
    @handle_errors
    def import_cmd(
        files: tuple[str, ...],
        out: str,
        spec_path: str | None,
        fmt: str | None,
        mapping: tuple[str, ...],
        strict: bool,
        as_json: bool,
        quiet: bool,
    ) -> None:
        """Convert input files (OpenAI chat, ShareGPT, Alpaca, HH-RLHF, LLaMA-Factory, KTO, CSV, Parquet, Label
        Studio exports ...) to curate's native JSONL, and account for every unit read.

        Units that cannot become records are written to OUT's sibling `<name>.quarantine.jsonl` with a reason
        code and file:line. Exit 0 when the conversion ran (quarantined units are reported, not errors).

        \b
        Example:
          curate import data/alpaca.json chats.jsonl --spec specs/support-triage --out-file imported.jsonl
          curate import tickets.csv --spec support-triage@1 --out-file tickets.jsonl --json
        """
        from curate.records import write_atomic, write_jsonl_atomic
        from curate.steps.base import RunContext, encode_row
        from curate.steps.read import expand_inputs, read_inputs

        spec = load_spec_arg(spec_path) if spec_path else None
        maps = parse_mapping(mapping)
        paths = expand_inputs(list(files))
        formats = {str(p): fmt or _given_format(p) or _detected(p, maps) for p in paths}
        bars, update = make_progress(show_progress(quiet, as_json))
        ctx = RunContext(progress=update)
        out_path = Path(out)
        with bars:
            n = write_jsonl_atomic(
                out_path, read_inputs(paths, ctx=ctx, spec=spec, format=fmt, mapping=maps, strict=strict)
            )
        rows = ctx.quarantined.get("read", [])
        qpath = out_path.with_name(out_path.stem + ".quarantine.jsonl")
        if rows:
            write_atomic(qpath, b"".join(encode_row(r) for r in rows))  # never raises (#16)
        elif qpath.exists():
            qpath.unlink()  # a stale one from an earlier run would mislead
        inputs = []
        for p in paths:
            f = str(p)
            n_in, n_out = ctx.counters.get("in:" + f, 0), ctx.counters.get("read:out:" + f, 0)
            inputs.append(
                {
                    "file": f,
                    "format": formats[f],
                    "in": n_in,
                    "records": n_out,
                    "quarantined": ctx.per_file_quarantined.get(f, 0),
                }
            )
        total_in = sum(i["in"] for i in inputs)
        summary = {
            "out": str(out_path),
            "spec": spec.ref if spec else None,
            "quarantine_file": str(qpath) if rows else None,
            "counts": {"in": total_in, "records": n, "quarantined": len(rows)},
            "conservation": {
                "ok": total_in == n + len(rows)
                and all(i["in"] == i["records"] + i["quarantined"] for i in inputs)
            },
            "quarantine": {f"{s}/{r}": c for (s, r), c in sorted(ctx.reasons.items())},
            "inputs": inputs,
        }
        if as_json:
            emit_json(summary)
        else:
            for i in inputs:
                click.echo(
                    f"{i['file']}: {i['format']}, {i['in']} in, {i['records']} records, "
                    f"{i['quarantined']} quarantined"
                )
            click.echo(
                f"wrote {n} records to {out_path}" + (f"; {len(rows)} quarantined in {qpath}" if rows else "")
            )
            for key, c in summary["quarantine"].items():
                say(f"  {key}: {c}", quiet=quiet)
            for r in rows[:10]:
                say(f"  {r['reason']}: {r['detail']}", quiet=quiet)
        if not summary["conservation"]["ok"]:
            click.echo("error: accounting mismatch (in != records + quarantined); please report it", err=True)
            sys.exit(1)
