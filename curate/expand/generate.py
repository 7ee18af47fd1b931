"""`expand(spec)`: edge, adversarial and negative cases, preference pairs, and (optionally) gap filling.

    >>> from curate.spec import load_spec
    >>> from curate.expand import expand, write_outputs
    >>> result = expand(load_spec("specs/support-triage"), seed=7, fill_gaps=True)
    >>> write_outputs(result, "out/expand/support-triage")                      # doctest: +SKIP
    >>> result.summary["counts"]                                                  # doctest: +SKIP
    {'records': 212, 'pairs': 64, 'prompts_to_label': 140, ...}

Outputs (see `write_outputs`):
- records.jsonl: SFT records with a response: edge and adversarial variants that keep the request's meaning and
  inherit their parent's response -- only when that response still passes every automatic rule in the new
  category and tags, AND the whole conversation is no near-twin of another (`curate build` compares whole
  conversations; a noisy copy of a prompt with the same answer is a duplicate there). To get there, up to
  MAX_CONTEXT neutral context sentences (or more pressure, for adversarial ones) are added to the message.
- pairs.jsonl: preference pairs, chosen = the parent's valid response, rejected = its mutant (one rule broken,
  verified), category `negative` like the build's own pairs, `violates` = every rule the rejected side breaks.
  One pair per parent prompt, and none on a prompt the data already pairs (the build keeps one pair per
  prompt + chosen answer). The mutants ARE the negatives: they are not repeated as SFT records.
- prompts_to_label.jsonl: new prompts without a response, in our native shape `{"messages": [{"role": "user",
  ...}], "category", "tags", "source"}` -- the input of `curate label push --kind write`. A row may carry
  `"draft"`: the parent's answer (`source.params.draft == "parent"`) when the variant keeps the meaning but was a
  near-copy with it, or a local model's answer (`model=`): a prediction for a reviewer to confirm or fix.
- summary.json: counts per generator, near-duplicates dropped, gap filling per cell, coverage before/after.

Seeds of the spec that no data prompt matches yet are written to prompts_to_label.jsonl as they are (.seed).
Every generated record has `source.generator` (curate.expand.edge | .adversarial | .mutate | .gaps | .seed),
`source.params` (transform, template, pattern, rule, mutation method, seed) and `source.parent` (the parent
record's id, or `seed:<category>:<n>`), plus the tag `generated`. Everything is a function of (spec, data,
seed): each item draws from its own `random.Random(f"{seed}:{generator}:{parent}:{i}")`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from rapidfuzz import fuzz
from rapidfuzz import process as rf_process

from curate.checks import check_response, run_rules
from curate.errors import CurateError
from curate.expand import edge
from curate.expand.cases import CaseGenerators
from curate.expand.mutators import Mutant
from curate.expand.pairs import make_pair
from curate.expand.parents import (  # noqa: F401
    GEN,
    ExpandResult,
    Parent,
    dedup_text_prompt,
    plausible_paraphrase,
    protected_values,
    with_user,
)
from curate.records import (
    LineError,
    Message,
    PreferenceRecord,
    SFTRecord,
    Source,
    dump_record,
    normalize_text,
    read_jsonl,
    record_from_native,
    write_atomic,
    write_jsonl_atomic,
)
from curate.spec import Spec
from curate.steps.coverage import compute_coverage
from curate.steps.dedup import dedup_text

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]
SHORT = 80  # characters: prompts this short are also near-checked exhaustively
MAX_CONTEXT = 3  # extra context sentences tried to make a recast conversation no near-twin of its parent


class Expander(CaseGenerators):
    def __init__(
        self,
        spec: Spec,
        *,
        seed: int = 0,
        near_threshold: float = 0.8,
        model: Any = None,
        max_drafts: int = 50,
        progress: Progress | None = None,
    ) -> None:
        from curate.near_index import NearIndex

        self.spec = spec
        self.seed = seed
        self.model = model
        self.model_paraphrases = min(10, max_drafts)  # a small CPU model writes ~7 tokens/s: bounded calls
        self.max_drafts = max_drafts
        self.progress = progress
        self.result = ExpandResult(spec=spec)
        self.near = NearIndex(threshold=near_threshold)
        self.near_threshold = near_threshold
        self._short: list[str] = []
        self.conv = NearIndex(threshold=near_threshold)  # SFT conversations, as the build dedups them
        self.pconv = NearIndex(threshold=near_threshold)  # pairs: prompt + chosen, as the build dedups them
        self.cat_counts: Counter[str] = Counter()  # data + generated records, by category (for min_share)
        self.counts: Counter[str] = Counter()
        self.rules = spec.automatic_rules()
        self.data: list[SFTRecord | PreferenceRecord] = []
        self.parents: list[Parent] = []
        self._load_data()

    # ------------------------------------------------------------ set-up
    def rng(self, *parts: Any) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def _load_data(self) -> None:
        negative_prompts: set[str] = set()
        for path in self.spec.data_paths():
            if not path.is_file():
                raise CurateError(f"{path}: the spec's data file is missing; fix `data:` in {self.spec.path}")
            for line, obj in read_jsonl(path):
                if isinstance(obj, LineError):
                    self.counts["data_bad_lines"] += 1
                    continue
                try:
                    rec = record_from_native(
                        obj, spec=self.spec.ref, source=Source(file=str(path), line=line)
                    )
                except Exception:  # noqa: BLE001 - the build quarantines it; here it is just not a parent
                    self.counts["data_bad_lines"] += 1
                    continue
                self.data.append(rec)
        for rec in self.data:
            self.cat_counts[rec.category] += 1
            self._remember(("data", rec.id), rec.user_text())
            if isinstance(rec, PreferenceRecord):
                self.pconv.add(("data", rec.id), dedup_text(rec))
            elif rec.is_negative:
                negative_prompts.add(normalize_text(dedup_text_prompt(rec.prompt_messages())))
            else:
                self.conv.add(("data", rec.id), dedup_text(rec))
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
        for p in self.parents:  # the build pairs each data negative with the passing answer to its prompt
            if normalize_text(dedup_text_prompt(p.prompt)) in negative_prompts:
                self.pconv.add(("data-pair", p.id), dedup_text(make_pair(p.prompt, p.response, "-")))
        self.new_seeds: list[tuple[str, int, str]] = []
        for cat, case in self.spec.cases.items():
            for i, s in enumerate(case.seeds):
                if self.prompt_is_new(s):  # a seed the data has no answer for yet: it goes to labeling
                    self.new_seeds.append((cat, i, s))
                self._remember(("seed", cat, i), s)

    def seed_prompts(self) -> None:
        for cat, i, text in self.new_seeds:
            self.add_prompt(text, cat, (), f"{GEN}.seed", {}, f"seed:{cat}:{i}")

    # ------------------------------------------------------------ novelty (prompts, and whole conversations)
    def _remember(self, key: Any, text: str) -> None:
        self.near.add(key, text)
        norm = normalize_text(text)
        if len(norm) <= SHORT:
            self._short.append(norm)

    def prompt_is_new(self, text: str) -> bool:
        """True when `text` is no near-duplicate of any prompt seen so far (data, seeds, generated).

        NearIndex's MinHash banding can miss short texts (few shingles), so texts up to 2*SHORT characters are
        also compared exhaustively with the same score (rapidfuzz ratio) against the short ones seen so far.
        """
        norm = normalize_text(text)
        if not norm or self.near.query(text):
            return False
        if len(norm) <= 2 * SHORT and self._short:
            return (
                rf_process.extractOne(
                    norm, self._short, scorer=fuzz.ratio, score_cutoff=self.near_threshold * 100
                )
                is None
            )
        return True

    def novel(self, text: str, key: Any) -> bool:
        """prompt_is_new(text), and remember it when it is; counts the near-duplicates dropped."""
        if not self.prompt_is_new(text):
            self.counts["dropped_near_duplicate"] += 1
            return False
        self._remember(key, text)
        return True

    def share_allows(self, category: str) -> bool:
        """False when one more `category` record would push another category under its min_share."""
        total = sum(self.cat_counts.values()) + 1
        for name, case in self.spec.cases.items():
            if name == category or not case.min_share:
                continue
            have = self.cat_counts.get(name, 0)
            if have / (total - 1 or 1) >= case.min_share > have / total:
                return False
        return True

    def conversation_is_new(self, rec: SFTRecord) -> bool:
        """No near-twin among the SFT conversations so far, compared as `curate build`'s dedup compares them."""
        return not self.conv.query(dedup_text(rec))

    # ------------------------------------------------------------ emitters
    def _candidate(
        self,
        parent: Parent,
        text: str,
        category: str,
        tags: tuple[str, ...],
        generator: str,
        params: dict[str, Any],
    ) -> tuple[SFTRecord, list[Any]]:
        tags = tuple(
            dict.fromkeys(
                tuple(t for t in parent.record.tags if not t.startswith(("pattern:", "rule:")))
                + tags
                + ("generated",)
            )
        )
        rec = SFTRecord.build(
            messages=with_user(parent.prompt, text) + (Message(role="assistant", content=parent.response),),
            spec=self.spec.ref,
            category=category,
            tags=tags,
            source=Source(
                generator=generator,
                params={**params, "seed": self.seed, "response": "parent"},
                parent=parent.id,
            ),
        )
        return rec, run_rules(self.spec, rec)

    def recast(
        self,
        parent: Parent,
        make: Callable[[int], tuple[str, tuple[str, ...], dict[str, Any]] | None],
        category: str,
        generator: str,
        *,
        key: Any,
        require: str | None = None,
        to_label: bool = True,
        budget: bool = True,
    ) -> str:
        """Recast the parent's prompt (make(k): the variant with k extra context sentences) into `category`,
        keeping the parent's response. Outcomes:

        - "record": a record whose prompt is new, whose conversation is no near-twin of any other (so the
          build's dedup keeps it), and whose response still passes every automatic rule (and `require`);
        - "prompt": the variant went to labeling: with the parent's answer as a draft when only its
          conversation was a near-copy, without one when the inherited answer breaks a rule;
        - "dropped": every variant was a near-duplicate prompt (or `require` did not apply).
        With `budget`, a record that would push another category under its min_share goes to labeling instead.
        """
        fallback: tuple[str, tuple[str, ...], dict[str, Any], str | None] | None = None
        for k in range(MAX_CONTEXT + 1):
            got = make(k)
            if got is None:
                continue
            text, tags, params = got
            if not self.prompt_is_new(text):
                continue
            rec, results = self._candidate(parent, text, category, tags, generator, params)
            failed = [r for r in results if r.status == "fail"]
            if failed:
                self.counts["inherited_answer_fails"] += 1
                if fallback is None:
                    fallback = (text, tags, params, None)
                break
            if require is not None and not any(r.rule == require and r.status == "pass" for r in results):
                continue
            if not self.conversation_is_new(rec):
                if fallback is None:
                    fallback = (text, tags, params, parent.response)
                continue
            if budget and not self.share_allows(category):
                self.counts["held_back_by_shares"] += 1
                fallback = (text, tags, params, parent.response)
                break
            self._remember(key, text)
            self.conv.add(("gen", rec.id), dedup_text(rec))
            self.result.records.append(rec.with_checks(results))
            self.cat_counts[category] += 1
            self.counts[f"records:{generator}"] += 1
            return "record"
        if fallback is not None and to_label:
            text, tags, params, draft = fallback
            self._remember(key, text)
            if draft is not None:
                self.counts["inherited_near_copies_to_label"] += 1
            self.add_prompt(text, category, tags, generator, params, parent.id, parent.prompt, draft=draft)
            return "prompt"
        self.counts["dropped_near_duplicate"] += 1
        return "dropped"

    def add_prompt(
        self,
        text: str,
        category: str,
        tags: tuple[str, ...],
        generator: str,
        params: dict[str, Any],
        parent: str | None,
        prompt: tuple[Message, ...] | None = None,
        *,
        draft: str | None = None,
    ) -> dict[str, Any]:
        msgs = with_user(prompt, text) if prompt else (Message(role="user", content=text),)
        if draft is not None:
            params = {**params, "draft": "parent"}
        row: dict[str, Any] = {
            "messages": [m.to_trl() for m in msgs],
            "category": category,
            "tags": list(dict.fromkeys(tags + ("generated",))),
            "source": Source(
                generator=generator, params={**params, "seed": self.seed}, parent=parent
            ).model_dump(exclude_none=True),
        }
        if draft is not None:
            row["draft"] = draft
        elif self.model is not None and self.counts["drafts"] < self.max_drafts:
            row["draft"] = self.model.draft(self.spec, [m.to_trl() for m in msgs])
            self.counts["drafts"] += 1
        self.result.prompts.append(row)
        self.counts[f"prompts:{generator}"] += 1
        return row

    def _pair_prompts(
        self, parent: Parent, salt: Any
    ) -> Iterator[tuple[tuple[Message, ...], dict[str, Any]]]:
        """The parent's prompt, then recast ones (k context sentences): a pair needs a prompt + chosen answer
        that no other pair has (the build's dedup keeps one pair per prompt + chosen)."""
        yield parent.prompt, {}
        for k in range(1, MAX_CONTEXT + 1):
            v = edge.variant(
                parent.last_user,
                self.rng("pair-prompt", parent.id, salt, k),
                "paraphrase",
                protect=protected_values(parent.response, parent.last_user),
                extra_noise=False,
                context=k,
            )
            if v is not None and self.prompt_is_new(v.text):
                yield (
                    with_user(parent.prompt, v.text),
                    {"prompt": "recast", "transforms": list(v.transforms), **v.params},
                )

    def add_pair(self, parent: Parent, mutant: Mutant) -> PreferenceRecord | None:
        """The mutant as a preference pair (category negative, like the build's own pairs); violates = the
        rules the rejected answer breaks, verified in the pair's context. None when no prompt makes it new."""
        tags = tuple(dict.fromkeys(parent.record.tags + ("generated",)))
        base = {
            "rule": mutant.rule,
            "method": mutant.method,
            "seed": self.seed,
            "parent_category": parent.record.category,
        }
        for prompt, extra in self._pair_prompts(parent, mutant.rule):
            pair = make_pair(
                prompt,
                parent.response,
                mutant.text,
                spec=self.spec.ref,
                category="negative",
                tags=tags,
                source=Source(generator=f"{GEN}.mutate", params={**base, **extra}, parent=parent.id),
            )
            text = dedup_text(pair)
            if self.pconv.query(text):
                continue
            kw = {"user_text": pair.user_text(), "category": pair.category, "tags": pair.tags}
            if any(r.status == "fail" for r in check_response(self.spec, pair.response_text(), **kw)):
                continue
            fails = tuple(r.rule for r in check_response(self.spec, mutant.text, **kw) if r.status == "fail")
            if mutant.rule not in fails:
                continue
            pair = pair.model_copy(update={"violates": fails})
            self.pconv.add(("gen", pair.id), text)
            if extra:
                self._remember(("pair-prompt", pair.id), pair.user_text())
            self.result.pairs.append(pair)
            self.cat_counts[pair.category] += 1
            self.counts["pairs"] += 1
            self.counts["pairs_exact" if fails == (mutant.rule,) else "pairs_with_collateral"] += 1
            return pair
        self.counts["pairs_without_new_prompt"] += 1
        return None


