"""What changed between two versions of a spec, rule by rule, and what that does to what already exists.

    >>> from curate.spec import load_spec
    >>> from curate.spec_diff import diff_specs
    >>> spec = load_spec("specs/support-triage")
    >>> d = diff_specs(spec, spec)
    >>> d.rules, d.same_version
    ([], True)

`impact(old, new, out_dir=..., labels=[...])` measures a diff against a build folder made under the old spec
and labeled records: labels whose rules changed (stale), exported records that now fail or newly pass the
automatic checks, DPO pairs whose proof (chosen passes every automatic rule, rejected breaks one) no longer
holds, eval results made under other rule hashes, and coverage cells that move. `load_spec_ref` reads a spec
from a file, a folder or a git revision (`REV:path`, e.g. `HEAD~1:specs/support-triage/spec.yaml`).
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.checks import check_response
from curate.errors import SpecError
from curate.records import LineError, PreferenceRecord, SFTRecord, read_jsonl, record_from_native
from curate.spec import Spec, load_spec, resolve_spec_path
from curate.versioning import check_content, rules_sha, spec_version, stale_rules

log = logging.getLogger(__name__)
Record = SFTRecord | PreferenceRecord
SETTINGS = ("system_prompt", "coverage", "split", "export", "judge", "description")


# ---------------------------------------------------------------- loading OLD / NEW


def load_spec_ref(ref: str) -> Spec:
    """A spec from a file or folder, or `REV:path` (a git revision of the spec file, read with `git show`)."""
    if Path(ref).exists():
        return load_spec(ref)
    if re.fullmatch(r"[a-z0-9][a-z0-9-]*@[\w.-]+", ref):
        return _by_version(ref)
    if ":" in ref:
        rev, _, path = ref.partition(":")
        p = Path(path)
        if p.is_dir():
            p = resolve_spec_path(p)
        cwd = p.parent if p.parent.is_dir() else Path.cwd()
        try:
            top = subprocess.run(
                ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, check=True
            ).stdout.strip()
            rel = p.resolve().relative_to(Path(top).resolve()) if p.exists() or p.is_absolute() else p
            got = subprocess.run(
                ["git", "show", f"{rev}:{rel.as_posix()}"], cwd=top, capture_output=True, check=True
            ).stdout
        except (subprocess.CalledProcessError, FileNotFoundError, ValueError) as err:
            detail = getattr(err, "stderr", b"") or b""
            detail = detail.decode("utf-8", "replace").strip() if isinstance(detail, bytes) else str(detail)
            raise SpecError(
                f"{ref}: cannot read that git revision of the spec ({detail or err}); "
                "use REV:path, e.g. HEAD~1:specs/support-triage/spec.yaml"
            ) from None
        with tempfile.TemporaryDirectory(prefix="curate-spec-") as tmp:
            f = Path(tmp) / "spec.yaml"
            f.write_bytes(got)
            spec = load_spec(f)
        return spec.model_copy(update={"path": p})
    raise SpecError(f"{ref}: no such spec file or folder (or REV:path git revision)")


def _by_version(ref: str, roots: tuple[str, ...] = ("specs", ".")) -> Spec:
    """`name@version`: the spec file specs/NAME/spec.yaml (or NAME/spec.yaml) as it is now when it has that
    version, else its newest git revision that does."""
    name, _, version = ref.partition("@")
    files = [Path(root) / name / fn for root in roots for fn in ("spec.yaml", "spec.yml")]
    file = next((f for f in files if f.is_file()), None)
    if file is None:
        raise SpecError(f"{ref}: no specs/{name}/spec.yaml here; pass the spec file or REV:path instead")
    spec = load_spec(file)
    if str(spec.version) == version:
        return spec
    try:
        revs = subprocess.run(
            ["git", "log", "--format=%H", "--", file.name],
            cwd=file.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        revs = []
    for rev in revs:
        try:
            old = load_spec_ref(f"{rev}:{file}")
        except SpecError:
            continue
        if str(old.version) == version:
            return old
    raise SpecError(
        f"{ref}: {file} is at version {spec.version} and no git revision of it has version {version}"
    )


# ---------------------------------------------------------------- the diff


@dataclass
class SpecDiff:
    old: str
    new: str
    rules: list[dict[str, Any]] = field(default_factory=list)  # {rule, change: [...], old?, new?}
    cases: list[dict[str, Any]] = field(default_factory=list)  # {case, change: added|removed|changed}
    output: bool = False
    settings: list[str] = field(default_factory=list)
    same_version: bool = True

    def changed_rules(self) -> set[str]:
        """Rules whose verdicts may move: wording or check changed, added or removed."""
        return {r["rule"] for r in self.rules if set(r["change"]) & {"wording", "check", "added", "removed"}}

    def check_changed(self) -> set[str]:
        return {r["rule"] for r in self.rules if set(r["change"]) & {"check", "added", "removed"}}

    def as_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "same_version": self.same_version,
            "rules": self.rules,
            "cases": self.cases,
            "output": self.output,
            "settings": self.settings,
        }


def _rule_view(spec: Spec, rid: str) -> dict[str, Any]:
    r = spec.rule(rid)
    return {"says": " ".join(r.says.split()), "check": check_content(spec, r), "category": r.category}


def diff_specs(old: Spec, new: Spec) -> SpecDiff:
    """Rule by rule (wording, check, category, added, removed), case categories, output schema, settings."""
    d = SpecDiff(old=old.ref, new=new.ref)
    old_ids, new_ids = [r.id for r in old.rules], [r.id for r in new.rules]
    old_h, new_h = rules_sha(old), rules_sha(new)
    for rid in old_ids + [i for i in new_ids if i not in old_ids]:
        if rid not in new_ids:
            d.rules.append(
                {"rule": rid, "change": ["removed"], "old": _rule_view(old, rid), "old_sha": old_h[rid]}
            )
            continue
        if rid not in old_ids:
            d.rules.append(
                {"rule": rid, "change": ["added"], "new": _rule_view(new, rid), "new_sha": new_h[rid]}
            )
            continue
        a, b = _rule_view(old, rid), _rule_view(new, rid)
        change = [
            name
            for key, name in (("says", "wording"), ("check", "check"), ("category", "category"))
            if a[key] != b[key]
        ]
        if change:
            d.rules.append(
                {
                    "rule": rid,
                    "change": change,
                    "old": a,
                    "new": b,
                    "old_sha": old_h[rid],
                    "new_sha": new_h[rid],
                }
            )
    for name in list(old.cases) + [c for c in new.cases if c not in old.cases]:
        if name not in new.cases:
            d.cases.append({"case": name, "change": "removed"})
        elif name not in old.cases:
            d.cases.append({"case": name, "change": "added"})
        elif old.cases[name] != new.cases[name]:
            d.cases.append({"case": name, "change": "changed"})
    d.output = old.output != new.output
    d.settings = [s for s in SETTINGS if getattr(old, s) != getattr(new, s)]
    d.same_version = spec_version(old)["sha"] == spec_version(new)["sha"]
    return d


# ---------------------------------------------------------------- impact


def _records(path: Path) -> Iterator[Record]:
    """The records of a JSONL file, or of an export split's Parquet file (`export.read_rows`)."""
    from curate.steps.export import read_rows

    for _line, obj in read_rows(path) if path.suffix == ".parquet" else read_jsonl(path):
        if isinstance(obj, LineError):
            continue
        body = {k: v for k, v in obj.items() if k not in ("id", "kind")}
        try:
            yield record_from_native(body)
        except (ValueError, TypeError):
            continue


