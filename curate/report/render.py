"""Render ReportData as one self-contained HTML page: inline CSS, inline SVG charts, no script at all.

Every value from the data goes through `esc` (html.escape with quotes); a Content-Security-Policy that allows no
script and no network fetch is a second belt, not the first: the page must be safe with escaping alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from curate.report import svg
from curate.report.data import ReportData, conversation, parse_source, text_key
from curate.report.svg import Cell, esc, fmt_num

# the export kinds; prompts / text: unlabeled prompts, in a build that has them
EXPORT_KINDS = ("sft", "dpo", "prompts", "text")
TURN_CHARS = 700
ORIGINAL_CHARS = 900
SHOWN_DROPS = 3

CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff; --blue:#3867d6;
        --ok:#1f9d8b; --bad:#d64545; --warn:#e58e26; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background:#1f2933; color:#fff; padding:22px 0 18px; }
header.top .wrap { display:flex; justify-content:space-between; align-items:flex-end; gap:24px; flex-wrap:wrap; }
header.top h1 { margin:0; font-size:22px; font-weight:650; letter-spacing:-0.01em; }
header.top .sub { color:#cbd2d9; font-size:13px; margin-top:4px; }
header.top code { color:#e4e7eb; background:rgba(255,255,255,0.08); }
.wrap { max-width:1120px; margin:0 auto; padding:0 24px; }
nav.toc { position:sticky; top:0; z-index:2; background:rgba(245,247,250,0.96); border-bottom:1px solid var(--line); }
nav.toc .wrap { display:flex; gap:4px; overflow-x:auto; padding-top:6px; padding-bottom:6px; }
nav.toc a { color:var(--muted); text-decoration:none; padding:4px 10px; border-radius:6px; white-space:nowrap;
            font-size:13px; }
nav.toc a:hover { background:#e4e7eb; color:var(--ink); }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:12px; margin:20px 0 8px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:0.04em; }
.card .v { font-size:26px; font-weight:650; font-variant-numeric:tabular-nums; }
.card .d { color:var(--muted); font-size:12px; }
.card.ok { border-color:#9fd8cf; background:#effaf8; } .card.bad { border-color:#f4a9a9; background:#fdf0f0; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:18px 22px 20px;
          margin:18px 0; }
section h2 { margin:0 0 4px; font-size:18px; }
section p.lead { margin:0 0 14px; color:var(--muted); }
h3 { font-size:14px; margin:18px 0 8px; }
.chartbox { overflow-x:auto; }
svg.chart { max-width:100%; height:auto; display:block; }
svg.chart text { font-family: inherit; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; margin:6px 0 4px; }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12.5px; }
td.n, th.n { text-align:right; }
.eq { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:13px; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600; }
.badge.ok { background:#d9f2ee; color:#136c60; } .badge.bad { background:#fbdada; color:#a61b1b; }
.badge.neutral { background:#e4e7eb; color:#3e4c59; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(430px, 1fr)); gap:10px 18px; }
details { border:1px solid var(--line); border-radius:8px; margin:8px 0; background:#fbfcfd; }
details > summary { cursor:pointer; padding:8px 12px; font-weight:600; }
details > summary .cnt { color:var(--muted); font-weight:400; margin-left:6px; }
.ex { border-top:1px solid var(--line); padding:8px 12px; }
.ex .meta { color:var(--muted); font-size:12px; margin-bottom:4px; }
pre, .turn .txt { white-space:pre-wrap; word-break:break-word; margin:0;
       font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background:#f5f7fa; border:1px solid var(--line); border-radius:6px; padding:8px 10px; max-height:220px;
      overflow:auto; }
.pair { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
.cluster { border:1px solid var(--line); border-radius:10px; padding:10px 12px; margin:12px 0; }
.cluster .head { display:flex; gap:10px; align-items:center; flex-wrap:wrap; margin-bottom:8px; }
.side { border-radius:8px; padding:8px 10px; min-width:0; }
.side.kept { background:#effaf8; border:1px solid #bfe6df; align-self:start; }
.drops { display:flex; flex-direction:column; gap:8px; min-width:0; } .side.dropped { background:#fdf6ec;
  border:1px solid #f3d9b1; }
.side .lbl { font-size:12px; color:var(--muted); margin-bottom:4px; } .side .lbl b { color:var(--ink);
  text-transform:uppercase; font-size:11px; letter-spacing:0.05em; }
.turn { margin:4px 0; } .turn .role { font-size:11px; font-weight:700; color:var(--muted); }
.warn { background:#fff8e6; border:1px solid #f3d9b1; border-radius:8px; padding:8px 12px; color:#7a4a00; }
.muted { color:var(--muted); }
.orig { background:#f5f7fa; border:1px solid var(--line); border-radius:6px; padding:6px 10px; } .narrow { max-width:520px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px;
       background:#f0f2f5; padding:1px 5px; border-radius:4px; }
footer { color:var(--muted); font-size:12px; padding:10px 0 40px; }
@media print { nav.toc { display:none; } section { break-inside:avoid; } }
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _n(v: Any) -> str:
    return (
        fmt_num(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool)
        else esc(v if v is not None else "–")
    )


def _pct(v: Any) -> str:
    return f"{v:.0%}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Sequence[int] = (),
    table_id: str | None = None,
) -> str:
    """Cells are already-escaped HTML."""
    tid = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(
        f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(ok: bool | None, yes: str = "ok", no: str = "fails") -> str:
    if ok is None:
        return '<span class="badge neutral">unknown</span>'
    return f'<span class="badge ok">{esc(yes)}</span>' if ok else f'<span class="badge bad">{esc(no)}</span>'


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f"… [{len(text):,} chars]"


def _turns_html(turns: list[tuple[str, str]], *, skip_system: bool = True) -> str:
    shown = [(r, t) for r, t in turns if not (skip_system and r == "system")]
    if not shown:
        return '<div class="muted">(empty)</div>'
    return "".join(
        f'<div class="turn"><div class="role">{esc(r)}</div><div class="txt">{esc(_clip(t, TURN_CHARS))}'
        f"</div></div>"
        for r, t in shown
    )


def _where(src: Any) -> str:
    src = parse_source(src)
    if not src:
        return "unknown source"
    if src.get("file"):
        return f"{src['file']}:{src['line']}" if src.get("line") else str(src["file"])
    if src.get("task") is not None:
        return f"project {src.get('project')} task {src.get('task')} annotation {src.get('annotation')}"
    if src.get("generator"):
        return f"generated by {src['generator']}"
    return "unknown source"


def _section(sid: str, title: str, lead: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2><p class="lead">{lead}</p>{body}</section>'


def _chart(svg_html: str) -> str:
    return f'<div class="chartbox">{svg_html}</div>'


# --------------------------------------------------------------------------------------------- sections


def _summary(d: ReportData) -> str:
    m = d.manifest
    counts = m.get("counts") or {}
    cons = m.get("conservation") or {}
    ok = cons.get("ok")
    if ok is None and counts:
        ok = counts.get("in") == sum(
            int(counts.get(k) or 0) for k in ("exported", "quarantined", "duplicates")
        )
    splits = []
    for fmt in EXPORT_KINDS:
        s = counts.get(fmt) or {}
        if s:
            splits.append(f"{fmt} {fmt_num(s.get('train', 0))} / {fmt_num(s.get('test', 0))}")
    cards = [
        ("in", _n(counts.get("in")), "records read", ""),
        (
            "exported",
            _n(counts.get("exported")),
            esc(" · ".join(splits) + " (train / test)") if splits else "",
            "",
        ),
        ("quarantined", _n(counts.get("quarantined")), f"{len(d.reasons)} reason(s)", ""),
        ("duplicates", _n(counts.get("duplicates")), f"{fmt_num(d.cluster_count)} cluster(s)", ""),
        (
            "conservation",
            "✓" if ok else ("✗" if ok is not None else "?"),
            "in = exported + quarantined + duplicates",
            "ok" if ok else ("bad" if ok is not None else ""),
        ),
    ]
    leak = m.get("leakage") or {}
    if leak:
        n_leak = int(leak.get("exact") or 0) + int(leak.get("near") or 0)
        cards.append(("leakage", fmt_num(n_leak), "train ↔ held-out matches", "ok" if n_leak == 0 else "bad"))
    return (
        '<div class="cards" id="summary">'
        + "".join(
            f'<div class="card {cls}"><div class="k">{esc(k)}</div><div class="v">{v}</div><div class="d">{dd}</div></div>'
            for k, v, dd, cls in cards
        )
        + "</div>"
    )


def _conservation(d: ReportData) -> str:
    m = d.manifest
    inputs = [i for i in (m.get("inputs") or []) if isinstance(i, dict)]
    rows = []
    chart_rows = []
    for inp in inputs:
        vals = [int(inp.get(k) or 0) for k in ("in", "exported", "quarantined", "duplicates")]
        ok = vals[0] == sum(vals[1:])
        eq = f"{fmt_num(vals[0])} = {fmt_num(vals[1])} + {fmt_num(vals[2])} + {fmt_num(vals[3])}"
        if not ok:
            eq = f"{fmt_num(vals[0])} ≠ {fmt_num(vals[1])} + {fmt_num(vals[2])} + {fmt_num(vals[3])}"
        rows.append(
            [
                f"<code>{esc(inp.get('file', '?'))}</code>",
                esc(inp.get("format", "")),
                f'<span class="eq">{esc(eq)}</span>',
                _badge(ok, "holds", "broken"),
            ]
        )
        chart_rows.append((str(inp.get("file", "?")), vals[1:]))
    c = m.get("counts") or {}
    if c:
        vals = [int(c.get(k) or 0) for k in ("in", "exported", "quarantined", "duplicates")]
        cons_ok = (m.get("conservation") or {}).get("ok", vals[0] == sum(vals[1:]))
        sign = "=" if vals[0] == sum(vals[1:]) else "≠"
        total_eq = f"{fmt_num(vals[0])} {sign} " + " + ".join(fmt_num(v) for v in vals[1:])
        rows.append(
            [
                "<strong>all inputs</strong>",
                "",
                f'<span class="eq"><strong>{esc(total_eq)}</strong></span>',
                _badge(bool(cons_ok), "holds", "broken"),
            ]
        )
    chart = svg.stacked_hbar_chart(
        "chart-conservation",
        chart_rows,
        parts=("exported", "quarantined", "duplicates"),
        colors=(svg.BLUE, svg.ORANGE, svg.GREY),
        title="records per input file",
    )
    table = _table(
        ["input file", "format", "in = exported + quarantined + duplicates", ""],
        rows,
        table_id="conservation-table",
    )
    split_rows = []
    for fmt in EXPORT_KINDS:
        s = c.get(fmt) or {}
        if s:
            split_rows.append([esc(fmt), _n(s.get("train")), _n(s.get("test"))])
    splits = (
        (
            f'<div class="narrow">{_table(["export", "train", "held-out (test)"], split_rows, numeric=(1, 2))}'
            "</div>"
        )
        if split_rows
        else ""
    )
    return _section(
        "counts",
        "Counts and conservation",
        "Every record read ends up exported, quarantined with a reason, or removed as a duplicate. "
        "The equation must hold for every input file.",
        _chart(chart) + table + splits,
    )


def _coverage(d: ReportData) -> str:
    cov = d.manifest.get("coverage") or {}
    cells_raw = [c for c in (cov.get("cells") or []) if isinstance(c, dict)]
    rows: list[str] = []
    cols: list[str] = []
    cells = []
    for c in cells_raw:
        r, k = str(c.get("category", "?")), str(c.get("rule", "?"))
        if r not in rows:
            rows.append(r)
        if k not in cols:
            cols.append(k)
        cells.append(Cell(r, k, int(c.get("count") or 0), int(c.get("target") or 0)))
    under = [c for c in cells if c.under]
    heat = svg.heatmap_chart(
        "chart-coverage", rows, cols, cells, title="coverage: records per category and rule"
    )
    cats = [c for c in (cov.get("categories") or []) if isinstance(c, dict)]
    share_chart = svg.hbar_chart(
        "chart-shares",
        [(str(c.get("name")), float(c.get("share") or 0)) for c in cats],
        title="share of each case category",
        lo=0.0,
        hi=1.0,
        width=470,
        value_fmt=lambda v: f"{v:.0%}",
        colors=[svg.TEAL if c.get("ok", True) else svg.RED for c in cats],
        tooltips=[
            f"{c.get('name')}: {float(c.get('share') or 0):.1%} of records ({fmt_num(c.get('count') or 0)}), "
            f"target ≥ {float(c.get('min_share') or 0):.0%}"
            for c in cats
        ],
    )
    share_rows = [
        [
            esc(c.get("name")),
            _n(c.get("count")),
            _pct(c.get("share")),
            "≥ " + _pct(c.get("min_share")),
            _badge(c.get("ok"), "ok", "under"),
        ]
        for c in cats
    ]
    if under:
        msg = (
            f'<p><span class="badge bad">{len(under)} cell(s) under target</span> '
            + ", ".join(f"<code>{esc(c.row)} × {esc(c.col)}</code> ({c.count}/{c.target})" for c in under[:6])
            + (f" and {len(under) - 6} more" if len(under) > 6 else "")
            + "</p>"
        )
    else:
        msg = '<p><span class="badge ok">every cell meets its target</span></p>' if cells else ""
    body = (
        msg
        + _chart(heat)
        + '<p class="muted">Each cell: records of that case category where the rule applies '
        "and passes (for negative examples: where it is violated), against the spec's minimum per cell. "
        "Hatched red cells with ▼ are under target.</p>"
        + '<div class="grid2"><div>'
        + _chart(share_chart)
        + "</div><div>"
        + _table(["category", "records", "share", "target", ""], share_rows, numeric=(1, 2, 3))
        + "</div></div>"
    )
    return _section(
        "coverage", "Coverage", "Case category × automatic rule against the spec's targets.", body
    )


def _lengths(d: ReportData) -> str:
    lengths = d.manifest.get("lengths") or {}
    unit = str(lengths.get("unit") or "chars")
    unit_word = {"tokens": "tokens", "chars": "characters"}.get(unit, unit)
    limit = lengths.get("max_tokens") or (d.manifest.get("export") or {}).get("max_tokens")
    limit = int(limit) if unit == "tokens" and isinstance(limit, (int, float)) else None
    series = []
    for fmt in EXPORT_KINDS:
        for split in ("train", "test"):
            vals = d.lengths.get(fmt, {}).get(split)  # lengths.parquet, or an older manifest's lists
            if vals is not None:
                series.append((fmt, split, vals))
    if not series:
        return _section(
            "lengths",
            "Length distributions",
            "No lengths in the build.",
            _chart(svg.empty_chart("chart-len-none", "no length data")),
        )
    data_max = max((max(v) for *_, v in series if v), default=1)
    # The limit widens the axis only when it is near the data; far above it would squeeze every bar to the left.
    x_max = max(data_max, limit) if limit and limit <= 1.5 * data_max else data_max
    # Start the shared axis near the shortest row when every row is long (a system prompt in every row).
    data_min = min((min(v) for *_, v in series if v), default=0)
    x_min = data_min * 0.9 if data_min > 0.3 * x_max else 0.0
    charts = []
    for fmt, split, vals in series:
        name = "held-out (test)" if split == "test" else split
        charts.append(
            _chart(
                svg.histogram_chart(
                    f"chart-len-{fmt}-{split}",
                    vals,
                    title=f"{fmt} · {name}",
                    unit=unit_word,
                    x_max=x_max,
                    x_min=x_min,
                    limit=limit,
                    color=svg.BLUE if split == "train" else svg.TEAL,
                )
            )
        )
    if unit != "tokens":
        how = " (no tokenizer was given to the build, so characters are shown)."
    elif lengths.get("estimated"):
        how = " (estimated: no tokenizer was given to the build; pass <code>--tokenizer</code> for exact counts)."
    else:
        how = " (counted with the build's tokenizer)."
    notes = []
    if limit:
        over = sum(1 for *_, v in series for x in v if x > limit)
        notes.append(
            f'<span class="badge bad">{over:,} row(s) over the limit of {limit:,} {esc(unit_word)}</span>'
            if over
            else f'<span class="badge ok">every row is within the limit of {limit:,} {esc(unit_word)}</span>'
        )
    zeros = [
        f"{fmt}/{split}: {sum(1 for x in v if x <= 0):,}"
        for fmt, split, v in series
        if any(x <= 0 for x in v)
    ]
    if zeros:
        notes.append(f'<span class="badge bad">rows of length 0: {esc(", ".join(zeros))}</span>')
    lead = (
        f"Lengths in <strong>{esc(unit_word)}</strong>"
        + how
        + " Same x-axis for every split, so train and held-out compare at a glance."
    )
    body = (f"<p>{' '.join(notes)}</p>" if notes else "") + '<div class="grid2">' + "".join(charts) + "</div>"
    return _section("lengths", "Length distributions", lead, body)


def _original_text(original: Any) -> str:
    if isinstance(original, str):
        return original
    return orjson.dumps(original, default=str).decode()


def _original_html(original: Any) -> str:
    """A raw line as it was (a <pre>); a parsed record as its conversation, without the system turn."""
    if isinstance(original, dict):
        turns = conversation(original)
        if turns and turns[0][0] != "json":
            return f'<div class="orig">{_turns_html(turns)}</div>'
    return f"<pre>{esc(_clip(_original_text(original), ORIGINAL_CHARS))}</pre>"


def _quarantine(d: ReportData) -> str:
    if not d.reasons:
        return _section(
            "quarantine",
            "Quarantine",
            "Nothing was quarantined.",
            _chart(svg.empty_chart("chart-quarantine", "no quarantined records")),
        )
    items = [(f"{g.step} / {g.reason}", g.count) for g in d.reasons]
    chart = svg.hbar_chart(
        "chart-quarantine", items, title="quarantined records by step and reason", color=svg.ORANGE
    )
    blocks = []
    for i, g in enumerate(d.reasons):
        exs = []
        for row in g.examples:
            meta = f"{esc(_where(row.get('source')))}"
            if row.get("record_id"):
                meta += f" · record <code>{esc(row['record_id'])}</code>"
            exs.append(
                f'<div class="ex"><div class="meta">{meta}</div>'
                f"<div>{esc(row.get('detail', ''))}</div>{_original_html(row.get('original'))}</div>"
            )
        if not exs:
            exs.append('<div class="ex muted">no example rows in quarantine/ for this reason</div>')
        blocks.append(
            f'<details class="reason"{" open" if i < 2 else ""}><summary><code>{esc(g.step)}</code> / '
            f'<code>{esc(g.reason)}</code><span class="cnt">{fmt_num(g.count)} record(s), '
            f"{len(g.examples)} shown</span></summary>{''.join(exs)}</details>"
        )
    return _section(
        "quarantine",
        "Quarantine",
        "Records set aside, by step and stable reason code, with a few examples of each "
        "(file:line, detail, original text). All of them are in <code>quarantine/*.jsonl</code>.",
        _chart(chart) + "".join(blocks),
    )


def _duplicates(d: ReportData) -> str:
    dedup = d.manifest.get("dedup") or {}
    methods = {k: int(v) for k, v in d.cluster_methods.items()}
    for k in ("exact", "near", "semantic"):
        if k not in methods and isinstance(dedup.get(k), int):
            methods[k] = int(dedup[k])
    items = [
        (k, v)
        for k, v in sorted(
            methods.items(),
            key=lambda kv: (
                ("exact", "near", "semantic").index(kv[0]) if kv[0] in ("exact", "near", "semantic") else 9
            ),
        )
    ]
    chart = (
        svg.hbar_chart("chart-dedup", items, title="duplicates removed by method", color=svg.GREY, width=520)
        if any(v for _, v in items)
        else svg.empty_chart("chart-dedup", "no duplicates removed")
    )
    thr = dedup.get("threshold")
    lead = (
        "Removed duplicates by method"
        + (f" (near-duplicate threshold {esc(thr)})" if thr is not None else "")
        + f"; {fmt_num(d.cluster_rows)} removal(s) in {fmt_num(d.cluster_count)} cluster(s). The largest "
        "clusters below show the kept record beside the dropped ones, weakest match first (where a wrong "
        "removal is likeliest). Every removal is a row in <code>clusters.jsonl</code>."
    )
    cards = []
    missing = [("?", "(text not found in the output folder or the source file)")]
    for cl in d.clusters:
        first = cl.members[0]
        kept_html = _turns_html(d.texts.get(text_key(cl.kept, first.get("kept_source")), missing))
        drops = []
        for row in cl.members[:SHOWN_DROPS]:
            did = str(row.get("dropped"))
            score = row.get("score")
            score_s = f"{float(score):.3f}" if isinstance(score, (int, float)) else "–"
            why = f' · <span class="muted">{esc(row["why"])}</span>' if row.get("why") else ""
            drops.append(
                f'<div class="side dropped"><div class="lbl"><b>dropped</b> · <code>{esc(did)}</code> · '
                f'{esc(_where(row.get("dropped_source")))} · <span class="badge neutral">'
                f"{esc(row.get('method', '?'))}</span> score {esc(score_s)}{why}</div>"
                f"{_turns_html(d.texts.get(text_key(did, row.get('dropped_source')), missing))}</div>"
            )
        if len(cl.members) > SHOWN_DROPS:
            drops.append(f'<div class="muted">… and {len(cl.members) - SHOWN_DROPS} more dropped</div>')
        cards.append(
            f'<div class="cluster"><div class="head"><strong>cluster of {cl.size}</strong><span class="muted">'
            f'{len(cl.members)} removed, 1 kept</span></div><div class="pair"><div class="side kept">'
            f'<div class="lbl"><b>kept</b> · <code>{esc(cl.kept)}</code> · {esc(_where(first.get("kept_source")))}'
            f'</div>{kept_html}</div><div class="drops">{"".join(drops)}</div></div></div>'
        )
    return _section("duplicates", "Duplicates", lead, _chart(chart) + "".join(cards))


def _leakage(d: ReportData) -> str:
    leak = d.manifest.get("leakage") or {}
    exact, near = int(leak.get("exact") or 0), int(leak.get("near") or 0)
    ok = exact + near == 0
    badge = _badge(
        ok, "no leakage between train and held-out", f"{exact + near} leak(s) between train and held-out"
    )
    rows = [["exact (same normalized text)", fmt_num(exact)], ["near (MinHash, verified)", fmt_num(near)]]
    body = f"<p>{badge}</p>" + _table(["match", "pairs"], rows, numeric=(1,), table_id="leakage-table")
    examples = [e for e in (leak.get("examples") or []) if e is not None][:10]
    if examples:
        cols: list[str] = []
        for e in examples:
            cols += [str(k) for k in (e if isinstance(e, dict) else {"example": e}) if str(k) not in cols]
        cols = cols[:6]

        def cell(v: Any) -> str:
            if _is_num(v) and not float(v).is_integer():
                return f"{v:.3f}"
            text = v if isinstance(v, str) else orjson.dumps(v, default=str).decode()
            return f'<span class="txt">{esc(_clip(text, 300))}</span>'

        ex_rows = [
            [cell((e if isinstance(e, dict) else {"example": e}).get(c, "")) for c in cols] for e in examples
        ]
        body += "<h3>Examples</h3>" + _table(cols, ex_rows, table_id="leakage-examples")
    return _section(
        "leakage",
        "Leakage between train and held-out",
        "Exact and near matches between the training split and the held-out split; a clean build has none.",
        body,
    )


_NAME_KEYS = ("question", "rule", "name", "id", "field", "control")
_VALUE_KEYS = ("alpha", "kappa", "krippendorff_alpha", "cohen_kappa", "value", "agreement", "score")


def _agreement_items(section: Any) -> list[tuple[str, float, str]]:
    """(name, value, metric) from a list of dicts, a name->number map or a name->{metric: value} map."""
    out = []

    def pick(obj: dict[str, Any]) -> tuple[float, str] | None:
        for k in _VALUE_KEYS:
            if isinstance(obj.get(k), (int, float)) and not isinstance(obj.get(k), bool):
                metric = str(obj.get("metric") or k)
                return float(obj[k]), metric
        return None

    if isinstance(section, dict):
        for name, v in section.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((str(name), float(v), ""))
            elif isinstance(v, dict) and (p := pick(v)):
                out.append((str(name), *p))
    elif isinstance(section, list):
        for v in section:
            if isinstance(v, dict) and (p := pick(v)):
                name = next((str(v[k]) for k in _NAME_KEYS if v.get(k) is not None), "?")
                out.append((name, *p))
    return out


def _agreement_rows(a: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows {kind, question, rule, method, value, observed, items, annotators} from agreement.json: the shape
    `curate label pull` writes ({"kinds": {kind: {question | "rule:<id>": stats}}}) or plain per-question and
    per-rule maps or lists."""
    rows: list[dict[str, Any]] = []
    kinds = a.get("kinds")
    if isinstance(kinds, dict):
        for kind, qs in kinds.items():
            for name, st in (qs or {}).items() if isinstance(qs, dict) else ():
                st = st if isinstance(st, dict) else {"value": st}
                value = st.get("value")
                rule = name[5:] if str(name).startswith("rule:") else None
                rows.append(
                    {
                        "kind": str(kind),
                        "question": str(name),
                        "rule": rule,
                        "method": st.get("method"),
                        "value": float(value) if _is_num(value) else None,
                        "observed": st.get("observed"),
                        "items": st.get("items"),
                        "annotators": st.get("annotators"),
                    }
                )
        return rows
    for keys, is_rule in (
        (("per_question", "questions", "by_question"), False),
        (("per_rule", "rules", "by_rule"), True),
    ):
        section = next((a[k] for k in keys if k in a), None)
        for name, value, metric in _agreement_items(section):
            rows.append(
                {
                    "kind": "",
                    "question": name,
                    "rule": name if is_rule else None,
                    "method": metric,
                    "value": value,
                    "observed": None,
                    "items": None,
                    "annotators": None,
                }
            )
    return rows


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _agreement(d: ReportData) -> str:
    a = d.agreement or {}
    rows = _agreement_rows(a)
    several_kinds = len({r["kind"] for r in rows}) > 1
    parts = []
    for is_rule, title, cid in (
        (False, "per question", "chart-agreement-questions"),
        (True, "per rule", "chart-agreement-rules"),
    ):
        sel = [r for r in rows if (r["rule"] is not None) == is_rule]
        if not sel:
            continue
        labels = [
            (f"{r['kind']}: " if several_kinds else "") + (r["rule"] if is_rule else r["question"])
            for r in sel
        ]
        values = [r["value"] for r in sel]
        lo = -1.0 if any(v is not None and v < 0 for v in values) else 0.0
        chart = svg.hbar_chart(
            cid,
            list(zip(labels, values, strict=True)),
            title=f"agreement {title}",
            lo=lo,
            hi=1.0,
            value_fmt=lambda v: f"{v:.2f}",
            refs=[(0.67, "0.67"), (0.8, "0.8")],
            colors=[
                svg.TEAL if (v or 0) >= 0.67 else (svg.ORANGE if (v or 0) >= 0.4 else svg.RED) for v in values
            ],
            tooltips=[f"{lab}: {_fmt_agree(r)}" for lab, r in zip(labels, sel, strict=True)],
        )
        methods = sorted({str(r["method"]) for r in sel if r["method"]})
        parts.append(
            f"<h3>Agreement {esc(title)}"
            + (f' <span class="muted">({esc(", ".join(methods))})</span>' if methods else "")
            + "</h3>"
            + _chart(chart)
        )
    if rows and any(r["observed"] is not None or r["items"] is not None for r in rows):
        parts.append(
            '<details><summary>All figures<span class="cnt">' + f"{len(rows)} question(s)</span>"
            "</summary>"
            + _table(
                ["kind", "question", "method", "coefficient", "observed agreement", "items", "annotators"],
                [
                    [
                        esc(r["kind"]),
                        f"<code>{esc(r['question'])}</code>",
                        esc(r["method"] or "–"),
                        "n/a" if r["value"] is None else f"{r['value']:.2f}",
                        _pct(r["observed"]),
                        _n(r["items"]),
                        _n(r["annotators"]),
                    ]
                    for r in rows
                ],
                numeric=(3, 4, 5, 6),
                table_id="agreement-table",
            )
            + "</details>"
        )
    facts = []
    for k in ("annotators", "tasks", "overlap", "items"):
        if _is_num(a.get(k)):
            facts.append(f"{esc(k)}: <strong>{fmt_num(a[k])}</strong>")
    conflicts = a.get("conflicts")
    n_conflicts = (
        len(conflicts) if isinstance(conflicts, list) else conflicts if _is_num(conflicts) else d.conflicts
    )
    if n_conflicts is not None:
        facts.append(
            f"conflicts: <strong>{fmt_num(n_conflicts)}</strong>"
            + (" (<code>conflicts.jsonl</code>)" if d.conflicts is not None else "")
        )
    if not parts:
        parts.append(
            _chart(
                svg.empty_chart(
                    "chart-agreement-questions", "agreement.json holds no per-question or per-rule figures"
                )
            )
        )
    lead = (
        "How often labelers agree on the same task (Cohen's kappa for two annotators, Krippendorff's alpha for "
        "more); 1 is full agreement, 0 is chance, n/a means every answer was the same. Dashed lines: 0.67 "
        "(tentative) and 0.8 (reliable)."
    )
    return _section(
        "agreement",
        "Labeling agreement",
        lead,
        (f"<p>{' · '.join(facts)}</p>" if facts else "") + "".join(parts),
    )


