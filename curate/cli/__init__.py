"""The `curate` command line: a thin layer over the library (one call per command, then render).

Each command group lives in its own module listed in COMMAND_MODULES and adds itself with `register(main)`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from curate import __version__
from curate.cli.common import CurateGroup

COMMAND_MODULES = [
    "curate.cli.spec_cmds",
    "curate.cli.check_cmd",
    "curate.cli.report_cmd",
    "curate.cli.build_cmds",
    "curate.cli.expand_cmds",
    "curate.cli.train_cmds",
    "curate.cli.eval_cmd",
    "curate.cli.studio_cmds",
    "curate.cli.label_cmds",
    "curate.cli.import_cmd",
    "curate.cli.judge_cmds",
]


ALLOW_CODE = "--allow-code"
ALLOW_OUTSIDE = "--allow-outside-data"


class _Main(CurateGroup):
    """`--allow-code` is taken from anywhere before `--` (`curate build SPEC --allow-code` as well as
    `curate --allow-code build SPEC`): it lets `python` rules run the spec's own code (curate.checks.code), and
    each such rule is announced on stderr before it runs. Without it they stop the command with one line.
    `--allow-outside-data` (the same way) lets a spec's `data:` name files outside its folder."""

    def main(self, args: Any = None, *rest: Any, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        cut = argv.index("--") if "--" in argv else len(argv)
        if ALLOW_CODE in argv[:cut]:
            from curate.checks import code

            code.allow_code()
            code.announce = lambda msg: click.echo(msg, err=True)
        if ALLOW_OUTSIDE in argv[:cut]:
            from curate.spec import allow_outside_data

            allow_outside_data()
        argv = [a for i, a in enumerate(argv) if i >= cut or a not in (ALLOW_CODE, ALLOW_OUTSIDE)]
        return super().main(argv, *rest, **extra)


@click.group("curate", cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
@click.option(
    "--allow-code",
    "allow_code",
    is_flag=True,
    help="Let `python` rules run the spec's own code (read it first); also accepted after the command.",
)
@click.option(
    "--allow-outside-data",
    "allow_outside",
    is_flag=True,
    help="Let a spec's `data:` name files outside the spec folder; also accepted after the command.",
)
def main(allow_code: bool = False, allow_outside: bool = False) -> None:
    """curate: turn a behavior spec into training data, label it, export it for TRL, train and evaluate.

    \b
    Example:
      curate spec check specs/support-triage
      curate build specs/support-triage
    """


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
