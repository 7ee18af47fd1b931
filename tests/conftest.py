"""Shared test set-up: offline, single-threaded, paths to the repo and to the real fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[1]


def _origin_checkout() -> Path | None:
    """The local repository this one was cloned from (a fresh CI clone of /work/main -> /work/main), if any."""
    import subprocess

    try:
        url = subprocess.run(
            ["git", "-C", str(REPO), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://")) if url else None  # a remote URL is no folder here
    return path.resolve() if path is not None and path.is_dir() else None


def _fixtures_dir() -> Path:
    """../shared/fixtures/real beside the repository, or beside the local checkout it was cloned from;
    CURATE_REAL_FIXTURES names another folder."""
    cands = [Path(os.environ["CURATE_REAL_FIXTURES"])] if os.environ.get("CURATE_REAL_FIXTURES") else []
    cands.append(REPO.parent / "shared" / "fixtures" / "real")
    origin = _origin_checkout()
    if origin is not None:
        cands.append(origin.parent / "shared" / "fixtures" / "real")
    cands.append(REPO / "tests" / "fixtures" / "real")
    for cand in cands:
        if cand.is_dir():
            return cand
    raise RuntimeError(
        "real fixtures not found: expected ../shared/fixtures/real beside the repository (or the "
        "checkout it was cloned from), or CURATE_REAL_FIXTURES"
    )


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    return _fixtures_dir()


@pytest.fixture(scope="session")
def example_specs() -> list[Path]:
    return sorted(p.parent for p in (REPO / "specs").glob("*/spec.yaml"))