def expand(
    spec: Spec,
    *,
    seed: int = 0,
    fill_gaps: bool = False,
    model: Any = None,
    variants: int = 2,
    per_pattern: int = 6,
    per_rule: int = 4,
    near_threshold: float = 0.8,
    max_drafts: int = 50,
    progress: Progress | None = None,
) -> ExpandResult:
    """Run every generator over the spec's seeds and data; see the module docstring for what comes out."""
    ex = Expander(
        spec, seed=seed, near_threshold=near_threshold, model=model, max_drafts=max_drafts, progress=progress
    )
    if not ex.parents:
        log.info("%s: no valid example in the spec's data: only prompts to label can be made", spec.ref)
    ex.seed_prompts()
    ex.edge_cases(variants=variants)
    ex.adversarial_cases(per_pattern=per_pattern)
    ex.negative_cases(per_rule=per_rule)
    gaps_report = None
    if fill_gaps:
        from curate.expand.gaps import fill_gaps as _fill

        gaps_report = _fill(ex)
    res = ex.result
    all_records: list[SFTRecord | PreferenceRecord] = [*ex.data, *res.records, *res.pairs]
    res.summary.update(
        {
            "spec": spec.ref,
            "seed": seed,
            "model": getattr(model, "name", None),
            "data": {
                "records": len(ex.data),
                "valid_parents": len(ex.parents),
                "bad_lines": ex.counts["data_bad_lines"],
            },
            "counts": {
                "records": len(res.records),
                "pairs": len(res.pairs),
                "prompts_to_label": len(res.prompts),
                **{k: v for k, v in sorted(ex.counts.items()) if k != "data_bad_lines"},
            },
            "by_category": dict(sorted(Counter(r.category for r in res.records).items())),
            "coverage": compute_coverage(spec, all_records).as_dict(),
        }
    )
    if gaps_report is not None:
        res.summary["gaps"] = gaps_report
    return res


def write_outputs(result: ExpandResult, out_dir: str | Path) -> dict[str, Path]:
    """Write records.jsonl, pairs.jsonl, prompts_to_label.jsonl and summary.json atomically into out_dir."""
    out = Path(out_dir)
    paths = {
        name: out / name
        for name in ("records.jsonl", "pairs.jsonl", "prompts_to_label.jsonl", "summary.json")
    }
    write_jsonl_atomic(paths["records.jsonl"], (dump_record(r) for r in result.records))
    write_jsonl_atomic(paths["pairs.jsonl"], (dump_record(r) for r in result.pairs))
    write_jsonl_atomic(paths["prompts_to_label.jsonl"], result.prompts)
    write_atomic(paths["summary.json"], orjson.dumps(result.summary, option=orjson.OPT_INDENT_2) + b"\n")
    return paths


__all__ = ["ExpandResult", "Expander", "Parent", "expand", "protected_values", "with_user", "write_outputs"]
