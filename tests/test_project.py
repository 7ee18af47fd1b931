"""Packaging and repository hygiene: SPDX license (no setuptools license-table warnings), extras that make the
README's commands work, generated folders ignored, lint in the test command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression() -> None:
    doc = _pyproject()
    assert (
        doc["project"]["license"] == "Apache-2.0"
    )  # PEP 639 form; the table form warns ~45 lines per install
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in doc["build-system"]["requires"])


def test_metadata_builds_without_license_warnings(tmp_path: Path) -> None:
    """setuptools writes the package metadata with the SPDX License-Expression and no deprecation warning."""
    r = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "import setuptools.build_meta as b, sys; print(b.prepare_metadata_for_build_wheel(sys.argv[1]))",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    meta = next(tmp_path.glob("*.dist-info")) / "METADATA"
    assert "License-Expression: Apache-2.0" in meta.read_text()
    assert "license" not in r.stderr.lower() or "deprecat" not in r.stderr.lower(), r.stderr[-2000:]


def test_ray_extra_has_the_client() -> None:
    """`RAY_ADDRESS=ray://head:10001 curate build ... --engine ray` needs ray's client extra."""
    ray = _pyproject()["project"]["optional-dependencies"]["ray"]
    assert any(r.startswith("ray[") and "client" in r.split("[", 1)[1].split("]")[0] for r in ray)


def test_ruff_in_test_extra_and_test_command() -> None:
    assert any(r.startswith("ruff") for r in _pyproject()["project"]["optional-dependencies"]["test"])
    script = (REPO / "scripts/test").read_text()
    assert script.index("ruff check") < script.index("pytest")


def test_generated_folders_are_ignored() -> None:
    lines = set((REPO / ".gitignore").read_text().split())
    assert {"out/", "runs/", "evals/", ".curate/"} <= lines


def test_readme_and_demo_answer_the_first_questions() -> None:
    """A new user's questions, answered where they look first (issue #19)."""
    readme = (REPO / "README.md").read_text()
    for text in (
        "source .venv/bin/activate",
        ".venv/bin/curate",
        "What is yours, what curate writes",
        "Labels into a build",
        "--model smollm2",
        "docs/walkthrough.md",
        "--out-file",
        "RAY_ADDRESS=ray://",
    ):
        assert text in readme, text
    demo = (REPO / "scripts" / "demo").read_text()
    assert "source .venv/bin/activate" in demo and "--model smollm2" in demo and "docs/walkthrough.md" in demo
