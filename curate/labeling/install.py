"""Label Studio's own environment: where it is installed (`$CURATE_CACHE/label-studio-<version>/`) and the one-time,
file-locked install into its venv (`ensure_installed`). Moved out of `curate.labeling.server`, which still exports
every name.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from curate.errors import ServerError

log = logging.getLogger(__name__)

LS_VERSION = "1.23.2"


def cache_dir() -> Path:
    return Path(os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate").expanduser()


def install_dir() -> Path:
    """Where Label Studio's own venv lives: `$CURATE_CACHE/label-studio-<version>/`."""
    return cache_dir() / f"label-studio-{LS_VERSION}"


def executable() -> Path:
    return install_dir() / "venv" / "bin" / "label-studio"


def is_installed() -> bool:
    marker = install_dir() / ".installed"
    return executable().exists() and marker.exists() and marker.read_text().strip() == LS_VERSION


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_installed(*, progress: Callable[[str], None] | None = None) -> Path:
    """Install Label Studio into its own venv unless it is there already; returns its `label-studio` path.

    Safe to call from several processes at once (a file lock serialises the install).
    """
    if is_installed():
        return executable()
    home = install_dir()
    with _file_lock(home.parent / f".label-studio-{LS_VERSION}.lock"):
        if is_installed():
            return executable()
        home.mkdir(parents=True, exist_ok=True)
        venv = home / "venv"
        logfile = home / "install.log"
        if progress:
            progress(f"installing Label Studio {LS_VERSION} into {home} (a minute or two, once)")
        log.info("installing label-studio %s into %s", LS_VERSION, home)
        with open(logfile, "w") as out:
            steps = []
            if not (venv / "bin" / "python").exists():
                steps.append([sys.executable, "-m", "venv", str(venv)])
            steps.append(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    f"label-studio=={LS_VERSION}",
                ]
            )
            for cmd in steps:
                rc = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
                ).returncode
                if rc != 0:
                    raise ServerError(f"installing Label Studio failed (exit {rc}); see {logfile}")
        if not executable().exists():
            raise ServerError(f"installing Label Studio left no {executable()}; see {logfile}")
        (home / ".installed").write_text(LS_VERSION + "\n")
        return executable()
