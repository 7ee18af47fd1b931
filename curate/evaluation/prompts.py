"""The held-out prompts an evaluation asks: the `test` splits of an export (sft/ and dpo/, deduplicated by
prompt), or a frozen held-out file.

    >>> from curate.evaluation.prompts import prompt_key
    >>> prompt_key([{"role": "user", "content": "Hi"}]) == prompt_key([{"role": "user", "content": "hi "}])
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import EvalError
from curate.records import (
    LineError,
    normalize_text,
    read_jsonl,
)
from curate.spec import Spec


@dataclass
class Prompt:
    """One held-out prompt: the messages before the answer, plus what the rules need to know about it."""

    id: str
    messages: list[dict[str, Any]]
    category: str = "typical"
    tags: list[str] = field(default_factory=list)
    where: str = ""
    row_id: str | None = None
    reference: dict[str, Any] | None = None  # e.g. {"intent": ...} of a frozen held-out file

    def user_text(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.messages if m.get("role") == "user")


def prompt_key(messages: list[dict[str, Any]]) -> str:
    """A stable id for a prompt: sha256 of its normalized non-system turns, 16 hex chars."""
    h = hashlib.sha256()
    for m in messages:
        if m.get("role") == "system":
            continue
        h.update(f"{m.get('role')}:{normalize_text(str(m.get('content', '')))}\x1f".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- held-out prompts


def record_meta(spec: Spec | None) -> dict[str, tuple[str, list[str]]]:
    """record id -> (case category, tags) for the spec's own data files.

    Export rows carry only TRL columns and an `id`; the rules' `when: {category|tag}` conditions and the
    over-refusal rate need the category and tags back, so they are looked up by record id.
    """
    from curate.records import record_from_native

    meta: dict[str, tuple[str, list[str]]] = {}
    if spec is None:
        return meta
    for path in spec.data_paths():
        if not path.exists():
            continue
        for _line, obj in read_jsonl(path):
            if isinstance(obj, LineError):
                continue
            try:
                rec = record_from_native(obj, spec=spec.ref)
            except Exception:  # noqa: BLE001, S112 - a bad line has no metadata to give
                continue
            meta[rec.id] = (rec.category, list(rec.tags))
    return meta


def heldout_prompts(export: str | Path, spec: Spec | None = None) -> list[Prompt]:
    """The prompts of the export's test splits (sft/test.jsonl, then dpo/test.jsonl), each prompt once.

    Category and tags come from the row when it has them, else from the spec's data (matched by record id).
    """
    export = Path(export)
    meta = record_meta(spec)
    from curate.steps.export import read_rows, split_file

    files = [f for f in (split_file(export / "sft", "test"), split_file(export / "dpo", "test")) if f]
    if not files:
        raise EvalError(
            f"no held-out split in {export} (sft/test.jsonl or dpo/test.jsonl, or their Parquet files); run "
            "`curate build` or pass --data EXPORT_DIR"
        )
    seen: set[str] = set()
    out: list[Prompt] = []
    for f in files:
        for line, obj in read_rows(f):
            where = f"{f}:{line}"
            if isinstance(obj, LineError):
                raise EvalError(f"{where}: {obj.reason}: {obj.detail}; rebuild the export")
            if "messages" in obj:
                msgs = list(obj["messages"])
                if msgs and msgs[-1].get("role") == "assistant":
                    msgs = msgs[:-1]
            elif "prompt" in obj:
                msgs = (
                    list(obj["prompt"])
                    if isinstance(obj["prompt"], list)
                    else [{"role": "user", "content": str(obj["prompt"])}]
                )
            else:
                raise EvalError(f"{where}: a row with neither messages nor prompt")
            key = prompt_key(msgs)
            if key in seen:
                continue
            seen.add(key)
            cat, tags = meta.get(str(obj.get("id", "")), ("typical", []))
            out.append(
                Prompt(
                    id=key,
                    messages=msgs,
                    category=str(obj.get("category", cat)),
                    tags=[str(t) for t in obj.get("tags", tags)],
                    where=where,
                    row_id=str(obj["id"]) if "id" in obj else None,
                )
            )
    if not out:
        raise EvalError(f"the held-out split in {export} is empty")
    return out


def heldout_file(path: str | Path, spec: Spec | None = None) -> list[Prompt]:
    """The prompts of a frozen held-out JSONL file: rows `{"messages" | "prompt", "id"?, "category"?, "tags"?,
    "reference"?}` (a trailing assistant turn is dropped). The spec's system prompt is put first where a row has no
    system turn, as the export does; `reference` (e.g. {"intent": "refund_request"}) is kept for scoring."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path} does not exist; pass a held-out JSONL file")
    system = spec.system_prompt.strip() if spec is not None and spec.system_prompt else ""
    out: list[Prompt] = []
    seen: set[str] = set()
    for line, obj in read_jsonl(path):
        where = f"{path}:{line}"
        if isinstance(obj, LineError):
            raise EvalError(f"{where}: {obj.reason}: {obj.detail}; fix the held-out file")
        if isinstance(obj.get("messages"), list):
            msgs = list(obj["messages"])
        elif isinstance(obj.get("prompt"), list):
            msgs = list(obj["prompt"])
        elif isinstance(obj.get("prompt"), str):
            msgs = [{"role": "user", "content": obj["prompt"]}]
        else:
            raise EvalError(f"{where}: a row with neither messages nor prompt")
        if msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
        if not msgs or msgs[-1].get("role") != "user":
            raise EvalError(f"{where}: the prompt must end with a user turn")
        if system and msgs[0].get("role") != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        key = prompt_key(msgs)
        if key in seen:
            raise EvalError(f"{where}: the same prompt twice in a held-out file")
        seen.add(key)
        ref = obj.get("reference")
        out.append(
            Prompt(
                id=key,
                messages=msgs,
                category=str(obj.get("category", "typical")),
                tags=[str(t) for t in obj.get("tags", [])],
                where=where,
                row_id=str(obj["id"]) if "id" in obj else None,
                reference=ref if isinstance(ref, dict) else None,
            )
        )
    if not out:
        raise EvalError(f"{path} holds no prompts")
    return out
