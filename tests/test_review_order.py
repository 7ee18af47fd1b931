"""Review by value: each signal moves a record up; on planted label errors value order beats random order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from curate.records import Message, SFTRecord
from curate.review_order import cluster_sizes, value_order
from curate.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SPEC = load_spec(REPO / "specs" / "support-triage")


def _full_coverage():
    """The coverage of the spec's own data: every cell meets its target, so no record here fills a gap."""
    from curate.records import read_jsonl, record_from_native
    from curate.steps.coverage import compute_coverage

    recs = [record_from_native(o) for _, o in read_jsonl(REPO / "specs" / "support-triage" / "data.jsonl")]
    cov = compute_coverage(SPEC, recs)
    assert not cov.under_target()
    return cov


COV = _full_coverage()


def _rec(next_step: str, user: str = "I can't get in.", **kw) -> SFTRecord:
    answer = {"intent": "account_access", "entities": {}, "missing_info": [], "next_step": next_step}
    return SFTRecord.build(
        messages=(Message(role="user", content=user), Message(role="assistant", content=json.dumps(answer))),
        **kw,
    )


def test_each_signal_raises_a_record():
    plain = _rec("Send the sign-in help link.")
    assert value_order(SPEC, [plain], coverage=COV)[0].score == 0.0
    near = _rec(" ".join(["word"] * 39) + ".")  # next-step-brief: 39 of 40 words
    split = _rec("Send the link.", user="help me", labels={"agreement": "1/2"})
    failed = _rec("Send the reset page.", user="reset it")
    twin = _rec("Route to support.", user="other")
    order = value_order(
        SPEC,
        [plain, near, split, failed, twin],
        eval_failures=["reset  it"],
        cluster_sizes={twin.id: 6},
        coverage=COV,
    )
    got = {s.record.id: s for s in order}
    assert got[near.id].reasons == ["near_boundary: next-step-brief (39 of 40)"]
    assert got[split.id].reasons == ["annotator_disagreement: labelers agreed 1/2"]
    assert got[failed.id].reasons == ["eval_failure: its prompt failed in an eval"]
    assert got[twin.id].reasons == ["cluster_representative: kept for 6 near-duplicates"]
    assert [s.record.id for s in order] == [split.id, failed.id, twin.id, near.id, plain.id]
    judged = value_order(SPEC, [plain, near], judge={plain.id: {"tone-judged": False}}, coverage=COV)
    assert judged[0].record.id == plain.id
    assert judged[0].reasons == ["judge_disagrees: judge says fail on tone-judged"]
    # a record in a cell under its target counts once the data leaves that cell short
    gap = value_order(SPEC, [plain])[0]
    assert gap.reasons[0].startswith("uncovered_cell: typical x valid-json")


def test_cluster_sizes_from_clusters_rows():
    rows = [{"kept": "a", "dropped": "b"}, {"kept": "a", "dropped": "c"}, {"kept": "d", "dropped": "e"}]
    assert cluster_sizes(rows) == {"a": 3, "d": 2}


def test_simulation_value_order_finds_at_least_twice_as_many_planted_errors():
    script = REPO / "scripts" / "sim_review_order.py"
    out = subprocess.run(
        [sys.executable, str(script), "--seeds", "5", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    rep = json.loads(out.stdout)
    assert rep["overall"]["planted"] == 5 * 19
    assert rep["overall"]["ratio"] >= 2.0
    assert rep["by_kind"]["false_violation"]["value_found"] == 1.0  # the checks contradict every one of them
