"""Shared CLI pieces: --json/--quiet options, output, progress, and error rendering."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from curate.errors import CurateError

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress or messages on stderr.")


def parse_mapping(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """`--map OURS=THEIRS` options (build, import) as a field mapping for the importers."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(
                f"{p!r}: expected OURS=THEIRS, e.g. messages=conversation", param_hint="--map"
            )
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out or None


_SPEC_REF = re.compile(r"(?P<name>[a-z0-9][a-z0-9-]*)(?:@(?P<version>[A-Za-z0-9._-]+))?")


def load_spec_arg(value: str) -> Any:
    """A spec given as a path (file or folder) or as `name@version` / `name`, the way records name their spec.

    A reference is looked up as specs/NAME/spec.yaml under the current folder; with a version, the spec found
    must be at that version.
    """
    from curate.errors import SpecError
    from curate.spec import SPEC_FILENAMES, load_spec

    p = Path(value)
    m = _SPEC_REF.fullmatch(value)
    if p.exists() or m is None:
        return load_spec(p)
    name, version = m["name"], m["version"]
    for base in (Path("specs") / name, Path(name)):
        if any((base / f).is_file() for f in SPEC_FILENAMES):
            spec = load_spec(base)
            if spec.name != name or (version is not None and str(spec.version) != version):
                raise SpecError(
                    f"{value}: {base} holds {spec.ref}, not {value}; pass the spec's path, or {spec.ref}"
                )
            return spec
    raise SpecError(
        f"{value}: no such spec file or folder, and no specs/{name}/spec.yaml here; pass the spec's "
        "path (a folder with spec.yaml, or the file)"
    )


class InputArg(click.ParamType):
    """A data file or folder, optionally with its format: `chats.jsonl` or `chats.jsonl:sharegpt`."""

    name = "FILE[:FORMAT]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from curate.errors import InputError
        from curate.readers.containers import split_format

        try:
            path, _ = split_format(value)
        except InputError as err:
            self.fail(str(err), param, ctx)
        if not path.exists():
            self.fail(f"{path}: no such file or folder", param, ctx)
        return value


INPUT = InputArg()


def emit_json(obj: Any) -> None:
    """Print one JSON document to stdout."""
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode())


def say(message: str, *, quiet: bool = False) -> None:
    """A message for people: stderr, off under --quiet/--json."""
    if not quiet:
        click.echo(message, err=True)


def show_progress(quiet: bool, as_json: bool) -> bool:
    return not (quiet or as_json) and sys.stderr.isatty()


def make_progress(enabled: bool) -> tuple[Any, Callable[..., None]]:
    """(context manager, callback(step, done, total)) drawing rich progress bars on stderr when enabled."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext(), lambda *a, **k: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int | None = None) -> None:
        if step not in tasks:
            tasks[step] = progress.add_task(step, total=total)
        progress.update(tasks[step], completed=done, total=total)

    return progress, update


def one_line(text: str) -> str:
    return " ".join(text.split())


def error_document(kind: str, message: str, exit_code: int = 1) -> dict[str, Any]:
    """The one JSON document `--json` prints on stdout when a command fails."""
    return {"ok": False, "error": {"type": kind, "message": one_line(message)}, "exit_code": exit_code}


def fail(
    err: BaseException, message: str, *, as_json: bool, exit_code: int = 1, kind: str | None = None
) -> None:
    """Print the one-line error (stderr) and, under --json, the error document (stdout); exit."""
    if as_json:
        emit_json(error_document(kind or type(err).__name__, message, exit_code))
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(exit_code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """CurateError -> one line on stderr and exit 1 (plus a JSON error document on stdout under --json);
    Ctrl-C -> "interrupted", exit 130; tracebacks only with CURATE_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except CurateError as err:
            if os.environ.get("CURATE_DEBUG") == "1":
                raise
            fail(err, str(err), as_json=as_json, exit_code=err.exit_code)
        except KeyboardInterrupt as err:
            if os.environ.get("CURATE_DEBUG") == "1":
                raise
            fail(err, "interrupted", as_json=as_json, exit_code=INTERRUPTED, kind="Interrupted")
        except click.UsageError as err:
            fail(err, usage_message(err), as_json=as_json, kind="UsageError")
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except OSError as err:  # disk full, read-only, name too long, busy ...: the path and the cause
            if os.environ.get("CURATE_DEBUG") == "1":
                raise
            fail(err, os_error_message(err), as_json=as_json, kind="OSError")
        except Exception as err:
            if os.environ.get("CURATE_DEBUG") == "1":
                raise
            fail(
                err,
                f"unexpected {type(err).__name__}: {err} (run with CURATE_DEBUG=1 for the traceback and "
                "report it)",
                as_json=as_json,
            )

    return wrapper


INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def os_error_message(err: OSError) -> str:
    """An OSError as one line naming the path(s) and the cause: "out/x: no space left on device (ENOSPC)"."""
    import errno as _errno

    cause = (err.strerror or str(err) or type(err).__name__).rstrip(".")
    cause = cause[:1].lower() + cause[1:]
    code = _errno.errorcode.get(err.errno or 0)
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    where = " -> ".join(paths) + ": " if paths else ""
    return f"{where}{cause}" + (f" ({code})" if code else "")


def usage_message(err: click.ClickException) -> str:
    """A click usage error as one line that names the fix: the problem, then where to read the options."""
    msg = one_line(err.format_message())
    ctx = getattr(err, "ctx", None) or click.get_current_context(silent=True)
    if ctx is not None:
        msg = f"{ctx.command_path}: {msg} (see `{ctx.command_path} --help`)"
    return msg


def _wants_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


class CurateGroup(click.Group):
    """The top-level group: every user error is one line on stderr and exit 1 (click's usage errors too, which
    would otherwise print a usage block and exit 2), a JSON error document on stdout under --json, and Ctrl-C
    exits 130 with one line."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        as_json = _wants_json(argv)
        try:
            rv = super().main(argv, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help() if err.ctx else err.format_message())
            sys.exit(0)
        except click.ClickException as err:
            fail(err, usage_message(err), as_json=as_json, kind="UsageError")
        except (click.Abort, KeyboardInterrupt) as err:
            fail(err, "interrupted", as_json=as_json, exit_code=INTERRUPTED, kind="Interrupted")
        sys.exit(rv if isinstance(rv, int) else 0)


def deprecated_options(renames: dict[str, str]) -> Callable[[click.Command], click.Command]:
    """Keep old option spellings working, hidden from --help, with a warning on stderr: put it ABOVE
    `@group.command(...)`. `renames` maps an old spelling to the current one ({"--dir": "--studio-dir"})."""

    def deco(cmd: click.Command) -> click.Command:
        parse = cmd.parse_args

        def parse_args(ctx: click.Context, args: list[str]) -> list[str]:
            out: list[str] = []
            for i, arg in enumerate(args):
                if arg == "--":
                    out.extend(args[i:])
                    break
                name, eq, value = arg.partition("=")
                if name in renames:
                    new = renames[name]
                    click.echo(f"warning: {ctx.command_path} {name} is deprecated; use {new}", err=True)
                    arg = new + eq + value
                out.append(arg)
            return parse(ctx, out)

        cmd.parse_args = parse_args  # type: ignore[method-assign]
        return cmd

    return deco
