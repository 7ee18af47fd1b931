"""ShareGPT and LLaMA-Factory formats -> curate records: `sharegpt`, `llamafactory_dpo`, `llamafactory_v1` and `kto`
(LLaMA-Factory's {messages, label} or TRL's unpaired {prompt, completion, label}). Converters as in
`curate.readers.shapes` (see there for the formats); moved out of it, and every name is importable from there.
"""

from __future__ import annotations

from typing import Any

import orjson

from curate.readers.common import (
    Reject,
    message,
    meta_of,
    openai_messages,
    preference,
    sft,
    split_shared_prefix,
    tool_call,
    tools_json,
    turns,
)
from curate.records import Message

_SHAREGPT_CALL = ("function_call", "tool_call", "tool_calls")


def sharegpt_turn(t: Any, where: str) -> Message:
    if not isinstance(t, dict):
        raise Reject("bad_field", f"{where}: a {type(t).__name__}, expected {{from, value}}")
    role = t.get("from", t.get("role"))
    value = t.get("value", t.get("content"))
    if role in _SHAREGPT_CALL:
        if not isinstance(value, str) or not value.strip():
            raise Reject("empty_turn", f"{where}: empty {role} turn")
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise Reject("bad_tool_call", f"{where}.value: a {role} turn that is not JSON") from None
        calls = parsed if isinstance(parsed, list) else [parsed]
        if not calls:
            raise Reject("bad_tool_call", f"{where}.value: no call")
        return message(
            "assistant",
            "",
            where,
            tool_calls=[tool_call(c, f"{where}.value[{i}]") for i, c in enumerate(calls)],
        )
    return message(role, value, where)


def sharegpt_turns(value: Any, where: str) -> list[Message]:
    if not isinstance(value, list):
        raise Reject("bad_field", f"{where}: a {type(value).__name__}, expected a list of turns")
    if not value:
        raise Reject("empty_turn", f"{where}: no turns")
    return [sharegpt_turn(t, f"{where}[{i}]") for i, t in enumerate(value)]


def _system(obj: dict[str, Any]) -> list[Message]:
    s = obj.get("system")
    if s is None or (isinstance(s, str) and not s.strip()):
        return []
    return [message("system", s, "system")]


def convert_sharegpt(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    msgs = _system(obj) + sharegpt_turns(obj.get("conversations"), "conversations")
    return sft(msgs, meta=meta_of(obj), source=source, spec=spec, tools=tools_json(obj.get("tools"), "tools"))


def convert_llamafactory_dpo(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    prompt = _system(obj) + sharegpt_turns(obj.get("conversations"), "conversations")
    for key in ("chosen", "rejected"):
        if obj.get(key) is None:
            raise Reject("missing_chosen" if key == "chosen" else "missing_rejected", f"{key}: missing")
    chosen = [sharegpt_turn(obj["chosen"], "chosen")]
    rejected = [sharegpt_turn(obj["rejected"], "rejected")]
    return preference(
        prompt,
        chosen,
        rejected,
        meta=meta_of(obj),
        source=source,
        spec=spec,
        tools=tools_json(obj.get("tools"), "tools"),
    )


def _v1_message(m: Any, where: str) -> Message:
    """LLaMA-Factory v1: {role, content: [{type: text|tool_call, value}], loss_weight}."""
    if not isinstance(m, dict):
        raise Reject("bad_field", f"{where}: a {type(m).__name__}, expected a message object")
    content = m.get("content")
    if isinstance(content, list):
        texts, calls = [], []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("tool_call", "tool_calls", "function_call"):
                value = part.get("value")
                vs = value if isinstance(value, list) else [value]
                calls += [tool_call(v, f"{where}.content[{i}].value") for v in vs]
            elif kind == "text" and isinstance(part.get("value", part.get("text")), str):
                texts.append(part.get("value", part.get("text")))
            else:
                raise Reject(
                    "unsupported_content",
                    f"{where}.content[{i}]: content part of type {kind!r} (only text and tool_call)",
                )
        return message(m.get("role"), "".join(texts), where, tool_calls=calls)
    return message(m.get("role"), content, where)


def _v1_messages(value: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise Reject("bad_field", f"{where}: expected a list of messages")
    if not value:
        raise Reject("empty_turn", f"{where}: no messages")
    return tuple(_v1_message(m, f"{where}[{i}]") for i, m in enumerate(value))


def convert_llamafactory_v1(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    tools = tools_json(obj.get("tools"), "tools")
    if "chosen_messages" in obj or "rejected_messages" in obj:
        if not obj.get("chosen_messages"):
            raise Reject("missing_chosen", "chosen_messages: missing or empty")
        if not obj.get("rejected_messages"):
            raise Reject("missing_rejected", "rejected_messages: missing or empty")
        chosen = _v1_messages(obj["chosen_messages"], "chosen_messages")
        rejected = _v1_messages(obj["rejected_messages"], "rejected_messages")
        prompt, c, r = split_shared_prefix(chosen, rejected, "chosen_messages/rejected_messages")
        return preference(prompt, c, r, meta=meta_of(obj), source=source, spec=spec, tools=tools)
    return sft(
        _v1_messages(obj.get("messages"), "messages"),
        meta=meta_of(obj),
        source=source,
        spec=spec,
        tools=tools,
    )


def _kto_label(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "True", 1, "1"):
        return True
    if v in ("false", "False", 0, "0"):
        return False
    raise Reject("bad_field", f"label: {v!r}, expected true or false")


def convert_kto(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    """LLaMA-Factory {messages, label} or TRL's unpaired {prompt, completion, label}."""
    label = _kto_label(obj.get("label"))
    meta = meta_of(obj)
    meta["labels"] = {**meta.get("labels", {}), "kto": label}
    if not label:
        meta["category"] = "negative"
    tools = tools_json(obj.get("tools"), "tools")
    if "messages" not in obj and "completion" in obj:
        if obj.get("completion") is None:
            raise Reject("missing_field", "completion: missing")
        return sft(
            prompt=turns(obj.get("prompt"), "prompt", "user"),
            completion=turns(obj["completion"], "completion", "assistant"),
            meta=meta,
            source=source,
            spec=spec,
            tools=tools,
        )
    msgs = obj.get("messages")
    first = msgs[0] if isinstance(msgs, list) and msgs else None
    conv = (
        _v1_messages(msgs, "messages")
        if isinstance(first, dict) and isinstance(first.get("content"), list)
        else openai_messages(msgs, "messages")
    )
    return sft(conv, meta=meta, source=source, spec=spec, tools=tools)