def _fmt_agree(r: dict[str, Any]) -> str:
    v = "n/a" if r["value"] is None else f"{r['value']:.2f}"
    extra = [
        f"{r['method']}" if r["method"] else "",
        f"observed {r['observed']:.0%}" if _is_num(r["observed"]) else "",
        f"{r['items']} items" if _is_num(r["items"]) else "",
    ]
    return v + "".join(f" · {e}" for e in extra if e)


def _eval_rules(obj: dict[str, Any]) -> dict[str, float | None]:
    rules = obj.get("rules") or obj.get("per_rule") or {}
    out: dict[str, float | None] = {}
    if isinstance(rules, list):
        for r in rules:
            if isinstance(r, dict) and r.get("rule") is not None:
                v = r.get("pass_rate")
                out[str(r["rule"])] = float(v) if isinstance(v, (int, float)) else None
    elif isinstance(rules, dict):
        for k, r in rules.items():
            v = r.get("pass_rate") if isinstance(r, dict) else r
            out[str(k)] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    return out


def _eval_name(stem: str, obj: dict[str, Any]) -> str:
    for k in ("label", "name"):
        if isinstance(obj.get(k), str) and obj[k]:
            return obj[k]
    model = obj.get("model")
    if isinstance(model, str) and model:
        return f"{stem} ({model.rstrip('/').rsplit('/', 1)[-1]})"
    return stem


