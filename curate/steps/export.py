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
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from curate.errors import ExportError
from curate.outdir import MARKER, _fsync_files, check_target, clean_dead_spools, recover, staged_output
from curate.records import Message, PreferenceRecord, SFTRecord, read_jsonl
from curate.spec import Spec

Rec = SFTRecord | PreferenceRecord
SFT_FORMATS = ("messages", "prompt-completion")


# ---------------------------------------------------------------- rows


@functools.lru_cache(maxsize=8)
def _stripped(text: str) -> str:
    """One shared stripped copy of a spec's system prompt (a new ~1.5 KB copy per exported row otherwise)."""
    return text.strip()


def system_turn(spec: Spec | None) -> dict[str, str] | None:
    """The system turn a row without one gets (None when the spec adds none): one dict per (setting, prompt),
    shared by the rows (they are only read: dumped and converted)."""
    if spec is None:
        return None
    return _turn_of(bool(spec.export.include_system_prompt), spec.system_prompt)


@functools.lru_cache(maxsize=16)
def _turn_of(include: bool, prompt: str) -> dict[str, str] | None:
    return {"role": "system", "content": _stripped(prompt)} if include and _stripped(prompt) else None


def _system(spec: Spec | None, messages: Sequence[Message]) -> list[dict[str, Any]]:
    out = [m.to_trl() for m in messages]
    turn = system_turn(spec)
    if turn is not None and not any(m.role == "system" for m in messages):
        out.insert(0, turn)
    return out


def lineage_json(
    source: Any, labels: Any, spec: Spec | None = None, counting: frozenset[str] = frozenset()
) -> str:
    """The `lineage` column of an export row: `records.lineage_from` as a JSON string (Arrow-safe, like `tools`):
    where the row came from (file:line or Label Studio task), the records it was made from, annotations,
    annotators, agreement, the spec it was labeled under, whether it is an unaccepted model draft; and what it
    was judged against (`versioning.row_stamp`): `spec_version` (the spec's version hash) and `rules` (the key of
    its {rule id: hash} set in the manifest's `spec.rule_sets`; `counting`: the judge rules that count)."""
    from curate.records import lineage_from
    from curate.versioning import row_stamp

    lin = lineage_from(source, labels)
    lin.update(row_stamp(spec, labels, counting) if spec is not None else {"spec_version": "", "rules": ""})
    return orjson.dumps(lin).decode()


