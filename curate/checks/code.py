"""The opt-in for `python` rules: a spec's own code runs only when the user said so.

    >>> from curate.checks.code import allow_code, code_rules
    >>> allow_code(spec)                      # doctest: +SKIP  (this spec's folder only; allow_code() = any)
    >>> code_rules(spec)                      # doctest: +SKIP
    [('short-answer', 'mychecks:short', '/path/specs/x/mychecks.py')]

A `python` rule imports `<spec dir>/<module>.py` (or an installed module) and calls its function: running the spec
author's code. Without an opt-in (`allow_code`, the CLI's `--allow-code`, or `CURATE_ALLOW_CODE=1`) the first such
rule raises CheckError naming the rule, the file and the flag, before any code is imported. With it, each target is
announced once (`announce`, set by the CLI to print a line on stderr; otherwise a log warning) before it runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from curate.errors import CheckError
from curate.spec_model import code_rules, target_file

if TYPE_CHECKING:
    from curate.spec_model import Spec

log = logging.getLogger(__name__)
ENV = "CURATE_ALLOW_CODE"
_ANY = False
_FOLDERS: set[str] = set()
_ANNOUNCED: set[tuple[str, str]] = set()
announce: Callable[[str], None] | None = None  # the CLI's printer for "running spec code: ..." lines


def allow_code(spec: Spec | str | Path | None = None) -> None:
    """Allow `python` rules of this spec (its folder), or of any spec when None."""
    global _ANY
    if spec is None:
        _ANY = True
        return
    folder = spec.base_dir if hasattr(spec, "base_dir") else Path(spec)  # type: ignore[union-attr]
    if folder.is_file():
        folder = folder.parent
    _FOLDERS.add(os.path.realpath(folder))


def disallow_code() -> None:
    """Forget every opt-in given in this process (tests)."""
    global _ANY
    _ANY = False
    _FOLDERS.clear()
    _ANNOUNCED.clear()


def code_allowed(base_dir: str | Path) -> bool:
    if _ANY or os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    return os.path.realpath(base_dir) in _FOLDERS


def require(function: str, base_dir: str | Path, rule: str | None = None) -> None:
    """Raise CheckError unless code may run for this spec folder; announce each target once when it may."""
    what = target_file(function, base_dir)
    name = f"rule {rule!r}" if rule else f"python check {function!r}"
    if not code_allowed(base_dir):
        raise CheckError(
            f"{name} runs Python code ({function} from {what}); curate runs a spec's code only when "
            f"you allow it: read that file, then pass --allow-code (or set {ENV}=1)"
        )
    key = (os.path.realpath(base_dir), function)
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        msg = f"running spec code: {name} -> {function} from {what}"
        if announce is not None:
            announce(msg)
        else:
            log.warning("%s", msg)


__all__ = ["ENV", "allow_code", "code_allowed", "code_rules", "disallow_code", "require", "target_file"]