def _evaluation(d: ReportData) -> str:
    names = [_eval_name(stem, obj) for stem, obj in d.evals]
    per_rule = [_eval_rules(obj) for _, obj in d.evals]
    rules: list[str] = []
    for pr in per_rule:
        rules += [r for r in pr if r not in rules]
    overall = [obj.get("overall_pass_rate") for _, obj in d.evals]
    groups = rules + (["overall"] if any(isinstance(v, (int, float)) for v in overall) else [])
    series = [
        (
            n,
            [pr.get(r) for r in rules]
            + ([float(o) if isinstance(o, (int, float)) else None] if "overall" in groups else []),
        )
        for n, pr, o in zip(names, per_rule, overall)
    ]
    chart_rules = svg.grouped_bar_chart(
        "chart-eval-rules", groups, series, title="pass rate per rule", percent=True
    )
    cats: list[str] = []
    fails = []
    for _, obj in d.evals:
        f = obj.get("failures_by_category")
        if (
            not isinstance(f, dict) or not f
        ):  # else the per-category pass/fail table `curate eval` also writes
            by = obj.get("by_category") or {}
            f = (
                {c: v.get("fail", 0) for c, v in by.items() if isinstance(v, dict)}
                if isinstance(by, dict)
                else {}
            )
        fails.append({c: v for c, v in f.items() if _is_num(v)})
        cats += [str(c) for c in f if str(c) not in cats]
    for c in ("format", "instruction", "knowledge", "safety"):
        if c not in cats and cats:
            cats.append(c)
    cats.sort(key=lambda c: (["format", "instruction", "knowledge", "safety"] + [c]).index(c))
    cat_series = [(n, [float(f.get(c, 0) or 0) for c in cats]) for n, f in zip(names, fails)]
    chart_cats = svg.grouped_bar_chart(
        "chart-eval-categories", cats, cat_series, title="failures by category"
    )
    head = ["rule"] + names
    rows = []
    for i, r in enumerate(groups):
        vals = [s[1][i] for s in series]
        cells = [_pct(v) for v in vals]
        if len(vals) >= 2 and all(isinstance(v, (int, float)) for v in (vals[0], vals[-1])):
            delta = vals[-1] - vals[0]
            cells[-1] += f' <span class="badge {"ok" if delta >= 0 else "bad"}">{delta * 100:+.0f} pt</span>'
        rows.append([f"<code>{esc(r)}</code>" if r != "overall" else "<strong>overall</strong>"] + cells)
    # Headline figures `curate eval` adds: valid JSON, over-refusal on safe prompts (lower is better), general ability.
    for label, get, higher_better in (
        ("valid JSON", lambda o: o.get("valid_json_rate"), True),
        ("over-refusal (lower is better)", lambda o: (o.get("over_refusal") or {}).get("rate"), False),
        ("general ability (MT-bench / Vicuna)", lambda o: (o.get("general") or {}).get("rate"), True),
    ):
        vals = [get(obj) if isinstance(obj, dict) else None for _, obj in d.evals]
        if not any(_is_num(v) for v in vals):
            continue
        cells = [_pct(v) for v in vals]
        if len(vals) >= 2 and _is_num(vals[0]) and _is_num(vals[-1]):
            delta = vals[-1] - vals[0]
            good = delta >= 0 if higher_better else delta <= 0
            cells[-1] += f' <span class="badge {"ok" if good else "bad"}">{delta * 100:+.0f} pt</span>'
        rows.append([esc(label)] + cells)
    lead = (
        "Each evaluation in <code>evals/</code>, oldest first (the first is the baseline): pass rate of every "
        "automatic rule on the held-out prompts, and failures sorted into format, instruction-following, "
        "knowledge and safety. If most failures are knowledge, more fine-tuning is the wrong lever."
    )
    body = (
        _chart(chart_rules)
        + _table(head, rows, numeric=tuple(range(1, len(head))), table_id="eval-table")
        + "<h3>Failures by category</h3>"
        + _chart(chart_cats)
    )
    return _section("evaluation", "Evaluation before / after", lead, body)


