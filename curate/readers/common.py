"""Shared pieces of the importers: the rejection signal, cheap message/record construction, metadata fields.

The checks here (roles, types, non-empty turns, JSON tool-call arguments) come first and give the reason codes;
records are then built with the pydantic constructors (pydantic-core validation is ~2-8 us a model, cheaper than
`model_construct` in pydantic 2; messages already built are not validated again). The content id is set once
right after construction, instead of copying the frozen record (`SFTRecord.build` copies).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from curate.records import FunctionCall, Message, PreferenceRecord, SFTRecord, ToolCall

ROLES = frozenset(("system", "user", "assistant", "tool"))
# Role names seen in the wild, mapped to ours (OpenAI's `developer` and legacy `function`, ShareGPT's names).
ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}


class Reject(Exception):
    """One raw unit that cannot become a record: a stable reason code and a detail naming the field."""

    def __init__(self, reason: str, detail: str, source: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.source = (
            source  # a finer source than the raw unit's (e.g. a Label Studio annotation), when known
        )


def jdump(value: Any) -> str:
    """Compact JSON text (tool-call arguments and tool definitions are stored as JSON strings)."""
    return orjson.dumps(value).decode()


def text_of(value: Any, where: str) -> str:
    """A turn's text: a string, None (empty), or a list of typed parts ({type: text, text|value})."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):
        out = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                out.append(part)
                continue
            if not isinstance(part, dict):
                raise Reject("bad_field", f"{where}[{i}]: a {type(part).__name__}, expected a content part")
            kind = part.get("type", "text")
            if kind != "text":
                raise Reject(
                    "unsupported_content", f"{where}[{i}]: content part of type {kind!r} (only text)"
                )
            txt = part.get("text", part.get("value"))
            if not isinstance(txt, str):
                raise Reject("bad_field", f"{where}[{i}]: a text part without a string text/value")
            out.append(txt)
        return "".join(out)
    raise Reject("bad_field", f"{where}: a {type(value).__name__}, expected text")


