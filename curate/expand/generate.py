"""`expand(spec)`: edge, adversarial and negative cases, preference pairs, and (optionally) gap filling.

    >>> from curate.spec import load_spec
    >>> from curate.expand import expand, write_outputs
    >>> result = expand(load_spec("specs/support-triage"), seed=7, fill_gaps=True)
    >>> write_outputs(result, "out/expand/support-triage")                      # doctest: +SKIP
    >>> result.summary["counts"]                                                  # doctest: +SKIP
    {'records': 212, 'pairs': 64, 'prompts_to_label': 140, ...}

Outputs (see `write_outputs`):
- records.jsonl: SFT records with a response: edge and adversarial variants that inherit their parent's
  response (only when the variant keeps the request's meaning and the response still passes every automatic
  rule in its new category and tags), and negatives (category negative, `violates` = every rule the mutant
  breaks, verified).
- pairs.jsonl: preference pairs, chosen = the parent's valid response, rejected = its mutant.
- prompts_to_label.jsonl: new prompts without a response, in our native shape `{"messages": [{"role": "user",
  ...}], "category", "tags", "source"}` -- the input of `curate label push --kind write`. With a local model
  (`model=`), each row also has `"draft": "<the model's answer>"`, a prediction for a reviewer to fix.
- summary.json: counts per generator, near-duplicates dropped, gap filling per cell, coverage before/after.

Every generated record has `source.generator` (curate.expand.edge | .adversarial | .mutate | .gaps | .seed),
`source.params` (transform, template, pattern, rule, mutation method, seed) and `source.parent` (the parent
record's id, or `seed:<category>:<n>`), plus the tag `generated`. Everything is a function of (spec, data,
seed): each item draws from its own `random.Random(f"{seed}:{generator}:{parent}:{i}")`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rapidfuzz import fuzz
from rapidfuzz import process as rf_process

from curate.checks import run_rules
from curate.errors import CurateError
from curate.expand import adversarial as adv
from curate.expand import edge
from curate.expand.mutators import Mutant, mutate
from curate.expand.pairs import make_pair
from curate.records import (LineError, Message, PreferenceRecord, SFTRecord, Source, dump_record, normalize_text, read_jsonl,
                            record_from_native, write_atomic, write_jsonl_atomic)
from curate.spec import Rule, Spec
from curate.steps.coverage import compute_coverage

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]
GEN = "curate.expand"
SHORT = 80  # characters: prompts this short are also near-checked exhaustively


@dataclass
class Parent:
    """A valid example the generators start from: its prompt turns, its response, and its rule results."""

    record: SFTRecord | PreferenceRecord
    prompt: tuple[Message, ...]
    response: str
    status: dict[str, str]

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def last_user(self) -> str:
        for m in reversed(self.prompt):
            if m.role == "user":
                return m.content
        return ""

    def passes(self, rule_id: str) -> bool:
        return self.status.get(rule_id) == "pass"


@dataclass
class ExpandResult:
    spec: Spec
    records: list[SFTRecord] = field(default_factory=list)
    pairs: list[PreferenceRecord] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def with_user(prompt: tuple[Message, ...], text: str) -> tuple[Message, ...]:
    """The prompt turns with the last user turn's text replaced (earlier turns kept)."""
    out = list(prompt)
    for i in range(len(out) - 1, -1, -1):
        if out[i].role == "user":
            out[i] = out[i].model_copy(update={"content": text})
            return tuple(out)
    return tuple(out) + (Message(role="user", content=text),)


def protected_values(response: str, user_text: str) -> set[str]:
    """Strings of the response (JSON string values, or words) that are copied from the user's text."""
    try:
        doc = orjson.loads(response)
    except orjson.JSONDecodeError:
        doc = None
    vals: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            vals.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    low = user_text.lower()
    return {v for v in vals if 0 < len(v) <= 80 and v.lower() in low}


def _conversation_similarity(a: SFTRecord | PreferenceRecord, b: SFTRecord | PreferenceRecord) -> float:
    from curate.near import similarity

    try:
        from curate.steps.dedup import dedup_text
    except ImportError:  # pragma: no cover - the dedup step is optional here
        return 0.0
    return similarity(dedup_text(a), dedup_text(b))


