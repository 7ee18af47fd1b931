"""Shared test set-up: offline, single-threaded, paths to the repo and to the real fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true"}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[1]


def _fixtures_dir() -> Path:
    for cand in (REPO.parent / "shared" / "fixtures" / "real", REPO / "tests" / "fixtures" / "real"):
        if cand.is_dir():
            return cand
    raise RuntimeError("real fixtures not found: expected ../shared/fixtures/real beside the repository")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    return _fixtures_dir()


@pytest.fixture(scope="session")
def example_specs() -> list[Path]:
    return sorted(p.parent for p in (REPO / "specs").glob("*/spec.yaml"))
