#!/usr/bin/env python
"""Write a build's report.html and screenshot it in headless Chromium (the picture the README shows).

    .venv/bin/python scripts/screenshot_report.py --build specs/support-triage        # -> docs/screenshots/report.png
    .venv/bin/python scripts/screenshot_report.py out/support-triage/v1 --png /tmp/report.png
    .venv/bin/python scripts/screenshot_report.py out/support-triage/v1 --full --png /tmp/full.png
    .venv/bin/python scripts/screenshot_report.py --synthetic --png /tmp/synthetic.png  # the test fixture's folder

Prints the PNG path, its size, and what the page holds (charts, marks, fetched URLs) as a check.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.report import write_report
from curate.report.browser import Chromium


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", type=Path, help="a build output folder (holds manifest.json)")
    ap.add_argument("--build", metavar="SPEC", help="run `curate build SPEC` into a temporary folder first")
    ap.add_argument("--synthetic", action="store_true", help="use the tests' synthetic build folder instead")
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "screenshots" / "report.png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000, help="height of the picture (ignored with --full)")
    ap.add_argument("--full", action="store_true", help="the whole page, however long")
    args = ap.parse_args()
    if sum((args.synthetic, args.out_dir is not None, args.build is not None)) != 1:
        ap.error("give one of OUT_DIR, --build SPEC or --synthetic")
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            sys.path.insert(0, str(REPO / "tests" / "report"))
            from synthetic import make_out_dir

            out_dir = make_out_dir(Path(tmp))
        elif args.build:
            os.chdir(REPO)  # the build records source paths relative to here; the report reads them back
            out_dir = Path(tmp) / "build"
            subprocess.run(
                [sys.executable, "-m", "curate", "build", args.build, "--out", str(out_dir), "--quiet"],
                check=True,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
            )
        else:
            out_dir = args.out_dir
        report = write_report(out_dir)
        with Chromium() as browser:
            page = browser.open(report, width=args.width)
            charts = page.evaluate(
                "Array.from(document.querySelectorAll('svg.chart'))"
                ".map(s => s.id + ':' + s.querySelectorAll('.mark').length)"
            )
            page.screenshot(
                args.png, width=args.width, full_page=args.full, height=None if args.full else args.height
            )
            print(f"report: {report}")
            print(f"charts: {' '.join(charts)}")
            print(f"fetched: {page.requests()}")
    print(f"png: {args.png} ({args.png.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
