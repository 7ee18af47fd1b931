"""Helpers for the labeling tests (imported as `lshelpers`: pytest puts this folder on sys.path)."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from curate.spec import Spec, load_spec

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]
_names = itertools.count(1)


def make_spec(tmp_path: Path, src: Path = DATA / "mini", name: str | None = None) -> Spec:
    """A copy of a spec folder under a fresh name, so each test gets its own Label Studio projects."""
    name = name or f"t{os.getpid() % 1000}-{next(_names)}-{src.name}"[:40]
    dst = tmp_path / name
    shutil.copytree(src, dst)
    text = (dst / "spec.yaml").read_text()
    lines = [f"name: {name}" if ln.startswith("name:") else ln for ln in text.splitlines()]
    (dst / "spec.yaml").write_text("\n".join(lines) + "\n")
    return load_spec(dst)


def choices(name: str, values: list[str], to: str = "response") -> dict:
    return {"from_name": name, "to_name": to, "type": "choices", "value": {"choices": values}}


def textarea(name: str, text: str, to: str = "response") -> dict:
    return {"from_name": name, "to_name": to, "type": "textarea", "value": {"text": [text]}}


def pick(side: str) -> dict:
    return {
        "from_name": "comparison",
        "to_name": "comparison",
        "type": "pairwise",
        "value": {"selected": side},
    }
