"""Export: TRL-ready SFT and DPO folders, a dataset card and a manifest, written atomically.

    >>> from curate.steps.export import sft_row, dpo_row, staged_output
    >>> sft_row(record, spec)                      # doctest: +SKIP
    {'messages': [{'role': 'system', ...}, {'role': 'user', ...}, {'role': 'assistant', ...}], 'id': '...'}
    >>> with staged_output(Path("out/x/v1")) as stage:      # doctest: +SKIP
    ...     (stage / "a.txt").write_text("...")     # everything is written here; on success it replaces out/x/v1

Formats (TRL 1.16's own, so `SFTTrainer` / `DPOTrainer` take the folders as they are):
- SFT `messages` (conversational language modeling), or with `sft_format="prompt-completion"` a conversational
  `prompt` (every turn before the final answer) and `completion` (the final assistant turn).
- DPO conversational `prompt` / `chosen` / `rejected` (chosen and rejected: assistant message lists).
- Unlabeled prompts (`validate.is_unlabeled_prompt`: the `text` format's records) as the spec's
  `export.text_records` says: `prompts/` of conversational prompt-only rows (`prompt`), or `text/` of language
  modeling rows (`text`, a plain string).
- The spec's `system_prompt` is prepended as the system turn when a record has none
  (`spec.export.include_system_prompt`). Tool-call arguments and the `tools` column are JSON strings (Arrow would
  otherwise unify dict keys across rows). An `id` column keeps lineage (TRL ignores extra columns).
- Each of `sft/` and `dpo/` holds `data/{train,test}-00000-of-00001.parquet` (the primary export: compressed, the
  repeated system prompt costs next to nothing), the same rows as `train.jsonl` and `test.jsonl`, and a small
  README.md whose YAML header maps the Parquet files to splits, so `datasets.load_dataset("out/x/v1/sft")` reads
  train and test. The top-level README.md (the dataset card) maps both as configs `sft` and `dpo`, and says so.

Atomicity and the output folder: `staged_output` (curate.outdir) writes everything into a staging folder beside
the target and then replaces only curate's own outputs there (listed in the folder's `.curate-build.json`),
keeping other files; a build that fails or is killed leaves the previous export whole.

The rows are made in `curate.steps.export_rows`, the batches' hand-off and Parquet writers are in
`curate.steps.export_batches`; every name is importable from here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from curate.errors import ExportError
from curate.outdir import MARKER, _fsync_files, check_target, recover, staged_output
from curate.records import PreferenceRecord, SFTRecord, read_jsonl
from curate.steps.export_batches import _DONE, Spool, _Behind, _concat, _RowGroups, infer_schema  # noqa: F401 (moved)
from curate.steps.export_rows import (  # noqa: F401 (moved; the build, the engine and tests import them from here)
    SFT_FORMATS,
    TEXT_KINDS,
    _stripped,
    _system,
    _turn_of,
    dpo_row,
    lineage_json,
    prompt_row,
    sft_row,
    system_turn,
    text_row,
)

Rec = SFTRecord | PreferenceRecord


# ---------------------------------------------------------------- files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _uniform_tools(rows: list[dict[str, Any]]) -> None:
    """Every row gets a `tools` key when any row has one (null elsewhere), so the column is consistent."""
    if any("tools" in r for r in rows):
        for r in rows:
            r.setdefault("tools", None)


def write_splits(
    directory: Path,
    splits: dict[str, list[dict[str, Any]]],
    *,
    title: str = "",
    name: str = "dataset",
    jsonl: bool = True,
) -> dict[str, dict[str, Any]]:
    """Write `<split>.jsonl` and `data/<split>-00000-of-00001.parquet` per split, plus a loader README.

    Returns {split: {"num_examples", "num_bytes", "sha256"}} (of the Parquet file), for the dataset card.
    The same files as `write_splits_stream` / `write_split_batches` write for these rows.
    """
    schema, _ = stream_schema(
        [r for rows in splits.values() for r in rows]
    )  # (every row now has `tools` or none)

    def batches(rows: list[dict[str, Any]]) -> Callable[[], Iterator[tuple[bytes, Any]]]:
        return lambda: _encoded(rows, schema, False, jsonl)

    return write_split_batches(
        directory,
        {s: batches(rows) for s, rows in splits.items()},
        schema=schema,
        title=title,
        name=name,
        jsonl=jsonl,
    )


ROW_GROUP = 8_192  # rows per Parquet row group in write_splits_stream (one group when a split has no more)


def write_splits_stream(
    directory: Path,
    splits: dict[str, Callable[[], Iterable[dict[str, Any]]]],
    *,
    sample: list[dict[str, Any]],
    title: str = "",
    name: str = "dataset",
    row_group: int = ROW_GROUP,
    hashes: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """`write_splits` without holding the rows: `splits[name]()` yields a split's rows (called once).

    `sample` must hold rows of every shape the splits have, in order of first appearance (the Arrow schema is
    inferred from it, as `write_splits` infers it from all rows). Parquet row groups of `row_group` rows: a split of
    up to `row_group` rows is written exactly as `write_splits` writes it (same bytes); a larger one in several
    row groups (the same table). Memory: one row group's rows and their Arrow table. `hashes`, when given, gets
    {path relative to `directory`'s parent: sha256} of the files written (see `write_split_batches`).
    """
    schema, tools = stream_schema(sample)

    def batches(make: Callable[[], Iterable[dict[str, Any]]]) -> Callable[[], Iterator[tuple[bytes, Any]]]:
        return lambda: _encoded(make(), schema, tools)

    return write_split_batches(
        directory,
        {s: batches(m) for s, m in splits.items()},
        schema=schema,
        title=title,
        name=name,
        row_group=row_group,
        hashes=hashes,
    )


def _encoded(
    rows: Iterable[dict[str, Any]], schema: Any, tools: bool, jsonl: bool = True
) -> Iterator[tuple[bytes, Any]]:
    """`encode_batch` of each run of `_ARROW_CHUNK` rows (the last one shorter)."""
    buf: list[dict[str, Any]] = []
    for row in rows:
        buf.append(row)
        if len(buf) == _ARROW_CHUNK:
            yield encode_batch(buf, schema, tools, jsonl)
            buf = []
    if buf:
        yield encode_batch(buf, schema, tools, jsonl)


def stream_schema(sample: list[dict[str, Any]]) -> tuple[Any, bool]:
    """(Arrow schema, whether rows get a `tools` key) for rows of the shapes in `sample` (see write_splits_stream)."""
    tools = any("tools" in r for r in sample)
    _uniform_tools(sample)
    return infer_schema(sample), tools


def encode_batch(
    rows: list[dict[str, Any]], schema: Any, tools: bool, jsonl: bool = True
) -> tuple[bytes, Any]:
    """(the rows' JSONL bytes, their Arrow table): one batch for `write_split_batches`. Depends on the rows alone,
    so a pool worker can make it. `jsonl=False` (spec `export.jsonl: false`): no JSONL, b"" instead."""
    import pyarrow as pa

    if tools:
        for r in rows:
            r.setdefault("tools", None)
    data = b"".join([_row_json(r) for r in rows]) if jsonl else b""
    return data, pa.Table.from_pylist(rows, schema=schema)


def split_files(directory: Path, split: str) -> list[Path]:
    """The files of one split of an export folder (sft/, dpo/, ...), in row order: its JSONL when the build wrote
    one (spec `export.jsonl`, default on), else its Parquet shards (`data/<split>-00000-of-00001.parquet` as curate
    writes it, or every `data/<split>-*.parquet` shard, sorted); [] when there is none."""
    j = directory / f"{split}.jsonl"
    if j.is_file():
        return [j]
    data = directory / "data"
    return sorted(data.glob(f"{split}-*.parquet")) if data.is_dir() else []


def split_file(directory: Path, split: str) -> Path | None:
    """The one file of a split (`split_files`); None when there is none. A split in several Parquet shards is an
    ExportError naming them (read such a split with `split_files`)."""
    files = split_files(directory, split)
    if len(files) > 1:
        raise ExportError(
            f"{directory / 'data'}: the {split} split is {len(files)} Parquet shards ({files[0].name} ...); "
            "this reader takes one file: rebuild the export with `curate build` (one shard per split)"
        )
    return files[0] if files else None


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number from 1, row) of an export split file (`split_file`), JSONL or Parquet: the one reader of
    exported rows for eval, spec diff and the report. A JSONL line that does not parse comes as a
    `records.LineError` (as `records.read_jsonl` gives it)."""
    if path.suffix != ".parquet":
        yield from read_jsonl(path)
        return
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_ARROW_CHUNK):
        for row in batch.to_pylist():
            n += 1
            yield n, row


_TURN_KEYS = ("messages", "prompt")  # the column a row's system turn is in (SFT, prompt-completion / DPO)


def _row_json(row: dict[str, Any]) -> bytes:
    """`orjson.dumps(row) + b"\n"`, with a leading system turn's JSON made once per prompt: escaping the spec's
    ~1-2 KB system prompt again for every row was most of the serialisation (the row is assembled from the JSON of
    its parts, which orjson writes without spaces)."""
    for key in _TURN_KEYS:
        turns = row.get(key)
        if type(turns) is list and turns:
            first = turns[0]
            if (
                type(first) is dict
                and len(first) == 2
                and first.get("role") == "system"
                and next(iter(first)) == "role"
                and type(first["content"]) is str
            ):
                dumps = orjson.dumps
                rest = dumps(turns[1:])  # b"[...]"
                value = b"[" + _system_json(first["content"]) + (b"," + rest[1:] if len(rest) > 2 else b"]")
                return (
                    b"{"
                    + b",".join([dumps(k) + b":" + (value if k == key else dumps(v)) for k, v in row.items()])
                    + b"}\n"
                )
            break
    return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


@functools.lru_cache(maxsize=16)
def _system_json(content: str) -> bytes:
    return orjson.dumps({"role": "system", "content": content})


def write_split_batches(
    directory: Path,
    splits: dict[str, Callable[[], Iterable[tuple[bytes, Any]]]],
    *,
    schema: Any,
    title: str = "",
    name: str = "dataset",
    row_group: int = ROW_GROUP,
    hashes: dict[str, str] | None = None,
    jsonl: bool = True,
) -> dict[str, dict[str, Any]]:
    """`write_splits_stream` fed ready batches: `splits[name]()` yields (JSONL bytes, Arrow table of `schema`) per
    batch of rows, in order (`encode_batch`). Batches of `_ARROW_CHUNK` rows (or any size dividing `row_group`,
    the last one excepted) give the files `write_splits_stream` writes. The JSONL is hashed as it is written
    and each Parquet file once: `hashes` (when given) gets {"<directory name>/<file>": sha256} for file_hashes.

    The JSONL (write + hash) and the Parquet file are written on two threads (both release the GIL), started once
    the split's first batch is in: a fork pool behind `splits[name]()` forks before them. `jsonl=False`: the
    Parquet files only (the batches' JSONL bytes are then empty)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    info: dict[str, dict[str, Any]] = {}
    for split, make in splits.items():
        pq_path = directory / "data" / f"{split}-00000-of-00001.parquet"
        groups = _RowGroups(pq_path, schema, row_group)
        digest = hashlib.sha256()
        n = 0
        try:
            with open(directory / f"{split}.jsonl", "wb") if jsonl else contextlib.nullcontext() as fh:

                def write(data: Any, fh: Any = fh, digest: Any = digest) -> None:
                    fh.write(data)
                    digest.update(data)
                    if hasattr(data, "close"):  # a Spool's mmap: unmapped now, not when collected
                        data.close()

                batches = iter(make())
                first = next(batches, None)
                if first is not None:
                    sinks = (_Behind(write), _Behind(groups.add)) if jsonl else (_Behind(groups.add),)
                    try:
                        for data, table in itertools.chain((first,), batches):
                            n += table.num_rows
                            if jsonl:
                                sinks[0].put(data)
                            sinks[-1].put(table)
                    finally:
                        errors = [sink.close() for sink in sinks]
                    for err in errors:
                        if err is not None:
                            raise err
            groups.finish()
        finally:
            groups.close()
        info[split] = {"num_examples": n, "num_bytes": pq_path.stat().st_size, "sha256": sha256_file(pq_path)}
        if hashes is not None:
            if jsonl:
                hashes[f"{directory.name}/{split}.jsonl"] = digest.hexdigest()
            hashes[f"{directory.name}/data/{pq_path.name}"] = info[split]["sha256"]
    if any(i["num_examples"] for i in info.values()):
        header = ["---"] + loader_yaml("default", "data", info, name) + ["---"]
        body = (
            f"\n# {title}\n\nLoad with `datasets.load_dataset(path)`, `path` being this folder's path (e.g. "
            f"`out/NAME/vN/{directory.name}`); the dataset card is ../README.md.\n"
        )
    else:  # no config at all: a `data_files:` with no entry makes load_dataset fail with a TypeError
        header = []
        body = (
            f"# {title}\n\nNo rows: this build exported nothing of this kind (the dataset card, ../README.md, "
            "says where its records went).\n"
        )
    (directory / "README.md").write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    return info


_ARROW_CHUNK = (
    2048  # rows per batch (Arrow chunk); divides ROW_GROUP. The chunks are written as they are (no copy
)
# into one contiguous chunk), so the Parquet bytes depend on this size: every writer here uses it.


def loader_yaml(
    config: str, prefix: str, info: dict[str, dict[str, Any]], name: str, default: bool = False
) -> list[str]:
    """YAML lines (`configs:` + `dataset_info:`) mapping the non-empty splits' Parquet files of one config.

    Empty splits are left out (datasets cannot read an empty Parquet file). `dataset_info` carries each split's
    size and a content fingerprint in its `dataset_name`: datasets 5.x keys its cache of a local folder with a
    YAML header by the folder NAME and the header, not by the files, so two builds in folders named alike
    (out/a/v1 and out/b/v1) would otherwise read each other's cached rows.
    """
    present = {s: i for s, i in info.items() if i["num_examples"]}
    lines = (
        ["configs:", f"- config_name: {config}"]
        + (["  default: true"] if default else [])
        + ["  data_files:"]
    )
    for split in present:
        lines += [f"  - split: {split}", f"    path: {prefix}/{split}-*.parquet"]
    lines += ["dataset_info:", f"- config_name: {config}", "  splits:"]
    for split, i in present.items():
        lines += [
            f"  - name: {split}",
            f"    num_bytes: {i['num_bytes']}",
            f"    num_examples: {i['num_examples']}",
            f"    dataset_name: {name}-{i['sha256'][:16]}",
        ]
    return lines


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.writelines(orjson.dumps(row, default=str) + b"\n" for row in rows)
    return len(rows)


def file_hashes(
    root: Path,
    *,
    skip: Sequence[str] = ("manifest.json", "report.html", MARKER),
    known: dict[str, str] | None = None,
) -> dict[str, str]:
    """{relative path: sha256} of every file under root (sorted), except `skip`. `known`: hashes already taken
    while the files were written (write_split_batches), not read again."""
    known = known or {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in skip:
            out[rel] = known.get(rel) or sha256_file(p)
    return out


# ---------------------------------------------------------------- the output folder (curate.outdir)


@contextlib.contextmanager
def fsync_behind(folders: Sequence[Path]) -> Iterator[None]:
    """fsync every file under `folders` on a thread while the block runs (the disk works while the caller goes
    on); waits for it on the way out. Errors are left to the final `_fsync_tree`, which fsyncs every file again.
    No fork may happen in the block (a thread runs)."""
    import threading

    def run() -> None:
        for folder in folders:
            _fsync_files(folder)

    thread = threading.Thread(target=run, name="curate-fsync", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


# ---------------------------------------------------------------- dataset card


__all__ = [
    "SFT_FORMATS",
    "TEXT_KINDS",
    "Spool",
    "check_target",
    "dpo_row",
    "encode_batch",
    "file_hashes",
    "fsync_behind",
    "prompt_row",
    "recover",
    "sft_row",
    "sha256_file",
    "staged_output",
    "stream_schema",
    "system_turn",
    "text_row",
    "write_jsonl",
    "write_split_batches",
    "write_splits",
    "write_splits_stream",
]