class Expander:
    def __init__(self, spec: Spec, *, seed: int = 0, near_threshold: float = 0.8, model: Any = None,
                 progress: Progress | None = None) -> None:
        from curate.near import NearIndex

        self.spec = spec
        self.seed = seed
        self.model = model
        self.model_paraphrases = 10
        self.progress = progress
        self.result = ExpandResult(spec=spec)
        self.near = NearIndex(threshold=near_threshold)
        self.near_threshold = near_threshold
        self._short: list[str] = []
        self.counts: Counter[str] = Counter()
        self.rules = spec.automatic_rules()
        self.data: list[SFTRecord | PreferenceRecord] = []
        self.parents: list[Parent] = []
        self._load_data()

    # ------------------------------------------------------------ set-up
    def rng(self, *parts: Any) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def _load_data(self) -> None:
        for path in self.spec.data_paths():
            if not path.is_file():
                raise CurateError(f"{path}: the spec's data file is missing; fix `data:` in {self.spec.path}")
            for line, obj in read_jsonl(path):
                if isinstance(obj, LineError):
                    self.counts["data_bad_lines"] += 1
                    continue
                try:
                    rec = record_from_native(obj, spec=self.spec.ref, source=Source(file=str(path), line=line))
                except Exception:  # noqa: BLE001 - the build quarantines it; here it is just not a parent
                    self.counts["data_bad_lines"] += 1
                    continue
                self.data.append(rec)
        for rec in self.data:
            self._remember(("data", rec.id), rec.user_text())
            if rec.is_negative:
                continue
            results = run_rules(self.spec, rec)
            status = {r.rule: r.status for r in results}
            if "fail" in status.values():
                continue
            prompt = tuple(rec.prompt_messages())
            if not any(m.role == "user" for m in prompt):
                continue
            self.parents.append(Parent(rec, prompt, rec.response_text(), status))
        for cat, case in self.spec.cases.items():
            for i, s in enumerate(case.seeds):
                self._remember(("seed", cat, i), s)

    # ------------------------------------------------------------ emitters
    def _remember(self, key: Any, text: str) -> None:
        self.near.add(key, text)
        norm = normalize_text(text)
        if len(norm) <= SHORT:
            self._short.append(norm)

    def novel(self, text: str, key: Any) -> bool:
        """True (and remembered) when `text` is no near-duplicate of any prompt seen so far.

        NearIndex's MinHash banding can miss short texts (few shingles), so texts up to SHORT characters are
        also compared exhaustively with the same score (rapidfuzz ratio) against the short ones seen so far.
        """
        norm = normalize_text(text)
        dup = not norm or bool(self.near.query(text))
        if not dup and len(norm) <= 2 * SHORT and self._short:
            best = rf_process.extractOne(norm, self._short, scorer=fuzz.ratio,
                                         score_cutoff=self.near_threshold * 100)
            dup = best is not None
        if dup:
            self.counts["dropped_near_duplicate"] += 1
            return False
        self._remember(key, text)
        return True

    def add_record(self, parent: Parent, text: str, category: str, tags: tuple[str, ...], generator: str,
                   params: dict[str, Any], *, require: str | None = None) -> SFTRecord | None:
        """An SFT record: the variant prompt + the parent's response, kept only if every rule still passes."""
        tags = tuple(dict.fromkeys(tuple(t for t in parent.record.tags if not t.startswith(("pattern:", "rule:")))
                                   + tags + ("generated",)))
        rec = SFTRecord.build(
            messages=with_user(parent.prompt, text) + (Message(role="assistant", content=parent.response),),
            spec=self.spec.ref, category=category, tags=tags,
            source=Source(generator=generator, params={**params, "seed": self.seed, "response": "parent"},
                          parent=parent.id))
        results = run_rules(self.spec, rec)
        if any(r.status == "fail" for r in results):
            self.counts["variant_response_fails"] += 1
            return None
        if require is not None and not any(r.rule == require and r.status == "pass" for r in results):
            return None
        rec = rec.with_checks(results)
        if _conversation_similarity(rec, parent.record) >= self.near_threshold:
            # same answer, slightly different prompt: `curate build`'s dedup (whole conversation) sees twins
            self.counts["inherited_near_copies"] += 1
        self.result.records.append(rec)
        self.counts[f"records:{generator}"] += 1
        return rec

    def add_prompt(self, text: str, category: str, tags: tuple[str, ...], generator: str, params: dict[str, Any],
                   parent: str | None, prompt: tuple[Message, ...] | None = None) -> dict[str, Any]:
        msgs = with_user(prompt, text) if prompt else (Message(role="user", content=text),)
        row: dict[str, Any] = {
            "messages": [m.to_trl() for m in msgs],
            "category": category, "tags": list(dict.fromkeys(tags + ("generated",))),
            "source": Source(generator=generator, params={**params, "seed": self.seed},
                             parent=parent).model_dump(exclude_none=True),
        }
        if self.model is not None:
            row["draft"] = self.model.draft(self.spec, [m.to_trl() for m in msgs])
            self.counts["drafts"] += 1
        self.result.prompts.append(row)
        self.counts[f"prompts:{generator}"] += 1
        return row

    def add_negative(self, parent: Parent, mutant: Mutant, *, pair: bool = True) -> SFTRecord | None:
        """The mutant as a negative SFT record (violates = rules it breaks as a negative) and as a pair."""
        tags = tuple(dict.fromkeys(parent.record.tags + ("generated",)))
        params = {"rule": mutant.rule, "method": mutant.method, "seed": self.seed}
        rec = SFTRecord.build(messages=parent.prompt + (Message(role="assistant", content=mutant.text),),
                              spec=self.spec.ref, category="negative", tags=tags,
                              source=Source(generator=f"{GEN}.mutate", params=params, parent=parent.id))
        results = run_rules(self.spec, rec)
        fails = tuple(r.rule for r in results if r.status == "fail")
        out = None
        if mutant.rule in fails:
            out = rec.model_copy(update={"violates": fails}).with_checks(results)
            self.result.records.append(out)
            self.counts["negatives"] += 1
            self.counts["negatives_exact" if fails == (mutant.rule,) else "negatives_with_collateral"] += 1
        if pair:
            p = make_pair(parent.prompt, parent.response, mutant.text, spec=self.spec.ref,
                          category=parent.record.category, tags=tags, violates=mutant.fails,
                          source=Source(generator=f"{GEN}.mutate", params=params, parent=parent.id))
            self.result.pairs.append(p)
            self.counts["pairs"] += 1
        return out

    # ------------------------------------------------------------ generators
    def edge_cases(self, variants: int = 2) -> None:
        sources: list[tuple[str, str, Parent | None]] = []
        for cat in ("edge", "typical"):
            case = self.spec.cases.get(cat)
            for i, s in enumerate(case.seeds if case else ()):
                sources.append((f"seed:{cat}:{i}", s, None))
        sources += [(p.id, p.last_user, p) for p in self.parents if p.record.category == "typical"]
        for n, (pid, text, parent) in enumerate(sources):
            rng = self.rng("edge", pid)
            protect = protected_values(parent.response, parent.last_user) if parent else set()
            primaries = list(edge.PRIMARY)
            rng.shuffle(primaries)
            made = 0
            for primary in primaries:
                if made >= variants:
                    break
                v = edge.variant(text, rng, primary, protect=protect)
                if v is None or not self.novel(v.text, ("edge", pid, primary)):
                    continue
                made += 1
                params = {"transforms": list(v.transforms), **v.params}
                tags = tuple(f"edge:{t}" for t in v.transforms)
                if parent is not None and v.keeps_answer and \
                        self.add_record(parent, v.text, "edge", tags, f"{GEN}.edge", params) is not None:
                    continue
                self.add_prompt(v.text, "edge", tags, f"{GEN}.edge", params, pid,
                                parent.prompt if parent else None)
            if self.model is not None and parent is not None and self.counts["model_paraphrases"] < \
                    self.model_paraphrases:
                self.counts["model_paraphrases"] += 1
                para = self.model.paraphrase(text)
                if para and self.novel(para, ("edge", pid, "model")):
                    self.add_prompt(para, "edge", ("edge:model_paraphrase",), f"{GEN}.edge",
                                    {"transforms": ["model_paraphrase"], "model": self.model.name}, pid,
                                    parent.prompt)
            if self.progress:
                self.progress("edge", n + 1, len(sources))

    def adversarial_cases(self, per_pattern: int = 6) -> None:
        pats = adv.patterns(self.spec)
        case = self.spec.cases.get("adversarial")
        for i, s in enumerate(case.seeds if case else ()):
            if self.novel(s, ("seed", "adversarial-prompt", i)):
                pass  # seeds are already in the index: novel() returns False for them
        requests: list[tuple[str, str, Parent | None]] = [(p.id, p.last_user, p) for p in self.parents
                                                          if p.record.category == "typical"]
        tcase = self.spec.cases.get("typical")
        requests += [(f"seed:typical:{i}", s, None) for i, s in enumerate(tcase.seeds if tcase else ())]
        if not requests:
            return
        for pattern in pats:
            rng = self.rng("adversarial", pattern)
            order = list(range(len(requests)))
            rng.shuffle(order)
            made = 0
            for idx in order:
                if made >= per_pattern:
                    break
                pid, text, parent = requests[idx]
                allowed = [r for r in self.rules if parent is None or parent.passes(r.id)]
                rule = adv.pick_rule(self.spec, pattern, rng, allowed or None)
                if rule is None:
                    continue
                a = adv.attack(self.spec, text, pattern, rule, rng)
                if not self.novel(a.text, ("adversarial", pattern, pid)):
                    continue
                made += 1
                params = {"pattern": pattern, "rule": rule.id, "template": a.template, "bait": a.bait}
                if parent is not None and a.keeps_answer and self.add_record(
                        parent, a.text, "adversarial", a.tags, f"{GEN}.adversarial", params) is not None:
                    continue
                self.add_prompt(a.text, "adversarial", a.tags, f"{GEN}.adversarial", params, pid,
                                parent.prompt if parent else None)

    def negative_cases(self, per_rule: int = 4) -> None:
        for rule in self.rules:
            rng = self.rng("mutate", rule.id)
            donors = [p for p in self.parents if p.passes(rule.id)]
            rng.shuffle(donors)
            exact: list[tuple[Parent, Mutant]] = []
            loose: list[tuple[Parent, Mutant]] = []
            for p in donors:
                if len(exact) >= per_rule:
                    break
                ms = mutate(self.spec, rule, p.response, user_text=p.record.user_text(), category=p.record.category,
                            tags=p.record.tags, rng=self.rng("mutate", rule.id, p.id))
                if ms:
                    (exact if ms[0].exact else loose).append((p, ms[0]))
            chosen = (exact + loose)[:per_rule]
            if not chosen:
                self.counts["rules_without_mutant"] += 1
                self.result.summary.setdefault("rules_without_mutant", []).append(rule.id)
            for p, m in chosen:
                self.add_negative(p, m)


