"""The HTML report on a synthetic build folder: sections, charts, figures, escaping, tolerance, CLI."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.errors import InputError
from curate.report import load_report_data, render_report, write_report
from curate.report.data import text_key

from .synthetic import IMG, SCRIPT, SVG_NAME, make_out_dir

CHARTS = [
    "chart-conservation",
    "chart-rule-pass",
    "chart-coverage",
    "chart-shares",
    "chart-len-sft-train",
    "chart-len-sft-test",
    "chart-len-dpo-train",
    "chart-len-dpo-test",
    "chart-quarantine",
    "chart-dedup",
]
EXTRA_CHARTS = [
    "chart-agreement-questions",
    "chart-agreement-rules",
    "chart-eval-rules",
    "chart-eval-categories",
]


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.text.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


def charts(html: str) -> dict[str, str]:
    """chart id -> its SVG markup."""
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'<svg id="([^"]+)" class="chart[^"]*".*?</svg>', html, re.DOTALL)
    }


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return make_out_dir(tmp_path)


def test_write_report_atomic_and_complete(out: Path) -> None:
    path = write_report(out)
    assert path == out / "report.html" and path.is_file()
    assert [p.name for p in out.iterdir() if p.name.startswith(".report.html")] == []  # no temp file left
    html = path.read_text()
    for sid in (
        "counts",
        "coverage",
        "lengths",
        "quarantine",
        "duplicates",
        "leakage",
        "agreement",
        "evaluation",
    ):
        assert f'<section id="{sid}">' in html
    found = charts(html)
    assert sorted(found) == sorted(CHARTS + EXTRA_CHARTS)
    for cid, svg in found.items():
        assert svg.count('class="mark') > 0, f"{cid} drew no marks"
        assert "chart empty" not in svg


def test_hostile_data_is_text_not_markup(out: Path) -> None:
    html = render_report(out)
    tags = parse(html)
    names = [t for t, _ in tags.tags]
    assert "script" not in names and "img" not in names
    assert [t for t, a in tags.tags if any(k.startswith("on") for k in a)] == []
    assert "<script>window" not in html and "<img src=x" not in html and "<svg onload" not in html
    text = "".join(tags.text)
    assert SCRIPT in text  # shown, as text, in the quarantine and duplicate sections
    assert IMG in text
    assert SVG_NAME in text  # a file name inside SVG <text> too
    assert "&lt;svg onload=window.__pwned=3&gt;" in charts(html)["chart-conservation"]
    assert "&lt;b&gt;SmolLM2-135M&lt;/b&gt;" in charts(html)["chart-eval-rules"]


def test_offline_and_locked_down(out: Path) -> None:
    html = render_report(out)
    tags = parse(html)
    csp = [
        a["content"] for t, a in tags.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp and "default-src 'none'" in csp[0] and "script-src" not in csp[0]
    for tag, attrs in tags.tags:
        assert "src" not in attrs, tag
        if "href" in attrs and tag != "svg":
            assert str(attrs["href"]).startswith("#"), attrs
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)


def test_conservation_per_file_and_broken(out: Path) -> None:
    html = render_report(out)
    assert "87 = 77 + 7 + 3" in html and "8 = 5 + 2 + 1" in html and "95 = 82 + 9 + 4" in html
    m = json.loads((out / "manifest.json").read_text())
    m["inputs"][1]["exported"] = 4
    m["counts"]["exported"] -= 1
    m["conservation"]["ok"] = False
    (out / "manifest.json").write_text(json.dumps(m))
    html = render_report(out)
    assert "8 ≠ 4 + 2 + 1" in html and "95 ≠ 81 + 9 + 4" in html
    assert html.count('<span class="badge bad">broken</span>') == 2  # that file and the total
    assert '<div class="card bad"><div class="k">conservation</div><div class="v">✗' in html


def test_coverage_marks_cells_under_target(out: Path) -> None:
    html = render_report(out)
    cells = json.loads((out / "manifest.json").read_text())["coverage"]["cells"]
    under = [c for c in cells if c["count"] < c["target"]]
    heat = charts(html)["chart-coverage"]
    assert heat.count('class="mark cell under"') == len(under) > 0
    assert heat.count('class="mark cell ok"') == len(cells) - len(under)
    assert "edge × no-question-when-complete: 1 of target 2 (under target)" in heat
    assert f"{len(under)} cell(s) under target" in html


def test_quarantine_counts_and_examples(out: Path) -> None:
    d = load_report_data(out)
    assert [(g.step, g.reason, g.count) for g in d.reasons] == [
        ("validate", "rule_failed", 5),
        ("read", "bad_json", 2),
        ("read", "python_literal", 1),
        ("validate", "too_long", 1),
    ]
    assert [len(g.examples) for g in d.reasons] == [3, 2, 1, 1]
    html = render_report(out)
    bars = charts(html)["chart-quarantine"]
    assert "<title>validate / rule_failed: 5</title>" in bars and "<title>read / bad_json: 2</title>" in bars
    assert "data/data.jsonl:40" in html and "5 record(s), 3 shown" in html


def test_duplicate_clusters_largest_first_with_both_texts(out: Path) -> None:
    d = load_report_data(out)
    assert [c.size for c in d.clusters] == [3, 2, 2]
    assert d.cluster_rows == 4 and d.cluster_methods == {"exact": 2, "near": 2}
    big = d.clusters[0]
    assert text_key(big.kept, "data/seed.jsonl:1") == "data/seed.jsonl:1"
    # kept: no such source file, so found by id in sft/train.jsonl
    assert ("user", "forgot my password, email is jenny.ko@outlook.com") in d.texts["data/seed.jsonl:1"]
    # dropped exact twin (same id as the kept one): its own text, from its source line
    assert ("user", "FORGOT my password,  email is jenny.ko@outlook.com") in d.texts["data/data.jsonl:1"]
    assert ("user", "forgot my pasword, email is jenny.ko@outlook.com") in d.texts["data/data.jsonl:3"]
    assert any("My avatar upload" in t for _, t in d.texts[f"{SVG_NAME}:12"])  # dropped_text
    html = render_report(out)
    assert html.index("cluster of 3") < html.index("cluster of 2")
    assert "score 0.930" in html and "data/data.jsonl:3" in html and "both imported: earliest kept" in html
    assert "text not found" not in html


def test_leakage_shown(tmp_path: Path) -> None:
    html = render_report(make_out_dir(tmp_path, leakage=True))
    assert "2 leak(s) between train and held-out" in html
    leak = html.split('id="leakage"')[1]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in leak
    assert "<th>train</th><th>test</th><th>method</th><th>score</th><th>text</th>" in leak and "0.910" in leak
    clean = render_report(make_out_dir(tmp_path / "b"))
    assert "no leakage between train and held-out" in clean


def test_optional_sections_only_when_files_exist(tmp_path: Path) -> None:
    html = render_report(make_out_dir(tmp_path, extras=False))
    assert 'id="agreement"' not in html and 'id="evaluation"' not in html
    assert sorted(charts(html)) == sorted(CHARTS)


def test_eval_before_after_and_agreement(out: Path) -> None:
    html = render_report(out)
    ev = html.split('<section id="evaluation">')[1]
    assert ev.index("baseline &lt;b&gt;") < ev.index("tuned &lt;b&gt;")  # oldest first
    assert "+78 pt" in ev and "+85 pt" in ev
    rules = charts(html)["chart-eval-rules"]
    assert rules.count('class="mark"') == 2 * 9  # 8 rules + overall, two evaluations
    assert "valid-json · tuned &lt;b&gt;SmolLM2 + SFT&lt;/b&gt;: 90%" in rules
    assert "valid JSON" in ev and "over-refusal (lower is better)" in ev
    assert '20% <span class="badge bad">+10 pt</span>' in ev  # more over-refusal is worse
    # agreement.json as `curate label pull` writes it: two kinds, so labels carry the kind
    questions = charts(html)["chart-agreement-questions"]
    assert questions.count('class="mark"') == 4  # verdict, category, note, comparison
    assert "review: verdict: 0.74 · krippendorff_alpha · observed 85% · 40 items" in questions
    assert "pairwise: comparison: 0.55 · cohen_kappa" in questions
    rules = charts(html)["chart-agreement-rules"]
    assert rules.count('class="mark"') == 9  # 8 rules + pairwise no-action-claims
    assert "review: polite-and-brief: n/a · krippendorff_alpha · observed 100%" in rules
    assert "conflicts: <strong>1</strong>" in html
    assert "evals/compare.json: not an evaluation" in html


def test_agreement_plain_maps(tmp_path: Path) -> None:
    out = make_out_dir(tmp_path, extras=False)
    (out / "agreement.json").write_text(
        json.dumps(
            {
                "per_question": [{"question": "verdict", "kappa": 0.5}],
                "per_rule": {"valid-json": 0.9, "tone": -0.2},
            }
        )
    )
    html = render_report(out)
    assert charts(html)["chart-agreement-questions"].count('class="mark"') == 1
    rules = charts(html)["chart-agreement-rules"]
    assert rules.count('class="mark"') == 2 and "tone: -0.20" in rules


def test_missing_manifest_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no manifest.json"):
        write_report(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_minimal_manifest_and_broken_extras_still_render(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"spec": {"ref": "x@1"}, "counts": {"in": 0}}))
    (tmp_path / "agreement.json").write_text("{broken")
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / "read.jsonl").write_text('{"step": "read", "reason": "bad_json"}\nnot json\n')
    html = write_report(tmp_path).read_text()
    assert "agreement.json: cannot read" in html
    assert "read.jsonl: 1 unreadable line(s) skipped by the report" in html
    found = charts(html)
    assert charts(html)["chart-quarantine"].count('class="mark"') == 1
    assert "chart empty" in found["chart-coverage"] and "chart empty" in found["chart-dedup"]


def test_lengths_unit(out: Path) -> None:
    assert "Lengths in <strong>tokens</strong> (counted with the build's tokenizer)" in render_report(out)
    m = json.loads((out / "manifest.json").read_text())
    m["lengths"]["estimated"] = True
    (out / "manifest.json").write_text(json.dumps(m))
    assert "Lengths in <strong>tokens</strong> (estimated: no tokenizer" in render_report(out)
    m["lengths"]["unit"] = "chars"
    (out / "manifest.json").write_text(json.dumps(m))
    html = render_report(out)
    assert "Lengths in <strong>characters</strong>" in html and "limit 1,024" not in html
    hist = charts(html)["chart-len-sft-train"]
    assert f"n={len(m['lengths']['sft']['train'])}" in hist


def test_lengths_limit_and_zero_rows_flagged(out: Path) -> None:
    assert "every row is within the limit of 1,024 tokens" in render_report(out)
    m = json.loads((out / "manifest.json").read_text())
    m["lengths"]["dpo"]["train"] += [0, 0, 2000]
    (out / "manifest.json").write_text(json.dumps(m))
    html = render_report(out)
    assert "1 row(s) over the limit of 1,024 tokens" in html and "rows of length 0: dpo/train: 2" in html
    assert "limit 1,024" in charts(html)["chart-len-dpo-train"]


def test_cli(out: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["report", str(out)])
    assert r.exit_code == 0 and r.stdout.strip() == str((out / "report.html").resolve())
    r = runner.invoke(main, ["report", str(out), "--open-path"])
    assert r.stdout.strip() == (out / "report.html").resolve().as_uri()
    target = tmp_path / "elsewhere" / "r.html"
    r = runner.invoke(main, ["report", str(out), "--out-file", str(target), "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["report"] == str(target.resolve()) and target.is_file()
    assert doc["sections"][-2:] == ["agreement", "evaluation"]
    assert doc["warnings"] == [
        (
            "evals/compare.json: not an evaluation from `curate eval --json-out` "
            "(kind 'curate-eval-compare'); not shown"
        )
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(main, ["report", str(empty)])
    assert r.exit_code == 1
    assert r.output.strip() == (
        f"error: {empty}: no manifest.json; point at a build output folder (run `curate build SPEC` first)"
    )


def test_histogram_axis_starts_near_long_rows() -> None:
    from curate.report.svg import histogram_chart

    svg = histogram_chart("h", list(range(400, 500)), title="t", unit="tokens", x_min=360)
    x_ticks = re.findall(r'font-size="10">([\d,]+)</text>', svg)[-4:]  # after the y-axis ticks
    assert x_ticks == ["350", "400", "450", "500"]
    assert svg.count('class="mark"') > 5 and "n=100 · median 450 · p95 494 · max 499" in svg


def test_split_scan_finds_ids_past_nested_and_escaped_ids(tmp_path: Path) -> None:
    """The split scan parses only rows whose top-level id may be wanted: a tool call's nested "id" (before the
    row's own), an escaped one inside a text and a broken line must not hide a wanted row or make it skip one."""
    from curate.report.data import ReportData, _scan_splits

    rows = [
        {
            "messages": [
                {"role": "user", "content": 'say {"id":"aaaa"}'},
                {"role": "assistant", "content": "ok"},
            ],
            "id": "bbbb",
        },
        {
            "messages": [
                {"role": "assistant", "content": "", "tool_calls": [{"id": "aaaa", "type": "function"}]}
            ],
            "id": "cccc",
        },
        {
            "messages": [{"role": "user", "content": "wanted"}, {"role": "assistant", "content": "yes"}],
            "id": "aaaa",
            "tools": '[{"id":"zzzz"}]',
        },
    ]
    (tmp_path / "sft").mkdir()
    lines = [json.dumps(r, separators=(",", ":")) for r in rows]
    (tmp_path / "sft" / "train.jsonl").write_text("\n".join([lines[0], "{broken", lines[1], lines[2]]) + "\n")
    data = ReportData(out_dir=tmp_path, manifest={})
    _scan_splits(data, {"aaaa": ["k1"], "cccc": ["k2"], "dddd": ["k3"]})
    assert data.texts["k1"] == [("user", "wanted"), ("assistant", "yes")]
    assert "k2" in data.texts and "k3" not in data.texts
    assert any("1 unreadable line" in w for w in data.warnings)


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
def test_lines_at_equals_iterating_the_file(tmp_path: Path, block: int) -> None:
    """The report cuts wanted source lines out of blocks: the same bytes as iterating the binary file."""
    import random

    from curate.report.data import _lines_at

    rng = random.Random(block)
    for case in range(20):
        parts = [
            rng.choice([b"", b"a", b'{"x": 1}', b"\r", b"long line " * rng.randint(1, 9)]) for _ in range(30)
        ]
        raw = b"\n".join(parts) + rng.choice([b"", b"\n", b"tail"])
        path = tmp_path / f"f{case}.jsonl"
        path.write_bytes(raw)
        with open(path, "rb") as fh:
            every = {no: line for no, line in enumerate(fh, start=1)}
        wanted = sorted(rng.sample(range(1, len(every) + 3), min(6, len(every))))
        assert list(_lines_at(path, wanted, block=block)) == [(n, every[n]) for n in wanted if n in every]
