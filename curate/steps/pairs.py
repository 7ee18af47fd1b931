"""Pairs: turn negative SFT examples into DPO preference pairs against a passing answer to the same prompt.

    >>> from curate.steps.pairs import make_pairs
    >>> result = make_pairs(records)                      # doctest: +SKIP
    >>> result.records    # every non-negative record unchanged, plus one PreferenceRecord per paired negative
    >>> result.unpaired   # negatives with no passing answer to their prompt

A negative SFT record (category `negative` or a non-empty `violates`, already validated: its response fails the
rules it names) is paired with a passing SFT record whose prompt is the same (normalized text of every turn
before the final answer, system turns ignored). The pair is `PreferenceRecord(prompt=good prompt,
chosen=[good answer], rejected=[negative answer], violates=the negative's violates)`, with the negative's
category, tags and source, and `source.parent` = the good record's id. When several passing answers share the
prompt, a negative gets the one at `partner_index(its id, how many)`: a function of the two records' ids, never of
the input order (docs/contracts.md).

Unpaired negatives (no passing answer with the same prompt) are kept aside and exported to `negatives.jsonl`
in the build folder (counted as exported): they are the raw material for `curate expand` or for labeling,
where a person writes the good answer. Nothing is dropped.

Negatives that already are preference records pass through unchanged. The step needs every record at once
(it indexes prompts); memory is one dict entry per distinct prompt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from curate.records import Message, PreferenceRecord, SFTRecord, _digest
from curate.steps.validate import is_unlabeled_prompt

Rec = SFTRecord | PreferenceRecord


def prompt_key(messages: Iterable[Message]) -> str:
    """The normalized-content hash of a prompt (system turns ignored); equal prompts, equal keys."""
    parts: list[str] = []
    for m in messages:
        if m.role == "system":
            continue
        parts += [m.role, m.content]
        parts += [f"{tc.function.name}:{tc.function.arguments}" for tc in m.tool_calls or ()]
    return _digest(parts)


def record_prompt_key(rec: Rec) -> str:
    return prompt_key(rec.prompt_messages())


@dataclass
class PairResult:
    records: list[Rec] = field(default_factory=list)
    unpaired: list[SFTRecord] = field(default_factory=list)
    paired: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"paired": self.paired, "unpaired": len(self.unpaired)}


def make_pairs(records: Iterable[Rec]) -> PairResult:
    """Pair every negative SFT record with a passing answer to the same prompt (see the module doc)."""
    items = list(records)
    good: dict[str, list[SFTRecord]] = defaultdict(list)
    for rec in items:
        if isinstance(rec, SFTRecord) and not rec.is_negative and not is_unlabeled_prompt(rec):
            good[record_prompt_key(rec)].append(rec)
    for lst in good.values():
        lst.sort(key=lambda r: r.id)
    out = PairResult()
    for rec in items:
        if not (isinstance(rec, SFTRecord) and rec.is_negative):
            out.records.append(rec)
            continue
        key = record_prompt_key(rec)
        candidates = good.get(key)
        if not candidates:
            out.unpaired.append(rec)
            continue
        partner = candidates[partner_index(rec.id, len(candidates))]
        out.records.append(pair_of(rec, partner))
        out.paired += 1
    return out


def partner_index(negative_id: str, n: int) -> int:
    """Which of `n` passing answers (sorted by id) a negative is paired with: spread by the negative's own id."""
    return int(negative_id[:15], 16) % n if n else 0


def pair_of(negative: SFTRecord, partner: SFTRecord) -> PreferenceRecord:
    """The DPO pair of a negative and a passing answer to the same prompt: the partner's answer is chosen, the
    negative's rejected; category, tags, violates and labels come from the negative, checks from the partner."""
    conv = partner.conversation()
    neg = negative.conversation()
    return PreferenceRecord.build(
        spec=negative.spec,
        category=negative.category,
        tags=negative.tags,
        violates=negative.violates,
        prompt=tuple(partner.prompt_messages()),
        chosen=(conv[-1],),
        rejected=(neg[-1],),
        source=negative.source.model_copy(update={"parent": partner.id}),
        labels={**negative.labels, "source_ids": [negative.id, partner.id]},
        checks=partner.checks,
    )


__all__ = ["PairResult", "make_pairs", "pair_of", "partner_index", "prompt_key", "record_prompt_key"]
