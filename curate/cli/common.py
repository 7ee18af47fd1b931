"""Shared CLI pieces: --json/--quiet options, output, progress, and error rendering."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click
import orjson

from curate.errors import CurateError

json_option = click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress or messages on stderr.")


def parse_mapping(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """`--map OURS=THEIRS` options (build, import) as a field mapping for the importers."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"{p!r}: expected OURS=THEIRS, e.g. messages=conversation", param_hint="--map")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out or None


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

    progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int | None = None) -> None:
        if step not in tasks:
            tasks[step] = progress.add_task(step, total=total)
        progress.update(tasks[step], completed=done, total=total)

    return progress, update


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """CurateError -> one line on stderr and exit 1; tracebacks only with CURATE_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CurateError as err:
            if os.environ.get("CURATE_DEBUG") == "1":
                raise
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - the CLI never shows a raw traceback by default
            if os.environ.get("CURATE_DEBUG") == "1":
                raise
            click.echo(f"error: unexpected {type(err).__name__}: {err} (run with CURATE_DEBUG=1 for the "
                       "traceback and report it)", err=True)
            sys.exit(1)

    return wrapper
