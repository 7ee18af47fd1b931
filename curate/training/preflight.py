"""Checks before training: what would make TRL fail late or silently drop rows (rows longer than the model's
context or the max length, a chat template without generation markers) is a TrainError naming the file and the fix.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import orjson

from curate.errors import TrainError
from curate.training.data import SplitRows, load_export
from curate.training.models import ModelRef, has_generation_markers

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- checks before training


def _tok_len(tokenizer: Any, messages: list[dict[str, Any]], *, gen_prompt: bool) -> int:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=gen_prompt, return_dict=True
    )
    return len(out["input_ids"])


def length_problems(
    split: SplitRows, tokenizer: Any, max_length: int, kind: str
) -> list[tuple[str, int, int]]:
    """(file:line, prompt tokens, total tokens) of every row longer than `max_length` tokens."""
    problems: list[tuple[str, int, int]] = []
    for row, line in zip(split.rows, split.lines):
        if kind == "sft":
            conv = row.get("messages") or (list(row["prompt"]) + list(row["completion"]))
            prompt = conv[:-1] if conv and conv[-1].get("role") == "assistant" else conv
            p_len = _tok_len(tokenizer, prompt, gen_prompt=True) if prompt else 0
            total = _tok_len(tokenizer, conv, gen_prompt=False)
        else:
            p_len = _tok_len(tokenizer, row["prompt"], gen_prompt=True)
            total = max(
                _tok_len(tokenizer, list(row["prompt"]) + list(row[k]), gen_prompt=False)
                for k in ("chosen", "rejected")
            )
        if total > max_length:
            problems.append((f"{split.path}:{line}", p_len, total))
    return problems


_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def gguf_context_length(path: Path) -> int | None:
    """`<architecture>.context_length` from a GGUF file's metadata, reading only the header (gguf.GGUFReader
    also parses every tensor's info: seconds for a 135M model on a busy machine)."""

    def string(fh: Any) -> str:
        (n,) = struct.unpack("<Q", fh.read(8))
        return fh.read(n).decode("utf-8", "replace")

    def value(fh: Any, vtype: int) -> Any:
        if vtype == 8:
            return string(fh)
        if vtype == 9:
            (itype,), (n,) = struct.unpack("<I", fh.read(4)), struct.unpack("<Q", fh.read(8))
            if itype in _GGUF_SCALARS:  # skipped in one seek
                fh.seek(n * struct.calcsize(_GGUF_SCALARS[itype]), 1)
            else:
                for _ in range(n):
                    value(fh, itype)
            return None
        fmt = _GGUF_SCALARS[vtype]
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            return None
        _version, _tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
        arch = None
        for _ in range(n_kv):
            key = string(fh)
            (vtype,) = struct.unpack("<I", fh.read(4))
            v = value(fh, vtype)
            if key == "general.architecture":
                arch = v
            elif arch is not None and key == f"{arch}.context_length" and isinstance(v, int):
                return v
    return None


def model_max_positions(ref: ModelRef, tokenizer: Any = None) -> int | None:
    """How many tokens the model takes at most: its config's max_position_embeddings (a GGUF file's
    context_length), or the tokenizer's model_max_length when that is a real figure; None when neither says."""
    n: int | None = None
    try:
        if ref.gguf_file:
            n = gguf_context_length(ref.path / ref.gguf_file)
        elif (ref.path / "config.json").is_file():
            cfg = orjson.loads((ref.path / "config.json").read_bytes())
            cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
            n = cfg.get("max_position_embeddings") or cfg.get("n_positions")
        n = n if isinstance(n, int) and n > 0 else None
    except (
        OSError,
        ValueError,
        KeyError,
        struct.error,
    ) as err:  # a config we cannot read only loses the hint
        log.debug("no max positions for %s: %s", ref.path, err)
    tm = getattr(tokenizer, "model_max_length", None)
    if isinstance(tm, int) and 0 < tm < 1_000_000:  # transformers' "unknown" is ~1e30
        n = min(n, tm) if n else tm
    return n


def check_lengths(
    splits: list[SplitRows], tokenizer: Any, max_length: int, kind: str, max_positions: int | None = None
) -> None:
    """Raise when TRL would drop or truncate a row (it does both silently). The hint never suggests more tokens
    than the model takes (`max_positions`)."""
    if max_positions is not None and max_length > max_positions:
        raise TrainError(
            f"max_length {max_length} is more than the model takes ({max_positions} positions); pass "
            f"--max-length {max_positions} or less"
        )
    problems = [p for s in splits for p in length_problems(s, tokenizer, max_length, kind)]
    if problems:
        longest = max(t for _, _, t in problems)
        dropped = sum(1 for _, p, _ in problems if p >= max_length)
        where = ", ".join(f"{w} ({t} tokens)" for w, _, t in problems[:5])
        if max_positions is not None and longest > max_positions:
            fix = (
                f"the model takes at most {max_positions} tokens, so pass --max-length {max_positions} and "
                f"rebuild with the spec's export.max_tokens at most {max_positions} (longer records are then "
                "quarantined as too_long) or shorten them"
            )
        else:
            fix = f"pass --max-length {longest} or lower the spec's export.max_tokens and rebuild"
        raise TrainError(
            f"{len(problems)} rows are longer than max_length {max_length} (TRL would drop {dropped} "
            f"and truncate {len(problems) - dropped} without a word): {where}"
            f"{' ...' if len(problems) > 5 else ''}; {fix}"
        )


def preflight(
    kind: str, export: Path, tokenizer: Any, max_length: int, max_positions: int | None = None
) -> tuple[SplitRows, SplitRows | None, bool]:
    """Everything checked before a trainer is built: template, data type, lengths. Returns (train, test, aol)."""
    if not tokenizer.chat_template:
        raise TrainError(
            "the model's tokenizer has no chat template; the export is conversational, so pick an "
            "instruct/chat model (or add a chat_template to its tokenizer_config.json)"
        )
    train, test = load_export(export, kind)
    check_lengths([s for s in (train, test) if s is not None], tokenizer, max_length, kind, max_positions)
    aol = kind == "sft" and has_generation_markers(tokenizer)
    return train, test, aol


def to_completion_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """messages -> prompt (all turns before the last) + completion (the last assistant turn).

    Used when the chat template has no generation markers: TRL then computes the loss on the completion only,
    which is the closest to assistant-only loss such a template allows.
    """
    out = []
    for r in rows:
        if "messages" not in r:
            out.append(r)
            continue
        msgs = list(r["messages"])
        new = {"prompt": msgs[:-1], "completion": msgs[-1:]}
        if "tools" in r:
            new["tools"] = r["tools"]
        out.append(new)
    return out