def sft_row(
    rec: SFTRecord | PreferenceRecord,
    spec: Spec | None,
    sft_format: str = "messages",
    counting: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One TRL SFT row. A preference record (exported as SFT when DPO is off) gives prompt + chosen."""
    if isinstance(rec, PreferenceRecord):
        prompt, completion = list(rec.prompt), list(rec.chosen)
    else:
        conv = list(rec.conversation())
        prompt, completion = conv[:-1], conv[-1:]
    if sft_format == "prompt-completion":
        row: dict[str, Any] = {
            "prompt": _system(spec, prompt),
            "completion": [m.to_trl() for m in completion],
        }
    elif sft_format == "messages":
        row = {"messages": _system(spec, prompt + completion)}
    else:
        raise ExportError(f"unknown SFT format {sft_format!r}; use one of: {', '.join(SFT_FORMATS)}")
    row["id"] = rec.id
    row["lineage"] = lineage_json(rec.source, rec.labels, spec, counting)
    if rec.tools is not None:
        row["tools"] = rec.tools
    return row


def dpo_row(
    rec: PreferenceRecord, spec: Spec | None, counting: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """One TRL conversational DPO row."""
    row: dict[str, Any] = {
        "prompt": _system(spec, rec.prompt),
        "chosen": [m.to_trl() for m in rec.chosen],
        "rejected": [m.to_trl() for m in rec.rejected],
        "id": rec.id,
        "lineage": lineage_json(rec.source, rec.labels, spec, counting),
    }
    if rec.tools is not None:
        row["tools"] = rec.tools
    return row


TEXT_KINDS = ("prompts", "text")  # how unlabeled prompts are exported (spec export.text_records)


def prompt_row(rec: SFTRecord, spec: Spec | None) -> dict[str, Any]:
    """One TRL conversational prompt-only row (`prompts/`): an unlabeled prompt, to label or generate from."""
    row: dict[str, Any] = {
        "prompt": _system(spec, rec.conversation()),
        "id": rec.id,
        "lineage": lineage_json(rec.source, rec.labels, spec),
    }
    if rec.tools is not None:
        row["tools"] = rec.tools
    return row


def text_row(rec: SFTRecord, spec: Spec | None) -> dict[str, Any]:
    """One TRL language-modeling row (`text/`): the record's text (its turns' contents, system turns left out,
    joined by a blank line: a `text` record's own text). No system prompt: plain text has no chat turns."""
    text = "\n\n".join(m.content for m in rec.conversation() if m.role != "system")
    return {"text": text, "id": rec.id, "lineage": lineage_json(rec.source, rec.labels, spec)}


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


def split_file(directory: Path, split: str) -> Path | None:
    """Where one split of an export folder (sft/, dpo/, ...) is: its JSONL when the build wrote one (spec
    `export.jsonl`, default on), else its Parquet file; None when neither is there."""
    j = directory / f"{split}.jsonl"
    if j.is_file():
        return j
    p = directory / "data" / f"{split}-00000-of-00001.parquet"
    return p if p.is_file() else None


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


def infer_schema(rows: list[dict[str, Any]]) -> Any:
    """The Arrow schema `pa.Table.from_pylist(rows)` would infer (columns of the first row, types over all rows),
    without converting the rows (that conversion's growing buffers cost ~7 KB a row at its peak)."""
    import pyarrow as pa

    if not rows:
        return pa.schema([("id", pa.string())])
    names = list(rows[0].keys())
    return pa.schema([pa.field(n, pa.infer_type([row.get(n) for row in rows])) for n in names])


def _concat(chunks: list[Any], schema: Any) -> Any:
    """One table of the batches' tables (chunked as they are; an empty table of `schema` for none)."""
    import pyarrow as pa

    if not chunks:
        return pa.Table.from_pylist([], schema=schema)
    return chunks[0] if len(chunks) == 1 else pa.concat_tables(chunks)


class Spool:
    """Batches handed from pool workers to the build process through files in shared memory (/dev/shm) instead
    of the pool's pipe (which costs the receiving process ~3 ns a byte: ~2 s for the 600 MB of a 150k-row split).

    A worker calls `put(data, table)` -> a small ticket (picklable); the build process `take(ticket)` -> (the
    JSONL bytes as a read-only mmap, the Arrow table mapped from its IPC file, zero-copy); the files are unlinked
    at once (the mappings keep the pages until released). `close()` removes the folder and whatever is left in
    it. `Spool.open()` is None where no shared-memory folder is writable (callers then send batches as they are).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    @classmethod
    def open(cls) -> Spool | None:
        shm = Path("/dev/shm")
        if not shm.is_dir() or not os.access(shm, os.W_OK):
            return None
        clean_dead_spools()  # left by killed builds
        try:
            return cls(Path(tempfile.mkdtemp(prefix=f"curate-spool-{os.getpid()}-", dir=shm)))
        except OSError:
            return None

    def put(self, data: bytes, table: Any) -> tuple[Any, ...]:
        """A ticket for `take`: (name, size) of the files written, or (None, data, table) when they could not be
        written (a full /dev/shm, e.g. Docker's 64 MB default: the batch then goes through the pipe after all)."""
        import pyarrow as pa

        self.count += 1
        name = f"{os.getpid()}-{self.count}"
        paths = (self.folder / f"{name}.jsonl", self.folder / f"{name}.arrow")
        try:
            with open(paths[0], "wb") as fh:
                fh.write(data)
            with pa.OSFile(str(paths[1]), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
        except OSError:
            for path in paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            return None, data, table
        return name, len(data)

    def take(self, ticket: tuple[Any, ...]) -> tuple[Any, Any]:
        import mmap

        import pyarrow as pa

        if ticket[0] is None:  # sent inline (see put)
            return ticket[1], ticket[2]
        name, size = ticket
        path = self.folder / f"{name}.jsonl"
        data: Any = b""
        if size:
            with open(path, "rb") as fh:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        os.unlink(path)
        path = self.folder / f"{name}.arrow"
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        os.unlink(path)
        return data, table

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _RowGroups:
    """A split's Parquet file fed batch tables: a row group every `row_group` rows; a split of at most one row group
    is written by `pq.write_table` at `finish()`."""

    def __init__(self, path: Path, schema: Any, row_group: int) -> None:
        self.path, self.schema, self.row_group = path, schema, row_group
        self.writer: Any = None
        self.chunks: list[Any] = []
        self.filled = 0

    def add(self, table: Any) -> None:
        import pyarrow.parquet as pq

        self.chunks.append(table)
        self.filled += table.num_rows
        if self.filled >= self.row_group:
            self.writer = self.writer or pq.ParquetWriter(self.path, self.schema)
            self.writer.write_table(_concat(self.chunks, self.schema))
            self.chunks = []
            self.filled = 0

    def finish(self) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            pq.write_table(_concat(self.chunks, self.schema), self.path)
        elif self.chunks:
            self.writer.write_table(_concat(self.chunks, self.schema))
        self.chunks = []

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


_DONE = object()


class _Behind:
    """`fn(item)` for each `put(item)`, in order, on a thread (a bounded queue of `depth` items between);
    `close()` waits for the last one and returns what `fn` raised (after a failure the rest is dropped; `put`
    raises it at once)."""

    def __init__(self, fn: Callable[[Any], None], depth: int = 2) -> None:
        import queue
        import threading

        self.queue: Any = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), name="curate-export-writer", daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[Any], None]) -> None:
        while (item := self.queue.get()) is not _DONE:
            if self.error is None:
                try:
                    fn(item)
                except BaseException as err:  # noqa: BLE001 - handed to the caller by put/close
                    self.error = err

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def close(self) -> BaseException | None:
        """Wait for the thread; what `fn` raised, if anything (the caller raises it)."""
        self.queue.put(_DONE)
        self.thread.join()
        return self.error


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