def _rules(d: ReportData) -> str:
    if not d.rules:
        return _section("rules", "Rules", "No automatic rule in the build's coverage.", "")
    rows = []
    for r in d.rules:
        rate = r.pass_rate
        rows.append(
            [
                f"<code>{esc(r.rule)}</code>",
                esc(r.category),
                _n(r.passed),
                _n(r.failed),
                _pct(rate) + ("" if rate is None else " " + _badge(r.failed == 0, "all", "some fail")),
                _n(r.negatives),
                esc(_clip(r.says, 140)),
            ]
        )
    table = _table(
        [
            "rule",
            "category",
            "exported, passing",
            "quarantined, failing",
            "pass rate of the data",
            "negative examples breaking it",
            "says",
        ],
        rows,
        numeric=(2, 3, 4, 5),
        table_id="rules-table",
    )
    series = [("pass rate", [r.pass_rate for r in d.rules])]
    chart = svg.grouped_bar_chart(
        "chart-rule-pass",
        [r.rule for r in d.rules],
        series,
        title="pass rate of the data read, per rule",
        percent=True,
    )
    cards = []
    for ex in d.pair_examples:
        why = (
            ", ".join(f"<code>{esc(r)}</code>" for r in ex.rules)
            if ex.rules
            else f"(not shown: {esc(d.spec_note or 'no rule found')})"
        )
        cards.append(
            f'<div class="card"><p><strong>{esc(ex.split)}</strong> pair, separated by {why}</p>'
            + _turns_html(
                [
                    ("user", ex.prompt),
                    ("assistant (chosen)", ex.chosen),
                    ("assistant (rejected)", ex.rejected),
                ]
            )
            + "</div>"
        )
    pairs = (
        "<h3>Preference pairs: chosen and rejected, and the rule between them</h3>" + "".join(cards)
        if cards
        else "<p>No preference pairs in this build.</p>"
    )
    lead = (
        "Each automatic rule over the data this build read: records that pass it and were exported (where the "
        "rule applies), records quarantined because they fail it, and negative examples that break it on "
        "purpose (the rejected side of a pair)."
        + (f" Rule wording is not shown: {esc(d.spec_note)}." if d.spec_note else "")
    )
    return _section("rules", "Rules", lead, _chart(chart) + table + _judge_rules(d) + pairs)


