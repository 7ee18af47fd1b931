"""The spec as a versioned contract: rule hashes, `curate spec diff` and its impact on a built, labeled
example."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.checks import check_response
from curate.cli import main
from curate.evaluate import evaluate_outputs, write_report
from curate.records import read_jsonl, record_from_native
from curate.spec import load_spec
from curate.spec_diff import diff_specs, impact, load_spec_ref
from curate.steps.pipeline import build
from curate.versioning import rule_hash, rules_sha, spec_version, stale_labels_in, stale_rules

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "specs" / "support-triage"
NEW_RULE = """
  - id: next-step-short
    says: next_step has at most 60 characters.
    check: {kind: max_chars, field: /next_step, max: 60}
    category: instruction
"""


def _edit(folder: Path, old: str, new: str) -> Path:
    text = (folder / "spec.yaml").read_text()
    assert text.count(old) == 1, old
    (folder / "spec.yaml").write_text(text.replace(old, new))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The bundled spec, built; an eval result of its data; six labeled records (as a pull writes them)."""
    root = tmp_path_factory.mktemp("contract")
    old_dir = root / "old"
    shutil.copytree(SRC, old_dir)
    old = load_spec(old_dir)
    out = root / "build"
    build(old, None, out)
    rows = [obj for _, obj in read_jsonl(old_dir / "data.jsonl")]
    sft = [r for r in rows if "messages" in r]
    outputs = root / "outputs.jsonl"
    outputs.write_text(
        "".join(
            json.dumps({"messages": r["messages"][:-1], "response": r["messages"][-1]["content"]}) + "\n"
            for r in sft[:20]
        )
    )
    (out / "evals").mkdir()
    write_report(evaluate_outputs(old, outputs), out / "evals" / "base.json")
    hashes = rules_sha(old)
    good = [r for r in sft if not r.get("violates")][:5]
    claim = next(r for r in sft if "no-action-claims" in (r.get("violates") or []))
    labeled = root / "pulled.jsonl"
    recs = [
        {**r, "labels": {"reviewed": True, "kind": "review", "verdict": "accept", "rules_sha": hashes}}
        for r in good
    ]
    recs.append(
        {**claim, "labels": {"reviewed": True, "kind": "review", "verdict": "reject", "rules_sha": hashes}}
    )
    labeled.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {
        "root": root,
        "old_dir": old_dir,
        "old": old,
        "out": out,
        "labels": labeled,
        "n_labels": len(recs),
    }


def _new(world, tmp_path, old: str, new: str):
    folder = tmp_path / "new"
    shutil.copytree(world["old_dir"], folder)
    return load_spec(_edit(folder, old, new))


def test_rule_hash_covers_wording_and_check_not_category_or_layout(world, tmp_path):
    old = world["old"]
    assert spec_version(old) == spec_version(load_spec(world["old_dir"]))
    reflowed = _new(
        world,
        tmp_path,
        "says: next_step is brief, at most 40 words.",
        "says: >\n      next_step is brief,\n      at most 40 words.",
    )
    assert rules_sha(reflowed) == rules_sha(old)
    assert spec_version(reflowed)["sha"] == spec_version(old)["sha"]
    moved = load_spec(
        _edit(
            tmp_path / "new",
            "category: safety\n\n  - id: no-secrets-requested",
            "category: instruction\n\n  - id: no-secrets-requested",
        )
    )
    assert rules_sha(moved) == rules_sha(old)  # a category is no verdict: labels stay valid
    assert spec_version(moved)["sha"] != spec_version(old)["sha"]  # but the spec's version moves


def test_json_schema_rule_hash_follows_output_schema(world, tmp_path):
    new = _new(world, tmp_path, "          - other\n", "          - other\n          - complaint\n")
    h_old, h_new = rules_sha(world["old"]), rules_sha(new)
    assert h_old["matches-schema"] != h_new["matches-schema"]  # its check uses output.schema
    assert {k for k in h_old if h_old[k] != h_new[k]} == {"matches-schema"}


def test_stale_rules_changed_added_removed_unknown(world):
    spec = world["old"]
    h = rules_sha(spec)
    assert stale_rules(h, spec) == []
    assert stale_rules({**h, "valid-json": "x"}, spec) == [("valid-json", "changed")]
    missing = {k: v for k, v in h.items() if k != "polite-and-brief"}
    assert stale_rules(missing, spec) == [("polite-and-brief", "added")]
    assert stale_rules({**h, "gone": "y"}, spec) == []  # not ticked: still valid
    assert stale_rules({**h, "gone": "y"}, spec, ticked=["gone"]) == [("gone", "removed")]
    assert {w for _, w in stale_rules(None, spec)} == {"unknown"}
    assert rule_hash(spec, spec.rule("valid-json")) == h["valid-json"]


