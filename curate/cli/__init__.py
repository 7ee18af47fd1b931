"""The `curate` command line: a thin layer over the library (one call per command, then render).

Each command group lives in its own module listed in COMMAND_MODULES and adds itself with `register(main)`.
"""

from __future__ import annotations

import importlib

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


@click.group("curate", cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def main() -> None:
    """curate: turn a behavior spec into training data, label it, export it for TRL, train and evaluate.

    \b
    Example:
      curate spec check specs/support-triage
      curate build specs/support-triage
    """


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)
