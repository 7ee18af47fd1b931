"""The report's sections about the build itself: summary, counts (conservation), coverage, lengths, quarantine,
duplicates and leakage.
"""

from __future__ import annotations

from typing import Any

import orjson

from curate.report import svg
from curate.report.data import ReportData, conversation, text_key
from curate.report.html import (
    EXPORT_KINDS,
    ORIGINAL_CHARS,
    SHOWN_DROPS,
    _badge,
    _chart,
    _clip,
    _is_num,
    _n,
    _pct,
    _section,
    _table,
    _turns_html,
    _where,
)
from curate.report.svg import Cell, esc, fmt_num

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
