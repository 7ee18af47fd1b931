"""The report in a real headless Chromium: every chart rendered, the injected script did not run, nothing fetched.

Needs Debian's chromium (scripts/test installs it); no skip when it is missing: the test fails.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from curate.report import write_report
from curate.report.browser import Chromium, find_chromium

from .synthetic import IMG, SCRIPT, SVG_NAME, make_out_dir
from .test_report import CHARTS, EXTRA_CHARTS

pytestmark = pytest.mark.browser

HOSTILE_DOM = """(() => {
  const all = Array.from(document.querySelectorAll('*'));
  return {
    pwned: typeof window.__pwned,
    scripts: document.querySelectorAll('script').length,
    imgs: document.querySelectorAll('img').length,
    handlers: all.filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).map(e => e.tagName),
    text: document.body.innerText,
  };
})()"""

CHARTS_DOM = """Array.from(document.querySelectorAll('svg.chart')).map(s => {
  const r = s.getBoundingClientRect();
  const marks = Array.from(s.querySelectorAll('.mark'));
  return {id: s.id, marks: marks.length, w: r.width, h: r.height,
          drawn: marks.filter(m => { const b = m.getBBox(); return b.width > 0 && b.height > 0; }).length};
})"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    assert find_chromium(), "chromium is missing: scripts/test installs it (apt-get install -y chromium)"
    with Chromium() as b:
        yield b


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_renders_every_chart_and_runs_no_injected_script(browser: Chromium, tmp_path: Path) -> None:
    report = write_report(make_out_dir(tmp_path, leakage=True))
    page = browser.open(report)

    dom = page.evaluate(HOSTILE_DOM)
    assert dom["pwned"] == "undefined"
    assert dom["scripts"] == 0 and dom["imgs"] == 0 and dom["handlers"] == []
    for literal in (SCRIPT, IMG, SVG_NAME):
        assert literal in dom["text"], literal  # visible as text

    rendered = {c["id"]: c for c in page.evaluate(CHARTS_DOM)}
    assert sorted(rendered) == sorted(CHARTS + EXTRA_CHARTS)
    for c in rendered.values():
        assert c["marks"] > 0 and c["drawn"] == c["marks"], c
        assert c["w"] > 100 and c["h"] > 40, c
    heat = page.evaluate("document.querySelectorAll('#chart-coverage .mark.under').length")
    assert heat > 0

    assert page.requests() == [report.resolve().as_uri()]  # nothing else fetched

    shot = page.screenshot(tmp_path / "report.png")
    width, height = png_size(shot)
    assert width == 1280 and height > 3000


def test_harness_catches_a_script_that_runs(browser: Chromium, tmp_path: Path) -> None:
    """Control: the same checks on a page that does NOT escape; they must see the script run."""
    bad = tmp_path / "bad.html"
    bad.write_text(f"<!DOCTYPE html><html><body><p>{SCRIPT}</p></body></html>")
    dom = browser.open(bad).evaluate(HOSTILE_DOM)
    assert dom["pwned"] == "number" and dom["scripts"] == 1 and SCRIPT not in dom["text"]
