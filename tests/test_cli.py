"""The CLI: exit codes, JSON output, exact error texts, help on every command, schemas not stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.schemas import generated_schemas, render


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_spec_init_passes_check(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(main, ["spec", "init", "refund-bot", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    path = tmp_path / "refund-bot" / "spec.yaml"
    assert r.stdout.strip() == str(path)
    assert "# A behavior spec" in path.read_text()
    r = runner.invoke(main, ["spec", "check", str(path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["ok"] is True and doc["specs"][0]["name"] == "refund-bot@1"
    r = runner.invoke(main, ["spec", "init", "refund-bot", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "already exists" in r.output


def test_spec_init_bad_name(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(main, ["spec", "init", "Bad Name", "--out", str(tmp_path)])
    assert r.exit_code == 1
    assert "error: spec name 'Bad Name': use lowercase letters, digits and dashes" in r.output


def test_spec_check_error_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("name: x\nversion: 1\nrulez: []\n")
    r = runner.invoke(main, ["spec", "check", str(bad)])
    assert r.exit_code == 1
    assert f'error: {bad}:3:1: (top level): unknown key "rulez"; did you mean "rules"?' in r.output
    r = runner.invoke(main, ["spec", "check", str(bad), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["ok"] is False and "unknown key" in doc["specs"][0]["error"]


def test_spec_check_findings_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(main, ["spec", "init", "x", "--out", str(tmp_path)])
    p = tmp_path / "x" / "spec.yaml"
    p.write_text(p.read_text().replace("typical: {min_share: 0.5}", "typical: {min_share: 0.9}"))
    r = runner.invoke(main, ["spec", "check", str(p)])
    assert r.exit_code == 1 and "coverage_over_one" in r.output


def test_example_specs_check_clean(runner: CliRunner, example_specs: list[Path]) -> None:
    r = runner.invoke(main, ["spec", "check", *map(str, example_specs)])
    assert r.exit_code == 0, r.output


def test_check_example_data_negatives_fail_exactly_their_rules(
    runner: CliRunner, example_specs: list[Path]
) -> None:
    assert example_specs
    for spec_dir in example_specs:
        r = runner.invoke(main, ["check", str(spec_dir), str(spec_dir / "data.jsonl"), "--json"])
        doc = json.loads(r.stdout)
        assert r.exit_code == 0, doc["unexpected"][:5]
        assert doc["unexpected"] == [] and doc["bad_lines"] == []
        failing_rules = {row["rule"] for row in doc["rules"] if row["fail"]}
        automatic = {row["rule"] for row in doc["rules"]}
        assert failing_rules == automatic, (
            f"{spec_dir}: rules with no negative example: {automatic - failing_rules}"
        )


def test_check_reports_broken_line_and_unexpected(
    runner: CliRunner, example_specs: list[Path], tmp_path: Path
) -> None:
    spec_dir = example_specs[0]
    lines = (spec_dir / "data.jsonl").read_text().splitlines()
    first_good = next(line for line in lines if '"negative"' not in line and '"chosen"' not in line)
    rec = json.loads(first_good)
    rec["category"], rec["violates"] = "negative", ["valid-json"]  # claims a violation it does not have
    f = tmp_path / "x.jsonl"
    f.write_text(first_good + "\n{'messages': []}\n" + json.dumps(rec) + "\n")
    r = runner.invoke(main, ["check", str(spec_dir), str(f)])
    assert r.exit_code == 1
    assert f"bad line: {f}:2: python_literal: a Python dict, not JSON (single quotes)" in r.output
    assert f"unexpected: {f}:3: expected to fail ['valid-json'], failed nothing" in r.output


def test_model_outputs_file(runner: CliRunner, example_specs: list[Path], tmp_path: Path) -> None:
    f = tmp_path / "outputs.jsonl"
    f.write_text(json.dumps({"prompt": "Cancel it.", "response": "sure thing"}) + "\n")
    r = runner.invoke(main, ["check", str(example_specs[0]), str(f), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["responses"] == 1 and doc["overall_pass_rate"] == 0.0
    assert doc["failures_by_category"]["format"] >= 1


def test_no_traceback_without_debug(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("name: [\n")
    r = subprocess.run(
        [sys.executable, "-m", "curate", "check", str(bad), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    r = subprocess.run(
        [sys.executable, "-m", "curate", "check", str(bad), str(bad)],
        capture_output=True,
        text=True,
        env={"CURATE_DEBUG": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert "Traceback" in r.stderr


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def test_every_command_has_help_with_example_and_is_in_readme(repo: Path) -> None:
    readme = (repo / "README.md").read_text()
    for path, cmd in _commands(main):
        assert cmd.help and cmd.help.strip(), path
        if not isinstance(cmd, click.Group):
            assert "Example" in cmd.help, f"curate {' '.join(path)} has no example in its help"
            assert f"curate {' '.join(path)}" in readme, f"curate {' '.join(path)} is not in README.md"


def test_generated_schemas_not_stale(repo: Path) -> None:
    for name, schema in generated_schemas().items():
        path = repo / "schemas" / name
        assert path.exists(), f"{path} missing: run `curate spec schema`"
        assert path.read_bytes() == render(schema), f"{path} is stale: run `curate spec schema`"
