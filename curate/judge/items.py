"""Responses to judge from a JSONL file: our records (SFT: the last assistant turn; pairs: both sides) or
model outputs `{"prompt" | "messages" | "user": ..., "response": "..."}` (the shape `curate check` reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.errors import InputError
from curate.records import LineError, PreferenceRecord, read_jsonl, record_from_native


def response_items(path: str | Path) -> list[dict[str, Any]]:
    """[{"where", "user", "response"}]; a line that is neither shape raises InputError naming file:line."""
    out = []
    for line, obj in read_jsonl(path):
        where = f"{path}:{line}"
        if isinstance(obj, LineError):
            raise InputError(f"{where}: {obj.reason}: {obj.detail}")
        if (
            "response" in obj
            and not any(k in obj for k in ("chosen", "completion"))
            and not (
                isinstance(obj.get("messages"), list)
                and obj["messages"]
                and obj["messages"][-1].get("role") == "assistant"
            )
        ):
            user = obj.get("prompt") or obj.get("user") or obj.get("messages") or ""
            if isinstance(user, list):
                user = "\n".join(
                    str(m.get("content", "")) for m in user if isinstance(m, dict) and m.get("role") == "user"
                )
            out.append({"where": where, "user": str(user), "response": str(obj["response"])})
            continue
        try:
            rec = record_from_native({k: v for k, v in obj.items() if k not in ("id", "kind")})
        except (ValueError, TypeError) as err:
            raise InputError(f"{where}: field response or messages: {str(err).splitlines()[0]}") from None
        out.append({"where": where, "user": rec.user_text(), "response": rec.response_text()})
        if isinstance(rec, PreferenceRecord):
            out.append(
                {"where": where + " (rejected)", "user": rec.user_text(), "response": rec.rejected_text()}
            )
    return out
