"""Lanes for the read pool's workers: the lines of other formats that need no pydantic record.

    >>> from curate.engine.lanes import lane_native
    >>> line = {"id": 7, "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    >>> lane_native(line, b"", "sharegpt", True)
    ('sft', {'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]})

A line of a ShareGPT, Alpaca, OpenAI, LLaMA-Factory (DPO, v1 SFT) or preference file (`LANES`) takes a lane when its reader
(`curate.readers.shapes.CONVERTERS[shape]`) makes of it exactly the record the native reader makes of the native
object `lane_native` returns: the reader's own steps, in plain Python on the parsed line (role aliases, the
system field, Alpaca's user turn and history, `meta_of`'s category / tags / violates, no tools, no labels), and
None for anything the reader does beyond the plain case (tool calls, non-text content parts, a field of the wrong
type, an empty turn, a guard fault: `line_fault`) or that is not its format by itself: the record path reads
those lines and gives the reason codes. `settle._RecordPath.lines` makes the row of a lane line: the fast row
`settle` would make of the reader's record (the native object stored as a `RecordStore` line), when
`_Validator.fast` passes it; the serial record path and the pooled one then write the same bytes
(tests/engine/test_lanes.py compares every value with the readers' records, hypothesis, and whole builds).
"""

from __future__ import annotations

from typing import Any

from curate.readers.common import ROLE_ALIASES, Reject, meta_of
from curate.readers.guard import line_fault, unit_fault
from curate.readers.shapes import _whole_conversation, detect_shape

Obj = dict[str, Any]


def _text(v: Any) -> bool:
    """A string a reader keeps as it is for a turn: non-blank (`message` rejects a blank turn)."""
    return type(v) is str and not v.isspace() and v != ""


def _content(v: Any) -> str | None:
    """`common.text_of(v)` of a string or a list of text parts (strings, {type: text, text | value}), else None."""
    if type(v) is str:
        return v
    if type(v) is not list:
        return None
    out = []
    for part in v:
        if type(part) is not str:
            if type(part) is not dict or part.get("type", "text") != "text":
                return None
            part = part.get("text", part.get("value"))
            if type(part) is not str:
                return None
        out.append(part)
    return "".join(out)


def _turn(role: Any, content: Any) -> dict[str, str] | None:
    """`common.message(role, content)` of a plain turn as a native {role, content}, or None."""
    r = ROLE_ALIASES.get(role) if type(role) is str else None
    text = _content(content)
    if r is None or not _text(text):
        return None
    return {"role": r, "content": text}  # type: ignore[dict-item]


def _no_tools(obj: Obj) -> bool:
    """`common.tools_json(obj.get("tools"))` is None without parsing: no tools, or an empty value."""
    t = obj.get("tools")
    return t is None or (type(t) is str and t == "") or (type(t) is list and not t)


def _sharegpt_turn(t: Any) -> dict[str, str] | None:
    """`sharegpt.sharegpt_turn` of a plain turn (a function call turn, non-text content: None)."""
    if type(t) is not dict:
        return None
    return _turn(t.get("from", t.get("role")), t.get("value", t.get("content")))


def _system(obj: Obj) -> list[dict[str, str]] | None:
    """`sharegpt._system`: [] (no system field, or a blank string), [turn], or None (not a string)."""
    s = obj.get("system")
    if s is None or (type(s) is str and (s == "" or s.isspace())):
        return []
    if type(s) is not str:
        return None
    return [{"role": "system", "content": s}]


def _conversations(obj: Obj) -> list[dict[str, str]] | None:
    """`_system(obj) + sharegpt_turns(obj["conversations"])` of plain turns, or None."""
    msgs = _system(obj)
    conv = obj.get("conversations")
    if msgs is None or type(conv) is not list or not conv:
        return None
    for t in conv:
        m = _sharegpt_turn(t)
        if m is None:
            return None
        msgs.append(m)
    return msgs


def _sharegpt(obj: Obj) -> tuple[str, Obj] | None:
    """`convert_sharegpt`: the system field, then the conversations."""
    msgs = _conversations(obj)
    if msgs is None or not _no_tools(obj):
        return None
    return "sft", {"messages": msgs}


