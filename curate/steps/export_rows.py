"""The export's rows: one TRL row of a record (SFT `messages` or prompt-completion, DPO, prompt-only, text), with
the spec's system turn and the `lineage` column. Moved out of `curate.steps.export`, which still exports every name.

    >>> from curate.steps.export_rows import sft_row, dpo_row
    >>> sft_row(record, spec)                      # doctest: +SKIP
    {'messages': [{'role': 'system', ...}, {'role': 'user', ...}, {'role': 'assistant', ...}], 'id': '...'}
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson

from curate.errors import ExportError
from curate.records import Message, PreferenceRecord, SFTRecord
from curate.spec import Spec

SFT_FORMATS = ("messages", "prompt-completion")


# ---------------------------------------------------------------- rows


@functools.lru_cache(maxsize=8)
def _stripped(text: str) -> str:
    """One shared stripped copy of a spec's system prompt (a new ~1.5 KB copy per exported row otherwise)."""
    return text.strip()


def system_turn(spec: Spec | None) -> dict[str, str] | None:
    """The system turn a row without one gets (None when the spec adds none): one dict per (setting, prompt),
    shared by the rows (they are only read: dumped and converted)."""
    if spec is None:
        return None
    return _turn_of(bool(spec.export.include_system_prompt), spec.system_prompt)


@functools.lru_cache(maxsize=16)
def _turn_of(include: bool, prompt: str) -> dict[str, str] | None:
    return {"role": "system", "content": _stripped(prompt)} if include and _stripped(prompt) else None


def _system(spec: Spec | None, messages: Sequence[Message]) -> list[dict[str, Any]]:
    out = [m.to_trl() for m in messages]
    turn = system_turn(spec)
    if turn is not None and not any(m.role == "system" for m in messages):
        out.insert(0, turn)
    return out


def lineage_json(
    source: Any, labels: Any, spec: Spec | None = None, counting: frozenset[str] = frozenset()
) -> str:
    """The `lineage` column of an export row: `records.lineage_from` as a JSON string (Arrow-safe, like `tools`):
    where the row came from (file:line or Label Studio task), the records it was made from, annotations,
    annotators, agreement, the spec it was labeled under, whether it is an unaccepted model draft; and what it
    was judged against (`versioning.row_stamp`): `spec_version` (the spec's version hash) and `rules` (the key of
    its {rule id: hash} set in the manifest's `spec.rule_sets`; `counting`: the judge rules that count)."""
    from curate.records import lineage_from
    from curate.versioning import row_stamp

    lin = lineage_from(source, labels)
    lin.update(row_stamp(spec, labels, counting) if spec is not None else {"spec_version": "", "rules": ""})
    return orjson.dumps(lin).decode()


def sft_row(
    rec: SFTRecord | PreferenceRecord,
    spec: Spec | None,
    sft_format: str = "messages",
    counting: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One TRL SFT row. A preference record (exported as SFT when DPO is off) gives prompt + chosen."""
    if isinstance(rec, PreferenceRecord):
        prompt, completion = list(rec.prompt), list(rec.chosen)
    else:
        conv = list(rec.conversation())
        prompt, completion = conv[:-1], conv[-1:]
    if sft_format == "prompt-completion":
        row: dict[str, Any] = {
            "prompt": _system(spec, prompt),
            "completion": [m.to_trl() for m in completion],
        }
    elif sft_format == "messages":
        row = {"messages": _system(spec, prompt + completion)}
    else:
        raise ExportError(f"unknown SFT format {sft_format!r}; use one of: {', '.join(SFT_FORMATS)}")
    row["id"] = rec.id
    row["lineage"] = lineage_json(rec.source, rec.labels, spec, counting)
    if rec.tools is not None:
        row["tools"] = rec.tools
    return row


def dpo_row(
    rec: PreferenceRecord, spec: Spec | None, counting: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """One TRL conversational DPO row."""
    row: dict[str, Any] = {
        "prompt": _system(spec, rec.prompt),
        "chosen": [m.to_trl() for m in rec.chosen],
        "rejected": [m.to_trl() for m in rec.rejected],
        "id": rec.id,
        "lineage": lineage_json(rec.source, rec.labels, spec, counting),
    }
    if rec.tools is not None:
        row["tools"] = rec.tools
    return row


TEXT_KINDS = ("prompts", "text")  # how unlabeled prompts are exported (spec export.text_records)


def prompt_row(rec: SFTRecord, spec: Spec | None) -> dict[str, Any]:
    """One TRL conversational prompt-only row (`prompts/`): an unlabeled prompt, to label or generate from."""
    row: dict[str, Any] = {
        "prompt": _system(spec, rec.conversation()),
        "id": rec.id,
        "lineage": lineage_json(rec.source, rec.labels, spec),
    }
    if rec.tools is not None:
        row["tools"] = rec.tools
    return row


def text_row(rec: SFTRecord, spec: Spec | None) -> dict[str, Any]:
    """One TRL language-modeling row (`text/`): the record's text (its turns' contents, system turns left out,
    joined by a blank line: a `text` record's own text). No system prompt: plain text has no chat turns."""
    text = "\n\n".join(m.content for m in rec.conversation() if m.role != "system")
    return {"text": text, "id": rec.id, "lineage": lineage_json(rec.source, rec.labels, spec)}
