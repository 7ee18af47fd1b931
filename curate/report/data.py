"""Read a build output folder into what the report shows, tolerating missing optional parts.

Only `manifest.json` is required. Everything else (quarantine/*.jsonl, clusters.jsonl, the sft/dpo splits,
lengths.parquet, agreement.json, evals/*.json) is read when present; a file that cannot be read becomes a warning shown in the
report, never a crash. Large files are streamed: quarantine keeps counts and a few examples per reason,
clusters keep counts and the largest clusters, splits are scanned only for the ids the report needs.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate.errors import InputError
from curate.steps.export import split_file

log = logging.getLogger(__name__)

EXAMPLES_PER_REASON = 3
TOP_CLUSTERS = 6
SPLIT_FILES = ("sft/train.jsonl", "sft/test.jsonl", "dpo/train.jsonl", "dpo/test.jsonl")


@dataclass
class ReasonGroup:
    step: str
    reason: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Cluster:
    kept: str
    members: list[dict[str, Any]] = field(default_factory=list)  # the clusters.jsonl rows, one per dropped id

    @property
    def size(self) -> int:
        return 1 + len(self.members)


@dataclass
class ReportData:
    out_dir: Path
    manifest: dict[str, Any]
    reasons: list[ReasonGroup] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)  # the largest, biggest first
    cluster_rows: int = 0
    cluster_count: int = 0
    cluster_methods: Counter[str] = field(default_factory=Counter)
    cluster_sizes: Counter[int] = field(default_factory=Counter)
    texts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # id -> [(role, content)]
    agreement: dict[str, Any] | None = None
    conflicts: int | None = None  # rows of conflicts.jsonl, when present
    evals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lengths: dict[str, dict[str, list[int]]] = field(
        default_factory=dict
    )  # fmt -> split -> lengths (export order)
    rules: list[RuleStats] = field(default_factory=list)  # per automatic rule: the data's pass rate
    pair_examples: list[PairExample] = field(
        default_factory=list
    )  # a few DPO rows with the rules that separate them
    spec_note: str = ""  # why the rules section has no rule wording (the spec is gone or changed)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RuleStats:
    """One automatic rule over the data this build read: records exported that pass it (coverage counts, where
    the rule applies), records quarantined for failing it (validate/rule_failed), and negative examples (the
    rejected sides of pairs and negatives.jsonl) that break it on purpose."""

    rule: str
    category: str = ""
    says: str = ""
    passed: int = 0
    failed: int = 0
    negatives: int = 0

    @property
    def pass_rate(self) -> float | None:
        n = self.passed + self.failed
        return self.passed / n if n else None


@dataclass
class PairExample:
    prompt: str
    chosen: str
    rejected: str
    rules: list[str]  # the automatic rules the rejected side breaks and the chosen side passes
    split: str = "train"


def _iter_jsonl(
    path: Path, warnings: list[str], keep: Callable[[bytes], bool] | None = None
) -> Iterator[Any]:
    """The JSON objects of a JSONL file; unreadable lines are counted into one warning (also when the caller
    stops early). `keep(raw)`, when given, skips a line unparsed when it says False. An export split's Parquet
    file (a build with `export.jsonl: false`) gives its rows (`export.read_rows`)."""
    if path.suffix == ".parquet":
        from curate.steps.export import read_rows

        yield from (row for _, row in read_rows(path))
        return
    bad = 0
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if keep is not None and not keep(raw):
                    continue
                if not raw.strip():
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(obj, dict):
                    yield obj
                else:
                    bad += 1
    finally:
        if bad:
            warnings.append(f"{path.name}: {bad} unreadable line(s) skipped by the report")


def _load_json(path: Path, warnings: list[str]) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as err:
        warnings.append(f"{path.name}: cannot read ({err})")
        return None


def conversation(obj: Any) -> list[tuple[str, str]]:
    """(role, text) turns of an exported row, a native record or a raw value; preference rows show
    prompt, then chosen (and rejected, marked)."""
    if isinstance(obj, str):
        return [("text", obj)]
    if not isinstance(obj, dict):
        return [("text", orjson.dumps(obj, default=str).decode())]

    def turns(value: Any, default_role: str, mark: str = "") -> list[tuple[str, str]]:
        if isinstance(value, str):
            return [(default_role + mark, value)]
        out = []
        for m in value or []:
            if isinstance(m, dict):
                content = m.get("content")
                if content is None:
                    content = ""
                elif not isinstance(content, str):
                    content = orjson.dumps(content, default=str).decode()
                if m.get("tool_calls"):
                    content += "\n" + orjson.dumps(m["tool_calls"], default=str).decode()
                out.append((str(m.get("role", default_role)) + mark, content))
        return out

    if "messages" in obj:
        return turns(obj["messages"], "user")
    if "chosen" in obj or "rejected" in obj:
        return (
            turns(obj.get("prompt"), "user")
            + turns(obj.get("chosen"), "assistant", " (chosen)")
            + turns(obj.get("rejected"), "assistant", " (rejected)")
        )
    if "prompt" in obj and "completion" in obj:
        return turns(obj["prompt"], "user") + turns(obj["completion"], "assistant")
    for key in ("text", "response", "original"):
        if key in obj:
            return conversation(obj[key])
    return [("json", orjson.dumps(obj, default=str).decode())]


def parse_source(src: Any) -> dict[str, Any]:
    """A source as a dict: the contract's {file, line, ...} or a "file:line" string (as clusters.jsonl holds)."""
    if isinstance(src, dict):
        return src
    if isinstance(src, str) and src:
        file, sep, line = src.rpartition(":")
        if sep and line.isdigit():
            return {"file": file, "line": int(line)}
        return {"file": src}
    return {}


