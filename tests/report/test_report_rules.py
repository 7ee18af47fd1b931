"""The report's Rules section: per-rule pass rates of the data a build read (exported passing vs quarantined
failing, from the manifest's coverage and quarantine/validate.jsonl) and a few preference pairs with the rule that
separates chosen from rejected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from curate.checks import check_response
from curate.report import load_report_data
from curate.report.render import render_html, section_ids
from curate.spec import load_spec
from curate.steps.pipeline import build

DATA = Path(__file__).resolve().parents[1] / "data" / "build"


def _quarantined_for(out: Path, rule: str) -> int:
    rows = [json.loads(x) for x in (out / "quarantine" / "validate.jsonl").read_text().splitlines()]
    return sum(
        1
        for r in rows
        if r["reason"] == "rule_failed"
        and (r["detail"].startswith(rule + ":") or f"; {rule}:" in r["detail"])
    )


def test_rules_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = build(DATA, [DATA / "data.jsonl", DATA / "bad.jsonl"], out)
    spec = load_spec(DATA)
    d = load_report_data(out)
    assert [r.rule for r in d.rules] == [r.id for r in spec.automatic_rules()]
    cells = res.manifest["coverage"]["cells"]
    for r in d.rules:
        assert r.passed == sum(
            c["count"] for c in cells if c["rule"] == r.rule and c["category"] != "negative"
        )
        assert r.negatives == sum(
            c["count"] for c in cells if c["rule"] == r.rule and c["category"] == "negative"
        )
        assert r.failed == _quarantined_for(out, r.rule)
        assert r.category == spec.rule(r.rule).category and r.says == spec.rule(r.rule).says.strip()
    assert any(r.failed for r in d.rules)  # bad.jsonl has records that fail a rule
    failing = next(r for r in d.rules if r.failed)
    assert failing.pass_rate == failing.passed / (failing.passed + failing.failed) < 1.0
    # pairs: the rule named is one the rejected side fails and the chosen side passes
    assert d.pair_examples
    for ex in d.pair_examples:
        assert ex.rules
        for rule in ex.rules:
            assert {c.rule: c.status for c in check_response(spec, ex.rejected, user_text=ex.prompt)}[
                rule
            ] == "fail"
            assert {c.rule: c.status for c in check_response(spec, ex.chosen, user_text=ex.prompt)}[
                rule
            ] != "fail"
    html = render_html(d)
    assert ("rules", "Rules") in section_ids(d) and 'id="rules-table"' in html
    assert f"separated by <code>{d.pair_examples[0].rules[0]}</code>" in html


def test_rules_section_without_the_spec(tmp_path: Path) -> None:
    spec_dir = tmp_path / "spec"
    shutil.copytree(DATA, spec_dir)
    out = tmp_path / "out"
    build(spec_dir, [spec_dir / "data.jsonl"], out)
    (spec_dir / "spec.yaml").write_text((spec_dir / "spec.yaml").read_text() + "\n# edited\n")
    d = load_report_data(out)
    assert "changed since this build" in d.spec_note
    assert d.rules and all(r.says == "" for r in d.rules)  # counts still shown
    assert all(ex.rules == [] for ex in d.pair_examples)
    assert "Rule wording is not shown" in render_html(d)