def _alpaca(obj: Obj) -> tuple[str, Obj] | None:
    """`convert_alpaca` / `alpaca_messages`: system, history pairs, instruction (+ blank line + input), output."""
    output = obj["response"] if "output" not in obj and "response" in obj else obj.get("output")
    instruction, inp = obj.get("instruction"), obj.get("input")
    if inp is None:
        inp = ""
    if type(instruction) is not str or type(inp) is not str or not _text(output):
        return None
    msgs: list[dict[str, str]] = []
    system = obj.get("system")
    if (
        type(system) is str and system.strip()
    ):  # any other value: ignored (isinstance(system, str) in the reader)
        msgs.append({"role": "system", "content": system})
    history = obj.get("history")
    if history:
        if type(history) is not list:
            return None
        for pair in history:
            if type(pair) is not list or len(pair) != 2 or not _text(pair[0]) or not _text(pair[1]):
                return None
            msgs += ({"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]})
    has_i, has_in = bool(instruction.strip()), bool(inp.strip())
    user = f"{instruction}\n\n{inp}" if has_i and has_in else (instruction or inp)
    if not _text(user):  # (also: both blank, the reader's empty_turn)
        return None
    msgs += ({"role": "user", "content": user}, {"role": "assistant", "content": output})
    return "sft", {"messages": msgs}


def _set(v: Any) -> bool:
    """A turn's `name` / `tool_call_id` that the readers keep (a non-empty string; `common.message`)."""
    return type(v) is str and v != ""


def _openai_turn(m: Any) -> dict[str, str] | None:
    """`common.openai_message` of a turn that makes a plain Message: a role (or an alias), non-blank string content,
    no tool call, no name or tool call id kept; other keys (OpenAI's `weight`, ...) it drops. (`plain_messages`
    turns, which go to pydantic as they are, are such turns with our roles: the same Message.)"""
    if type(m) is not dict or "role" not in m or m.get("tool_calls") or m.get("function_call"):
        return None
    if _set(m.get("name")) or _set(m.get("tool_call_id")):
        return None
    return _turn(m["role"], m.get("content"))


def _openai(obj: Obj) -> tuple[str, Obj] | None:
    """`convert_openai`: its turns (`_openai_turn`), no tools."""
    msgs = obj.get("messages")
    if type(msgs) is not list or not msgs or not _no_tools(obj):
        return None
    out = []
    for m in msgs:
        t = _openai_turn(m)
        if t is None:
            return None
        out.append(t)
    return "sft", {"messages": out}


def _v1_turn(m: Any) -> dict[str, str] | None:
    """`sharegpt._v1_message` of a turn of text parts ({type: text, value | text}) or string content."""
    if type(m) is not dict:
        return None
    content = m.get("content")
    if type(content) is list:
        texts = []
        for part in content:
            if type(part) is not dict or part.get("type") != "text":
                return None
            t = part.get("value", part.get("text"))
            if type(t) is not str:
                return None
            texts.append(t)
        content = "".join(texts)
    return _turn(m.get("role"), content)


def _llamafactory_v1(obj: Obj) -> tuple[str, Obj] | None:
    """`convert_llamafactory_v1` of an SFT line (`messages`; pairs: the shared-prefix split, the record path)."""
    msgs = obj.get("messages")
    if "chosen_messages" in obj or "rejected_messages" in obj or type(msgs) is not list or not msgs:
        return None
    if not _no_tools(obj):
        return None
    out = []
    for m in msgs:
        t = _v1_turn(m)
        if t is None:
            return None
        out.append(t)
    return "sft", {"messages": out}


def _llamafactory_dpo(obj: Obj) -> tuple[str, Obj] | None:
    """`convert_llamafactory_dpo`: the conversations are the prompt, chosen / rejected one turn each."""
    prompt = _conversations(obj)
    if prompt is None or not _no_tools(obj):
        return None
    chosen, rejected = _sharegpt_turn(obj.get("chosen")), _sharegpt_turn(obj.get("rejected"))
    if chosen is None or rejected is None:
        return None
    return "preference", {"prompt": prompt, "chosen": [chosen], "rejected": [rejected]}


def _side(v: Any, role: str) -> list[dict[str, str]] | None:
    """`common.turns(v, where, role)` of a plain value: a non-blank string (one turn of `role`) or a list of
    {role, content} turns (a role or an alias; a single message object: None)."""
    if type(v) is str:
        return [{"role": role, "content": v}] if _text(v) else None
    if type(v) is not list or not v:
        return None
    out = []
    for m in v:
        if type(m) is not dict or len(m) != 2 or "content" not in m:
            return None
        t = _turn(m.get("role"), m["content"])
        if t is None:
            return None
        out.append(t)
    return out


def _preference(obj: Obj) -> tuple[str, Obj] | None:
    """`convert_preference` with an explicit prompt whose chosen / rejected are answers, not whole conversations
    (no prompt, or whole conversations: the shared-prefix split, left to the record path)."""
    c, r, p = obj.get("chosen"), obj.get("rejected"), obj.get("prompt")
    if p is None or not _no_tools(obj) or _whole_conversation(c) or _whole_conversation(r):
        return None
    prompt, chosen, rejected = _side(p, "user"), _side(c, "assistant"), _side(r, "assistant")
    if prompt is None or chosen is None or rejected is None:
        return None
    return "preference", {"prompt": prompt, "chosen": chosen, "rejected": rejected}


LANES = {
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "openai": _openai,
    "llamafactory_dpo": _llamafactory_dpo,
    "llamafactory_v1": _llamafactory_v1,
    "preference": _preference,
}


def lane_native(obj: Obj, raw: bytes, shape: str, detected: bool) -> tuple[str, Obj] | None:
    """(kind, the native object whose record the native reader makes equal to the one the `shape` reader makes of
    `obj`), or None: the record path reads the line. `detected`: the file's format was detected (`_read_file` then
    quarantines a line of no known format and reads a plain-text line as text); `raw`: the line's bytes (the
    guard's duplicate keys). The native object holds the turns, then category / tags / violates when not the
    defaults, as `settle._native_obj` writes the record's line."""
    lane = LANES.get(shape)
    if lane is None:
        return None
    if detected:  # the file's reader reads the line unless it is of no format or plain text (`_read_file`)
        own = detect_shape(obj)
        if own is None or own == "text":
            return None
    got = lane(obj)
    if got is None:
        return None
    try:
        meta = meta_of(obj)
    except Reject:
        return None
    if "labels" in meta or (line_fault(obj, raw) if type(raw) is bytes else unit_fault(obj, raw)) is not None:
        return None
    kind, native = got
    cat = meta.get("category", "typical")
    if cat != "typical":
        native["category"] = cat
    if meta.get("tags"):
        native["tags"] = list(meta["tags"])
    if meta.get("violates"):
        native["violates"] = list(meta["violates"])
    return kind, native


__all__ = ["LANES", "lane_native"]