def expand(spec: Spec, *, seed: int = 0, fill_gaps: bool = False, model: Any = None, variants: int = 2,
           per_pattern: int = 6, per_rule: int = 4, near_threshold: float = 0.8,
           progress: Progress | None = None) -> ExpandResult:
    """Run every generator over the spec's seeds and data; see the module docstring for what comes out."""
    ex = Expander(spec, seed=seed, near_threshold=near_threshold, model=model, progress=progress)
    if not ex.parents:
        log.warning("%s: no valid example in the spec's data: only prompts to label can be made", spec.ref)
    ex.edge_cases(variants=variants)
    ex.adversarial_cases(per_pattern=per_pattern)
    ex.negative_cases(per_rule=per_rule)
    gaps_report = None
    if fill_gaps:
        from curate.expand.gaps import fill_gaps as _fill

        gaps_report = _fill(ex)
    res = ex.result
    all_records: list[SFTRecord | PreferenceRecord] = [*ex.data, *res.records, *res.pairs]
    res.summary.update({
        "spec": spec.ref, "seed": seed, "model": getattr(model, "name", None),
        "data": {"records": len(ex.data), "valid_parents": len(ex.parents), "bad_lines": ex.counts["data_bad_lines"]},
        "counts": {"records": len(res.records), "pairs": len(res.pairs), "prompts_to_label": len(res.prompts),
                   **{k: v for k, v in sorted(ex.counts.items()) if k != "data_bad_lines"}},
        "by_category": dict(sorted(Counter(r.category for r in res.records).items())),
        "coverage": compute_coverage(spec, all_records).as_dict(),
    })
    if gaps_report is not None:
        res.summary["gaps"] = gaps_report
    return res


def write_outputs(result: ExpandResult, out_dir: str | Path) -> dict[str, Path]:
    """Write records.jsonl, pairs.jsonl, prompts_to_label.jsonl and summary.json atomically into out_dir."""
    out = Path(out_dir)
    paths = {name: out / name for name in ("records.jsonl", "pairs.jsonl", "prompts_to_label.jsonl",
                                           "summary.json")}
    write_jsonl_atomic(paths["records.jsonl"], (dump_record(r) for r in result.records))
    write_jsonl_atomic(paths["pairs.jsonl"], (dump_record(r) for r in result.pairs))
    write_jsonl_atomic(paths["prompts_to_label.jsonl"], result.prompts)
    write_atomic(paths["summary.json"], orjson.dumps(result.summary, option=orjson.OPT_INDENT_2) + b"\n")
    return paths


__all__ = ["ExpandResult", "Expander", "Parent", "expand", "protected_values", "with_user", "write_outputs"]
