"""Edge/adversarial/negative generation: deterministic, free of near-duplicates, with lineage; --fill-gaps
brings every coverage cell to its target; the CLI writes the four outputs."""

from __future__ import annotations

import json
import shutil
from itertools import combinations
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import spec_dirs

from curate.checks.runner import check_file
from curate.cli import main
from curate.expand import expand, write_outputs
from curate.near_index import NearIndex, similarity
from curate.records import read_jsonl
from curate.spec import load_spec
from curate.steps.coverage import compute_coverage


def _files(paths):
    return {name: p.read_bytes() for name, p in paths.items()}


def test_deterministic_under_seed(any_spec, tmp_path):
    a = _files(write_outputs(expand(any_spec, seed=3, fill_gaps=True), tmp_path / "a"))
    b = _files(write_outputs(expand(any_spec, seed=3, fill_gaps=True), tmp_path / "b"))
    c = _files(write_outputs(expand(any_spec, seed=4, fill_gaps=True), tmp_path / "c"))
    assert a == b
    assert a["prompts_to_label.jsonl"] != c["prompts_to_label.jsonl"]


def test_generated_prompts_are_not_near_duplicates(any_spec, load_records):
    res = expand(any_spec, seed=5)
    data_prompts = [r.user_text() for r in load_records(any_spec)]
    seeds = [s for c in any_spec.cases.values() for s in c.seeds]
    new = [r.user_text() for r in res.records]
    new += [p.user_text() for p in res.pairs if p.source.params.get("prompt") == "recast"]
    new += [
        "\n".join(m["content"] for m in p["messages"] if m["role"] == "user")
        for p in res.prompts
        if p["source"]["generator"] != "curate.expand.seed"
    ]  # the spec's own seeds, as they are
    assert len(new) >= 10
    idx = NearIndex(threshold=0.8)
    for i, t in enumerate(data_prompts + seeds):
        idx.add(("old", i), t)
    for i, t in enumerate(new):
        assert idx.query(t) == [], (t, idx.query(t))
    for a, b in combinations(new, 2):  # also among themselves (exhaustive, no LSH)
        assert similarity(a, b) < 0.8, (a, b)
    assert res.summary["counts"]["dropped_near_duplicate"] > 0


def test_lineage_tags_and_categories(any_spec):
    res = expand(any_spec, seed=2)
    assert res.records and res.prompts
    patterns = set(any_spec.cases["adversarial"].patterns)
    for rec in res.records:
        assert rec.is_generated and "generated" in rec.tags and rec.source.parent
        assert rec.source.generator.startswith("curate.expand.") and rec.source.params["seed"] == 2
        assert rec.spec == any_spec.ref
        if rec.category == "adversarial":
            pats = [t for t in rec.tags if t.startswith("pattern:")]
            rules = [t for t in rec.tags if t.startswith("rule:")]
            assert len(pats) == 1 and pats[0][8:] in patterns and len(rules) == 1
            assert rules[0][5:] == rec.source.params["rule"] and any_spec.rule(rules[0][5:]).automatic
        assert rec.category != "negative", "mutants go to pairs.jsonl, not records.jsonl"
    for p in res.pairs:
        assert p.category == "negative" and p.is_generated and p.source.params["rule"] in p.violates
        assert p.source.generator == "curate.expand.mutate"
    made = {t[8:] for r in res.records for t in r.tags if t.startswith("pattern:")}
    made |= {t[8:] for p in res.prompts for t in p["tags"] if t.startswith("pattern:")}
    assert made == patterns, "every pressure pattern of the spec is used"
    for row in res.prompts:
        assert set(row) - {"draft"} == {"messages", "category", "tags", "source"}
        assert row["messages"][-1]["role"] == "user"
        assert row["source"]["generator"].startswith("curate.expand.")
        if "draft" in row:  # the parent's answer, offered when the variant was a near-copy with it
            assert row["source"]["params"]["draft"] == "parent" and row["draft"].strip()


def test_records_behave_as_written(any_spec, tmp_path):
    """Generated records pass every rule; pairs: chosen passes, rejected fails exactly its `violates`."""
    paths = write_outputs(expand(any_spec, seed=9, fill_gaps=True), tmp_path)
    rep = check_file(any_spec, paths["records.jsonl"])
    assert rep.responses > 0 and rep.unexpected == [] and rep.bad_lines == []
    rep = check_file(any_spec, paths["pairs.jsonl"])
    assert rep.responses > 0 and rep.unexpected == [] and rep.bad_lines == []
    pairs = [o for _, o in read_jsonl(paths["pairs.jsonl"])]
    assert sum(len(o["violates"]) == 1 for o in pairs) >= len(pairs) * 0.7


