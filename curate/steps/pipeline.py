"""The build: read -> validate -> pair -> dedup -> split -> export, with conservation proved per input file.

    >>> from curate.steps.pipeline import build
    >>> result = build("specs/support-triage")                  # doctest: +SKIP
    >>> result.out_dir, result.manifest["counts"]
    (PosixPath('out/support-triage/v1'), {'in': 188, 'exported': ..., ...})

Without `inputs` the spec's own `data:` files are built; without `out` the folder is `out/<name>/v<version>`.
The held-out set of a previous build is kept: the target folder's `heldout.lock`, else the newest lock of a sibling
build of the same spec (`out/<name>/v1` when building `v2`), or the `lock` file given.

Conservation: for every input file, records in = exported + quarantined + removed as duplicates. "Exported"
counts input records that reach an output file: an SFT or DPO row, or `negatives.jsonl` (negatives with no
passing answer to pair with). A negative paired with a passing answer counts once (as the DPO row); the passing
answer counts once (as its SFT row). A mismatch raises ExportError and nothing is written.

The argument checks, the held-out lock lookup and `BuildResult` are in `curate.steps.build_setup`; every name is
importable from here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from curate.errors import ExportError, InputError
from curate.minhash import warm_kernels
from curate.outdir import OutputLock
from curate.records import PreferenceRecord, SFTRecord, dump_record
from curate.residency import drop_library_pages
from curate.spec import Spec, load_spec
from curate.steps.base import RunContext
from curate.steps.build_setup import BuildResult, _settle, find_lock, gc_paused
from curate.steps.card import dataset_card
from curate.steps.dedup import dedup
from curate.steps.dedup_keys import KeySketches, TextSpool
from curate.steps.export import (
    TEXT_KINDS,
    file_hashes,
    fsync_behind,
    prompt_row,
    staged_output,
    stream_schema,
    text_row,
    write_jsonl,
    write_split_batches,
    write_splits,
)
from curate.steps.heldout import HeldoutLock
from curate.steps.manifest import (
    build_manifest,
    conservation_counts,
    extra_counts,
    formats_of,
)
from curate.steps.validate import LengthCounter

log = logging.getLogger(__name__)
Rec = SFTRecord | PreferenceRecord
Progress = Callable[[str, int, "int | None"], None]


def build(
    spec: Spec | str | Path,
    inputs: Sequence[str | Path] | None = None,
    out: str | Path | None = None,
    *,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    tokenizer: str | Path | None = None,
    max_tokens: int | None = None,
    near_threshold: float | None = None,
    sft_format: str | None = None,
    lock: str | Path | None = None,
    progress: Progress | None = None,
    engine: str = "local",
    compact: bool | None = None,
    strict: bool = False,
) -> BuildResult:
    """Build a training-ready dataset folder from a spec and its inputs (see the module doc).

    One build path for every input, engine and tokenizer: rows (`curate.engine.compact`). A plain native JSONL
    line stays a small row from read to export; everything else is a row holding its record. `engine` picks
    where the per-record tasks run ("local": fork pools; "ray": Ray tasks, the JSONL read's chunks included); `near_threshold` defaults
    to the spec's `dedup.threshold`, else 0.8. `compact=False` turns the read's shortcut for plain lines off
    (every line then goes through the validate step as a record, as with Ray): the same pipeline, used by the
    tests to prove the shortcut changes nothing (tests/engine/test_compact.py). `strict=True` (`curate build
    --strict`): an input whose format cannot be detected stops the build (InputError) instead of being
    quarantined unit by unit while the other inputs go on.
    """
    with gc_paused():
        return _build_rows(
            spec,
            inputs,
            out,
            format=format,
            mapping=mapping,
            tokenizer=tokenizer,
            max_tokens=max_tokens,
            near_threshold=near_threshold,
            sft_format=sft_format,
            lock=lock,
            progress=progress,
            engine=engine,
            fast=compact is not False,
            strict=strict,
        )


def _write(
    out_dir: Path,
    spec: Spec,
    ctx: RunContext,
    manifest: dict[str, Any],
    sft_format: str,
    sft_rows: Any,
    dpo_rows: Any,
    negatives: list[dict[str, Any]],
    clusters: list[dict[str, Any]],
    lock_bytes: bytes,
    relations: list[dict[str, Any]] | None = None,
    prompts_out: dict[str, Any] | None = None,
) -> BuildResult:
    """Write the build folder atomically (staged, then swapped in); rows per format: {split: rows} or a _Stream;
    `prompts_out`: {"prompts" or "text": its rows} (unlabeled prompts, when the build has any)."""
    exported_formats = manifest["exported_formats"]
    ctx.report("export", 0, 1)
    known: dict[str, str] = {}  # sha256 of files taken while they were written
    with staged_output(out_dir) as stage:
        split_info = {}
        titles = {"prompts": "unlabeled prompts (prompt-only)", "text": "texts (language modeling)"}
        for fmt, rows, title in (
            ("sft", sft_rows, f"{spec.ref} SFT ({sft_format})"),
            ("dpo", dpo_rows, f"{spec.ref} DPO"),
            *((k, v, f"{spec.ref} {titles[k]}") for k, v in (prompts_out or {}).items()),
        ):
            if isinstance(rows, _Stream):
                schema, tools = stream_schema(rows.sample())
                drop_library_pages()  # (what importing pyarrow touched and writing does not run)
                split_info[fmt] = write_split_batches(
                    stage / fmt,
                    rows.batches(schema, tools, spec.export.jsonl),
                    schema=schema,
                    title=title,
                    name=f"{spec.name}-{fmt}",
                    hashes=known,
                    jsonl=spec.export.jsonl,
                )
            elif rows is not None:
                split_info[fmt] = write_splits(
                    stage / fmt, rows, title=title, name=f"{spec.name}-{fmt}", jsonl=spec.export.jsonl
                )
        sft_rows = dpo_rows = prompts_out = None
        # the exports are most of the bytes: flushed to disk while the rest is written (the stage's final fsync
        # then finds them clean); no fork pool runs after this point
        with fsync_behind([stage / fmt for fmt in split_info]):
            write_jsonl(stage / "negatives.jsonl", negatives)
            write_jsonl(stage / "clusters.jsonl", clusters)
            write_jsonl(stage / "relations.jsonl", relations or [])
            ctx.flush_quarantine(stage / "quarantine")
            (stage / "heldout.lock").write_bytes(lock_bytes)
            # per-record lengths go to lengths.parquet; the manifest keeps their summary (curate.steps.lengths_file)
            from curate.steps.lengths_file import write_lengths

            manifest["lengths"] = write_lengths(stage, manifest["lengths"])
            (stage / "README.md").write_text(
                dataset_card(spec, manifest, split_info, folder=stage, out_dir=out_dir), encoding="utf-8"
            )
            manifest["files"] = file_hashes(stage, known=known)
            (stage / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
            warnings: list[str] = []
            for fmt in exported_formats:
                if fmt in ("sft", "dpo") and not manifest["counts"][fmt]["train"]:
                    warnings.append(
                        f"{fmt}/train is empty: nothing to train {fmt.upper()} on (see the quarantine and "
                        "clusters.jsonl for where the records went)"
                    )
            try:
                import curate.report as report_mod
            except ImportError:  # the report module is optional
                report_mod = None  # type: ignore[assignment]
            if report_mod is not None and hasattr(report_mod, "write_report"):
                try:
                    report_mod.write_report(stage)
                except Exception as err:  # noqa: BLE001 - a report failure must not lose the dataset
                    log.warning("report.html not written: %s", err)
                    warnings.append(f"report.html not written: {err}")
    ctx.report("export", 1, 1)
    return BuildResult(out_dir=out_dir, manifest=manifest, warnings=warnings)


def _build_rows(
    spec: Spec | str | Path, inputs: Sequence[str | Path] | None, out: str | Path | None, **kw: Any
) -> BuildResult:
    """`_build` on compact rows (`curate.engine.compact`): the same files, without a pydantic record per line."""
    opened: list[Any] = []  # the inputs the fast rows re-read their lines from
    try:
        return _build_rows_in(spec, inputs, out, opened=opened, **kw)
    finally:
        for src in opened:
            src.close()


def _build_rows_in(
    spec: Spec | str | Path,
    inputs: Sequence[str | Path] | None,
    out: str | Path | None,
    *,
    format: str | None,
    mapping: dict[str, str] | None,
    tokenizer: str | Path | None,
    max_tokens: int | None,
    near_threshold: float,
    sft_format: str | None,
    lock: str | Path | None,
    progress: Progress | None,
    engine: str,
    opened: list[Any],
    fast: bool = True,
    strict: bool = False,
) -> BuildResult:
    from curate.engine import compact as C
    from curate.engine import task_mapper, validate_step
    from curate.engine.local_map import split_keys_all
    from curate.judge.gate import judge_build
    from curate.steps.split import split_rows
    from curate.versioning import rule_sets

    validate_fn = validate_step(engine)  # "local" or "ray"; raises CurateError for an unknown engine
    # the compiled kernels loaded before any row is held (LLVM's ~100 MB of code pages are mapped while they load,
    # then given back with the pages the imports touched: curate.residency); the read's workers inherit them
    warm_kernels()
    C.release_memory()
    spec, paths, out_dir, sft_format, near_threshold = _settle(
        spec, inputs, out, near_threshold=near_threshold, sft_format=sft_format
    )
    opened.append(OutputLock(out_dir))  # #16: the folder's lock from the start (released with the inputs)
    if format is not None:
        from curate.steps.read import FORMATS

        if format not in FORMATS:
            raise InputError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    mapper = task_mapper(engine)  # runs the steps' chunked tasks: fork pools, or Ray for the whole build
    opened.append(mapper)
    ctx = RunContext(progress=progress)
    lengths = LengthCounter(spec, tokenizer)
    limit = max_tokens if max_tokens is not None else spec.export.max_tokens
    checker = C.Checker(spec)

    def record(row: C.Row) -> Rec:
        return C.materialize(row, spec, checker)

    # the read's pool workers also make dedup's keys of the lines they take as fast rows (its texts in `spool`)
    # (not on Ray: dedup's verification tasks would carry every text of the spool, `dedup_keys.TextStore`'s pickle,
    # from this process: its peak at 200k OpenAI records rose from 667 to 757 MB; Ray's tasks make dedup's keys)
    spool = TextSpool() if engine == "local" and fast else None
    if spool is not None:
        opened.append(spool)
    valid = list(
        C.read_validate_rows(
            paths,
            ctx=ctx,
            spec=spec,
            lengths=lengths,
            max_tokens=limit,
            format=format,
            mapping=mapping,
            checker=checker,
            opened=opened,
            validate_fn=None if engine == "local" else validate_fn,
            fast=fast,
            strict=strict,
            dedup_keys=KeySketches(near_threshold) if spool is not None else None,
            spool=spool,
            mapper=None if engine == "local" else mapper,
        )
    )
    C.release_memory()
    # judge rules whose calibration passes the gate fail records like code checks (curate.judge.gate)
    valid, gate = judge_build(valid, spec, ctx, record=record, checker=checker)
    rows, unpaired, pairs_made = C.make_pairs_rows(valid, spec, checker)
    del valid
    mapper.share(rows + unpaired)  # (Ray: the rows go to the object store once, not with every task)
    for row in rows:
        if row.is_record and row.id not in lengths.lengths:
            lengths.measure(row.rec)
    relations: list[dict[str, Any]] = []

    def set_aside(row: C.Row, detail: str) -> None:
        ctx.quarantine(step="validate", reason="turn_marker_in_text", record=record(row), detail=detail)

    kept, clusters = dedup(
        rows + unpaired,
        ctx=ctx,
        near_threshold=near_threshold,
        access=mapper.access,
        drop_prefixes=spec.dedup.drop_prefixes,
        relations=relations,
        turn_markers=spec.dedup.turn_markers,
        quarantine=set_aside,
    )
    if spool is not None:
        spool.close()  # (dedup's texts: the verification has read them)
    kept_ids = {id(r) for r in kept}
    rows = [r for r in rows if id(r) in kept_ids]
    unpaired = [r for r in unpaired if id(r) in kept_ids]
    del kept, kept_ids
    C.release_memory()

    formats = spec.export.formats
    sft_rows: list[C.Row] = []
    pref_rows: list[C.Row] = []
    prompt_rows: list[C.Row] = []  # unlabeled prompts: exported as spec.export.text_records says
    for row in rows:
        if C.is_prompt_row(row):
            prompt_rows.append(row)
        elif row.kind == "preference":
            if "dpo" in formats:
                pref_rows.append(row)
            elif "sft" in formats:
                sft_rows.append(row)
        elif "sft" in formats:
            sft_rows.append(row)
        else:
            ctx.quarantine(
                step="export",
                reason="format_not_exported",
                record=record(row),
                detail="an SFT record, and the spec's export.formats has no sft",
            )
    del rows

    lock_path = Path(lock) if lock is not None else find_lock(out_dir, spec.name)
    old_lock = HeldoutLock.load(lock_path) if lock_path is not None else None
    if lock is not None and old_lock is None:
        raise InputError(f"--lock {lock}: no such held-out lock file")
    parts = split_rows(
        sft_rows + pref_rows + prompt_rows,
        spec=spec,
        ctx=ctx,
        lock=old_lock,
        near_threshold=near_threshold,
        keys=C.split_keys,
        text=C.user_text,
        record=record,
        release=C.release_memory,
        keys_all=lambda rs: split_keys_all(rs, mapper),
        texts_all=lambda rs: mapper.pool_map(C.user_text, rs),
        links=[(r["a"], r["b"]) for r in relations],
        turns=mapper.turns_all,
        runner=mapper.access.map,  # (the near pairs' and the leakage check's verification)
    )
    # (the split's own leakage check moved every leaking training twin out: parts.leakage says what it found)
    side = {r.id: "train" for r in parts.train} | {r.id: "test" for r in parts.test}
    C.release_memory()

    exported: list[C.Row] = parts.train + parts.test + unpaired
    exp_files = Counter(C.source_file(r) for r in exported)
    inputs_info = conservation_counts(ctx, paths, exp_files, formats_of(paths, format, mapping))
    totals = {k: sum(i[k] for i in inputs_info) for k in ("in", "exported", "quarantined", "duplicates")}
    extra = {k: v for k, v in extra_counts(ctx, exp_files).items() if any(v.values())}
    if extra:
        raise ExportError(f"records from outside the inputs reached the export: {extra}; this is a bug")

    side_of = side.get
    coverage = C.coverage(  # (an unlabeled prompt has no answer to check: not in the matrix)
        spec, (r for r in exported if not C.is_prompt_row(r)), lambda r: side_of(r.id, "negatives"), checker
    ).as_dict()

    sft_ids = {r.id for r in sft_rows}
    sft_train = [r for r in parts.train if r.id in sft_ids]
    sft_test = [r for r in parts.test if r.id in sft_ids]
    dpo_train = [r for r in parts.train if r.id not in sft_ids and r.kind == "preference"]
    dpo_test = [r for r in parts.test if r.id not in sft_ids and r.kind == "preference"]
    kinds = {"sft": (sft_train, sft_test), "dpo": (dpo_train, dpo_test)}
    if prompt_rows:
        prompt_ids = {r.id for r in prompt_rows}
        kinds[spec.export.text_records] = (
            [r for r in parts.train if r.id in prompt_ids],
            [r for r in parts.test if r.id in prompt_ids],
        )
        del prompt_ids
    del sft_ids, sft_rows, pref_rows, prompt_rows, side
    C.release_memory()

    manifest = build_manifest(
        spec,
        ctx,
        inputs_info,
        totals,
        clusters,
        near_threshold,
        parts,
        coverage,
        lengths,
        limit,
        kinds,
        len(unpaired),
        pairs_made,
        old_lock,
        lock_path,
        sft_format,
        C.lineage(exported),
    )
    manifest["judge"] = gate.summary()
    counting = (
        gate.counting_ids
    )  # judge rules that count: in every row's lineage `rules` (versioning.row_stamp)
    manifest["spec"]["rule_sets"] = rule_sets(
        spec, (r.rec.labels for r in exported if r.is_record and r.facts.labeled), counting
    )
    manifest["dedup"]["continuations"] = len(relations)
    manifest["dedup"]["drop_prefixes"] = spec.dedup.drop_prefixes
    manifest["warnings"] = {
        k[len("warning:") :]: v for k, v in sorted(ctx.counters.items()) if k.startswith("warning:")
    }
    negatives = [dump_record(record(r)) for r in unpaired]
    lock_bytes = parts.lock.to_bytes()
    del parts, exported
    sft_out = dpo_out = None
    if "sft" in formats:
        sft_out = _Stream(
            {"train": sft_train, "test": sft_test}, lambda r: C.sft_row(r, spec, sft_format, counting), mapper
        )
    if "dpo" in formats:
        dpo_out = _Stream(
            {"train": dpo_train, "test": dpo_test}, lambda r: C.dpo_row(r, spec, counting), mapper
        )
    prompts_out = {
        kind: _Stream(
            {"train": tr, "test": te},
            (lambda r: prompt_row(r.rec, spec)) if kind == "prompts" else (lambda r: text_row(r.rec, spec)),
        )
        for kind, (tr, te) in kinds.items()
        if kind in TEXT_KINDS
    }
    del sft_train, sft_test, dpo_train, dpo_test, kinds
    return _write(
        out_dir,
        spec,
        ctx,
        manifest,
        sft_format,
        sft_out,
        dpo_out,
        negatives,
        clusters,
        lock_bytes,
        relations,
        prompts_out,
    )


EXPORT_POOL_MIN_ROWS = (
    4_096  # a split of this many rows is exported on the fork pool (a fork costs ~20-50 ms)
)


class _Stream:
    """A format's export rows made on the fly from compact rows, split by split (for write_split_batches).

    `batches()` makes each split's (JSONL bytes, Arrow table) batches of `export._ARROW_CHUNK` rows; from
    `EXPORT_POOL_MIN_ROWS` rows on they are made on the compact build's fork pool (`local_map.pool_map`: re-read,
    TRL row, JSON, Arrow in the workers) and handed over through an `export.Spool` (shared-memory files, not the
    pool's pipe), so the build process only writes files.
    """

    def __init__(
        self, splits: dict[str, list[Any]], make: Callable[[Any], dict[str, Any]], mapper: Any = None
    ) -> None:
        self.splits = splits
        self.make = make
        self.mapper = mapper  # whose pool_map makes the batches (local_map.LocalMapper's fork pool, or Ray)

    def sample(self) -> list[dict[str, Any]]:
        """The first plain row of each kind (a fast row, or a record whose turns are role and string content
        only, without tools: their export rows all have one shape) and every other record-path row, in order:
        all the shapes there are. (Every record-path row was made twice: a 50k OpenAI export spent 3.6 s here.)"""
        out = []
        seen: set[str] = set()
        for rows in self.splits.values():
            for r in rows:
                if r.facts is None or r.facts.plain:
                    if r.kind in seen:
                        continue
                    seen.add(r.kind)
                out.append(self.make(r))
        return out

    def batches(
        self, schema: Any, tools: bool, jsonl: bool = True
    ) -> dict[str, Callable[[], Iterator[tuple[bytes, Any]]]]:
        from curate.engine.local_map import LocalMapper
        from curate.steps import export

        make = self.make
        mapper = self.mapper or LocalMapper()

        def one(name: str) -> Callable[[], Iterator[tuple[bytes, Any]]]:
            def gen() -> Iterator[tuple[bytes, Any]]:
                rows = self.splits.pop(name)  # released as soon as the split is written
                size = export._ARROW_CHUNK
                # (Ray: a task carries its rows)
                parts = [rows[a : a + size] for a in range(0, len(rows), size)]

                pooled = mapper.use_pool(len(rows), EXPORT_POOL_MIN_ROWS)
                # (None without /dev/shm or on Ray: through the pipe or the object store)
                spool = export.Spool.open() if pooled and mapper.spool else None

                def batch(part: list[Any]) -> Any:
                    data, table = export.encode_batch([make(r) for r in part], schema, tools, jsonl)
                    return spool.put(data, table) if spool is not None else (data, table)

                try:
                    for got in (
                        mapper.pool_map(batch, parts, min_items=1, chunk=1) if pooled else map(batch, parts)
                    ):
                        yield spool.take(got) if spool is not None else got
                finally:
                    if spool is not None:
                        spool.close()

            return gen

        return {name: one(name) for name in list(self.splits)}


def build_coverage(target: str | Path, inputs: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """(the manifest's coverage dict, spec ref) of a build folder, or of a spec built into a temporary folder.

    One computation for `curate coverage`, `curate build` and the report: a spec's coverage is that of the build
    its data would make (after pairing, deduplication and the held-out leakage check), never a second count of
    the raw records. The spec's own build folder's heldout.lock is kept when there is one, as a build would.
    """
    import tempfile

    import orjson

    p = Path(target)
    if p.is_dir() and (p / "manifest.json").is_file():
        manifest = orjson.loads((p / "manifest.json").read_bytes())
        return manifest.get("coverage", {}), manifest.get("spec", {}).get("ref", str(p))
    spec = load_spec(target)
    lock = spec.default_out_dir() / "heldout.lock"
    with tempfile.TemporaryDirectory(prefix="curate-coverage-") as tmp:
        res = build(spec, inputs, Path(tmp) / "build", lock=lock if lock.is_file() else None)
        return res.manifest["coverage"], spec.ref


__all__ = ["BuildResult", "build", "build_coverage"]
