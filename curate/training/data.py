"""The export's SFT and DPO splits as TRL rows: one row shape per split, a bad line is a TrainError.

>>> from curate.training.data import load_export
>>> train, test = load_export(Path("out/support-triage/v1"), "sft")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from curate.errors import TrainError
from curate.records import LineError, read_jsonl

SFT_COLUMNS = ("messages", "prompt", "completion", "tools")
DPO_COLUMNS = ("prompt", "chosen", "rejected", "tools")


# ---------------------------------------------------------------- resolving inputs


def resolve_export(spec_or_export: str | Path) -> tuple[Path, Any]:
    """(export dir, Spec or None): an export folder as it is, or a spec's default build folder."""
    p = Path(spec_or_export)
    if not p.exists():
        raise TrainError(f"{p} does not exist; give an export folder written by `curate build` or a spec")
    if p.is_dir() and ((p / "manifest.json").exists() or (p / "sft").is_dir() or (p / "dpo").is_dir()):
        return p, None
    from curate.spec import load_spec

    spec = load_spec(p)
    out = spec.default_out_dir()
    if not out.is_dir():
        raise TrainError(
            f"no export at {out} for spec {spec.ref}; run `curate build {p}` first or pass the export folder"
        )
    return out, spec


# ---------------------------------------------------------------- reading the export


@dataclass
class SplitRows:
    path: Path
    rows: list[dict[str, Any]]
    lines: list[int]


def _row_type(row: dict[str, Any]) -> str:
    if "chosen" in row or "rejected" in row:
        return "preference"
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    return "unknown"


def read_split(path: Path, kind: str) -> SplitRows:
    """Rows of one export split as TRL columns; a bad line or a row of the wrong type is a TrainError."""
    want = {"sft": ("messages", "prompt_completion"), "dpo": ("preference",)}[kind]
    keep = SFT_COLUMNS if kind == "sft" else DPO_COLUMNS
    rows, lines, first = [], [], None
    for line, obj in read_jsonl(path):
        if isinstance(obj, LineError):
            raise TrainError(
                f"{path}:{line}: {obj.reason}: {obj.detail}; rebuild the export with `curate build`"
            )
        typ = _row_type(obj)
        if typ not in want:
            other = "curate train dpo" if typ == "preference" else "curate train sft"
            raise TrainError(
                f"{path}:{line}: a {typ} row, but the {kind.upper()} trainer needs "
                f"{' or '.join(want)} rows; use `{other}` for this data"
            )
        if first is None:
            first = typ
        elif typ != first:
            raise TrainError(
                f"{path}:{line}: a {typ} row among {first} rows; TRL reads the type from the first "
                "row, so every row must have the same shape"
            )
        rows.append({k: obj[k] for k in keep if k in obj})
        lines.append(line)
    return SplitRows(path=path, rows=rows, lines=lines)


def export_split_path(export: Path, kind: str, split: str) -> Path:
    return export / kind / f"{split}.jsonl"


def load_export(export: Path, kind: str) -> tuple[SplitRows, SplitRows | None]:
    train_path = export_split_path(export, kind, "train")
    if not train_path.exists():
        raise TrainError(
            f"{train_path} not found: the export has no {kind} data (add {kind} to the spec's "
            "export.formats and run `curate build`)"
        )
    train = read_split(train_path, kind)
    if not train.rows:
        raise TrainError(f"{train_path} is empty: nothing to train on")
    test_path = export_split_path(export, kind, "test")
    test = read_split(test_path, kind) if test_path.exists() else None
    return train, (test if test and test.rows else None)


def manifest_max_tokens(export: Path) -> int | None:
    mpath = export / "manifest.json"
    if not mpath.exists():
        return None
    try:
        m = orjson.loads(mpath.read_bytes())
    except orjson.JSONDecodeError:
        return None
    for section in ("lengths", "export"):  # `curate build` writes lengths.max_tokens
        v = m.get(section, {}).get("max_tokens") if isinstance(m.get(section), dict) else None
        if isinstance(v, int) and v > 0:
            return v
    return None