def _status(spec: Spec, rec: Record, response: str) -> dict[str, str]:
    return {
        r.rule: r.status
        for r in check_response(
            spec, response, user_text=rec.user_text(), category=rec.category, tags=rec.tags
        )
    }


def _pair_proof(spec: Spec, rec: PreferenceRecord) -> str:
    """'' when the pair is still proven under `spec`, else why not."""
    chosen = _status(spec, rec, rec.response_text())
    bad = [r for r, s in chosen.items() if s == "fail"]
    if bad:
        return f"chosen fails {', '.join(bad)}"
    if not any(s == "fail" for s in _status(spec, rec, rec.rejected_text()).values()):
        return "rejected breaks no automatic rule"
    return ""


def _exported(out_dir: Path) -> tuple[list[Record], list[PreferenceRecord]]:
    """(SFT-exported and negative records, DPO pairs) of a build folder; categories from the build's
    inputs."""
    from curate.steps.export import split_file

    manifest = orjson.loads((out_dir / "manifest.json").read_bytes())
    by_id: dict[str, Record] = {}
    for inp in manifest.get("inputs", []):
        p = Path(inp.get("file", ""))
        if p.suffix == ".jsonl" and p.exists():
            for rec in _records(p):
                by_id.setdefault(rec.id, rec)
    sft: list[Record] = []
    for part in ("train", "test"):
        p = split_file(out_dir / "sft", part)
        if p is not None:
            sft += [by_id.get(r.id, r) for r in _records(p)]
    neg = out_dir / "negatives.jsonl"
    if neg.exists():
        sft += list(_records(neg))
    pairs: list[PreferenceRecord] = []
    for part in ("train", "test"):
        p = split_file(out_dir / "dpo", part)
        if p is not None:
            for r in _records(p):
                if isinstance(r, PreferenceRecord):
                    known = by_id.get(r.id)
                    pairs.append(known if isinstance(known, PreferenceRecord) else r)
    return sft, pairs


