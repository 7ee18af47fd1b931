"""The report page's building blocks: its CSS and Content-Security-Policy, number formats, tables, badges,
conversation turns, sections. Every value from the data goes through `esc`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from curate.report.data import parse_source
from curate.report.svg import esc, fmt_num

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


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
