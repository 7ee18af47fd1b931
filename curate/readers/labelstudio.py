"""Label Studio exports -> records: full JSON (a list of tasks, or one task object) and JSON_MIN (flat rows).

Tasks made with curate's own labeling configs are handed to `curate.labeling.convert` (the same conversion
`curate label pull` uses) when that module offers the hook (see `_curate_hook`). Other ("foreign") projects get a
generic conversion:

- chat messages in the task data (`data.messages` or another list of {role, content}) -> one SFT record per task;
  its annotations' answers (choices, ratings, text) go into `labels["annotations"]`;
- pairwise annotations (`{"selected": "left"|"right"}`) over two text fields -> one preference record per
  annotation: left is the first candidate field (answer1, text1, ...), right the second; the prompt is the task's
  prompt text when there is one;
- a chat annotation (`chatmessage` results) -> one SFT record per annotation: the task's input chat, then the
  messages the annotator wrote;
- a textarea answer to a prompt text -> one SFT record per annotation (user: the prompt, assistant: the answer).

Units: a task whose records come from annotations has one unit per annotation (a cancelled one is quarantined
as cancelled_annotation); any other task is one unit. Predictions and drafts are model or unfinished output, not
labels: they are not imported. A task with nothing to turn into a record is quarantined (no_text_data, or
unannotated when it waits for an answer).
"""

from __future__ import annotations

import re
from typing import Any

from curate.readers.common import ROLE_ALIASES, Reject, message, openai_message, preference, sft
from curate.records import Message

_PROMPT_KEYS = ("prompt", "question", "instruction", "query", "input", "text", "context", "scenario_prompt")
_PAIR_KEYS = (
    ("answer1", "answer2"),
    ("text1", "text2"),
    ("response1", "response2"),
    ("answer_a", "answer_b"),
    ("response_a", "response_b"),
    ("left", "right"),
    ("completion1", "completion2"),
    ("output1", "output2"),
    ("chosen", "rejected"),
)
_MIN_META = {
    "id",
    "annotator",
    "annotation_id",
    "created_at",
    "updated_at",
    "lead_time",
    "agreement",
    "history",
}


def _curate_hook() -> Any:
    """curate.labeling.convert, when it exposes `is_curate_task(task)` and `task_records(task, source=, spec=)`."""
    try:
        from curate.labeling import convert  # type: ignore[attr-defined]
    except ImportError:
        return None
    if hasattr(convert, "is_curate_task") and hasattr(convert, "task_records"):
        return convert
    return None


def _is_chat(v: Any) -> bool:
    return (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(m, dict) for m in v)
        and all(isinstance(m.get("role"), str) and m.get("role") in ROLE_ALIASES for m in v)
    )


def _chat_field(data: dict[str, Any]) -> str | None:
    if _is_chat(data.get("messages")):
        return "messages"
    return next((k for k, v in data.items() if _is_chat(v)), None)


def _chat(value: list[dict[str, Any]], where: str) -> list[Message]:
    return [openai_message(m, f"{where}[{i}]") for i, m in enumerate(value)]


_URL = re.compile(r"^(https?|s3|gs|azure-blob)://|^/data/(upload|local-files)/")


def _is_text(v: Any) -> bool:
    """A non-empty string that is text, not a media URL (image, audio tasks)."""
    return isinstance(v, str) and bool(v.strip()) and not _URL.match(v)


def _prompt_key(data: dict[str, Any], exclude: tuple[str, ...] = ()) -> str | None:
    for k in _PROMPT_KEYS:
        if k not in exclude and _is_text(data.get(k)):
            return k
    strings = [k for k, v in data.items() if k not in exclude and _is_text(v)]
    return strings[0] if len(strings) == 1 else None


def _pair_keys(data: dict[str, Any], to_name: Any = None) -> tuple[str, str] | None:
    """The two candidate fields of a pairwise comparison, in left/right order."""
    if isinstance(to_name, str) and "," in to_name:
        names = tuple(n.strip() for n in to_name.split(","))
        if len(names) == 2 and all(isinstance(data.get(n), str) for n in names):
            return names  # type: ignore[return-value]
    for a, b in _PAIR_KEYS:
        if _is_text(data.get(a)) and _is_text(data.get(b)):
            return a, b
    strings = [k for k, v in data.items() if _is_text(v) and k not in _PROMPT_KEYS]
    return (strings[0], strings[1]) if len(strings) == 2 else None


def _simple(result: dict[str, Any]) -> Any:
    """A result's value the way people read it: the choice, the rating, the text."""
    v = result.get("value") or {}
    for key in ("choices", "text", "rating", "number", "datetime", "taxonomy", "selected", "ranker"):
        if key in v:
            x = v[key]
            return x[0] if isinstance(x, list) and len(x) == 1 and key in ("choices", "text") else x
    return v


