from __future__ import annotations

import json

from curate.records import Message, PreferenceRecord, SFTRecord
from curate.steps.coverage import compute_coverage


def _sft(user, answer, category="typical", **kw):
    return SFTRecord.build(
        messages=[Message(role="user", content=user), Message(role="assistant", content=json.dumps(answer))],
        category=category,
        **kw,
    )


GOOD = {"intent": "other", "entities": {}, "missing_info": [], "next_step": "Point them to the hours page."}
ASK = {"intent": "other", "entities": {}, "missing_info": ["email"], "next_step": "Which email do you use?"}


def test_cells_count_passing_records_per_category(mini_spec):
    recs = [_sft("hours?", GOOD), _sft("hi", ASK), _sft("hey", GOOD, category="edge")]
    cov = compute_coverage(mini_spec, recs)
    assert cov.cell("typical", "valid-json").count == 2
    assert cov.cell("typical", "no-question-when-complete").count == 1  # skipped for ASK
    assert cov.cell("typical", "one-question-when-missing").count == 1
    assert cov.cell("edge", "valid-json").count == 1
    assert cov.cell("adversarial", "valid-json").count == 0
    assert not cov.cell("edge", "valid-json").ok
    assert cov.cell("typical", "valid-json").ok
    cats = {c.name: c for c in cov.categories}
    assert cats["typical"].count == 2 and abs(cats["typical"].share - 2 / 3) < 1e-9
    assert cats["negative"].count == 0 and not cats["negative"].ok


def test_negatives_count_violations_and_pairs_count_both_sides(mini_spec):
    bad = dict(GOOD, next_step="I've reset it.")
    neg = _sft("reset", bad, category="negative", violates=("no-action-claims",))
    pair = PreferenceRecord.build(
        prompt=[Message(role="user", content="reset")],
        chosen=[Message(role="assistant", content=json.dumps(GOOD))],
        rejected=[Message(role="assistant", content="not json")],
        category="edge",
    )
    cov = compute_coverage(mini_spec, [neg, pair])
    assert cov.cell("negative", "no-action-claims").count == 1
    assert cov.cell("negative", "valid-json").count == 1  # the pair's rejected side
    assert cov.cell("negative", "brief").count == 0
    assert cov.cell("edge", "valid-json").count == 1  # the pair's chosen side
    assert {c.name: c.count for c in cov.categories}["negative"] == 1


def test_as_dict_shape_matches_manifest_contract(mini_spec, load_records):
    cov = compute_coverage(mini_spec, load_records(mini_spec))
    d = cov.as_dict()
    assert set(d) == {"cells", "categories"}
    assert set(d["cells"][0]) == {"category", "rule", "count", "target", "ok"}
    assert set(d["categories"][0]) == {"name", "count", "share", "min_share", "ok"}
    assert len(d["cells"]) == 4 * len(mini_spec.automatic_rules())
    under = cov.under_target()
    assert under and all(c.count < c.target for c in under)
    assert all(c.ok for c in cov.cells if c not in under)
    json.dumps(d)


def test_split_dimension(mini_spec, load_records):
    recs = load_records(mini_spec)
    cov = compute_coverage(mini_spec, recs, split_of=lambda r: "test" if r.category == "edge" else "train")
    cell = cov.cell("edge", "valid-json")
    assert cell.splits == {"test": 2} and cell.as_dict()["splits"] == {"test": 2}
    assert {c.name: c.splits for c in cov.categories}["typical"] == {"train": 5}