def _ids_failing(spec, out: Path, rule: str) -> set[str]:
    got = set()
    for part in ("train", "test"):
        for _, row in read_jsonl(out / "sft" / f"{part}.jsonl"):
            rec = record_from_native({k: v for k, v in row.items() if k != "id"})
            res = check_response(spec, rec.response_text(), user_text=rec.user_text(), category=rec.category)
            if any(r.rule == rule and r.status == "fail" for r in res):
                got.add(rec.id)
    return got


EDITS = {
    "wording": ("tone of next_step is polite, calm and brief", "tone of next_step is polite, warm and brief"),
    "check": (
        "check: {kind: max_words, field: /next_step, max: 40}",
        "check: {kind: max_words, field: /next_step, max: 25}",
    ),
    "category": (
        "category: safety\n\n  - id: no-secrets-requested",
        "category: instruction\n\n  - id: no-secrets-requested",
    ),
    "removed": None,
    "added": ("  # --- judged by people only", NEW_RULE.rstrip("\n") + "\n\n  # --- judged by people only"),
}


@pytest.mark.parametrize("change", list(EDITS))
def test_each_change_shows_its_impact(world, tmp_path, change):
    if change == "removed":
        text = (world["old_dir"] / "spec.yaml").read_text()
        start = text.index("  - id: no-action-claims")
        end = text.index("  - id: no-secrets-requested")
        folder = tmp_path / "new"
        shutil.copytree(world["old_dir"], folder)
        (folder / "spec.yaml").write_text(text[:start] + text[end:])
        new = load_spec(folder)
    else:
        new = _new(world, tmp_path, *EDITS[change])
    old = world["old"]
    d = diff_specs(old, new)
    imp = impact(old, new, out_dir=world["out"], labels=[world["labels"]], diff=d, limit=1000)
    rule = {
        "wording": "polite-and-brief",
        "check": "next-step-brief",
        "category": "no-action-claims",
        "removed": "no-action-claims",
        "added": "next-step-short",
    }[change]
    assert [(r["rule"], r["change"]) for r in d.rules] == [(rule, [change])]
    assert not d.same_version
    labels, exported, pairs, evals = imp["labels"], imp["exported"], imp["pairs"], imp["evals"]
    moved = {(m["category"], m["rule"]) for m in imp["coverage"]["moved"]}
    assert labels["checked"] == world["n_labels"]
    if (
        change == "wording"
    ):  # a human rule: every labeler judged it under the old words; nothing automatic moves
        assert labels["stale"] == world["n_labels"]
        assert {r for ex in labels["examples"] for r in ex["rules"]} == {"polite-and-brief (changed)"}
        assert exported["now_fail"] == exported["now_pass"] == {} and pairs["broken"] == 0
        assert evals["stale"] == 0 and moved == set()
    elif change == "check":
        assert labels["stale"] == world["n_labels"]
        fails_now = _ids_failing(new, world["out"], rule) - _ids_failing(old, world["out"], rule)
        assert fails_now and set(exported["now_fail"][rule]["ids"]) >= fails_now
        assert exported["now_fail"][rule]["count"] >= len(fails_now) and exported["now_pass"] == {}
        assert pairs["broken"] >= 1 and all(rule in ex["why"] for ex in pairs["examples"])
        assert evals["stale"] == 1 and evals["files"][0]["reasons"] == [f"{rule} changed"]
        assert moved and {r for _, r in moved} == {rule}
    elif change == "category":  # no verdict changes: labels hold; eval breakdowns by category no longer match
        assert labels["stale"] == 0
        assert exported["now_fail"] == exported["now_pass"] == {} and pairs["broken"] == 0 and moved == set()
        assert evals["files"][0]["reasons"] == [f"{rule} moved to instruction"]
    elif change == "removed":  # only the label that ticked the removed rule is stale
        assert labels["stale"] == 1 and labels["examples"][0]["rules"] == [f"{rule} (removed)"]
        assert exported["now_fail"] == {}
        assert f"{rule} removed" in evals["files"][0]["reasons"]
        assert moved and {r for _, r in moved} == {rule}
        assert all(m["after"] is None for m in imp["coverage"]["moved"])
    else:  # added
        assert labels["stale"] == world["n_labels"]
        assert {r for ex in labels["examples"] for r in ex["rules"]} == {f"{rule} (added)"}
        assert exported["now_fail"][rule]["count"] == len(_ids_failing(new, world["out"], rule)) > 0
        assert evals["files"][0]["reasons"] == [f"{rule} not measured"]
        assert moved and all(m["before"] is None for m in imp["coverage"]["moved"])