def tool_call(value: Any, where: str) -> ToolCall:
    """A tool call from OpenAI's {type, id, function: {name, arguments}} or a bare {name, arguments}."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as err:
            raise Reject("bad_tool_call", f"{where}: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise Reject("bad_tool_call", f"{where}: a {type(value).__name__}, expected an object")
    fn = value.get("function", value)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise Reject("bad_tool_call", f"{where}: no function name")
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        try:
            orjson.loads(args)
        except orjson.JSONDecodeError:
            raise Reject("bad_tool_call", f"{where}.arguments: not a JSON string") from None
    else:
        args = jdump(args)
    call_id = value.get("id")
    function = FunctionCall(name=fn["name"], arguments=args)
    return (
        ToolCall(id=call_id, function=function)
        if isinstance(call_id, str) and call_id
        else ToolCall(function=function)
    )


def message(
    role: Any,
    content: Any,
    where: str,
    *,
    tool_calls: Sequence[ToolCall] | None = None,
    name: Any = None,
    tool_call_id: Any = None,
) -> Message:
    """A checked Message: known role, text content, non-empty unless it carries tool calls."""
    r = ROLE_ALIASES.get(role) if isinstance(role, str) else None
    if r is None:
        raise Reject("bad_role", f"{where}.role: {role!r} is not one of system, user, assistant, tool")
    text = text_of(content, f"{where}.content")
    if not tool_calls and not text.strip():
        raise Reject("empty_turn", f"{where}: empty {r} turn")
    if not tool_calls and name is None and tool_call_id is None:
        return Message(role=r, content=text)  # (passing None fields explicitly costs validation time)
    fields: dict[str, Any] = {"role": r, "content": text}
    if tool_calls:
        fields["tool_calls"] = tuple(tool_calls)
    if isinstance(name, str) and name:
        fields["name"] = name
    if isinstance(tool_call_id, str) and tool_call_id:
        fields["tool_call_id"] = tool_call_id
    return Message(**fields)


def openai_message(m: Any, where: str) -> Message:
    """One OpenAI-style chat message {role, content, tool_calls?, name?, tool_call_id?, function_call?}."""
    if not isinstance(m, dict):
        raise Reject("bad_field", f"{where}: a {type(m).__name__}, expected a message object")
    calls = m.get("tool_calls")
    tcs: list[ToolCall] = []
    if calls:
        if not isinstance(calls, list):
            raise Reject("bad_tool_call", f"{where}.tool_calls: expected a list")
        tcs = [tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)]
    if m.get("function_call"):  # the legacy single-call field
        tcs.append(tool_call(m["function_call"], f"{where}.function_call"))
    if "role" not in m:
        raise Reject("bad_role", f"{where}: no role")
    return message(
        m["role"],
        m.get("content"),
        where,
        tool_calls=tcs,
        name=m.get("name"),
        tool_call_id=m.get("tool_call_id"),
    )


_TOOL_MSG_KEYS = frozenset(("role", "content", "tool_calls", "tool_call_id", "name"))
_CALL_KEYS = frozenset(("id", "type", "function"))


def _plain_call(tc: Any) -> bool:
    if type(tc) is not dict or not tc.keys() <= _CALL_KEYS or tc.get("type", "function") != "function":
        return False
    fn, cid = tc.get("function"), tc.get("id")
    if type(fn) is not dict or len(fn) != 2 or (cid is not None and (type(cid) is not str or not cid)):
        return False
    name, args = fn.get("name"), fn.get("arguments")
    if type(name) is not str or not name or type(args) is not str:
        return False
    try:
        orjson.loads(args)
    except orjson.JSONDecodeError:
        return False
    return True


def plain_messages(value: Any) -> bool:
    """True when `value` is a list of messages already in our exact shape, that pass every check here.

    That is {role: one of ours, content: a non-blank string} dicts, or with string content (may be empty when
    tool_calls are there), OpenAI tool_calls whose arguments are JSON strings, a non-empty tool_call_id / name.
    Such lists go to pydantic as they are (pydantic-core builds the Messages: the same records as the checked
    path, faster); anything else takes the checked path (`openai_messages`), which gives the reason codes.
    """
    if type(value) is not list or not value:
        return False
    for m in value:
        if type(m) is not dict:
            return False
        c = m.get("content")
        if m.get("role") not in ROLES or type(c) is not str:
            return False
        if len(m) == 2:
            if not c or c.isspace():
                return False
            continue
        if not m.keys() <= _TOOL_MSG_KEYS:
            return False
        for key in ("tool_call_id", "name"):
            v = m.get(key)
            if v is not None and (type(v) is not str or not v):
                return False
        tcs = m.get("tool_calls")
        if tcs is None:
            if not c or c.isspace():
                return False
        elif type(tcs) is not list or not tcs or not all(_plain_call(tc) for tc in tcs):
            return False
    return True


def openai_messages(value: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise Reject("bad_field", f"{where}: a {type(value).__name__}, expected a list of messages")
    if not value:
        raise Reject("empty_turn", f"{where}: no messages")
    return tuple(openai_message(m, f"{where}[{i}]") for i, m in enumerate(value))


def turns(value: Any, where: str, default_role: str) -> tuple[Message, ...]:
    """A prompt/completion/chosen/rejected value: a plain string (one turn of `default_role`) or messages."""
    if isinstance(value, str):
        return (message(default_role, value, where),)
    if isinstance(value, dict):
        if not ({"role", "content"} & value.keys()):  # JSON text parsed from a CSV cell, e.g. a JSON answer
            return (message(default_role, jdump(value), where),)
        return (openai_message(value, where),)  # a single message
    return openai_messages(value, where)


def tools_json(value: Any, where: str) -> str | None:
    """Tool definitions, kept as a JSON string (Arrow-safe); empty values -> None."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise Reject("bad_field", f"{where}: not a JSON string") from None
        return value if parsed not in ([], None, {}) else None
    return jdump(value)


