"""Record shapes people bring -> curate records, one converter per format, plus `detect_shape(obj)`.

Each converter takes one raw object (a dict), the unit's source fields (a dict for `Source`) and the spec ref, and returns one record, or a
list of outcomes (records or `Reject`s) when one raw object holds several units (Stanford seed tasks with several
instances, Label Studio tasks with several annotations). It raises `Reject(reason, detail)` for a unit it cannot
convert; the detail names the field (`conversations[3].from`).

Formats (the names `--format` takes):
    native             our JSONL (docs/contracts.md): TRL shapes + category/tags/violates/labels (+ source, checks)
    openai             {"messages": [{role, content, tool_calls?: [{type, id, function: {name, arguments}}]}], tools?}
    sharegpt           {"conversations": [{from, value}], system?, tools?}; human->user, gpt->assistant,
                       function_call -> assistant tool call, observation -> tool
    alpaca             {instruction, input?, output, system?, history?: [[q, a], ...]} (JSON list or JSONL)
    prompt_completion  {prompt, completion}: strings or message lists
    preference         {prompt?, chosen, rejected}: strings or message lists (no prompt: implicit, shared prefix)
    hh_rlhf            {chosen, rejected}: "\\n\\nHuman: ...\\n\\nAssistant: ..." transcripts
    llamafactory_dpo   {conversations: [{from, value}], chosen: {from, value}, rejected: {from, value}, system?}
    llamafactory_v1    {messages | chosen_messages + rejected_messages: [{role, content: [{type: text, value}]}]}
    kto                {messages | prompt + completion, label: bool}: true -> SFT, false -> negative SFT
                       (category negative, labels {"kto": false})
    mtbench            {turns: [...], reference?: [...], category?} (FastChat MT-bench/Vicuna-bench prompts)
    seed_tasks         {instruction, instances: [{input, output}]} (Stanford Alpaca seed tasks; one unit per instance)
    unlabeled_pair     {prompt, answer1, answer2} with no preference: quarantined (unlabeled_pair); label it first
    text               {text, category?, tags?} (pretraining-style and dedup corpora): an unlabeled prompt, a
                       user turn with no answer (tag `unlabeled`), for `curate label push --kind write`; a build
                       deduplicates and splits it with the rest and exports it as the spec's
                       `export.text_records` says: a prompt-only row in prompts/ (default) or a text row in text/
    label_studio       Label Studio JSON export (full tasks) -> see curate.readers.labelstudio
    label_studio_min   Label Studio JSON_MIN export

The ShareGPT and LLaMA-Factory converters (sharegpt, llamafactory_dpo, llamafactory_v1, kto) are in
`curate.readers.sharegpt`; every name is importable from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from curate.readers.common import (
    Reject,
    jdump,
    message,
    meta_of,
    openai_messages,
    plain_messages,
    preference,
    sft,
    split_shared_prefix,
    tools_json,
    turns,
)
from curate.readers.sharegpt import (  # noqa: F401 (moved; the helpers are importable from here as before)
    _SHAREGPT_CALL,
    _kto_label,
    _system,
    _v1_message,
    _v1_messages,
    convert_kto,
    convert_llamafactory_dpo,
    convert_llamafactory_v1,
    convert_sharegpt,
    sharegpt_turn,
    sharegpt_turns,
)
from curate.records import Message, PreferenceRecord, SFTRecord, Source, record_from_native

Outcome = Any  # SFTRecord | PreferenceRecord | Reject
Converter = Callable[[dict[str, Any], dict[str, Any], "str | None"], Any]

_OUR_META = ("kind", "category", "tags", "violates", "labels", "checks", "source", "spec")


# ---------------------------------------------------------------- native / OpenAI


def convert_native(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    """Our JSONL. Records that carry a `source` (written by curate) keep its lineage fields; file/line are ours."""
    if "kind" in obj or "checks" in obj or isinstance(obj.get("source"), dict):
        fast = _native_fast(obj, source, spec)
        if fast is not None:
            return fast
        src = Source(**source)
        if isinstance(obj.get("source"), dict):
            old = {k: v for k, v in obj["source"].items() if k not in ("file", "line", "format")}
            try:
                src = Source.model_validate({**old, **source})
            except ValueError as err:
                raise Reject("bad_field", f"source: {_first_error(err)}") from None
        try:
            return record_from_native(
                {k: v for k, v in obj.items() if k not in ("id", "kind")}, spec=spec, source=src
            )
        except ValueError as err:  # pydantic.ValidationError is a ValueError
            raise Reject(
                "unknown_shape" if "no messages" in str(err) else "bad_field", _first_error(err)
            ) from None
    if "chosen" in obj or "rejected" in obj:
        return convert_preference(obj, source, spec)
    if "messages" in obj:
        return convert_openai(obj, source, spec)
    if "prompt" in obj and "completion" in obj:
        return convert_prompt_completion(obj, source, spec)
    raise Reject(
        "unknown_shape",
        f"no messages, prompt/completion or prompt/chosen/rejected (keys: {', '.join(sorted(obj)[:12])})",
    )


_NATIVE_FIELDS = frozenset(
    (
        "spec",
        "category",
        "tags",
        "violates",
        "labels",
        "checks",
        "tools",
        "messages",
        "prompt",
        "completion",
        "chosen",
        "rejected",
    )
)
_TURN_FIELDS = ("messages", "prompt", "completion", "chosen", "rejected")


def _native_fast(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    """A record written by curate (dump_record) whose turns are already in our exact shape: one pydantic call.

    None when the object needs the general path (strings for turns, tools as a list, unknown keys ...).
    """
    body = {k: v for k, v in obj.items() if k not in ("id", "kind", "source")}
    if not body.keys() <= _NATIVE_FIELDS or not isinstance(body.get("tools", ""), str):
        return None
    if not all(plain_messages(body[k]) for k in _TURN_FIELDS if k in body):
        return None
    old = obj.get("source")
    src = (
        {**{k: v for k, v in old.items() if k not in ("file", "line", "format")}, **source}
        if isinstance(old, dict)
        else source
    )
    body.setdefault("spec", spec)
    if body["spec"] is None:
        del body["spec"]
    try:
        if "chosen" in body or "rejected" in body:
            if not ("prompt" in body and "chosen" in body and "rejected" in body):
                return None
            rec: Any = PreferenceRecord(**body, source=src)
        elif "messages" in body or ("prompt" in body and "completion" in body):
            rec = SFTRecord(**body, source=src)
        else:
            return None
    except ValueError as err:  # pydantic.ValidationError
        raise Reject("bad_field", _first_error(err)) from None
    rec.__dict__["id"] = rec.content_id()
    return rec


def _first_error(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        e = errors()[0]
        return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
    return str(err)


def convert_openai(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    msgs = obj.get("messages")
    return sft(
        msgs if plain_messages(msgs) else openai_messages(msgs, "messages"),
        meta=meta_of(obj),
        source=source,
        spec=spec,
        tools=tools_json(obj.get("tools"), "tools"),
    )


# ---------------------------------------------------------------- instruction formats


def _need_str(obj: dict[str, Any], key: str, *, required: bool = True) -> str:
    v = obj.get(key)
    if v is None:
        if required:
            raise Reject("missing_field", f"{key}: missing")
        return ""
    if not isinstance(v, str):
        raise Reject("bad_field", f"{key}: a {type(v).__name__}, expected a string")
    return v


def alpaca_messages(
    instruction: str, inp: str, output: str, system: Any = None, history: Any = None
) -> list[Message]:
    """Alpaca -> chat: the user turn is the instruction, then a blank line and the input when there is one."""
    msgs: list[Message] = []
    if isinstance(system, str) and system.strip():
        msgs.append(message("system", system, "system"))
    if history:
        if not isinstance(history, list):
            raise Reject("bad_field", "history: expected a list of [query, response] pairs")
        for i, pair in enumerate(history):
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise Reject("bad_field", f"history[{i}]: expected a [query, response] pair")
            msgs.append(message("user", pair[0], f"history[{i}][0]"))
            msgs.append(message("assistant", pair[1], f"history[{i}][1]"))
    if not instruction.strip() and not inp.strip():
        raise Reject("empty_turn", "instruction: empty")
    user = f"{instruction}\n\n{inp}" if inp.strip() and instruction.strip() else (instruction or inp)
    msgs.append(message("user", user, "instruction"))
    msgs.append(message("assistant", output, "output"))
    return msgs


def convert_alpaca(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    if "output" not in obj and "response" in obj:
        obj = {**obj, "output": obj["response"]}
    msgs = alpaca_messages(
        _need_str(obj, "instruction"),
        _need_str(obj, "input", required=False),
        _need_str(obj, "output"),
        obj.get("system"),
        obj.get("history"),
    )
    return sft(msgs, meta=meta_of(obj), source=source, spec=spec)


def convert_seed_tasks(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> list[Any]:
    """Stanford Alpaca seed tasks: one record per instance (each instance counts as one unit)."""
    instruction = _need_str(obj, "instruction")
    instances = obj.get("instances")
    if not isinstance(instances, list) or not instances:
        raise Reject("missing_field", "instances: missing or empty")
    meta = meta_of(obj)
    out: list[Any] = []
    for i, inst in enumerate(instances):
        try:
            if not isinstance(inst, dict):
                raise Reject("bad_field", f"instances[{i}]: expected an object")
            msgs = alpaca_messages(
                instruction, _need_str(inst, "input", required=False), _need_str(inst, "output")
            )
            out.append(sft(msgs, meta=meta, source=source, spec=spec))
        except Reject as rej:
            out.append(
                Reject(
                    rej.reason,
                    f"instances[{i}]: {rej.detail}" if not rej.detail.startswith("instances") else rej.detail,
                )
            )
    return out


def convert_prompt_completion(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    if obj.get("completion") is None:
        raise Reject("missing_field", "completion: missing")
    return sft(
        prompt=turns(obj.get("prompt"), "prompt", "user"),
        completion=turns(obj["completion"], "completion", "assistant"),
        meta=meta_of(obj),
        source=source,
        spec=spec,
        tools=tools_json(obj.get("tools"), "tools"),
    )


def convert_preference(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    for key in ("chosen", "rejected"):
        v = obj.get(key)
        if v is None or v == "" or v == []:
            raise Reject(f"missing_{key}", f"{key}: missing or empty")
    tools = tools_json(obj.get("tools"), "tools")
    meta = meta_of(obj)
    if obj.get("prompt") is None:  # implicit prompt: whole conversations sharing a prefix
        if isinstance(obj["chosen"], str) or isinstance(obj["rejected"], str):
            if _looks_hh(obj["chosen"]):
                return convert_hh_rlhf(obj, source, spec)
            raise Reject("missing_field", "prompt: missing (and chosen/rejected are plain strings)")
        p, c, r = split_shared_prefix(
            openai_messages(obj["chosen"], "chosen"),
            openai_messages(obj["rejected"], "rejected"),
            "chosen/rejected",
        )
        return preference(p, c, r, meta=meta, source=source, spec=spec, tools=tools)
    if _whole_conversation(obj["chosen"]) and _whole_conversation(obj["rejected"]):
        # UltraFeedback-binarized style: a prompt string AND whole conversations in chosen/rejected
        p, c, r = split_shared_prefix(
            openai_messages(obj["chosen"], "chosen"),
            openai_messages(obj["rejected"], "rejected"),
            "chosen/rejected",
        )
        given = turns(obj["prompt"], "prompt", "user")
        if isinstance(obj["prompt"], str) and (not p or p[-1].content.strip() != obj["prompt"].strip()):
            raise Reject("prompt_mismatch", "prompt: differs from the last user turn of chosen/rejected")
        if not isinstance(obj["prompt"], str) and tuple(given) != p:
            raise Reject("prompt_mismatch", "prompt: differs from the turns chosen/rejected start with")
        return preference(p, c, r, meta=meta, source=source, spec=spec, tools=tools)
    return preference(
        turns(obj["prompt"], "prompt", "user"),
        turns(obj["chosen"], "chosen", "assistant"),
        turns(obj["rejected"], "rejected", "assistant"),
        meta=meta,
        source=source,
        spec=spec,
        tools=tools,
    )


def _whole_conversation(v: Any) -> bool:
    """A message list that starts before the answer (it holds the prompt turns too)."""
    return (
        isinstance(v, list)
        and len(v) > 1
        and isinstance(v[0], dict)
        and v[0].get("role") in ("system", "user", "developer", "human")
    )


_HH_SPLIT = re.compile(r"\n\n(Human|Assistant):[ ]?")


def _looks_hh(v: Any) -> bool:
    return isinstance(v, str) and ("\n\nHuman:" in v[:2000] or v.startswith("Human:"))


def hh_transcript(text: Any, where: str) -> list[Message]:
    """ "\\n\\nHuman: q\\n\\nAssistant: a ..." -> messages (Anthropic HH-RLHF)."""
    if not isinstance(text, str):
        raise Reject("bad_field", f"{where}: expected a transcript string")
    if text.startswith("Human:"):
        text = "\n\n" + text
    parts = _HH_SPLIT.split(text)
    if parts[0].strip():
        raise Reject("bad_transcript", f"{where}: text before the first Human:/Assistant: marker")
    out = []
    for k in range(1, len(parts), 2):
        role = "user" if parts[k] == "Human" else "assistant"
        out.append(message(role, parts[k + 1].strip(), f"{where} turn {k // 2 + 1} ({parts[k]})"))
    if not out:
        raise Reject("bad_transcript", f"{where}: no Human:/Assistant: turns")
    return out


def convert_hh_rlhf(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    for key in ("chosen", "rejected"):
        if not obj.get(key):
            raise Reject(f"missing_{key}", f"{key}: missing or empty")
    chosen = hh_transcript(obj["chosen"], "chosen")
    rejected = hh_transcript(obj["rejected"], "rejected")
    if chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
        raise Reject("no_assistant_turn", "chosen/rejected: a transcript that does not end with Assistant:")
    if chosen[:-1] != rejected[:-1]:
        n = next(
            (k for k, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1])) if a != b),
            min(len(chosen), len(rejected)) - 1,
        )
        raise Reject(
            "prompt_mismatch",
            f"chosen/rejected: the transcripts differ before their final answers (turn {n + 1})",
        )
    return preference(chosen[:-1], chosen[-1:], rejected[-1:], meta=meta_of(obj), source=source, spec=spec)


def convert_mtbench(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    """FastChat MT-bench / Vicuna-bench questions: user turns; reference answers interleaved when given.

    Their `category` (writing, math ...) is a topic, not one of our case categories: it becomes a tag.
    Without (complete) reference answers the record has no assistant turn (validate quarantines it for training; it is
    still what `curate leakage` compares against).
    """
    ts = obj.get("turns")
    if not isinstance(ts, list) or not ts:
        raise Reject("missing_field", "turns: missing or empty")
    ref = obj.get("reference")
    with_ref = (
        isinstance(ref, list) and len(ref) == len(ts) and all(isinstance(r, str) and r.strip() for r in ref)
    )
    msgs: list[Message] = []
    for i, t in enumerate(ts):
        msgs.append(message("user", t, f"turns[{i}]"))
        if with_ref:
            msgs.append(message("assistant", ref[i], f"reference[{i}]"))
    tags = (obj["category"],) if isinstance(obj.get("category"), str) else ()
    return sft(msgs, meta={"tags": tags}, source=source, spec=spec)


def convert_text(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    """A plain text record: the text becomes the user turn of an unlabeled prompt (tagged `unlabeled`)."""
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Reject(
            "empty_turn" if isinstance(text, str) else "bad_field",
            "text: empty" if isinstance(text, str) else "text: expected a string",
        )
    meta = meta_of(obj)
    meta["tags"] = tuple(dict.fromkeys([*meta.get("tags", ()), "unlabeled"]))
    return sft([message("user", text, "text")], meta=meta, source=source, spec=spec)


def convert_unlabeled_pair(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    raise Reject(
        "unlabeled_pair",
        "two answers (answer1/answer2) without a preference: label them "
        "(curate label push) or say which is chosen with a mapping (chosen=answer1, rejected=answer2)",
    )


# ---------------------------------------------------------------- detection


def detect_shape(obj: dict[str, Any]) -> str | None:
    """The format of one raw object, or None when it is none of ours."""
    if (
        "data" in obj
        and isinstance(obj["data"], dict)
        and ("annotations" in obj or "predictions" in obj or "id" in obj or len(obj) == 1)
    ):
        return "label_studio"
    if "annotation_id" in obj and "annotator" in obj:
        return "label_studio_min"
    if "chosen_messages" in obj or "rejected_messages" in obj:
        return "llamafactory_v1"
    if "conversations" in obj:
        return "llamafactory_dpo" if "chosen" in obj and "rejected" in obj else "sharegpt"
    if "chosen" in obj and "rejected" in obj and "messages" in obj:
        return "preference"  # UltraFeedback-binarized: `messages` repeats the chosen conversation
    if "messages" in obj:
        msgs = obj["messages"]
        first = msgs[0] if isinstance(msgs, list) and msgs else None
        if isinstance(obj.get("label"), bool):
            return "kto"
        if isinstance(first, dict) and (
            "loss_weight" in first
            or (
                isinstance(first.get("content"), list)
                and first["content"]
                and isinstance(first["content"][0], dict)
                and "value" in first["content"][0]
            )
        ):
            return "llamafactory_v1"
        if any(k in obj for k in _OUR_META):
            return "native"
        return "openai"
    if "chosen" in obj and "rejected" in obj:
        if "prompt" not in obj and _looks_hh(obj["chosen"]):
            return "hh_rlhf"
        return "native" if any(k in obj for k in _OUR_META) else "preference"
    if "instruction" in obj and "instances" in obj:
        return "seed_tasks"
    if "instruction" in obj and ("output" in obj or "response" in obj):
        return "alpaca"
    if "prompt" in obj and "completion" in obj:
        if isinstance(obj.get("label"), bool):
            return "kto"
        return "native" if any(k in obj for k in _OUR_META) else "prompt_completion"
    if "turns" in obj and isinstance(obj["turns"], list):
        return "mtbench"
    if "prompt" in obj and "answer1" in obj and "answer2" in obj:
        return "unlabeled_pair"
    if isinstance(obj.get("text"), str) and not ({"prompt", "completion", "messages"} & obj.keys()):
        return "text"
    return None


def _convert_label_studio(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    from curate.readers.labelstudio import convert_task

    return convert_task(obj, source, spec)


def _convert_label_studio_min(obj: dict[str, Any], source: dict[str, Any], spec: str | None) -> Any:
    from curate.readers.labelstudio import convert_min_row

    return convert_min_row(obj, source, spec)


CONVERTERS: dict[str, Converter] = {
    "native": convert_native,
    "openai": convert_openai,
    "sharegpt": convert_sharegpt,
    "alpaca": convert_alpaca,
    "prompt_completion": convert_prompt_completion,
    "preference": convert_preference,
    "hh_rlhf": convert_hh_rlhf,
    "llamafactory_dpo": convert_llamafactory_dpo,
    "llamafactory_v1": convert_llamafactory_v1,
    "kto": convert_kto,
    "mtbench": convert_mtbench,
    "seed_tasks": convert_seed_tasks,
    "unlabeled_pair": convert_unlabeled_pair,
    "text": convert_text,
    "label_studio": _convert_label_studio,
    "label_studio_min": _convert_label_studio_min,
}
SHAPES: tuple[str, ...] = tuple(CONVERTERS)

__all__ = ["CONVERTERS", "SHAPES", "detect_shape", "jdump"]