def _read_quarantine(data: ReportData) -> None:
    qdir = data.out_dir / "quarantine"
    groups: dict[tuple[str, str], ReasonGroup] = {}
    if qdir.is_dir():
        for path in sorted(qdir.glob("*.jsonl")):
            for row in _iter_jsonl(path, data.warnings):
                step = str(row.get("step") or path.stem)
                reason = str(row.get("reason") or "unknown")
                g = groups.setdefault((step, reason), ReasonGroup(step, reason))
                g.count += 1
                if len(g.examples) < EXAMPLES_PER_REASON:
                    g.examples.append(row)
    # Reasons the manifest counts but no file holds (a partial out dir): still shown, without examples.
    for key, n in (data.manifest.get("quarantine") or {}).items():
        step, _, reason = str(key).partition("/")
        if (step, reason) not in groups and isinstance(n, int) and n > 0:
            groups[(step, reason)] = ReasonGroup(step, reason, count=n)
            data.warnings.append(f"quarantine/{step}.jsonl has no rows for {reason} (manifest counts {n})")
    data.reasons = sorted(groups.values(), key=lambda g: (-g.count, g.step, g.reason))


def _read_clusters(data: ReportData) -> None:
    """Two streaming passes: count removals per kept id, then keep the rows of the largest clusters only."""
    path = data.out_dir / "clusters.jsonl"
    if not path.is_file():
        return
    sizes: Counter[str] = Counter()
    for row in _iter_jsonl(path, data.warnings):
        data.cluster_rows += 1
        data.cluster_methods[str(row.get("method", "?"))] += 1
        sizes[str(row.get("kept"))] += 1
    data.cluster_count = len(sizes)
    data.cluster_sizes = Counter(1 + n for n in sizes.values())
    top = heapq.nsmallest(TOP_CLUSTERS, sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    rows: dict[str, list[dict[str, Any]]] = {kept: [] for kept, _ in top}
    for row in _iter_jsonl(path, []):
        kept = str(row.get("kept"))
        if kept in rows:
            rows[kept].append(row)
    for members in rows.values():  # the weakest matches first: where a wrong removal is likeliest
        members.sort(key=lambda r: float(r["score"]) if _num(r.get("score")) else 1.0)
    data.clusters = [Cluster(kept, rows[kept]) for kept, _ in top]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _resolve_source(data: ReportData, file: str) -> Path | None:
    p = Path(file)
    # Relative source paths are relative to where the build ran: usually the folder holding `out/`.
    candidates = (
        [p]
        if p.is_absolute()
        else [Path.cwd() / p, *(d / p for d in list(data.out_dir.resolve().parents)[:4])]
    )
    spec_path = (data.manifest.get("spec") or {}).get("path")
    if spec_path and not p.is_absolute():
        sp = Path(spec_path)
        candidates.append((sp if sp.is_dir() else sp.parent) / p)
    return next((c for c in candidates if c.is_file()), None)


def text_key(record_id: Any, source: Any) -> str:
    """The key of a shown text: the source line when known (an exact twin has the kept one's id), else the id."""
    src = parse_source(source)
    if src.get("file") and src.get("line"):
        return f"{src['file']}:{src['line']}"
    return str(record_id)


def _find_texts(data: ReportData) -> None:
    """Texts for the shown clusters. A kept record is exported: found by id in the splits (it may be a pair the
    build made, so its source line alone would mislead). A dropped one is not: its own source line, else the
    text the row carries, else (an exact twin shares the kept id) the exported text of that id."""
    by_id: dict[str, list[str]] = defaultdict(list)  # record id -> keys to fill from the splits
    lines: dict[str, tuple[dict[str, Any], str]] = {}  # key -> (source, record id) to fill from source lines
    for cl in data.clusters:
        first = cl.members[0]
        key = text_key(cl.kept, first.get("kept_source"))
        if first.get("kept_text") is not None:
            data.texts[key] = conversation(first["kept_text"])
        else:
            by_id[cl.kept].append(key)
            lines[key] = (parse_source(first.get("kept_source")), cl.kept)
        for row in cl.members:
            did = str(row.get("dropped"))
            key = text_key(did, row.get("dropped_source"))
            if row.get("dropped_text") is not None:
                data.texts[key] = conversation(row["dropped_text"])
            else:
                lines[key] = (parse_source(row.get("dropped_source")), did)
    _scan_splits(data, by_id)
    by_file: dict[str, dict[int, str]] = defaultdict(dict)
    for key, (src, _) in lines.items():
        if key not in data.texts and src.get("file") and src.get("line"):
            by_file[str(src["file"])][int(src["line"])] = key
    _read_source_lines(data, by_file)
    rest: dict[str, list[str]] = defaultdict(list)
    for key, (_, rid) in lines.items():
        if key not in data.texts:
            rest[rid].append(key)
    _scan_splits(data, rest)


def _scan_splits(data: ReportData, by_id: dict[str, list[str]]) -> None:
    """Fill texts from the export rows of the wanted ids. A row is parsed only when its id may be wanted: the export
    writes the top-level `"id":"..."` after the turns (a nested key of that name, a tool call's, comes before it,
    and one inside a string is escaped), so the last `"id":"` of a line names its id; a line without one is
    parsed. Stops when every id is found."""
    wanted = {rid: keys for rid, keys in by_id.items() if keys}
    marker = b'"id":"'

    def maybe_wanted(raw: bytes) -> bool:
        at = raw.rfind(marker)
        return at < 0 or raw[at + 6 : raw.find(b'"', at + 6)].decode("utf-8", "replace") in wanted

    for rel in SPLIT_FILES:
        kind, split = rel.split("/")
        path = split_file(data.out_dir / kind, split.removesuffix(".jsonl"))
        if not wanted:
            return
        if path is None:
            continue
        for row in _iter_jsonl(path, data.warnings, keep=maybe_wanted):
            keys = wanted.pop(str(row.get("id")), None)
            for key in keys or ():
                data.texts.setdefault(key, conversation(row))
            if not wanted:
                break


def _read_source_lines(data: ReportData, by_file: dict[str, dict[int, str]]) -> None:
    for file, lines in by_file.items():
        # Only line-oriented files: in CSV, Parquet or a JSON list a "line" is not a line of the file.
        path = _resolve_source(data, file) if file.endswith((".jsonl", ".ndjson")) else None
        if path is None:
            continue
        try:
            for no, raw in _lines_at(path, sorted(lines)):
                try:
                    data.texts[lines[no]] = conversation(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    data.texts[lines[no]] = [("text", raw.decode("utf-8", "replace"))]
        except OSError as err:
            data.warnings.append(f"{file}: cannot read source lines ({err})")


def _lines_at(path: Path, wanted: list[int], block: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """(line number, line bytes with its newline) of the `wanted` (sorted, 1-based) lines of a file, as iterating
    the binary file gives them: newlines are counted block by block and only the wanted lines are cut out."""
    want = iter(wanted)
    target = next(want, None)
    no = 1  # the line the block's first byte belongs to
    carry = b""  # the start of line `no`, from earlier blocks
    with open(path, "rb") as fh:
        while target is not None:
            chunk = fh.read(block)
            if not chunk:
                if carry and target == no:
                    yield no, carry
                return
            data = carry + chunk
            stop = no + data.count(b"\n")  # lines no .. stop - 1 end in this block
            pos = 0
            while target is not None and target < stop:
                while no < target:
                    pos = data.index(b"\n", pos) + 1
                    no += 1
                end = data.index(b"\n", pos) + 1
                yield no, data[pos:end]
                pos, no = end, no + 1
                target = next(want, None)
            carry = data[data.rfind(b"\n") + 1 :]  # the start of line `stop` (unfinished)
            no = stop


def _read_extras(data: ReportData) -> None:
    agreement = data.out_dir / "agreement.json"
    if agreement.is_file():
        obj = _load_json(agreement, data.warnings)
        data.agreement = obj if isinstance(obj, dict) else None
    conflicts = data.out_dir / "conflicts.jsonl"
    if conflicts.is_file():
        data.conflicts = sum(1 for _ in _iter_jsonl(conflicts, data.warnings))
    edir = data.out_dir / "evals"
    if edir.is_dir():
        for path in sorted(edir.glob("*.json")):
            obj = _load_json(path, data.warnings)
            if not isinstance(obj, dict):
                continue
            if obj.get("kind", "curate-eval") != "curate-eval" or "rules" not in obj:
                data.warnings.append(
                    f"evals/{path.name}: not an evaluation from `curate eval --json-out` "
                    f"(kind {obj.get('kind')!r}); not shown"
                )
                continue
            data.evals.append((path.stem, obj))
        data.evals.sort(key=lambda kv: (str(kv[1].get("created", "")), kv[0]))


def load_report_data(out_dir: str | Path) -> ReportData:
    """Everything the report shows, from one build output folder. Raises InputError without a manifest."""
    out = Path(out_dir)
    mpath = out / "manifest.json"
    if not mpath.is_file():
        raise InputError(
            f"{out}: no manifest.json; point at a build output folder (run `curate build SPEC` first)"
        )
    try:
        manifest = orjson.loads(mpath.read_bytes())
    except orjson.JSONDecodeError as err:
        raise InputError(f"{mpath}: not valid JSON ({err}); rebuild with `curate build`") from err
    if not isinstance(manifest, dict):
        raise InputError(f"{mpath}: expected a JSON object; rebuild with `curate build`")
    data = ReportData(out_dir=out, manifest=manifest)
    _read_quarantine(data)
    _read_clusters(data)
    _find_texts(data)
    _read_extras(data)
    _read_lengths(data)
    _read_rules(data)
    return data


PAIR_EXAMPLES = 3


def _load_spec_of(data: ReportData) -> Any:
    """The build's spec, when its file is still there and unchanged (else None, saying why in spec_note)."""
    spec_info = data.manifest.get("spec") or {}
    path = spec_info.get("path")
    if not path:
        return None
    from curate.errors import CurateError
    from curate.spec import load_spec

    p = Path(path)
    if not p.is_absolute():
        p = (data.out_dir / p) if (data.out_dir / p).exists() else p
    try:
        spec = load_spec(p)
    except CurateError:
        data.spec_note = f"the spec {path} cannot be loaded now"
        return None
    if spec_info.get("sha256") and spec.digest and spec.digest != spec_info["sha256"]:
        data.spec_note = f"the spec {path} changed since this build"
        return None
    return spec


def _text_of(turns: Any) -> str:
    if isinstance(turns, str):
        return turns
    return "\n".join(str(m.get("content", "")) for m in turns or [] if isinstance(m, dict))


def _user_text(turns: Any) -> str:
    if isinstance(turns, str):
        return turns
    return "\n".join(
        str(m.get("content", "")) for m in turns or [] if isinstance(m, dict) and m.get("role") == "user"
    )


def _read_rules(data: ReportData) -> None:
    """Per-rule figures from the manifest's coverage, quarantine/validate.jsonl and the DPO export; with the spec
    (still unchanged on disk) also each rule's words and the rules that separate a few example pairs."""
    cells = (data.manifest.get("coverage") or {}).get("cells") or []
    order: list[str] = []
    stats: dict[str, RuleStats] = {}
    for c in cells:
        rid = str(c.get("rule"))
        if rid not in stats:
            order.append(rid)
            stats[rid] = RuleStats(rid)
        n = c.get("count") or 0
        if c.get("category") == "negative":
            stats[rid].negatives += n
        else:
            stats[rid].passed += n
    spec = _load_spec_of(data)
    if spec is not None:
        for r in spec.automatic_rules():
            if r.id not in stats:
                order.append(r.id)
                stats[r.id] = RuleStats(r.id)
            stats[r.id].category, stats[r.id].says = r.category, r.says.strip()
    qfile = data.out_dir / "quarantine" / "validate.jsonl"
    if qfile.is_file() and stats:
        for row in _iter_jsonl(qfile, [], keep=lambda raw: b'"rule_failed"' in raw):
            if row.get("reason") != "rule_failed":
                continue
            detail = str(row.get("detail") or "")
            for rid, st in stats.items():  # "rule-a: why; rule-b: why"
                if detail.startswith(rid + ":") or f"; {rid}:" in detail:
                    st.failed += 1
    data.rules = [stats[r] for r in order]
    for split in ("train", "test"):
        path = split_file(data.out_dir / "dpo", split)
        if len(data.pair_examples) >= PAIR_EXAMPLES or path is None:
            continue
        for row in _iter_jsonl(path, data.warnings):
            if len(data.pair_examples) >= PAIR_EXAMPLES:
                break
            if not isinstance(row, dict) or "chosen" not in row or "rejected" not in row:
                continue
            rules: list[str] = []
            if spec is not None:
                from curate.checks import check_response

                user = _user_text(row.get("prompt"))
                chosen = {
                    r.rule: r.status for r in check_response(spec, _text_of(row["chosen"]), user_text=user)
                }
                rejected = check_response(spec, _text_of(row["rejected"]), user_text=user)
                rules = [r.rule for r in rejected if r.status == "fail" and chosen.get(r.rule) != "fail"]
            data.pair_examples.append(
                PairExample(
                    prompt=_user_text(row.get("prompt")),
                    chosen=_text_of(row["chosen"]),
                    rejected=_text_of(row["rejected"]),
                    rules=rules,
                    split=split,
                )
            )


def _read_lengths(data: ReportData) -> None:
    """Per-record lengths from lengths.parquet (the manifest's `lengths.file`), or an older manifest's lists."""
    from curate.steps.lengths_file import read_lengths

    block = data.manifest.get("lengths")
    try:
        data.lengths = read_lengths(data.out_dir, block if isinstance(block, dict) else None)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds; the report shows a warning instead
        data.warnings.append(f"{(block or {}).get('file')}: cannot read ({err})")