def _judge_rules(d: ReportData) -> str:
    """The judge rules of the build (manifest `judge`): each one's calibration and whether it counted."""
    j = d.manifest.get("judge") or {}
    rules = j.get("rules") or {}
    if not rules:
        return ""
    failed = j.get("failed") or {}
    rows = []
    for rid, st in rules.items():
        counts = st.get("status") == "automatic"
        ci = st.get("kappa_ci95")
        rows.append(
            [
                f"<code>{esc(rid)}</code>",
                _badge(counts, "counts", "suggestion only"),
                _n(st.get("n")),
                _n(st.get("kappa")),
                esc(f"[{ci[0]:.2f}, {ci[1]:.2f}]") if isinstance(ci, list) and len(ci) == 2 else "–",
                _n(failed.get(rid, 0)) if counts else "–",
                esc(st.get("why") or ""),
            ]
        )
    table = _table(
        ["judge rule", "in this build", "n", "kappa", "kappa 95% interval", "FAIL verdicts", "why not"],
        rows,
        numeric=(2, 3, 5),
        table_id="judge-table",
    )
    who = f"<code>{esc(j['judge'])}</code>" if j.get("judge") else "none (no judge rule counted)"
    return (
        "<h3>Judge rules: calibrated against people before they count</h3>"
        f"<p>A judge rule fails records only while its calibration for the rule's current wording and this judge "
        f"has n &ge; the spec's min_n and kappa's lower bound &ge; its gate; otherwise labelers see its verdicts as "
        f"suggestions. Judge: {who}; responses judged: {_n(j.get('judged', 0))}.</p>" + table
    )


