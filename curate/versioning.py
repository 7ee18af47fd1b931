"""The spec as a versioned contract: content hashes of rules, case categories and the output schema.

    >>> from curate.spec import load_spec
    >>> from curate.versioning import rules_sha, spec_version, stale_rules
    >>> spec = load_spec("specs/support-triage")
    >>> hashes = rules_sha(spec)
    >>> len(hashes["valid-json"])
    16
    >>> stale_rules(hashes, spec)
    []
    >>> stale_rules({**hashes, "valid-json": "0" * 16}, spec)
    [('valid-json', 'changed')]

A rule's hash covers what a labeler or a check judges: its id, its `says` (whitespace collapsed, so re-flowing
YAML changes nothing), its check with every parameter (a json_schema check without its own schema includes
output.schema, the schema it really uses). The rule's failure category is NOT part of it: moving a rule from
"instruction" to "safety" changes no verdict, so labels made under it stay valid; the category is part of the
spec's version (`spec_version(...)["sha"]`), so eval results and reports still see the change.

Labels carry the hashes they were made under (`labels.rules_sha`, put on the task at push, copied onto pulled
records); a label is stale for a rule whose hash changed, for a rule added since (the labeler never judged
it), and for a removed rule only when the label ticked it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from curate.spec import JsonSchemaCheck, Rule, Spec

HASH_LEN = 16


def _canon(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def _digest(obj: Any) -> str:
    return hashlib.sha256(_canon(obj)).hexdigest()[:HASH_LEN]


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def check_content(spec: Spec, rule: Rule) -> Any:
    """The rule's check as data, with the schema a json_schema check really uses filled in."""
    check = rule.check
    if check == "human":
        return "human"
    body = check.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(check, JsonSchemaCheck) and check.schema_ is None:
        body["schema"] = spec.output.schema_
    return body


def rule_content(spec: Spec, rule: Rule) -> dict[str, Any]:
    """What a rule's hash covers: id, wording and check (not its failure category)."""
    return {"id": rule.id, "says": _words(rule.says), "check": check_content(spec, rule)}


def rule_hash(spec: Spec, rule: Rule) -> str:
    return _digest(rule_content(spec, rule))


_MEMO: dict[int, tuple[Spec, dict[str, str]]] = {}


def rules_sha(spec: Spec) -> dict[str, str]:
    """{rule id: content hash} for every rule of `spec`, in spec order (made once per spec object)."""
    hit = _MEMO.get(id(spec))
    if hit is not None and hit[0] is spec:
        return dict(hit[1])
    got = {r.id: rule_hash(spec, r) for r in spec.rules}
    if len(_MEMO) > 64:
        _MEMO.clear()
    _MEMO[id(spec)] = (spec, got)
    return dict(got)


def spec_version(spec: Spec) -> dict[str, Any]:
    """The spec's version as the set of its parts' hashes: rules, their categories, case categories, output.

    `sha` hashes them all: two specs with the same `sha` build, label and evaluate alike (the file's sha256
    also
    moves with comments and formatting)."""
    out: dict[str, Any] = {
        "rules": rules_sha(spec),
        "rule_categories": {r.id: r.category for r in spec.rules},
        "cases": {name: _digest(c.model_dump(mode="json")) for name, c in spec.cases.items()},
        "output": _digest(spec.output.model_dump(mode="json", by_alias=True)),
    }
    out["sha"] = _digest(out)
    return out


# ---------------------------------------------------------------- what an export row was judged against


def rule_set_key(rules: Mapping[str, str]) -> str:
    """The content hash (16 hex) of a {rule id: rule hash} mapping: the export rows' `rules` (in `lineage`)."""
    return _digest(dict(sorted(rules.items())))


def judged_rules(
    spec: Spec, labels: Mapping[str, Any] | None = None, counting: Iterable[str] = ()
) -> dict[str, str]:
    """{rule id: hash} a record was judged against: the code-checked rules and the `counting` judge rules (those
    whose calibration passes the gate, curate.judge.gate) under `spec`'s current hashes (the build checked them),
    and every other rule under the hash its label was made with (`labels.rules_sha`: the person judged it; a
    stale label shows an old hash). A human rule of an unlabeled record was judged by no one: not listed."""
    current = rules_sha(spec)
    checked = {r.id for r in spec.automatic_rules()} | set(counting)
    out = {rid: h for rid, h in current.items() if rid in checked}
    under = labels.get("rules_sha") if isinstance(labels, Mapping) else None
    if isinstance(under, Mapping):
        out.update({rid: str(h) for rid, h in under.items() if rid not in checked})
    return out


_STAMPS: dict[tuple[int, frozenset[str]], tuple[Spec, dict[str, str]]] = {}


def row_stamp(
    spec: Spec, labels: Mapping[str, Any] | None = None, counting: frozenset[str] = frozenset()
) -> dict[str, str]:
    """{"spec_version": the spec's version hash, "rules": rule_set_key(judged_rules(...))}: what an export row
    says it was judged against (two 16-hex strings; the manifest's `spec.rule_sets` maps `rules` back to the
    hashes). Made once per spec for the rows without labels."""
    key = (id(spec), counting)
    hit = _STAMPS.get(key)
    if hit is not None and hit[0] is spec:
        base = hit[1]
    else:
        base = {
            "spec_version": spec_version(spec)["sha"],
            "rules": rule_set_key(judged_rules(spec, None, counting)),
        }
        if len(_STAMPS) > 64:
            _STAMPS.clear()
        _STAMPS[key] = (spec, base)
    if not (isinstance(labels, Mapping) and isinstance(labels.get("rules_sha"), Mapping)):
        return base
    return {"spec_version": base["spec_version"], "rules": rule_set_key(judged_rules(spec, labels, counting))}


