"""Configs compiled from the spec: escaping, controls, instructions, generated files, the server's validation."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lshelpers import DATA, REPO

from curate.labeling.config import (
    KINDS,
    build_config,
    controls,
    data_fields,
    instructions,
    project_title,
    schema_files,
)
from curate.spec import load_spec

HOSTILE = DATA / "mini"


@pytest.fixture(scope="module")
def spec():
    return load_spec(HOSTILE)


def _hostile_spec(tmp_path: Path):
    text = (
        (HOSTILE / "spec.yaml")
        .read_text()
        .replace("says: Polite & brief; no <shouting>.", 'says: "$HOME & <b>bold</b> ]]> --> \'"')
    )
    (tmp_path / "spec.yaml").write_text(text)
    (tmp_path / "data.jsonl").write_text("")
    return load_spec(tmp_path / "spec.yaml")


@pytest.mark.parametrize("kind", KINDS)
def test_config_is_wellformed_and_round_trips_hostile_text(tmp_path, kind):
    spec = _hostile_spec(tmp_path)
    xml = build_config(spec, kind)
    root = ET.fromstring(xml)  # well-formed despite <, &, quotes, ]]> and --> in the spec
    shown = {c.get("alias"): c.get("value") for c in root.iter("Choice")}
    if kind == "write":
        assert not shown
        return
    for rule in spec.rules:
        value = shown[rule.id]
        # the labeler reads the rule's own words; a leading $ would be a task-field reference to Label Studio
        assert value.replace("\u200b", "") == f"violates: {rule.says}"
        assert not re.search(r"\$\w", value)  # Label Studio would replace `$word` with a task field
    tone = shown["tone"]
    assert "$HOME & <b>bold</b> ]]> -->" in tone.replace("\u200b", "")


def test_leading_dollar_is_guarded(tmp_path):
    text = (
        (HOSTILE / "spec.yaml")
        .read_text()
        .replace(
            "  typical: {min_share: 0.5, description: Ordinary requests & questions.}",
            "  $typical: {min_share: 0.5}",
        )
    )
    (tmp_path / "spec.yaml").write_text(text)
    (tmp_path / "data.jsonl").write_text("")
    spec = load_spec(tmp_path / "spec.yaml")
    root = ET.fromstring(build_config(spec, "review"))
    cat = [c for c in root.iter("Choice") if c.get("alias", "").endswith("$typical")]
    assert len(cat) == 1 and cat[0].get("alias") == "\u200b$typical"
    shown = cat[0].get("value")
    assert (
        shown.replace("\u200b", "") == "$typical"
        and not shown.startswith("$")
        and not re.search(r"\$\w", shown)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_controls_describe_the_config(spec, kind):
    root = ET.fromstring(build_config(spec, kind))
    tags = {el.get("name"): el for el in root.iter() if el.get("name")}
    for name, ctrl in controls(spec, kind).items():
        el = tags[name]
        assert el.tag.lower() == ctrl.type, name
        assert el.get("toName").split(",")[0] == ctrl.to_name or ctrl.type == "pairwise"
        if ctrl.type == "choices":
            assert {c.get("alias") for c in el.iter("Choice")} == set(ctrl.values)
            assert el.get("choice") == ("multiple" if ctrl.multiple else "single")
    # every $field the config reads is one the push fills in
    fields = {el.get("value")[1:] for el in root.iter() if (el.get("value") or "").startswith("$")}
    assert fields == set(data_fields(kind))


def test_review_has_every_part_the_issue_lists(spec):
    ctrls = controls(spec, "review")
    assert ctrls["verdict"].values == {"accept", "edit", "reject"}
    assert ctrls["violates"].values == {r.id for r in spec.rules}  # human-judged rules included
    assert "tone" in ctrls["violates"].values
    assert ctrls["category"].values == set(spec.cases)
    assert {"corrected", "note"} <= set(ctrls)
    pair = controls(spec, "pairwise")
    assert pair["comparison"].type == "pairwise" and pair["loser_violates"].multiple and "rationale" in pair
    assert controls(spec, "write")["ideal"].required


def test_instructions_escape_and_cover_the_spec(spec):
    text = instructions(spec, "review")
    assert "<shouting>" not in text and "&lt;shouting&gt;" in text
    assert "<script>" not in text
    for r in spec.rules:
        assert f"<b>{r.id}</b>" in text
    for name in spec.cases:
        assert f"<b>{name}</b>" in text
    assert "Reset my password &lt;now&gt; &amp; fast" in text  # the example


def test_project_title_fits_label_studio(spec):
    long = spec.model_copy(update={"name": "x" * 80})
    for kind in KINDS:
        assert len(project_title(long, kind)) <= 50
        assert project_title(spec, kind) == f"mini-triage@1 {kind}"


def test_schemas_are_up_to_date():
    """schemas/labeling/*.xml are generated from specs/: regenerate with `python -m curate.labeling.config`."""
    want = schema_files(root=str(REPO))
    assert want, "no example specs found under specs/"
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "schemas" / "labeling").glob("*.xml")}
    assert on_disk == set(want), "stale schemas/labeling: run `python -m curate.labeling.config`"
    for rel, text in want.items():
        assert (REPO / rel).read_text() == text, f"{rel} is stale: run `python -m curate.labeling.config`"


@pytest.mark.studio
def test_every_config_passes_the_servers_validation(client, tmp_path):
    specs = [load_spec(HOSTILE), _hostile_spec(tmp_path)]
    specs += [load_spec(p.parent) for p in sorted((REPO / "specs").glob("*/spec.yaml"))]
    assert len(specs) >= 4
    for spec in specs:
        for kind in KINDS:
            assert client.validate_config(build_config(spec, kind)) == [], (spec.ref, kind)
    # and the validation is real: a control pointing nowhere is refused
    bad = build_config(specs[0], "review").replace('toName="response"', 'toName="nowhere"', 1)
    problems = client.validate_config(bad)
    assert problems and "nowhere" in problems[0]
