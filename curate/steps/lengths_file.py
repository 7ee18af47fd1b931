"""Per-record lengths go to `lengths.parquet` beside the manifest; manifest.json keeps their summary.

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> block = {"unit": "tokens", "estimated": True, "max_tokens": 30,
    ...          "sft": {"train": [12, 40, 7], "test": [9]}, "dpo": {"train": [], "test": []}}
    >>> summary = write_lengths(folder, block)
    >>> summary["file"], summary["sft"]["train"]
    ('lengths.parquet', {'rows': 3, 'min': 7, 'p50': 12, 'p95': 40, 'max': 40, 'mean': 19.7, 'over_limit': 1})
    >>> read_lengths(folder, summary)["sft"]["train"]
    [12, 40, 7]

The file has one row per exported row, in the order of the export files: `format` (sft | dpo | prompts | text), `split` (train |
test) and `length` (in the manifest's `lengths.unit`), zstd-compressed: ~1.2 bytes a row at 300k rows (the
manifest held ~5 bytes of JSON a row: 3.8 MB at 300k records).
`read_lengths` also reads the lists of manifests written before the side file (`lengths.<fmt>.<split>` lists).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

FILE = "lengths.parquet"
FORMATS = ("sft", "dpo", "prompts", "text")  # prompts / text: unlabeled prompts, in a build that has them
SPLITS = ("train", "test")

__all__ = ["FILE", "read_lengths", "summarize", "write_lengths"]


def summarize(values: list[int], limit: int | None = None) -> dict[str, Any]:
    """rows, min, p50, p95, max, mean (and over_limit when a limit is given) of one split's lengths."""
    out: dict[str, Any] = {"rows": len(values)}
    if not values:
        return out
    s = sorted(values)

    def q(p: float) -> int:  # nearest rank
        return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]

    out.update({"min": s[0], "p50": q(0.5), "p95": q(0.95), "max": s[-1], "mean": round(sum(s) / len(s), 1)})
    if limit:
        out["over_limit"] = sum(1 for v in s if v > limit)
    return out


def write_lengths(folder: Path, block: dict[str, Any]) -> dict[str, Any]:
    """Write `folder/lengths.parquet` from the manifest's lengths block ({fmt: {split: [ints]}} + unit, ...) and
    return the block the manifest keeps: the same keys, each split's list replaced by its `summarize`, and
    `file`. The folder is the build's staged folder (written atomically with the rest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    limit = block.get("max_tokens") if block.get("unit", "tokens") == "tokens" else None
    fmts, splits, lengths = [], [], []
    summary: dict[str, Any] = {k: v for k, v in block.items() if k not in FORMATS}
    for f, fmt in enumerate(FORMATS):
        parts = block.get(fmt)
        if not isinstance(parts, dict):
            continue
        summary[fmt] = {}
        for s, split in enumerate(SPLITS):
            vals = [int(v) for v in parts.get(split) or []]
            summary[fmt][split] = summarize(vals, limit)
            fmts.append(pa.array([f] * len(vals), pa.int8()))
            splits.append(pa.array([s] * len(vals), pa.int8()))
            lengths.append(pa.array(vals, pa.int32()))

    def col(chunks: list[Any], dictionary: tuple[str, ...] | None, typ: Any) -> Any:
        arr = pa.concat_arrays(chunks) if chunks else pa.array([], typ)
        if dictionary is None:
            return arr
        return pa.DictionaryArray.from_arrays(arr, pa.array(dictionary))

    table = pa.table(
        {
            "format": col(fmts, FORMATS, pa.int8()),
            "split": col(splits, SPLITS, pa.int8()),
            "length": col(lengths, None, pa.int32()),
        }
    )
    pq.write_table(table, folder / FILE, compression="zstd")
    summary["file"] = FILE
    return summary


def read_lengths(folder: Path, block: dict[str, Any] | None) -> dict[str, dict[str, list[int]]]:
    """{fmt: {split: [lengths in export order]}} from `folder/lengths.parquet` when the manifest's block names it,
    else from the lists of an older manifest. Raises OSError / ValueError for an unreadable file."""
    block = block or {}
    out: dict[str, dict[str, list[int]]] = {}
    if block.get("file"):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(Path(folder) / str(block["file"]), columns=["format", "split", "length"])
        fmt_col = table.column("format").cast("string")
        split_col = table.column("split").cast("string")
        for fmt in FORMATS:
            if fmt not in ("sft", "dpo") and fmt not in block:
                continue
            for split in SPLITS:
                part = table.filter(pc.and_(pc.equal(fmt_col, fmt), pc.equal(split_col, split)))
                out.setdefault(fmt, {})[split] = part.column("length").to_pylist()
        return out
    for fmt in FORMATS:
        parts = block.get(fmt)
        if isinstance(parts, dict):
            for split in SPLITS:
                vals = parts.get(split)
                if isinstance(vals, list):
                    out.setdefault(fmt, {})[split] = [v for v in vals if isinstance(v, (int, float))]
    return out
