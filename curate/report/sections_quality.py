"""The report's sections about labels and models: annotator agreement, evaluation reports, rule pass rates and
the judge's rules.
"""

from __future__ import annotations

from typing import Any

from curate.report import svg
from curate.report.data import ReportData
from curate.report.html import _badge, _chart, _clip, _is_num, _n, _pct, _section, _table, _turns_html
from curate.report.svg import esc, fmt_num

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