# --------------------------------------------------------------------------------------------- page

_SECTIONS = {
    "counts": ("Counts", _conservation),
    "rules": ("Rules", _rules),
    "coverage": ("Coverage", _coverage),
    "lengths": ("Lengths", _lengths),
    "quarantine": ("Quarantine", _quarantine),
    "duplicates": ("Duplicates", _duplicates),
    "leakage": ("Leakage", _leakage),
    "agreement": ("Agreement", _agreement),
    "evaluation": ("Evaluation", _evaluation),
}


def section_ids(d: ReportData) -> list[tuple[str, str]]:
    """(id, nav label) of the sections this report shows: agreement and evaluation only when their files exist."""
    return [
        (sid, label)
        for sid, (label, _) in _SECTIONS.items()
        if not (sid == "agreement" and d.agreement is None) and not (sid == "evaluation" and not d.evals)
    ]


def render_html(d: ReportData) -> str:
    m = d.manifest
    spec = m.get("spec") or {}
    ref = spec.get("ref") or f"{spec.get('name', '?')}@{spec.get('version', '?')}"
    tool = m.get("tool") or {}
    sections = [(sid, label, _SECTIONS[sid][1](d)) for sid, label in section_ids(d)]
    nav = "".join(f'<a href="#{esc(sid)}">{esc(label)}</a>' for sid, label, _ in sections)
    warnings = ""
    if d.warnings:
        warnings = (
            '<div class="warn" id="warnings"><strong>Read with care:</strong><ul>'
            + "".join(f"<li>{esc(w)}</li>" for w in d.warnings[:20])
            + "</ul></div>"
        )
    sha = str(spec.get("sha256") or "")[:12]
    sub = (
        f"built {esc(m.get('created', '?'))} by {esc(tool.get('name', 'curate'))} {esc(tool.get('version', ''))}"
        + (f" · spec sha256 <code>{esc(sha)}</code>" if sha else "")
        + (f" · <code>{esc(spec.get('path'))}</code>" if spec.get("path") else "")
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(ref)} · curate build report</title><style>{CSS}</style></head><body>"
        f'<header class="top"><div class="wrap"><div><h1>{esc(ref)} <span style="font-weight:400;color:#9aa5b1">'
        f'build report</span></h1><div class="sub">{sub}</div></div></div></header>'
        f'<nav class="toc"><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{_summary(d)}{warnings}{"".join(s for _, _, s in sections)}</main>'
        f'<footer class="wrap">Generated by curate from <code>manifest.json</code> and the '
        "files beside it. Self-contained: no script, no font, nothing fetched.</footer></body></html>\n"
    )