def _coverage_moves(old: Spec, new: Spec, records: list[Record]) -> list[dict[str, Any]]:
    from curate.steps.coverage import compute_coverage

    plain = [r.model_copy(update={"checks": ()}) for r in records]
    a = {(c["category"], c["rule"]): c for c in compute_coverage(old, plain).as_dict()["cells"]}
    b = {(c["category"], c["rule"]): c for c in compute_coverage(new, plain).as_dict()["cells"]}
    out = []
    for key in list(a) + [k for k in b if k not in a]:
        ca, cb = a.get(key), b.get(key)
        if ca is None or cb is None or ca["count"] != cb["count"] or ca["ok"] != cb["ok"]:
            out.append(
                {
                    "category": key[0],
                    "rule": key[1],
                    "before": ca["count"] if ca else None,
                    "after": cb["count"] if cb else None,
                    "ok_before": ca["ok"] if ca else None,
                    "ok_after": cb["ok"] if cb else None,
                }
            )
    return out


def impact(
    old: Spec,
    new: Spec,
    *,
    out_dir: str | Path | None = None,
    labels: Iterable[str | Path] = (),
    diff: SpecDiff | None = None,
    limit: int = 20,
) -> dict[str, Any]:
    """What the change from `old` to `new` does to a build folder (made under `old`) and to labeled records.

    Labels without `labels.rules_sha` are taken as made under `old`."""
    diff = diff or diff_specs(old, new)
    out: dict[str, Any] = {}
    old_rules = rules_sha(old)
    stale: list[dict[str, Any]] = []
    n_labels = 0
    for path in labels:
        for rec in _records(Path(path)):
            if not rec.is_human_reviewed:
                continue
            n_labels += 1
            under = (
                rec.labels.get("rules_sha") if isinstance(rec.labels.get("rules_sha"), dict) else old_rules
            )
            why = stale_rules(under, new, ticked=rec.violates)
            if why:
                stale.append(
                    {
                        "id": rec.id,
                        "task": rec.source.task,
                        "annotation": rec.source.annotation,
                        "rules": [f"{r} ({w})" for r, w in why],
                    }
                )
    out["labels"] = {"checked": n_labels, "stale": len(stale), "examples": stale[:limit]}
    if out_dir is None:
        return out
    out_dir = Path(out_dir)
    if not (out_dir / "manifest.json").exists():
        raise SpecError(
            f"{out_dir}: no manifest.json (not a build folder); pass the folder `curate build` wrote"
        )
    sft, pairs = _exported(out_dir)
    now_fail: dict[str, list[str]] = {}
    now_pass: dict[str, list[str]] = {}
    for rec in sft:
        a, b = _status(old, rec, rec.response_text()), _status(new, rec, rec.response_text())
        for rid in set(a) | set(b):
            was, now = a.get(rid, "skip"), b.get(rid, "skip")
            if was != "fail" and now == "fail":
                now_fail.setdefault(rid, []).append(rec.id)
            elif was == "fail" and now != "fail":
                now_pass.setdefault(rid, []).append(rec.id)
    broken = []
    for pair in pairs:
        why = _pair_proof(new, pair)
        if why and not _pair_proof(old, pair):
            broken.append({"id": pair.id, "why": why})
    out["exported"] = {
        "checked": len(sft),
        "now_fail": {r: {"count": len(v), "ids": v[:limit]} for r, v in sorted(now_fail.items())},
        "now_pass": {r: {"count": len(v), "ids": v[:limit]} for r, v in sorted(now_pass.items())},
    }
    out["pairs"] = {"checked": len(pairs), "broken": len(broken), "examples": broken[:limit]}
    new_rules = rules_sha(new)
    new_cats = {r.id: r.category for r in new.rules}
    evals = []
    for p in sorted((out_dir / "evals").glob("*.json")) if (out_dir / "evals").is_dir() else []:
        try:
            rep = orjson.loads(p.read_bytes())
        except orjson.JSONDecodeError:
            continue
        measured = rep.get("rules_sha") or old_rules
        cats = {r.get("rule"): r.get("category") for r in rep.get("rules", []) if isinstance(r, dict)}
        auto_new = {r.id for r in new.automatic_rules()}
        reasons = [
            f"{rid} changed"
            for rid, h in measured.items()
            if rid in new_rules and new_rules[rid] != h and rid in auto_new
        ]
        reasons += [f"{rid} removed" for rid in measured if rid not in new_rules and rid in cats]
        reasons += [f"{rid} not measured" for rid in auto_new if rid not in cats]
        reasons += [
            f"{rid} moved to {new_cats[rid]}"
            for rid, c in cats.items()
            if rid in new_cats and c is not None and c != new_cats[rid]
        ]
        if reasons:
            evals.append({"file": str(p), "reasons": reasons})
    out["evals"] = {"stale": len(evals), "files": evals}
    out["coverage"] = {"moved": _coverage_moves(old, new, sft + list(pairs))}
    return out


