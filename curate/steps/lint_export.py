"""Lint an exported folder the way TRL will read it: dataset type, consistency, chat template, lengths.

    >>> from curate.steps.lint_export import lint_export
    >>> rep = lint_export("out/support-triage/v1/sft", tokenizer="path/to/model", max_length=1024)  # doctest: +SKIP
    >>> rep.ok, rep.as_dict()["findings"]

What it reports, per dataset folder (`sft/`, `dpo/`, `prompts/`, `text/`, or all of them under a build folder):
- the dataset type TRL 1.16 detects from the FIRST row (language modeling `messages`/`text`, prompt-only,
  prompt-completion, preference, implicit preference, unpaired preference) and whether it is conversational;
- rows whose type or shape differs from the first row (TRL would fail or mis-handle them) -> error;
- SFT with assistant-only loss: without `{% generation %}` markers in the chat template `curate train` trains on
  the last assistant turn only (completion-only loss, as TRL does for prompt/completion rows) -> warning, and the
  lengths are judged that way (what `curate train` would do with that tokenizer, e.g. one it saved itself);
- an empty dataset folder -> error, unless another folder of the same build has rows (a single-kind export: the
  empty kind is simply not trained) -> warning;
- lengths with the tokenizer's chat template: rows TRL would DROP (SFT with assistant-only / completion-only loss:
  the turns before the first answer fill max_length, so no trained token is left; DPO: the prompt reaches
  max_length) -> error, and rows it would TRUNCATE -> warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")

from curate.errors import InputError
from curate.steps.validate import load_tokenizer


def dataset_type(row: dict[str, Any]) -> tuple[str, bool]:
    """(TRL dataset type, conversational) of one row, as TRL decides it from the keys."""
    keys = set(row)
    if {"prompt", "chosen", "rejected"} <= keys:
        kind = "preference"
    elif {"chosen", "rejected"} <= keys:
        kind = "implicit_preference"
    elif {"prompt", "completion", "label"} <= keys:
        kind = "unpaired_preference"
    elif {"prompt", "completion"} <= keys:
        kind = "prompt_completion"
    elif "messages" in keys or "text" in keys:
        kind = "language_modeling"
    elif "prompt" in keys:
        kind = "prompt_only"
    else:
        kind = "unknown"
    conv = False
    for key in ("messages", "prompt", "chosen", "rejected", "completion"):
        v = row.get(key)
        if isinstance(v, list) and v and isinstance(v[0], dict) and "role" in v[0]:
            conv = True
            break
    return kind, conv


@dataclass
class LintReport:
    datasets: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, level: str, dataset: str, code: str, message: str, **extra: Any) -> None:
        self.findings.append({"level": level, "dataset": dataset, "code": code, "message": message, **extra})

    @property
    def ok(self) -> bool:
        return not any(f["level"] == "error" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "datasets": self.datasets, "findings": self.findings}


def _rows(folder: Path) -> dict[str, list[dict[str, Any]]]:
    from curate.steps.export import read_rows, split_files  # (the one finder and reader of exported splits)

    out: dict[str, list[dict[str, Any]]] = {}
    for split in ("train", "test"):
        files = split_files(folder, split)
        if files and files[0].suffix == ".jsonl":
            f = files[0]
            out[split] = [orjson.loads(line) for line in f.read_bytes().splitlines() if line.strip()]
        elif files:
            out[split] = [r for p in files for _, r in read_rows(p)]
    return out


def _folders(path: Path) -> list[Path]:
    if (path / "train.jsonl").is_file() or (path / "data").is_dir():
        return [path]
    found = [path / n for n in ("sft", "dpo", "prompts", "text") if (path / n).is_dir()]
    if not found:
        raise InputError(
            f"{path}: no dataset here (expected train.jsonl/test.jsonl, data/*.parquet, or a build "
            "folder with sft/, dpo/, prompts/ or text/)"
        )
    return found


def _msgs(v: Any) -> list[dict[str, Any]]:
    if isinstance(v, str):
        return [{"role": "user", "content": v}]
    out = []
    for m in v or []:
        m = {k: val for k, val in m.items() if val is not None}
        out.append(m)
    return out


def _ntok(tok: Any, messages: list[dict[str, Any]], *, generation_prompt: bool = False) -> int:
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def lint_export(
    path: str | Path,
    *,
    tokenizer: str | Path | Any | None = None,
    max_length: int | None = None,
    assistant_only_loss: bool = True,
    max_examples: int = 10,
) -> LintReport:
    """Lint one dataset folder or a whole build folder (see the module doc)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    rep = LintReport()
    template = getattr(tok, "chat_template", None) if tok is not None else None
    if tok is not None and not template:
        rep.add(
            "error",
            str(root),
            "no_chat_template",
            "the tokenizer has no chat template; conversational data needs one (set tokenizer.chat_template)",
        )
    folders = _folders(root)
    loaded = [(folder, _rows(folder)) for folder in folders]
    some_rows = any(rows for _, splits in loaded for rows in splits.values())
    for folder, splits in loaded:
        name = str(folder)
        rows_all = [(s, i, r) for s, rows in splits.items() for i, r in enumerate(rows, start=1)]
        if not rows_all:
            if some_rows:
                rep.add(
                    "warning",
                    name,
                    "empty",
                    f"no rows: this build has no {folder.name} data; train the other kind only",
                )
            else:
                rep.add("error", name, "empty", "no rows: TRL cannot train on an empty dataset")
            continue
        first = rows_all[0][2]
        kind, conv = dataset_type(first)
        info = {
            "dataset": name,
            "type": kind,
            "conversational": conv,
            "rows": {s: len(r) for s, r in splits.items()},
            "dropped": 0,
            "truncated": 0,
        }
        rep.datasets.append(info)
        if kind == "unknown":
            rep.add(
                "error",
                name,
                "unknown_type",
                f"the first row's keys {sorted(first)} match no TRL dataset type",
            )
        odd = [(s, i, dataset_type(r)) for s, i, r in rows_all if dataset_type(r) != (kind, conv)]
        if odd:
            rep.add(
                "error",
                name,
                "inconsistent_types",
                f"{len(odd)} rows differ from the first row's type "
                f"({kind}, conversational={conv}); TRL decides from the first row",
                examples=[f"{s}:{i} {t}" for s, i, t in odd[:max_examples]],
            )
        wants_markers = kind == "language_modeling" and conv and assistant_only_loss
        completion_only = False
        if template and wants_markers and not _GENERATION.search(template):
            completion_only = True
            rep.add(
                "warning",
                name,
                "no_generation_markers",
                "the chat template has no {% generation %} markers: "
                "`curate train` trains on the last assistant turn only (completion-only loss); TRL's SFTTrainer "
                "with assistant_only_loss=True would raise (pass --no-assistant-only-loss to lint training on "
                "every token)",
            )
        if tok is None or not template or not conv or max_length is None:
            continue
        drop_ex: list[str] = []
        trunc_ex: list[str] = []
        for s, i, r in rows_all:
            if dataset_type(r) != (kind, conv):
                continue  # reported above as inconsistent_types
            try:
                if kind == "language_modeling":
                    msgs = _msgs(r["messages"])
                    # with assistant-only loss a row is dropped when no assistant token survives truncation,
                    # i.e. when everything before the FIRST assistant turn fills max_length; without it, never
                    first_a = next((k for k, m in enumerate(msgs) if m.get("role") == "assistant"), None)
                    if completion_only:  # curate train: prompt = every turn before the last
                        first_a = len(msgs) - 1
                    prompt_len = (
                        _ntok(tok, msgs[:first_a], generation_prompt=True)
                        if assistant_only_loss and first_a
                        else 0
                    )
                    total = _ntok(tok, msgs)
                    lens = [total]
                elif kind == "prompt_completion":
                    prompt_len = _ntok(tok, _msgs(r["prompt"]), generation_prompt=True)
                    lens = [_ntok(tok, _msgs(r["prompt"]) + _msgs(r["completion"]))]
                elif kind == "preference":
                    prompt_len = _ntok(tok, _msgs(r["prompt"]), generation_prompt=True)
                    lens = [_ntok(tok, _msgs(r["prompt"]) + _msgs(r[k])) for k in ("chosen", "rejected")]
                elif kind == "prompt_only":
                    prompt_len = 0  # generation starts after the prompt: one that fills max_length is cut
                    lens = [_ntok(tok, _msgs(r["prompt"]), generation_prompt=True)]
                else:
                    continue
            except Exception as err:  # noqa: BLE001 - a row the template cannot render is a finding
                rep.add(
                    "error", name, "template_error", f"{s}:{i}: the chat template fails on this row: {err}"
                )
                continue
            if prompt_len >= max_length:
                info["dropped"] += 1
                if len(drop_ex) < max_examples:
                    drop_ex.append(f"{s}:{i} prompt {prompt_len} tokens")
            elif max(lens) > max_length:
                info["truncated"] += 1
                if len(trunc_ex) < max_examples:
                    trunc_ex.append(f"{s}:{i} {max(lens)} tokens")
        if info["dropped"]:
            rep.add(
                "error",
                name,
                "rows_dropped",
                f"{info['dropped']} rows have a prompt of >= {max_length} tokens:"
                " TRL drops them (nothing left to learn) and fails if none are left",
                examples=drop_ex,
            )
        if info["truncated"]:
            rep.add(
                "warning",
                name,
                "rows_truncated",
                f"{info['truncated']} rows exceed {max_length} tokens: TRL "
                "truncates them (the end of the answer is lost)",
                examples=trunc_ex,
            )
    return rep


__all__ = ["LintReport", "dataset_type", "lint_export"]
