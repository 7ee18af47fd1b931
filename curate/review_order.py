"""Review by value: order labeling tasks so that a labeler's first hour finds the most errors.

    >>> from curate.spec import load_spec
    >>> from curate.records import SFTRecord, Message
    >>> from curate.review_order import value_order
    >>> spec = load_spec("specs/support-triage")
    >>> ok = SFTRecord.build(messages=(Message(role="user", content="hi"), Message(role="assistant",
    ...     content='{"intent": "other", "entities": {}, "missing_info": [], "next_step": "Greet back."}')))
    >>> bad = ok.model_copy(update={"category": "negative", "violates": ("no-action-claims",)})
    >>> [s.record.category for s in value_order(spec, [ok, bad])]   # a label the checks contradict first
    ['negative', 'typical']

Each record gets a score, the sum of the signals that make an error likely or a review worth most:
- `label_contradicts_checks` (4): the record's own label disagrees with the automatic checks: a negative whose
  named rules all pass, or a record not marked negative that fails a rule;
- `judge_disagrees` (3): a judge rule's verdict differs from the label (given verdicts);
- `annotator_disagreement` (3): the labelers split (`labels.agreement` below 1);
- `near_boundary` (1 per rule): a length check within 10% of its limit, a question count one off its target;
- `eval_failure` (2): the prompt failed in an eval (given failing prompt texts);
- `uncovered_cell` (1): the record would count in a coverage cell under its target;
- `cluster_representative` (1, +1 from 5 members): the kept twin of a near-duplicate cluster (given cluster
  sizes). Ties keep input order, so the order is deterministic.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from curate.checks import check_response
from curate.checks.context import CheckContext
from curate.records import PreferenceRecord, SFTRecord
from curate.spec import Spec

Record = SFTRecord | PreferenceRecord
WEIGHTS = {
    "label_contradicts_checks": 4.0,
    "judge_disagrees": 3.0,
    "annotator_disagreement": 3.0,
    "near_boundary": 1.0,
    "eval_failure": 2.0,
    "uncovered_cell": 1.0,
    "cluster_representative": 1.0,
}
MARGIN = 0.10


@dataclass
class Scored:
    record: Record
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    index: int = 0

    def add(self, signal: str, detail: str, times: float = 1.0) -> None:
        self.score += WEIGHTS[signal] * times
        self.reasons.append(f"{signal}: {detail}")


def _count(kind: str, text: str) -> int:
    if kind == "max_chars":
        return len(text)
    if kind == "max_words":
        return len(text.split())
    if kind == "max_sentences":
        return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s])
    return len(re.findall(r"\?", text))


def _boundaries(spec: Spec, rec: Record) -> list[str]:
    """Rules whose measured value sits near their limit (either side)."""
    ctx = CheckContext(
        spec=spec,
        response=rec.response_text(),
        user_text=rec.user_text(),
        category=rec.category,
        tags=frozenset(rec.tags),
    )
    out = []
    for rule in spec.automatic_rules():
        check = rule.check
        kind = getattr(check, "kind", "")
        if kind not in ("max_chars", "max_words", "max_sentences", "question_count"):
            continue
        if ctx.when_fails(check.when):  # type: ignore[union-attr]
            continue
        text = ctx.text(check.field)  # type: ignore[union-attr]
        if text is None:
            continue
        n = _count(kind, text)
        if kind == "question_count":
            target = (
                check.equals
                if check.equals is not None
                else (
                    check.max
                    if check.max is not None  # type: ignore
                    else check.min
                )
            )  # type: ignore[union-attr]
            if target is not None and abs(n - target) == 1:
                out.append(f"{rule.id} ({n} questions, wants {target})")
        else:
            limit = check.max  # type: ignore[union-attr]
            if limit and abs(n - limit) <= max(1, MARGIN * limit):
                out.append(f"{rule.id} ({n} of {limit})")
    return out


def _agreement_split(labels: Mapping[str, Any]) -> bool:
    got = labels.get("agreement")
    if isinstance(got, str) and "/" in got:
        a, _, b = got.partition("/")
        return a.isdigit() and b.isdigit() and int(a) < int(b)
    return False


def value_order(
    spec: Spec,
    records: Iterable[Record],
    *,
    judge: Mapping[str, Mapping[str, bool]] | None = None,
    eval_failures: Iterable[str] = (),
    cluster_sizes: Mapping[str, int] | None = None,
    coverage: Any = None,
) -> list[Scored]:
    """The records, most valuable review first, each with its score and reasons.

    `judge`: {record id: {judge rule id: passed}}; `eval_failures`: user texts of prompts that failed an eval;
    `cluster_sizes`: {kept record id: members of its near-duplicate cluster}; `coverage`: a Coverage (default:
    computed over `records`)."""
    from curate.steps.coverage import compute_coverage, record_hits

    recs = list(records)
    failing_prompts = {" ".join(t.split()).casefold() for t in eval_failures}
    cov = coverage if coverage is not None else compute_coverage(spec, recs)
    under = {(c.category, c.rule) for c in cov.under_target()} if hasattr(cov, "under_target") else set()
    auto = spec.automatic_rules()
    out = []
    for i, rec in enumerate(recs):
        s = Scored(rec, index=i)
        results = {
            r.rule: r.status
            for r in check_response(
                spec,
                rec.response_text(),
                user_text=rec.user_text(),
                category=rec.category,
                tags=rec.tags,
                rules=auto,
            )
        }
        failed = {r for r, st in results.items() if st == "fail"}
        named = {v for v in rec.violates if v in results}
        if rec.is_negative and named and not (named & failed):
            s.add(
                "label_contradicts_checks",
                f"marked as breaking {', '.join(sorted(named))}, the checks pass it",
            )
        elif not rec.is_negative and failed:
            s.add("label_contradicts_checks", f"not marked negative, fails {', '.join(sorted(failed))}")
        for rid, passed in (judge or {}).get(rec.id, {}).items():
            if passed == (rid in rec.violates):
                s.add("judge_disagrees", f"judge says {'pass' if passed else 'fail'} on {rid}")
        if _agreement_split(rec.labels):
            s.add("annotator_disagreement", f"labelers agreed {rec.labels['agreement']}")
        near = _boundaries(spec, rec)
        if near:
            s.add("near_boundary", ", ".join(near), times=len(near))
        if failing_prompts and " ".join(rec.user_text().split()).casefold() in failing_prompts:
            s.add("eval_failure", "its prompt failed in an eval")
        if under:
            cells = [c for c in record_hits(spec, rec, auto) if c in under]
            if cells:
                s.add("uncovered_cell", ", ".join(f"{c} x {r}" for c, r in cells[:3]))
        size = (cluster_sizes or {}).get(rec.id, 1)
        if size > 1:
            s.add(
                "cluster_representative", f"kept for {size} near-duplicates", times=2.0 if size >= 5 else 1.0
            )
        out.append(s)
    out.sort(key=lambda x: (-x.score, x.index))
    return out


def ordered_for_push(spec: Spec, inputs: list[Any] | None, *, ctx: Any) -> list[Record]:
    """The records `curate label push` would read (inputs, else the spec's data), most valuable first.

    Beside the records' own signals: cluster sizes and eval failures from the spec's default build folder when
    one exists (clusters.jsonl, evals/*.json)."""
    from pathlib import Path

    import orjson

    from curate.errors import LabelingError
    from curate.labeling.push import read_records

    paths = list(inputs) if inputs else spec.data_paths()
    if not paths:
        raise LabelingError(f"{spec.ref} lists no data files; pass --input FILE")
    records = list(read_records(paths, spec=spec, ctx=ctx))
    out_dir = spec.default_out_dir()
    sizes: dict[str, int] = {}
    failing: list[str] = []
    if (out_dir / "clusters.jsonl").exists():
        with open(out_dir / "clusters.jsonl", "rb") as fh:
            sizes = cluster_sizes(orjson.loads(line) for line in fh if line.strip())
    for p in sorted(Path(out_dir, "evals").glob("*.json")) if (out_dir / "evals").is_dir() else []:
        try:
            rep = orjson.loads(p.read_bytes())
        except orjson.JSONDecodeError:
            continue
        for item in rep.get("items") or []:
            if isinstance(item, dict) and item.get("failed"):
                prompt = item.get("prompt")
                if isinstance(prompt, list):
                    prompt = "\n".join(
                        str(m.get("content", ""))
                        for m in prompt
                        if isinstance(m, dict) and m.get("role") == "user"
                    )
                if isinstance(prompt, str):
                    failing.append(prompt)
    return [s.record for s in value_order(spec, records, cluster_sizes=sizes, eval_failures=failing)]


def cluster_sizes(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """{kept id: cluster size} from a build's clusters.jsonl rows."""
    got: Counter[str] = Counter(str(r.get("kept")) for r in rows if r.get("kept"))
    return {k: n + 1 for k, n in got.items()}


__all__ = ["MARGIN", "WEIGHTS", "Scored", "cluster_sizes", "ordered_for_push", "value_order"]