def rule_sets(
    spec: Spec, labels: Iterable[Mapping[str, Any] | None], counting: frozenset[str] = frozenset()
) -> dict[str, dict[str, str]]:
    """{rules key: {rule id: hash}} for the rows of a build (the unlabeled rows' set and every labeled one's)."""
    base = judged_rules(spec, None, counting)
    out = {rule_set_key(base): base}
    for lab in labels:
        if isinstance(lab, Mapping) and isinstance(lab.get("rules_sha"), Mapping):
            got = judged_rules(spec, lab, counting)
            out.setdefault(rule_set_key(got), got)
    return out


def card_rule_sets(manifest: Mapping[str, Any]) -> list[str]:
    """The dataset card's lines on what each row was judged against (the manifest's `spec.rule_sets`)."""
    spec = manifest.get("spec") or {}
    sets = spec.get("rule_sets") or {}
    if not sets:
        return []
    out = [
        "",
        "### What each row was judged against",
        "",
        (
            "Every row's `lineage` (a JSON string) holds `spec_version`: the hash of the spec's rules, case "
            f"categories and output schema (`{spec.get('version_sha', '')}` for this build), and `rules`: the key "
            "of the set of rule hashes the row was judged against: the rules checked by code (and judge rules "
            "whose calibration passes the gate) under this spec, the other rules under the hashes its human "
            "label was made with. A rule whose hash differs from the spec's (`manifest.json` `spec.rules_sha`) "
            "was judged under an older wording or check."
        ),
        "",
        "| rules key | rule hashes |",
        "|---|---|",
    ]
    for key, rules in sets.items():
        out.append(f"| `{key}` | " + ", ".join(f"`{rid}` {h}" for rid, h in rules.items()) + " |")
    return out


def stale_rules(
    label_rules: Mapping[str, str] | None, spec: Spec, *, ticked: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """[(rule id, why)] that make a label made under `label_rules` stale under `spec`; [] when it still holds.

    why: "changed" (hash differs), "added" (the labeler never saw the rule), "removed" (the label ticked a
    rule
    the spec no longer has). `label_rules=None` (a label from before rule hashes) is stale for every rule
    ("unknown")."""
    current = rules_sha(spec)
    if label_rules is None:
        return [(rid, "unknown") for rid in current]
    out = []
    for rid, h in current.items():
        if rid not in label_rules:
            out.append((rid, "added"))
        elif label_rules[rid] != h:
            out.append((rid, "changed"))
    ticked_set = set(ticked)
    out += [(rid, "removed") for rid in label_rules if rid not in current and rid in ticked_set]
    return out


def label_rules_of(record: Any) -> dict[str, str] | None:
    """The rule hashes a labeled record was judged under (`labels.rules_sha`), or None."""
    got = (getattr(record, "labels", None) or {}).get("rules_sha")
    return dict(got) if isinstance(got, dict) else None


def stale_labeled(records: Iterable[Any], spec: Spec) -> list[dict[str, Any]]:
    """Labeled records (reviewed, carrying `labels.rules_sha`) whose labels are stale under `spec`.

    Records without `labels.rules_sha` are not judged here (imported data, or labels from before rule
    hashes)."""
    out = []
    for rec in records:
        rules = label_rules_of(rec)
        if rules is None:
            continue
        stale = stale_rules(rules, spec, ticked=getattr(rec, "violates", ()) or ())
        if stale:
            src = rec.source
            out.append(
                {
                    "id": rec.id,
                    "task": src.task,
                    "annotation": src.annotation,
                    "where": src.where(),
                    "rules": [f"{rid} ({why})" for rid, why in stale],
                }
            )
    return out


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the file's bytes contain `needle` (read in 4 MB blocks that overlap by len(needle) - 1)."""
    tail = b""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            if needle in tail + block:
                return True
            tail = block[-(len(needle) - 1) :]
    return False


def stale_labels_in(paths: Iterable[str | Path], spec: Spec, *, limit: int = 20) -> dict[str, Any]:
    """Labeled records in input files whose labels were made under other rule hashes than `spec`'s.

    Only lines holding `"rules_sha"` are parsed (a byte search first), so a scan of unlabeled data costs a
    read.
    Returns {"labeled", "stale", "examples": [{"where", "id", "rules"}]}."""
    from curate.records import read_jsonl, record_from_native

    labeled = stale = 0
    examples: list[dict[str, Any]] = []
    for path in paths:
        p = Path(path)
        if p.suffix != ".jsonl" or not p.is_file():
            continue
        if not _holds(p, b'"rules_sha"'):
            continue
        for line, obj in read_jsonl(p):
            if not isinstance(obj, dict) or not isinstance((obj.get("labels") or {}).get("rules_sha"), dict):
                continue
            labeled += 1
            why = stale_rules(obj["labels"]["rules_sha"], spec, ticked=obj.get("violates") or ())
            if why:
                stale += 1
                if len(examples) < limit:
                    try:
                        rid = record_from_native({k: v for k, v in obj.items() if k not in ("id", "kind")}).id
                    except (ValueError, TypeError):
                        rid = None
                    examples.append(
                        {"where": f"{p}:{line}", "id": rid, "rules": [f"{r} ({w})" for r, w in why]}
                    )
    return {"labeled": labeled, "stale": stale, "examples": examples}


__all__ = [
    "card_rule_sets",
    "check_content",
    "judged_rules",
    "label_rules_of",
    "row_stamp",
    "rule_content",
    "rule_hash",
    "rule_set_key",
    "rule_sets",
    "rules_sha",
    "spec_version",
    "stale_labeled",
    "stale_labels_in",
    "stale_rules",
]