def _str_list(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    v = obj.get(key)
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise Reject("bad_field", f"{key}: expected a list of strings")


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    """category / tags / violates / labels when the input has them (checked types)."""
    meta: dict[str, Any] = {}
    cat = obj.get("category")
    if cat is not None:
        if not isinstance(cat, str) or not cat:
            raise Reject("bad_field", "category: expected a non-empty string")
        meta["category"] = cat
    if "tags" in obj:
        meta["tags"] = _str_list(obj, "tags")
    if "violates" in obj:
        meta["violates"] = _str_list(obj, "violates")
    labels = obj.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            raise Reject("bad_field", "labels: expected an object")
        meta["labels"] = labels
    return meta


def _base(
    meta: dict[str, Any], source: dict[str, Any], spec: str | None, tools: str | None
) -> dict[str, Any]:
    """Only the fields that differ from the defaults: pydantic validates every field passed (2x the cost)."""
    out: dict[str, Any] = {"source": source}
    if meta:
        out.update(meta)
    if spec is not None:
        out["spec"] = spec
    if tools is not None:
        out["tools"] = tools
    return out


_SYSTEM_TURNS: dict[str, Message] = {}  # the system turns seen lately: one frozen Message for each text


def _shared_system(m: Message | dict[str, Any]) -> Message | dict[str, Any]:
    """A plain system turn as one shared Message per text: real exports repeat the same system prompt in every
    record (~0.8 KB a record of Message and string otherwise)."""
    if type(m) is dict and len(m) == 2 and m.get("role") == "system" and type(m.get("content")) is str:
        text = m["content"]
        got = _SYSTEM_TURNS.get(text)
        if got is None:
            if len(_SYSTEM_TURNS) >= 64:
                _SYSTEM_TURNS.clear()
            got = _SYSTEM_TURNS[text] = Message(role="system", content=text)
        return got
    return m


def sft(
    messages: Iterable[Message | dict[str, Any]] | None = None,
    *,
    prompt: Iterable[Message] | None = None,
    completion: Iterable[Message] | None = None,
    meta: dict[str, Any],
    source: dict[str, Any],
    spec: str | None,
    tools: str | None = None,
) -> SFTRecord:
    """An SFTRecord from checked messages (Message objects, or plain dicts that passed `plain_messages`)."""
    fields = _base(meta, source, spec, tools)
    if messages is not None:
        fields["messages"] = tuple(map(_shared_system, messages))
    if prompt is not None:
        fields["prompt"] = tuple(prompt)
    if completion is not None:
        fields["completion"] = tuple(completion)
    rec = SFTRecord(**fields)
    rec.__dict__["id"] = rec.content_id()  # frozen model: set the id once, before anyone sees the record
    return rec


def preference(
    prompt: Iterable[Message],
    chosen: Iterable[Message],
    rejected: Iterable[Message],
    *,
    meta: dict[str, Any],
    source: dict[str, Any],
    spec: str | None,
    tools: str | None = None,
) -> PreferenceRecord:
    rec = PreferenceRecord(
        prompt=tuple(prompt),
        chosen=tuple(chosen),
        rejected=tuple(rejected),
        **_base(meta, source, spec, tools),
    )
    rec.__dict__["id"] = rec.content_id()
    return rec


def split_shared_prefix(
    chosen: tuple[Message, ...], rejected: tuple[Message, ...], where: str
) -> tuple[tuple[Message, ...], tuple[Message, ...], tuple[Message, ...]]:
    """Implicit-prompt pairs (whole conversations): the shared turns before the last assistant turn are the prompt.

    Raises Reject(prompt_mismatch) when the two conversations do not share everything but their final answers.
    """

    def cut(conv: tuple[Message, ...]) -> int:
        i = len(conv)
        while i > 0 and conv[i - 1].role == "assistant":
            i -= 1
        return i

    ci, ri = cut(chosen), cut(rejected)
    if ci == len(chosen) or ri == len(rejected):
        raise Reject("no_assistant_turn", f"{where}: chosen and rejected must end with an assistant turn")
    if chosen[:ci] != rejected[:ri]:
        n = next((k for k, (a, b) in enumerate(zip(chosen[:ci], rejected[:ri])) if a != b), min(ci, ri))
        raise Reject(
            "prompt_mismatch", f"{where}: chosen and rejected differ before their final answers (at turn {n})"
        )
    return chosen[:ci], chosen[ci:], rejected[ri:]
