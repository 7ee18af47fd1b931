"""Static SVG charts drawn in Python: no JavaScript, nothing fetched, every string escaped.

Every chart is one `<svg id=... class="chart">` whose data marks (bars, cells) carry `class="mark"`, so a test
(or a person with devtools) can count what was drawn. Text is escaped with `esc` everywhere: chart labels come
from the data (rule ids, reasons, file names) and the data holds adversarial text.

    >>> svg = hbar_chart("chart-demo", [("bad_json", 3), ("too_long", 1)], title="reasons")
    >>> svg.count('class="mark')
    2
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

FONT = 12
CHAR_W = (
    7.2  # average glyph width at 12px in DejaVu Sans (Debian's default; wider than most): lays out labels
)

# A calm palette, readable by most colour-blind people (blue / orange / grey / teal / purple).
BLUE = "#3867d6"
ORANGE = "#e58e26"
GREY = "#9aa5b1"
TEAL = "#1f9d8b"
RED = "#d64545"
PURPLE = "#8854d0"
SERIES = [GREY, BLUE, TEAL, PURPLE, ORANGE]
INK = "#1f2933"
MUTED = "#616e7c"
RULE = "#e4e7eb"


def esc(value: object) -> str:
    """Escape any value for HTML text, attribute values and SVG text."""
    return html.escape(str(value), quote=True)


def clip(text: str, max_chars: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= max_chars else text[: max(1, max_chars - 1)] + "…"


def fmt_num(v: float) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.2f}"
    v = int(v)
    return f"{v:,}"


def nice_ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (whole numbers only when `integer`, e.g. for counts)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, math.ceil(step))
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _svg_open(chart_id: str, width: float, height: float, title: str, cls: str = "chart") -> str:
    return (
        f'<svg id="{esc(chart_id)}" class="{cls}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'aria-label="{esc(title)}" font-size="{FONT}">'
        f"<title>{esc(title)}</title>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    fill: str = INK,
    size: int | None = None,
    weight: str | None = None,
    cls: str | None = None,
) -> str:
    extra = f' font-size="{size}"' if size else ""
    extra += f' font-weight="{weight}"' if weight else ""
    extra += f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>{esc(text)}</text>'


def empty_chart(chart_id: str, message: str, width: int = 640) -> str:
    """A chart with nothing to draw still renders: a frame and the reason, and no marks."""
    return (
        _svg_open(chart_id, width, 60, message, cls="chart empty")
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="59" '
        f'fill="#f8f9fa" stroke="{RULE}" rx="6"/>'
        + _text(width / 2, 35, message, anchor="middle", fill=MUTED)
        + "</svg>"
    )


# ---------------------------------------------------------------------------------------------- bar charts


def hbar_chart(
    chart_id: str,
    items: Sequence[tuple[str, float | None]],
    *,
    title: str,
    width: int = 640,
    color: str = BLUE,
    value_fmt=fmt_num,
    lo: float | None = None,
    hi: float | None = None,
    refs: Sequence[tuple[float, str]] = (),
    colors: Sequence[str] | None = None,
    tooltips: Sequence[str] | None = None,
) -> str:
    """Horizontal bars, one per (label, value); negative values grow to the left of zero; None = not defined
    (a label and "n/a", no bar)."""
    if not items:
        return empty_chart(chart_id, f"{title}: nothing to show", width)
    bar_h, gap, top, bottom = 20, 8, (22 if refs else 8), 26
    label_chars = min(36, max(len(str(label)) for label, _ in items))
    left = 16 + label_chars * CHAR_W
    right = 64
    plot_w = width - left - right
    values = [float(v) for _, v in items if v is not None] or [0.0]
    lo = min(0.0, min(values)) if lo is None else lo
    hi = max(values) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    integer = all(float(v).is_integer() for v in values)
    ticks = (
        nice_ticks(lo, hi, 4, integer=integer)
        if (lo, hi) != (0.0, 1.0) and (lo, hi) != (-1.0, 1.0)
        else ([0, 0.25, 0.5, 0.75, 1.0] if lo == 0 else [-1, -0.5, 0, 0.5, 1])
    )
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    height = top + len(items) * (bar_h + gap) + bottom
    out = [_svg_open(chart_id, width, height, title)]
    plot_bottom = top + len(items) * (bar_h + gap)
    for t in ticks:
        out.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 4}" y2="{plot_bottom}" stroke="{RULE}"/>'
        )
        out.append(_text(x(t), plot_bottom + 16, value_fmt(t), anchor="middle", fill=MUTED, size=11))
    for ref, ref_label in refs:
        out.append(
            f'<line x1="{x(ref):.1f}" x2="{x(ref):.1f}" y1="{top - 4}" y2="{plot_bottom}" '
            f'stroke="{INK}" stroke-dasharray="4 3" stroke-opacity="0.5"/>'
        )
        out.append(_text(x(ref), top - 8, ref_label, anchor="middle", fill=MUTED, size=10))
    zero = x(max(lo, 0.0))
    for i, (label, value) in enumerate(items):
        y = top + i * (bar_h + gap)
        if value is None:
            tip = tooltips[i] if tooltips else f"{label}: n/a"
            out.append(_text(left - 8, y + bar_h / 2 + 4, clip(label, 36), anchor="end"))
            out.append(
                f'<text x="{zero + 6:.1f}" y="{y + bar_h / 2 + 4:.1f}" fill="{MUTED}">n/a'
                f"<title>{esc(tip)}</title></text>"
            )
            continue
        v = float(value)
        x0, x1 = sorted((zero, x(v)))
        fill = colors[i] if colors else color
        tip = tooltips[i] if tooltips else f"{label}: {value_fmt(v)}"
        if v != 0:  # a zero draws no bar (and counts as no mark), only its value label
            out.append(
                f'<rect class="mark" x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1.5):.1f}" '
                f'height="{bar_h}" rx="3" fill="{fill}"><title>{esc(tip)}</title></rect>'
            )
        out.append(_text(left - 8, y + bar_h / 2 + 4, clip(label, 36), anchor="end"))
        out.append(_text(max(x1, zero) + 6, y + bar_h / 2 + 4, value_fmt(v), fill=MUTED))
    out.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 4}" y2="{plot_bottom}" stroke="{MUTED}"/>')
    out.append("</svg>")
    return "".join(out)


def stacked_hbar_chart(
    chart_id: str,
    rows: Sequence[tuple[str, Sequence[float]]],
    *,
    parts: Sequence[str],
    colors: Sequence[str],
    title: str,
    width: int = 900,
) -> str:
    """One horizontal bar per row split into parts (e.g. exported | quarantined | duplicates), with a legend."""
    rows = [(label, vals) for label, vals in rows]
    if not rows:
        return empty_chart(chart_id, f"{title}: nothing to show", width)
    bar_h, gap, top = 22, 10, 30
    label_chars = min(40, max(len(str(label)) for label, _ in rows))
    left = 16 + label_chars * CHAR_W
    right = 70
    plot_w = width - left - right
    total_max = max(sum(v) for _, v in rows) or 1
    height = top + len(rows) * (bar_h + gap) + 6
    out = [_svg_open(chart_id, width, height, title)]
    lx = left
    for name, color in zip(parts, colors):
        out.append(f'<rect x="{lx:.1f}" y="6" width="12" height="12" rx="2" fill="{color}"/>')
        out.append(_text(lx + 17, 16, name, fill=MUTED))
        lx += 30 + len(name) * CHAR_W
    for i, (label, vals) in enumerate(rows):
        y = top + i * (bar_h + gap)
        x = left
        for name, color, v in zip(parts, colors, vals):
            if v <= 0:
                continue
            w = v / total_max * plot_w
            out.append(
                f'<rect class="mark" x="{x:.1f}" y="{y}" width="{max(w, 1.5):.1f}" height="{bar_h}" '
                f'fill="{color}"><title>{esc(f"{label}: {name} {fmt_num(v)}")}</title></rect>'
            )
            x += w
        out.append(_text(left - 8, y + bar_h / 2 + 4, clip(label, 40), anchor="end"))
        out.append(_text(x + 6, y + bar_h / 2 + 4, fmt_num(sum(vals)), fill=MUTED))
    out.append("</svg>")
    return "".join(out)


def grouped_bar_chart(
    chart_id: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    width: int = 900,
    percent: bool = False,
    hi: float | None = None,
) -> str:
    """Vertical bars: for each group (a rule) one bar per series (an evaluation); None = not measured."""
    if not groups or not series:
        return empty_chart(chart_id, f"{title}: nothing to show", width)
    left, right = 48, 12
    plot_w = width - left - right
    gw = plot_w / len(groups)
    rotate = max(len(g) for g in groups) * CHAR_W * 0.92 > gw - 4
    if rotate:  # the first label, slanted down to the left, must not leave the picture
        left = max(left, int(min(28, len(groups[0])) * CHAR_W * 0.87 - gw / 2 + 10))
        plot_w = width - left - right
        gw = plot_w / len(groups)
    top, bottom = 34, (24 + int(min(28, max(len(g) for g in groups)) * CHAR_W * 0.5) if rotate else 30)
    height = 240 + bottom
    plot_h = height - top - bottom
    vals = [v for _, vs in series for v in vs if v is not None]
    hi = hi if hi is not None else (1.0 if percent else max(vals or [1]))
    ticks = (
        [0, 0.25, 0.5, 0.75, 1.0]
        if percent and hi == 1.0
        else nice_ticks(0, hi or 1, 4, integer=all(float(v).is_integer() for v in vals))
    )
    hi = ticks[-1]

    def y(v: float) -> float:
        return top + plot_h - v / hi * plot_h

    def fmt(v: float) -> str:
        return f"{v:.0%}" if percent else fmt_num(v)

    out = [_svg_open(chart_id, width, height, title)]
    lx = left
    for (name, _), color in zip(series, SERIES * 3):
        out.append(f'<rect x="{lx:.1f}" y="8" width="12" height="12" rx="2" fill="{color}"/>')
        out.append(_text(lx + 17, 18, clip(name, 40), fill=MUTED))
        lx += 34 + min(len(name), 40) * CHAR_W
    for t in ticks:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{RULE}"/>'
        )
        out.append(_text(left - 6, y(t) + 4, fmt(t), anchor="end", fill=MUTED, size=11))
    bw = min(28.0, (gw - 10) / len(series))
    for gi, group in enumerate(groups):
        gx = left + gi * gw + (gw - bw * len(series)) / 2
        for si, ((name, vs), color) in enumerate(zip(series, SERIES * 3)):
            v = vs[gi]
            bx = gx + si * bw
            if v is None:
                out.append(_text(bx + bw / 2, y(0) - 4, "–", anchor="middle", fill=MUTED))
                continue
            out.append(
                f'<rect class="mark" x="{bx + 1:.1f}" y="{y(v):.1f}" width="{bw - 2:.1f}" '
                f'height="{max(y(0) - y(v), 1):.1f}" rx="2" fill="{color}">'
                f"<title>{esc(f'{group} · {name}: {fmt(v)}')}</title></rect>"
            )
            if bw >= 22:
                out.append(_text(bx + bw / 2, y(v) - 4, fmt(v), anchor="middle", fill=MUTED, size=10))
        cx, cy = left + gi * gw + gw / 2, y(0) + 14
        if rotate:
            out.append(
                f'<text x="{cx + 4:.1f}" y="{cy:.1f}" text-anchor="end" fill="{INK}" font-size="11" '
                f'transform="rotate(-30 {cx + 4:.1f} {cy:.1f})">{esc(clip(group, 28))}'
                f"<title>{esc(group)}</title></text>"
            )
        else:
            out.append(_text(cx, cy, group, anchor="middle", size=11))
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="{MUTED}"/>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- heatmap


@dataclass(frozen=True)
class Cell:
    row: str
    col: str
    count: int
    target: int

    @property
    def under(self) -> bool:
        return self.count < self.target


def heatmap_chart(
    chart_id: str,
    rows: Sequence[str],
    cols: Sequence[str],
    cells: Sequence[Cell],
    *,
    title: str,
    width: int = 900,
) -> str:
    """Category x rule grid: colour = count against target; cells under target are red, hatched and marked."""
    if not rows or not cols:
        return empty_chart(chart_id, f"{title}: nothing to show", width)
    by_key = {(c.row, c.col): c for c in cells}
    left = 16 + min(18, max(len(r) for r in rows)) * CHAR_W
    col_chars = min(28, max(len(c) for c in cols))
    top = 16 + col_chars * 6.6 * 0.58  # rotated 35 degrees: the longest column label's rise (11px text)
    cell_w = min(96.0, (width - left - 10) / len(cols))
    cell_h = 38
    height = top + len(rows) * cell_h + 10
    width = int(left + cell_w * len(cols) + 10 + max(0.0, len(cols[-1]) * 6.6 * 0.82 - cell_w / 2))
    hatch = (
        f'<defs><pattern id="{esc(chart_id)}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde8e8"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="#f4a9a9" stroke-width="3"/></pattern></defs>'
    )
    out = [_svg_open(chart_id, width, height, title), hatch]
    for ci, col in enumerate(cols):
        cx = left + ci * cell_w + cell_w / 2
        out.append(
            f'<text x="{cx:.1f}" y="{top - 8:.1f}" fill="{INK}" font-size="11" '
            f'transform="rotate(-35 {cx:.1f} {top - 8:.1f})">{esc(clip(col, 28))}</text>'
        )
    for ri, row in enumerate(rows):
        y = top + ri * cell_h
        out.append(_text(left - 8, y + cell_h / 2 + 4, clip(row, 18), anchor="end", weight="600"))
        for ci, col in enumerate(cols):
            x = left + ci * cell_w
            cell = by_key.get((row, col))
            if cell is None:
                out.append(
                    f'<rect x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" height="{cell_h - 2}" '
                    f'rx="4" fill="#f5f7fa"/>'
                )
                out.append(
                    _text(x + cell_w / 2, y + cell_h / 2 + 4, "n/a", anchor="middle", fill="#b8c2cc", size=10)
                )
                continue
            ratio = 1.0 if cell.target <= 0 else min(cell.count / cell.target, 3.0) / 3.0
            if cell.under:
                fill, ink, cls = f"url(#{esc(chart_id)}-hatch)", "#a61b1b", "mark cell under"
                stroke = f' stroke="{RED}" stroke-width="2"'
            else:
                # light teal to dark teal as the count passes the target
                t = 0.25 + 0.75 * ratio
                r, g, b = (int(236 + (31 - 236) * t), int(246 + (157 - 246) * t), int(244 + (139 - 246) * t))
                fill, ink, cls, stroke = (
                    f"rgb({r},{g},{b})",
                    ("#ffffff" if t > 0.6 else INK),
                    "mark cell ok",
                    "",
                )
            tip = f"{row} × {col}: {cell.count} of target {cell.target}" + (
                " (under target)" if cell.under else ""
            )
            out.append(
                f'<rect class="{cls}" x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" '
                f'height="{cell_h - 2}" rx="4" fill="{fill}"{stroke}><title>{esc(tip)}</title></rect>'
            )
            label = f"{cell.count}/{cell.target}" + (" ▼" if cell.under else "")
            out.append(
                _text(
                    x + cell_w / 2,
                    y + cell_h / 2 + 4,
                    label,
                    anchor="middle",
                    fill=ink,
                    size=11,
                    weight="600" if cell.under else None,
                )
            )
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- histogram


def histogram_chart(
    chart_id: str,
    values: Sequence[int],
    *,
    title: str,
    unit: str,
    width: int = 430,
    bins: int = 24,
    x_max: float | None = None,
    x_min: float = 0.0,
    limit: int | None = None,
    color: str = BLUE,
) -> str:
    """Distribution of lengths with median and p95 lines (and the length limit when known).

    The axis runs from x_min (0 unless given: lengths that all share a long system prompt start far from 0)."""
    if not values:
        return empty_chart(chart_id, f"{title}: no rows", width)
    vals = sorted(int(v) for v in values)
    top, bottom, left, right = 36, 34, 42, 22
    height = 200
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = float(x_max if x_max is not None else vals[-1]) or 1.0
    lo = min(float(x_min), float(vals[0]))
    ticks = nice_ticks(lo, max(hi, lo + 1), 4)
    lo, hi = ticks[0], ticks[-1]
    step = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        counts[min(bins - 1, max(0, int((v - lo) / step)))] += 1
    cmax = max(counts) or 1
    yt = nice_ticks(0, cmax, 3, integer=True)

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    def y(c: float) -> float:
        return top + plot_h - c / yt[-1] * plot_h

    median = vals[len(vals) // 2]
    p95 = vals[min(len(vals) - 1, math.ceil(0.95 * len(vals)) - 1)]
    out = [_svg_open(chart_id, width, height, title)]
    out.append(_text(left, 14, title, weight="600"))
    out.append(
        _text(
            width - right,
            14,
            f"n={len(vals):,} · median {median:,} · p95 {p95:,} · max {vals[-1]:,}",
            anchor="end",
            fill=MUTED,
            size=11,
        )
    )
    for t in yt:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{RULE}"/>'
        )
        out.append(_text(left - 5, y(t) + 4, fmt_num(t), anchor="end", fill=MUTED, size=10))
    for i, c in enumerate(counts):
        if c == 0:
            continue
        bx = x(lo + i * step)
        out.append(
            f'<rect class="mark" x="{bx + 0.5:.1f}" y="{y(c):.1f}" width="{max(plot_w / bins - 1, 1):.1f}" '
            f'height="{y(0) - y(c):.1f}" fill="{color}" fill-opacity="0.85">'
            f"<title>{esc(f'{int(lo + i * step):,}–{int(lo + (i + 1) * step):,} {unit}: {c:,} rows')}</title></rect>"
        )
    for t in ticks:
        out.append(_text(x(t), y(0) + 15, fmt_num(t), anchor="middle", fill=MUTED, size=10))
    out.append(_text(left + plot_w / 2, height - 4, unit, anchor="middle", fill=MUTED, size=11))
    for v, name, dash in ((median, "median", "4 3"), (p95, "p95", "2 3")):
        out.append(
            f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top}" y2="{y(0):.1f}" stroke="{INK}" '
            f'stroke-dasharray="{dash}" stroke-opacity="0.6"><title>{esc(f"{name} {v:,}")}</title></line>'
        )
    if limit is not None and lo <= limit <= hi:
        out.append(
            f'<line x1="{x(limit):.1f}" x2="{x(limit):.1f}" y1="{top - 6}" y2="{y(0):.1f}" stroke="{RED}" '
            f'stroke-width="1.5"/>'
        )
        out.append(_text(x(limit) - 3, top - 8 + 10, f"limit {limit:,}", anchor="end", fill=RED, size=10))
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="{MUTED}"/>')
    out.append("</svg>")
    return "".join(out)
