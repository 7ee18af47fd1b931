"""Two eval reports side by side: per-rule and per-category deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from curate.errors import EvalError

# ---------------------------------------------------------------- comparison

REPORT_KIND = "curate-eval"


def load_report(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        rep = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise EvalError(f"{p} does not exist") from None
    except orjson.JSONDecodeError as err:
        raise EvalError(f"{p} is not JSON ({err}); pass files written by `curate eval --json-out`") from None
    if not isinstance(rep, dict) or rep.get("kind") != REPORT_KIND:
        raise EvalError(f"{p} is not a curate eval report (written by `curate eval --json-out`)")
    rep.setdefault("path", str(p))
    return rep


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """B relative to A (baseline vs tuned): per-rule pass rates and deltas, headline figures, flipped prompts."""
    name_a, name_b = a.get("spec", "").split("@")[0], b.get("spec", "").split("@")[0]
    if name_a != name_b:
        raise EvalError(f"cannot compare evaluations of different specs ({a.get('spec')} vs {b.get('spec')})")
    ra = {r["rule"]: r for r in a.get("rules", [])}
    rb = {r["rule"]: r for r in b.get("rules", [])}
    rows = []
    for rule in list(ra) + [r for r in rb if r not in ra]:
        x, y = ra.get(rule), rb.get(rule)
        pa, pb = (x or {}).get("pass_rate"), (y or {}).get("pass_rate")
        rows.append(
            {
                "rule": rule,
                "category": (x or y or {}).get("category"),
                "a": pa,
                "b": pb,
                "delta": _delta(pa, pb),
                "a_n": (x["pass"] + x["fail"]) if x else 0,
                "b_n": (y["pass"] + y["fail"]) if y else 0,
            }
        )
    heads = {}
    for key, get in (
        ("overall", lambda r: r.get("overall_pass_rate")),
        ("valid_json", lambda r: r.get("valid_json_rate")),
        ("over_refusal", lambda r: (r.get("over_refusal") or {}).get("rate")),
        ("general", lambda r: (r.get("general") or {}).get("rate")),
    ):
        heads[key] = {"a": get(a), "b": get(b), "delta": _delta(get(a), get(b))}
    ia = {i["id"]: i for i in a.get("items", [])}
    fixed, broken = [], []
    for it in b.get("items", []):
        old = ia.get(it["id"])
        if old is None:
            continue
        if old["failed"] and not it["failed"]:
            fixed.append({"id": it["id"], "where": it.get("where"), "was": sorted(old["failed"])})
        elif not old["failed"] and it["failed"]:
            broken.append(
                {
                    "id": it["id"],
                    "where": it.get("where"),
                    "now": it["failed"],
                    "response": it["response"][:300],
                }
            )
    fa, fb = a.get("failures_by_category", {}), b.get("failures_by_category", {})
    return {
        "spec": b.get("spec"),
        "a": {
            "model": a.get("model") or a.get("outputs_file"),
            "path": a.get("path"),
            "responses": a.get("responses"),
        },
        "b": {
            "model": b.get("model") or b.get("outputs_file"),
            "path": b.get("path"),
            "responses": b.get("responses"),
        },
        "same_prompts": sorted(ia) == sorted(i["id"] for i in b.get("items", [])),
        "headline": heads,
        "rules": rows,
        "failures_by_category": {
            c: {"a": fa.get(c, 0), "b": fb.get(c, 0)} for c in sorted(set(fa) | set(fb))
        },
        "fixed": fixed[:50],
        "regressed": broken[:50],
        "n_fixed": len(fixed),
        "n_regressed": len(broken),
    }