@pytest.mark.parametrize("src", [d for d in spec_dirs() if d.name != "mini"], ids=lambda p: p.name)
def test_build_keeps_every_generated_record(src, tmp_path):
    """Fed to `curate build` with the spec's data, nothing expand made is a duplicate, and no data record is
    displaced by a generated twin: the duplicates are exactly those of the data alone."""
    from curate.steps.pipeline import build

    spec = load_spec(src)
    paths = write_outputs(expand(spec, seed=1, fill_gaps=True), tmp_path / "expand")
    data = spec.data_paths()
    base = build(spec, data, tmp_path / "base").manifest
    full = build(spec, [*data, paths["records.jsonl"], paths["pairs.jsonl"]], tmp_path / "full").manifest
    ins = {Path(i["file"]).name: i for i in full["inputs"]}
    for name in ("records.jsonl", "pairs.jsonl"):
        assert ins[name]["in"] > 0 and ins[name]["duplicates"] == 0 and ins[name]["quarantined"] == 0, ins[
            name
        ]
        assert ins[name]["exported"] == ins[name]["in"]
    assert ins["data.jsonl"]["duplicates"] == base["inputs"][0]["duplicates"]
    assert full["conservation"]["ok"]
    assert [c for c in full["coverage"]["cells"] if not c["ok"]] == []


def _reduced_spec(src_dir, tmp_path, keep=None):
    """A copy of a spec whose data is only its (first `keep`) typical records: most cells are under target."""
    dst = tmp_path / src_dir.name
    shutil.copytree(src_dir, dst)
    spec = load_spec(dst)
    for path in spec.data_paths():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        typical = [
            ln
            for ln in lines
            if json.loads(ln).get("category", "typical") == "typical" and not json.loads(ln).get("violates")
        ]
        path.write_text("\n".join(typical[:keep]) + "\n")
    return load_spec(dst)


@pytest.mark.parametrize("src", spec_dirs(), ids=lambda p: p.name)
def test_fill_gaps_brings_every_cell_to_target(src, tmp_path, load_records):
    spec = _reduced_spec(src, tmp_path)
    data = load_records(spec)
    before = compute_coverage(spec, data)
    assert before.under_target(), "the reduced data leaves gaps"
    res = expand(spec, seed=1, fill_gaps=True, variants=0, per_pattern=0, per_rule=0)
    after = compute_coverage(spec, [*data, *res.records, *res.pairs])
    assert after.under_target() == [], [(c.category, c.rule, c.count) for c in after.under_target()]
    gaps = res.summary["gaps"]
    assert gaps["unfilled"] == 0 and gaps["made"] > 0
    reported = {(c["category"], c["rule"]): c for c in gaps["cells"]}
    assert set(reported) == {(c.category, c.rule) for c in before.under_target()}
    for (cat, rule), c in reported.items():
        assert c["before"] == before.cell(cat, rule).count and c["after"] >= c["target"] and c["ok"]
    assert {r.source.generator for r in res.records} <= {"curate.expand.gaps"}
    assert all(s["ok"] for s in gaps["shares"]), gaps["shares"]
    shares = {c.name: c for c in compute_coverage(spec, [*data, *res.records, *res.pairs]).categories}
    assert all(c.ok for c in shares.values()), shares


def test_fill_gaps_reports_a_cell_no_donor_can_serve(mini_spec, tmp_path):
    spec = _reduced_spec(mini_spec.base_dir, tmp_path, keep=1)  # one record: nothing with missing_info
    res = expand(spec, seed=1, fill_gaps=True)
    bad = [c for c in res.summary["gaps"]["cells"] if not c["ok"]]
    assert any(c["rule"] == "one-question-when-missing" and "no valid example" in c["reason"] for c in bad)
    cell = next(c for c in bad if c["rule"] == "one-question-when-missing" and c["category"] == "edge")
    assert cell["to_label"] >= 1, "prompts for the cell go to labeling"
    r = CliRunner().invoke(main, ["expand", str(spec.path), "--out", str(tmp_path / "o"), "--fill-gaps"])
    assert r.exit_code == 1
    assert "UNDER TARGET: no valid example where this rule applies" in r.stderr


def test_cli_expand_json_and_files(mini_spec, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["expand", str(mini_spec.path), "--out", str(out), "--seed", "7", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["seed"] == 7 and doc["spec"] == "mini-triage@1"
    for name in ("records.jsonl", "pairs.jsonl", "prompts_to_label.jsonl", "summary.json"):
        assert (out / name).is_file() and doc["files"][name] == str(out / name)
    assert doc["counts"]["records"] == sum(1 for _ in read_jsonl(out / "records.jsonl"))
    assert json.loads((out / "summary.json").read_text())["counts"] == doc["counts"]
    assert not list(out.glob(".*")), "no temporary files left behind"
    r2 = CliRunner().invoke(
        main, ["expand", str(mini_spec.path), "--out", str(tmp_path / "o2"), "--seed", "7"]
    )
    assert (
        r2.exit_code == 0
        and (tmp_path / "o2" / "pairs.jsonl").read_bytes() == (out / "pairs.jsonl").read_bytes()
    )


def test_cli_expand_bad_model_path_is_one_line_error(mini_spec, tmp_path):
    bad = tmp_path / "weights.bin"
    bad.write_text("x")
    r = CliRunner().invoke(main, ["expand", str(mini_spec.path), "--model", str(bad), "--out", str(tmp_path)])
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: --model {bad}: give a model folder or a .gguf file"