def _labels_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in results:
        if isinstance(r, dict) and r.get("from_name") and r.get("type") != "chatmessage":
            out[r["from_name"]] = _simple(r)
    return out


def _annotator(ann: dict[str, Any]) -> str | None:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who is not None else None


def _src(base: dict[str, Any], task: dict[str, Any], ann: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = dict(base)
    fields["project"] = task.get("project") if isinstance(task.get("project"), int | str) else None
    fields["task"] = task.get("id") if isinstance(task.get("id"), int | str) else None
    if ann is not None:
        fields["annotation"] = ann.get("id") if isinstance(ann.get("id"), int | str) else None
        fields["annotator"] = _annotator(ann)
    return fields


def _text_answer(results: list[dict[str, Any]]) -> tuple[str, Any] | None:
    for r in results:
        if isinstance(r, dict) and r.get("type") == "textarea":
            t = (r.get("value") or {}).get("text")
            text = "\n".join(x for x in t if isinstance(x, str)) if isinstance(t, list) else t
            if isinstance(text, str):
                return text, r.get("to_name")
    return None


def _pairwise(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    for r in results:
        if isinstance(r, dict) and (r.get("type") == "pairwise" or "selected" in (r.get("value") or {})):
            return r
    return None


def _from_annotation(
    task: dict[str, Any], data: dict[str, Any], ann: Any, i: int, base: dict[str, Any], spec: str | None
) -> Any:
    where = f"annotations[{i}]"
    if not isinstance(ann, dict):
        return Reject("bad_field", f"{where}: expected an object")
    src = _src(base, task, ann)
    if ann.get("was_cancelled") or ann.get("skipped"):
        return Reject("cancelled_annotation", f"{where}: cancelled (skipped) by the annotator", src)
    results = ann.get("result") or []
    try:
        pw = _pairwise(results)
        if pw is not None:
            sel = (pw.get("value") or {}).get("selected")
            keys = _pair_keys(data, pw.get("to_name"))
            if sel not in ("left", "right"):
                raise Reject("bad_field", f"{where}: pairwise selected {sel!r}, expected left or right")
            if keys is None:
                raise Reject(
                    "unknown_shape", f"{where}: pairwise, but the task data has no two candidate texts"
                )
            left, right = keys
            pk = _prompt_key(data, exclude=keys)
            prompt = [message("user", data[pk], f"data.{pk}")] if pk else []
            chosen_key, rejected_key = (left, right) if sel == "left" else (right, left)
            return preference(
                prompt,
                [message("assistant", data[chosen_key], f"data.{chosen_key}")],
                [message("assistant", data[rejected_key], f"data.{rejected_key}")],
                meta={"labels": {"pairwise": {"selected": sel, "chosen": chosen_key}}},
                source=src,
                spec=spec,
            )
        chat = [r for r in results if isinstance(r, dict) and r.get("type") == "chatmessage"]
        if chat:
            ck = _chat_field(data)
            msgs = _chat(data[ck], f"data.{ck}") if ck else []
            for k, r in enumerate(chat):
                cm = (r.get("value") or {}).get("chatmessage")
                msgs.append(openai_message(cm, f"{where}.result[{results.index(r)}].value.chatmessage"))
            del k
            return sft(
                msgs,
                meta={"labels": _labels_of(results)} if _labels_of(results) else {},
                source=src,
                spec=spec,
            )
        answer = _text_answer(results)
        if answer is not None:
            text, to_name = answer
            pk = (
                to_name
                if isinstance(to_name, str) and isinstance(data.get(to_name), str)
                else _prompt_key(data)
            )
            if pk is None:
                raise Reject("unknown_shape", f"{where}: a text answer, but no prompt text in the task data")
            return sft(
                [message("user", data[pk], f"data.{pk}"), message("assistant", text, f"{where} textarea")],
                meta={"labels": _labels_of([r for r in results if r.get("type") != "textarea"])},
                source=src,
                spec=spec,
            )
        raise Reject("no_text_data", f"{where}: no pairwise, chat or text answer in this annotation")
    except Reject as rej:
        rej.source = src
        return rej


def _has_answer(ann: Any, types: tuple[str, ...]) -> bool:
    if not isinstance(ann, dict):
        return False
    for r in ann.get("result") or []:
        if isinstance(r, dict) and (
            r.get("type") in types or ("pairwise" in types and "selected" in (r.get("value") or {}))
        ):
            return True
    return False


def _flat_annotators(task: dict[str, Any]) -> dict[str, Any]:
    """Export files hold `completed_by` as a user object; the labeling conversion takes an id or email."""
    anns = task.get("annotations")
    if not isinstance(anns, list) or not any(
        isinstance(a, dict) and isinstance(a.get("completed_by"), dict) for a in anns
    ):
        return task
    flat = [
        {**a, "completed_by": a["completed_by"].get("email") or a["completed_by"].get("id")}
        if isinstance(a, dict) and isinstance(a.get("completed_by"), dict)
        else a
        for a in anns
    ]
    return {**task, "annotations": flat}


def convert_task(task: dict[str, Any], base: dict[str, Any], spec: str | None) -> Any:
    """One task of a full JSON export (or of a task import file)."""
    try:
        return _convert_task(task, base, spec)
    except Reject as rej:
        rej.source = rej.source or _src(base, task)
        raise


def _convert_task(task: dict[str, Any], base: dict[str, Any], spec: str | None) -> Any:
    hook = _curate_hook()
    if hook is not None and hook.is_curate_task(task):
        return list(hook.task_records(_flat_annotators(task), source=base, spec=spec))
    data = task.get("data") if isinstance(task.get("data"), dict) else None
    if data is None:  # a task file row without "data": the row is the data
        data = {k: v for k, v in task.items() if k not in ("annotations", "predictions", "id", "meta")}
    anns = task.get("annotations") or task.get("completions") or []
    if not isinstance(anns, list):
        raise Reject("bad_field", "annotations: expected a list")
    ck = _chat_field(data)
    # annotations that write the data (a preference, a chat) make one record each; a text answer does only when
    # the task has no chat of its own (then it is feedback about that chat, kept in labels)
    if any(
        _has_answer(a, ("pairwise", "chatmessage") if ck else ("pairwise", "chatmessage", "textarea"))
        for a in anns
    ):
        return [_from_annotation(task, data, a, i, base, spec) for i, a in enumerate(anns)]
    if ck is not None:
        labels: dict[str, Any] = {}
        done = [a for a in anns if isinstance(a, dict) and not a.get("was_cancelled")]
        if done:
            labels["annotations"] = [_labels_of(a.get("result") or []) for a in done]
        return sft(_chat(data[ck], f"data.{ck}"), meta={"labels": labels}, source=_src(base, task), spec=spec)
    if not anns and any(_is_text(v) for v in data.values()):
        raise Reject("unannotated", "a task with text but no annotation (label it first)")
    keys = ", ".join(sorted(data)[:8])
    raise Reject("no_text_data", f"data ({keys}): no chat messages, and no pairwise, chat or text annotation")


def convert_min_row(row: dict[str, Any], base: dict[str, Any], spec: str | None) -> Any:
    """One row of a JSON_MIN export: the task data flattened with each control's answer under its name."""
    fields = {k: v for k, v in row.items() if k not in _MIN_META}
    fields_src = dict(base)
    fields_src.update(
        task=row.get("id") if isinstance(row.get("id"), int | str) else None,
        annotation=row.get("annotation_id") if isinstance(row.get("annotation_id"), int | str) else None,
        annotator=str(row["annotator"]) if row.get("annotator") is not None else None,
    )
    src = fields_src
    for k, v in fields.items():  # pairwise: {"selected": ...} (JSON_MIN keeps it as a list of one)
        vv = v[0] if isinstance(v, list) and len(v) == 1 else v
        if isinstance(vv, dict) and "selected" in vv:
            sel = vv["selected"]
            data = {dk: dv for dk, dv in fields.items() if dk != k}
            keys = _pair_keys(data)
            if sel not in ("left", "right"):
                raise Reject("bad_field", f"{k}.selected: {sel!r}, expected left or right")
            if keys is None:
                raise Reject("unknown_shape", f"{k}: pairwise, but the row has no two candidate texts")
            left, right = keys
            pk = _prompt_key(data, exclude=keys)
            c, r = (left, right) if sel == "left" else (right, left)
            prompt = [message("user", data[pk], pk)] if pk else []
            return preference(
                prompt,
                [message("assistant", data[c], c)],
                [message("assistant", data[r], r)],
                meta={"labels": {"pairwise": {"selected": sel, "chosen": c}}},
                source=src,
                spec=spec,
            )
    chats = [k for k, v in fields.items() if _is_chat(v)]
    if chats:
        msgs: list[Message] = []
        for k in chats:  # input chat first, then the annotator's chat (JSON_MIN keeps data keys first)
            msgs += _chat(fields[k], k)
        return sft(msgs, meta={}, source=src, spec=spec)
    strings = [k for k, v in fields.items() if isinstance(v, str) and v.strip()]
    if len(strings) >= 2:
        answer = strings[-1]  # JSON_MIN writes the controls' answers after the task data
        pk = _prompt_key(fields, exclude=(answer,)) or strings[0]
        return sft(
            [message("user", fields[pk], pk), message("assistant", fields[answer], answer)],
            meta={},
            source=src,
            spec=spec,
        )
    raise Reject("no_text_data", f"keys ({', '.join(sorted(fields)[:8])}): no chat, pairwise or text answer")
