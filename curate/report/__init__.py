"""The build report: one self-contained HTML page with static SVG charts, written beside the export.

    >>> from curate.report import write_report
    >>> path = write_report("out/support-triage/v1")     # doctest: +SKIP
    >>> path.name
    'report.html'

It reads manifest.json (required), quarantine/*.jsonl, clusters.jsonl, the sft/dpo splits, lengths.parquet
and, when present, agreement.json and evals/*.json. No JavaScript and nothing fetched: the page works offline and from a file,
and every value from the data is escaped (the data holds adversarial prompts).
"""

from __future__ import annotations

import logging
from pathlib import Path

from curate.records import write_atomic
from curate.report.data import ReportData, load_report_data
from curate.report.render import render_html

__all__ = ["ReportData", "load_report_data", "render_report", "write_report"]

log = logging.getLogger(__name__)


def render_report(out_dir: str | Path) -> str:
    """The report of a build output folder as an HTML string."""
    return render_html(load_report_data(out_dir))


def write_report(out_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write `out_dir/report.html` (or `path`) atomically and return its path."""
    out = Path(out_dir)
    data = load_report_data(out)
    target = Path(path) if path is not None else out / "report.html"
    write_atomic(target, render_html(data).encode("utf-8"))
    log.info("report written to %s (%d warning(s))", target, len(data.warnings))
    return target
