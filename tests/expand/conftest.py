"""Fixtures for the expand tests: the small spec under data/mini and, once they exist, the example specs."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from curate.records import Source, read_jsonl, record_from_native
from curate.spec import load_spec

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MINI = HERE / "data" / "mini"
EXAMPLE_SPECS = ["support-triage", "support-agent"]


def spec_dirs() -> list[Path]:
    """The small test spec plus every example spec that has landed (with its data)."""
    out = [MINI]
    for name in EXAMPLE_SPECS:
        d = ROOT / "specs" / name
        if (d / "spec.yaml").is_file() and (d / "data.jsonl").is_file():
            out.append(d)
    return out


def load_records(spec):
    recs = []
    for path in spec.data_paths():
        for line, obj in read_jsonl(path):
            if isinstance(obj, dict):
                with contextlib.suppress(Exception):  # malformed example lines are the importer's business
                    recs.append(
                        record_from_native(obj, spec=spec.ref, source=Source(file=str(path), line=line))
                    )
    return recs


@pytest.fixture(params=spec_dirs(), ids=lambda p: p.name)
def any_spec(request):
    return load_spec(request.param)


@pytest.fixture(name="load_records")
def _load_records_fixture():
    return load_records


@pytest.fixture
def mini_spec():
    return load_spec(MINI)