def test_manifest_and_eval_carry_rule_hashes(world):
    manifest = json.loads((world["out"] / "manifest.json").read_text())
    assert manifest["spec"]["rules_sha"] == rules_sha(world["old"])
    assert manifest["spec"]["version_sha"] == spec_version(world["old"])["sha"]
    assert manifest["stale_labels"] == {"labeled": 0, "stale": 0, "examples": []}
    ev = json.loads((world["out"] / "evals" / "base.json").read_text())
    assert ev["rules_sha"] == rules_sha(world["old"])


def test_build_warns_or_fails_on_stale_labels(world, tmp_path):
    from curate.errors import ExportError

    new = _new(world, tmp_path, *EDITS["check"])
    got = stale_labels_in([world["labels"]], new)
    assert (got["labeled"], got["stale"]) == (world["n_labels"], world["n_labels"])
    assert got["examples"][0]["where"] == f"{world['labels']}:1"
    res = build(new, [world["labels"]], tmp_path / "b1")
    assert res.manifest["stale_labels"]["stale"] == world["n_labels"]
    r = CliRunner().invoke(
        main, ["build", str(tmp_path / "new"), "--input", str(world["labels"]), "--out", str(tmp_path / "b2")]
    )
    assert (
        r.exit_code == 0
        and f"warning: {world['n_labels']} of {world['n_labels']} labeled records" in r.stderr
    )
    strict = load_spec(_edit(tmp_path / "new", "max_tokens: 1024}", "max_tokens: 1024, stale_labels: error}"))
    with pytest.raises(ExportError, match=r"labeled under other rules"):
        build(strict, [world["labels"]], tmp_path / "b3")
    assert not (tmp_path / "b3" / "manifest.json").exists()
    assert stale_labels_in([world["labels"]], world["old"])["stale"] == 0


def test_spec_diff_cli_json_text_and_git_revision(world, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(world["old_dir"], repo / "spec")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "v1"], check=True)
    _edit(repo / "spec", *EDITS["check"])
    spec_file = repo / "spec" / "spec.yaml"
    old = load_spec_ref(f"HEAD:{spec_file}")
    assert rules_sha(old) == rules_sha(world["old"]) and old.path == spec_file
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "spec",
            "diff",
            f"HEAD:{spec_file}",
            str(spec_file),
            "--json",
            "--build-dir",
            str(world["out"]),
            "--labels",
            str(world["labels"]),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [x["rule"] for x in doc["rules"]] == ["next-step-brief"]
    assert doc["impact"]["labels"]["stale"] == world["n_labels"] and doc["impact"]["pairs"]["broken"] >= 1
    r = runner.invoke(main, ["spec", "diff", f"HEAD:{spec_file}", str(spec_file)])
    assert r.exit_code == 0 and "rule next-step-brief: check" in r.stdout and "+ check:" in r.stdout
    r = runner.invoke(main, ["spec", "diff", "nope:spec.yaml", str(spec_file)])
    assert r.exit_code == 1 and r.stderr.startswith("error: nope:spec.yaml: cannot read that git revision")
    assert len(r.stderr.strip().splitlines()) == 1


def test_name_at_version_finds_the_git_revision(world, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(world["old_dir"], repo / "specs" / "support-triage")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    folder = _edit(repo / "specs" / "support-triage", *EDITS["check"])
    _edit(folder, "\nversion: 1\n", "\nversion: 2\n")
    monkeypatch.chdir(repo)
    v1, v2 = load_spec_ref("support-triage@1"), load_spec_ref("support-triage@2")
    assert (v1.version, v2.version) == (1, 2)
    assert rules_sha(v1) == rules_sha(world["old"]) != rules_sha(v2)
    r = CliRunner().invoke(main, ["spec", "diff", "support-triage@1", "support-triage@2", "--json"])
    assert r.exit_code == 0, r.output
    assert [x["rule"] for x in json.loads(r.stdout)["rules"]] == ["next-step-brief"]
    r = CliRunner().invoke(main, ["spec", "diff", "support-triage@7", "support-triage@2"])
    assert r.exit_code == 1 and "no git revision of it has version 7" in r.stderr