def _yaml_str(s: str) -> str:
    return orjson.dumps(s).decode()


def _md(s: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(s).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_MD_LINE_START = re.compile(r"^(\s*\d*)([-=>.)])", re.MULTILINE)


def md_text(s: Any) -> str:
    """Spec text (description, a rule's `says`, the version) as literal Markdown prose: HTML escaped (no tags,
    no entities of its own), Markdown punctuation backslash-escaped (no links, images, emphasis, code, headings,
    tables, lists or front-matter breaks), line breaks kept."""
    text = html.escape(str(s), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(
        lambda m: (
            m.group(0) if m.group(1).strip() == "" and m.group(2) in ".)" else m.group(1) + "\\" + m.group(2)
        ),
        text,
    )


def _shown_path(file: str, out_dir: Path | None) -> str:
    """An input's path as the card shows it: relative to the build folder (never an absolute local path)."""
    if not file or file.startswith("<"):
        return file
    fmt = ""
    if not Path(file).exists() and ":" in file:  # an input given as FILE:FORMAT
        file, fmt = file.rsplit(":", 1)
        fmt = ":" + fmt
    base = out_dir.resolve() if out_dir is not None else Path.cwd()
    try:
        return os.path.relpath(Path(file).resolve(), base) + fmt
    except ValueError:  # another drive (Windows)
        return Path(file).name + fmt


def _example_row(folder: Path | None, fmt: str, limit: int = 400) -> str | None:
    """The first train row of `fmt` as indented JSON (long texts cut), or None."""
    path = split_file(folder / fmt, "train") if folder is not None else None
    if path is None:
        return None
    first_row = next((row for _, row in read_rows(path) if isinstance(row, dict)), None)
    if first_row is None:
        return None
    first = orjson.dumps(first_row)

    def cut(v: Any) -> Any:
        if isinstance(v, str):
            return v if len(v) <= limit else v[:limit] + " ..."
        if isinstance(v, list):
            return [cut(x) for x in v]
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return v

    row = orjson.loads(first)
    if isinstance(row, dict) and isinstance(row.get("lineage"), str):  # the card names no local folders
        try:
            lin = orjson.loads(row["lineage"])
            lin["source"] = str(lin.get("source", "")).rsplit("/", 1)[-1]
            row["lineage"] = orjson.dumps(lin).decode()
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return orjson.dumps(cut(row), option=orjson.OPT_INDENT_2).decode()


def card_snippets(formats: list[str], max_length: int) -> dict[str, str]:
    """The Python snippets of the card, by name ("load", "sft", "dpo", "text"); they run from inside the build folder
    (tests/steps/test_card.py runs each one with a tiny local model in place of MODEL)."""
    here = 'str(Path(".").resolve())'  # load_dataset(".") fails in datasets 5: it names the dataset by the folder
    out = {
        "load": "\n".join(
            [
                "from pathlib import Path",
                "",
                "from datasets import load_dataset",
                "",
                f"folder = {here}  # this build folder: run from inside it, or write its path here",
                *[f'{f} = load_dataset(folder, "{f}")' for f in formats],
                *[f'print({f}["train"][0])' for f in formats[:1]],
            ]
        )
    }
    for kind in ("sft", "dpo", "text"):
        if kind not in formats:
            continue
        cls = "SFT" if kind == "text" else kind.upper()  # SFTTrainer trains on {"text"} rows too
        note = (
            "e.g. the SFT model trained above"
            if kind == "dpo"
            else "a folder with config.json (curate never downloads one)"
        )
        out[kind] = "\n".join(
            [
                "from pathlib import Path",
                "",
                "import torch",
                "from datasets import load_dataset",
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                f"from trl import {cls}Config, {cls}Trainer",
                "",
                f'MODEL = "path/to/a/local/model"  # {note}',
                f'{kind} = load_dataset({here}, "{kind}")  # run from this folder, or give its path',
                "gpu = torch.cuda.is_available()",
                f'args = {cls}Config(output_dir="runs/{kind}", max_length={max_length}, num_train_epochs=1, use_cpu=not gpu,',
                " " * len(f"args = {cls}Config(") + "bf16=gpu and torch.cuda.is_bf16_supported())",
                f"trainer = {cls}Trainer(",
                "    model=AutoModelForCausalLM.from_pretrained(MODEL),",
                "    processing_class=AutoTokenizer.from_pretrained(MODEL),",
                "    args=args,",
                f'    train_dataset={kind}["train"],',
                f'    eval_dataset={kind}["test"] if "test" in {kind} else None,',
                ")",
                "trainer.train()",
            ]
        )
    return out


def dataset_card(
    spec: Spec,
    manifest: dict[str, Any],
    split_info: dict[str, dict[str, dict[str, Any]]] | None = None,
    *,
    folder: Path | None = None,
    out_dir: Path | None = None,
) -> str:
    """README.md for the build folder: YAML header (configs -> files per split), how to load and train on it
    (snippets that run from inside the folder), an example row per kind, then the spec's story in figures.

    `folder`: where the exports are being written (the example rows are read from there); `out_dir`: the build
    folder the card will live in (input paths are shown relative to it; default: relative to the current folder).
    """
    counts = manifest["counts"]
    formats = [
        f for f in ("sft", "dpo", *TEXT_KINDS) if f in manifest.get("exported_formats", ["sft", "dpo"])
    ]
    license_ = getattr(spec.export, "license", None) or getattr(spec, "license", None) or "unknown"
    lines = [
        "---",
        "pretty_name: " + _yaml_str(f"{spec.name} v{spec.version}"),
        "license: " + _yaml_str(license_),
        "tags:",
        "- curate",
        "- trl",
        *[f"- {f}" for f in formats],
        "task_categories:",
        "- text-generation",
    ]
    mapped = [f for f in formats if any(i["num_examples"] for i in (split_info or {}).get(f, {}).values())]
    # the kinds a reader can load: with split sizes, those in the configs; without, those with rows
    loadable = (
        mapped
        if split_info is not None
        else [f for f in formats if counts.get(f, {}).get("train") or counts.get(f, {}).get("test")]
    )
    configs: list[str] = []
    infos: list[str] = []
    for i, fmt in enumerate(mapped):
        part = loader_yaml(fmt, f"{fmt}/data", split_info[fmt], f"{spec.name}-{fmt}", default=(i == 0))
        cut = part.index("dataset_info:")
        configs += part[1:cut]
        infos += part[cut + 1 :]
    if configs:
        lines += ["configs:", *configs, "dataset_info:", *infos]
    lines += ["---", "", f"# {md_text(spec.name)} v{md_text(spec.version)}", ""]
    if spec.description:
        lines += [md_text(spec.description.strip()), ""]
    lines += [
        "Built by `curate` from the behavior spec " + f"`{spec.ref}` (sha256 `{spec.digest[:16]}`).",
        "",
    ]
    if license_ == "unknown":
        lines += ["License: not stated (the data's license is its owner's to set).", ""]
    empty = [f for f in formats if f not in loadable]
    snippets = card_snippets(loadable, spec.export.max_tokens)
    lines += ["## Load it", ""]
    if loadable:
        lines += [
            "Each kind is a config of this folder (and a dataset folder of its own: `"
            + "/`, `".join(loadable)
            + "/`):",
            "",
            "```python",
            snippets["load"],
            "```",
            "",
        ]
        with_jsonl = [f for f in loadable if getattr(spec.export, "jsonl", True)]
        lines += [
            "The rows are in Parquet, what the configs load: "
            + ", ".join(f"`{f}/data/*.parquet`" for f in loadable)
            + " (compressed: the system prompt every row repeats costs next to nothing). "
            + (
                ", ".join(f"`{f}/train.jsonl` and `{f}/test.jsonl`" for f in with_jsonl)
                + " hold the same rows as JSON lines, for tools that read JSONL."
                if with_jsonl
                else "This build wrote no JSONL copies (spec `export.jsonl: false` or `--no-jsonl`)."
            ),
            "",
        ]
    for f in empty:
        lines += [f"There are no {f.upper()} rows in this build: `{f}/` is empty and has no config.", ""]
    for f in loadable:
        ex = _example_row(folder, f)
        if ex is not None:
            lines += [f"An example {f} row (train split, long texts cut):", "", "```json", ex, "```", ""]
    if "prompts" in loadable:
        lines += [
            (
                "`prompts/` holds unlabeled prompts (TRL's prompt-only rows): label them (`curate label push` "
                "with `--kind write`), or generate answers from them (e.g. TRL's GRPOTrainer or OnlineDPOTrainer)."
            ),
            "",
        ]
    if any(f in snippets for f in loadable):
        lines += [
            "## Train on it with TRL",
            "",
            (
                "`curate train sft|dpo . --model MODEL` (from this folder) does this with early stopping and "
                "assistant-only loss; the plain TRL version (loss on every token; pass "
                "`assistant_only_loss=True` when the model's chat template has generation markers):"
            ),
            "",
        ]
        for f in loadable:
            if f in snippets:
                lines += ["```python", snippets[f], "```", ""]
    lines += [
        "## Counts",
        "",
        "| | in | exported | quarantined | duplicates |",
        "|---|---:|---:|---:|---:|",
        f"| all | {counts['in']} | {counts['exported']} | {counts['quarantined']} | {counts['duplicates']} |",
    ]
    for inp in manifest.get("inputs", []):
        lines.append(
            f"| `{_md(_shown_path(inp['file'], out_dir))}` ({_md(inp.get('format', ''))}) | {inp['in']} | "
            f"{inp['exported']} | "
            f"{inp['quarantined']} | {inp['duplicates']} |"
        )
    lines += ["", "| format | train | test |", "|---|---:|---:|"]
    for fmt in formats:
        lines.append(f"| {fmt} | {counts[fmt]['train']} | {counts[fmt]['test']} |")
    if counts.get("negatives"):
        lines += [
            "",
            (
                f"{counts['negatives']} negative examples had no passing answer to their prompt and are in "
                "`negatives.jsonl` (material for `curate expand` or labeling)."
            ),
        ]
    if manifest.get("system_prompt_added"):
        lines += ["", "The spec's system prompt is prepended to every conversation that has none."]
    lines += ["", "## Rules", "", "| rule | category | check | says |", "|---|---|---|---|"]
    for r in spec.rules:
        kind = "human" if r.check == "human" else r.check.kind
        lines.append(f"| `{r.id}` | {r.category} | {kind} | {md_text(' '.join(r.says.split()))} |")
    from curate.versioning import card_rule_sets

    lines += card_rule_sets(manifest)
    cov = manifest.get("coverage") or {}
    if cov.get("categories"):
        lines += [
            "",
            "## Case categories",
            "",
            "| category | records | share | min share | ok |",
            "|---|---:|---:|---:|---|",
        ]
        for c in cov["categories"]:
            lines.append(
                f"| {_md(c['name'])} | {c['count']} | {c['share']:.1%} | {c['min_share']:.0%} | "
                f"{'yes' if c['ok'] else 'NO'} |"
            )
    if cov.get("cells"):
        rules = list(dict.fromkeys(c["rule"] for c in cov["cells"]))
        cats = list(dict.fromkeys(c["category"] for c in cov["cells"]))
        cell = {(c["category"], c["rule"]): c for c in cov["cells"]}
        lines += [
            "",
            "## Coverage (records per case category x rule; target in brackets, * = under target)",
            "",
            "| category | " + " | ".join(f"`{r}`" for r in rules) + " |",
            "|---|" + "---:|" * len(rules),
        ]
        for cat in cats:
            vals = []
            for r in rules:
                c = cell.get((cat, r))
                vals.append("" if c is None else f"{c['count']} ({c['target']}){'' if c['ok'] else ' *'}")
            lines.append(f"| {_md(cat)} | " + " | ".join(vals) + " |")
    dd, lk = manifest.get("dedup", {}), manifest.get("leakage", {})
    lines += [
        "",
        "## Deduplication and leakage",
        "",
        (
            f"- exact duplicates removed: {dd.get('exact', 0)}; near duplicates removed: {dd.get('near', 0)} "
            f"(threshold {dd.get('threshold')}); semantic: {dd.get('semantic', 0)}. Every removal is a row in "
            "`clusters.jsonl`."
        ),
        (
            f"- leakage between train and test: exact {lk.get('exact', 0)}, near {lk.get('near', 0)}. The test "
            "split is frozen in `heldout.lock`: later builds keep it."
        ),
    ]
    q = manifest.get("quarantine") or {}
    if q:
        lines += ["", "## Quarantine", "", "| step/reason | records |", "|---|---:|"]
        lines += [f"| {_md(k)} | {v} |" for k, v in sorted(q.items())]
        lines += [
            "",
            "Each quarantined record is in `quarantine/<step>.jsonl` with its source and original text.",
        ]
    lin = manifest.get("lineage") or {}
    if lin:
        lines += ["", "## Lineage", ""]
        for key, vals in lin.items():
            if vals:
                lines.append(f"- {key}: " + ", ".join(f"{_md(k)} ({v})" for k, v in vals.items()))
    lines.append("")
    return "\n".join(lines)


__all__ = [
    "SFT_FORMATS",
    "TEXT_KINDS",
    "Spool",
    "check_target",
    "dataset_card",
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
