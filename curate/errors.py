"""Errors: one small class per kind of whole-run failure.

Per-record problems never raise (they go to quarantine); these do. Each message says what went wrong,
where, and how to fix it, in one line the CLI prints as it is.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base class: the CLI prints `str(err)` on one line and exits 1."""

    exit_code = 1


class SpecError(CurateError):
    """A behavior spec cannot be loaded: YAML syntax, unknown key, wrong type, bad regex, bad schema."""


class InputError(CurateError):
    """An input file cannot be read at all (missing, unknown format, unreadable)."""


class CheckError(CurateError):
    """A rule check is misconfigured (unknown kind, bad pointer, python function not importable)."""


class ExportError(CurateError):
    """An export cannot be written or an accounting invariant does not hold."""


class ServerError(CurateError):
    """Label Studio is not reachable, refused the token, or answered with an error."""


class LabelingError(CurateError):
    """A labeling project or its annotations do not match what curate expects."""


class TrainError(CurateError):
    """Training cannot start: model path, chat template, dataset type, lengths."""


class EvalError(CurateError):
    """An evaluation cannot run or two evaluations cannot be compared."""
