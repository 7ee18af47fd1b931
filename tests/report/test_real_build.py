"""The report of a real `curate build` (support-triage's data plus a file of broken lines), in the DOM and in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from curate.report import load_report_data
from curate.report.browser import Chromium
from curate.steps.pipeline import build

from .test_browser import CHARTS_DOM, HOSTILE_DOM
from .test_report import charts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "out" / "support-triage" / "v1"
    spec = REPO / "specs" / "support-triage"
    build(spec, inputs=[spec / "data.jsonl", REPO / "tests" / "data" / "build" / "bad.jsonl"], out=out)
    return out


def test_build_writes_the_report_with_its_figures(built: Path) -> None:
    html = (built / "report.html").read_text()  # written by the build itself
    m = json.loads((built / "manifest.json").read_text())
    assert m["counts"]["quarantined"] > 0 and m["counts"]["duplicates"] > 0
    for inp in m["inputs"]:
        eq = f"{inp['in']:,} = {inp['exported']:,} + {inp['quarantined']:,} + {inp['duplicates']:,}"
        assert eq in html, eq
    found = charts(html)
    assert found["chart-coverage"].count('class="mark') == len(m["coverage"]["cells"])
    bars = found["chart-quarantine"]
    assert bars.count('class="mark"') == len([k for k, n in m["quarantine"].items() if n])
    for key, n in m["quarantine"].items():
        step, reason = key.split("/", 1)
        assert f"<title>{step} / {reason}: {n:,}</title>" in bars
    assert found["chart-dedup"].count('class="mark"') == len(
        [v for k, v in m["dedup"].items() if k in ("exact", "near", "semantic") and v]
    )
    d = load_report_data(built)
    assert d.cluster_rows == m["counts"]["duplicates"] and d.clusters
    assert "text not found" not in html  # every shown kept and dropped text was found
    assert not re.search(r"<script|onerror=", html)


def test_real_report_in_chromium(built: Path) -> None:
    with Chromium() as browser:
        page = browser.open(built / "report.html")
        dom = page.evaluate(HOSTILE_DOM)
        assert dom["pwned"] == "undefined" and dom["scripts"] == 0 and dom["handlers"] == []
        rendered = page.evaluate(CHARTS_DOM)
        assert len(rendered) >= 9
        for c in rendered:
            assert c["marks"] > 0 and c["drawn"] == c["marks"], c
        assert page.requests() == [(built / "report.html").resolve().as_uri()]