# ---------------------------------------------------------------- text


def render(diff: SpecDiff, imp: dict[str, Any] | None) -> list[str]:
    """The diff and its impact as lines for people."""
    lines = [f"spec {diff.old} -> {diff.new}" + (" (same version hash)" if diff.same_version else "")]
    for r in diff.rules:
        lines.append(f"  rule {r['rule']}: {', '.join(r['change'])}")
        if "wording" in r["change"]:
            lines.append(f"    - says: {r['old']['says']}")
            lines.append(f"    + says: {r['new']['says']}")
        if "check" in r["change"]:
            lines.append(f"    - check: {orjson.dumps(r['old']['check']).decode()[:200]}")
            lines.append(f"    + check: {orjson.dumps(r['new']['check']).decode()[:200]}")
        if "category" in r["change"]:
            lines.append(f"    category: {r['old']['category']} -> {r['new']['category']}")
    for c in diff.cases:
        lines.append(f"  case {c['case']}: {c['change']}")
    if diff.output:
        lines.append("  output: changed")
    if diff.settings:
        lines.append(f"  settings changed: {', '.join(diff.settings)}")
    if not (diff.rules or diff.cases or diff.output or diff.settings):
        lines.append("  no change")
    elif diff.old == diff.new and not diff.same_version:
        lines.append(
            f"  note: the contract changed but the version did not ({diff.new}); bump `version` so "
            "builds, Label Studio projects and evals of the two keep apart"
        )
    if imp is None:
        return lines
    lab = imp["labels"]
    lines.append(f"impact: {lab['stale']} of {lab['checked']} labels stale")
    for ex in lab["examples"][:5]:
        lines.append(
            f"    {'task ' + str(ex['task']) if ex['task'] is not None else 'record'} ({ex['id']}): "
            f"{', '.join(ex['rules'])}"
        )
    if "exported" in imp:
        e = imp["exported"]
        for key, word in (("now_fail", "now fail"), ("now_pass", "newly pass")):
            for rid, v in e[key].items():
                lines.append(f"  {v['count']} exported records {word} {rid}")
        p = imp["pairs"]
        lines.append(f"  {p['broken']} of {p['checked']} pairs no longer proven")
        for ex in p["examples"][:5]:
            lines.append(f"    pair {ex['id']}: {ex['why']}")
        lines.append(f"  {imp['evals']['stale']} eval results no longer measure the current spec")
        for ev in imp["evals"]["files"][:5]:
            lines.append(f"    {ev['file']}: {', '.join(ev['reasons'])}")
        moved = imp["coverage"]["moved"]
        lines.append(f"  {len(moved)} coverage cells move")
        for m in moved[:10]:
            lines.append(
                f"    {m['category']} x {m['rule']}: {m['before']} -> {m['after']}"
                + (" (target no longer met)" if m["ok_before"] and m["ok_after"] is False else "")
            )
    return lines


__all__ = ["SpecDiff", "diff_specs", "impact", "load_spec_ref", "render"]
