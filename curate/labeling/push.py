"""Push records to Label Studio as labeling tasks, idempotently, with the rule checks as predictions.

    >>> from curate.spec import load_spec
    >>> from curate.labeling.client import connect
    >>> from curate.labeling.push import push
    >>> spec = load_spec("specs/support-triage")
    >>> res = push(spec, "review", client=connect())            # the spec's own data files by default
    >>> res.pushed + res.already == res.eligible                 # doctest: +SKIP
    True

One project per (spec version, kind), found again through a marker line in its description. Each task carries
the record id (`curate_id`) and the record itself, so a pull needs no local state. A second push adds only the
records the server does not hold yet (checked against the server); a push interrupted half-way (server killed)
resumes without duplicate tasks, because each batch is re-checked against the server before it is re-sent.

Finding and creating the project is in `curate.labeling.projects`; every name is importable from here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curate.checks import run_rules
from curate.errors import LabelingError, ServerError
from curate.judge.gate import open_gate, suggestion_text
from curate.labeling.client import StudioClient, TransientServerError
from curate.labeling.config import visible
from curate.labeling.convert import record_digest
from curate.labeling.drafts import Drafter
from curate.labeling.drafts import conversation as draft_conversation
from curate.labeling.projects import _differs, ensure_project, find_project  # noqa: F401 (moved)
from curate.records import (
    CheckResult,
    LineError,
    PreferenceRecord,
    SFTRecord,
    Source,
    dump_record,
    read_jsonl,
    record_from_native,
)
from curate.spec import Spec
from curate.steps.base import RunContext
from curate.versioning import rules_sha

log = logging.getLogger(__name__)
Record = SFTRecord | PreferenceRecord
PREDICTION_MODEL = "curate-checks"


@dataclass
class PushResult:
    project_id: int
    project_url: str
    kind: str
    created_project: bool = False
    records_in: int = 0
    eligible: int = 0
    pushed: int = 0
    already: int = 0
    duplicates_in_input: int = 0
    quarantined: int = 0
    batches: int = 0
    retries: int = 0
    drafts: int = 0
    seconds: float = 0.0
    task_ids: list[int] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("task_ids")
        return out


# ---------------------------------------------------------------- records -> tasks


def _turns(messages: Iterable[Any]) -> list[dict[str, str]]:
    out = []
    for m in messages:
        text = m.content
        if m.tool_calls:
            text += "".join(f"\n[call {tc.function.name}({tc.function.arguments})]" for tc in m.tool_calls)
        out.append({"role": m.role, "content": text})
    return out


def _summary(results: list[CheckResult]) -> str:
    failed = [f"{r.rule} ({r.detail})" if r.detail else r.rule for r in results if r.status == "fail"]
    passed = [r.rule for r in results if r.status == "pass"]
    skipped = [r.rule for r in results if r.status == "skip"]
    parts = [f"FAILS: {'; '.join(failed)}" if failed else "passes every automatic rule"]
    if failed and passed:
        parts.append(f"passes: {', '.join(passed)}")
    if skipped:
        parts.append(f"not applicable: {', '.join(skipped)}")
    return " | ".join(parts)


def eligible(record: Record, kind: str) -> str | None:
    """None when `record` can be labeled as `kind`, else the reason code why not."""
    if kind == "pairwise":
        return None if isinstance(record, PreferenceRecord) else "not_a_pair"
    if isinstance(record, PreferenceRecord):
        return "not_sft"
    if kind == "review":
        return None if record.response_text() and record.prompt_messages() else "no_response"
    return None if any(m.role == "user" for m in record.prompt_messages()) else "no_prompt"


def _left_is_chosen(record: PreferenceRecord) -> bool:
    """Which side the original chosen response is shown on: fixed per record, half the pairs each way."""
    return int(record.id[-1], 16) % 2 == 0


def pretty(text: str) -> str:
    """A response as the correction field starts: pretty-printed when it is a JSON object or array."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return text


def prompt_record(record: SFTRecord) -> SFTRecord:
    """The prompt of an SFT record without its response: one write task per prompt, whatever answers it had."""
    return SFTRecord.build(
        messages=record.prompt_messages(),
        spec=record.spec,
        category=record.category,
        tags=record.tags,
        source=record.source,
        tools=record.tools,
        labels={k: v for k, v in record.labels.items() if k == "draft"},
    )


def to_task(
    spec: Spec,
    kind: str,
    record: Record,
    *,
    predictions: str = "failing",
    draft: dict[str, str] | None = None,
    judged: dict[str, dict[str, Any]] | None = None,
    counting: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A Label Studio task for one record: its data, the check summary, and the checks as a prediction.

    What a labeler must not see stays out of `data` (which the Data Manager shows as columns): the record itself
    (its category, `violates`, the data's own answer of a write task) and the side a pairwise task's data prefers
    travel in `meta`, with the record's hash (`curate_sha256`) that the pull checks. Visible texts have control
    characters made visible (config.visible). A review task's prediction fills the correction field with the
    current answer (pretty-printed JSON), ready to edit, and pre-ticks the rules it fails.
    `draft` ({"model", "text"}, curate.labeling.drafts) fills the correction field (review) or the answer (write)
    with a model's draft instead, and the draft's own rule checks are shown beside it.

    `judged` ({"response" | "chosen" | "rejected": {rule id: judge Verdict}}, curate.judge.gate): the judge's
    verdicts. Those of `counting` rules (calibration passes the gate) count like code checks (pre-ticked, in the
    summary); the others are shown as a suggestion only (`data.judge_suggestions`, appended to the summary,
    marked as such) and pre-tick nothing.

    `predictions="failing"` attaches a prediction to pairwise tasks only where it pre-ticks something (a rule one
    side fails); `"all"` gives every pairwise task one. Review tasks always get one (the correction field's text).
    (Label Studio spends ~3 ms per imported prediction recounting task totals, 4-5x the task itself.)
    """
    if kind == "write" and isinstance(record, SFTRecord) and record.response_text():
        record = prompt_record(record)
    dumped = dump_record(record)
    data: dict[str, Any] = {
        "curate_id": record.id,
        "curate_spec": spec.ref,
        "curate_kind": kind,
        "curate_rules": rules_sha(spec),  # labels on this task are judged under these
        "messages": [{**t, "content": visible(t["content"])} for t in _turns(record.prompt_messages())],
    }
    meta: dict[str, Any] = {"record": dumped, "curate_sha256": record_digest(dumped)}
    result: list[dict[str, Any]] = []
    score = None
    draft_note = ""
    if draft is not None and kind != "pairwise":
        d_checks = run_rules(spec, record, response=draft["text"])
        d_fail = [c.rule for c in d_checks if c.status == "fail"]
        meta["draft"] = {"model": draft["model"], "text": draft["text"], "fails": d_fail}
        draft_note = visible(f"model draft ({draft['model']}): " + _summary(d_checks))
    counted, suggested = _judge_parts(spec, judged or {}, counting)
    if suggested:
        meta["judge_suggestions"] = {
            side: {rid: {"status": v.status, "reason": v.reason, "judge": v.judge} for rid, v in got.items()}
            for side, got in suggested.items()
        }
    if kind == "review":
        checks = run_rules(spec, record) + counted.get("response", [])
        data["response"] = visible(record.response_text())
        data["check_summary"] = visible(_summary(checks)) + (f" || {draft_note}" if draft_note else "")
        if suggested.get("response"):
            data["judge_suggestions"] = visible(suggestion_text(suggested["response"]))
            data["check_summary"] += " || " + data["judge_suggestions"]
        failed = [c.rule for c in checks if c.status == "fail"]
        applicable = [c for c in checks if c.status != "skip"]
        score = (len(applicable) - len(failed)) / len(applicable) if applicable else 1.0
        if failed:
            result.append(
                {
                    "from_name": "violates",
                    "to_name": "response",
                    "type": "choices",
                    "value": {"choices": failed},
                }
            )
        result.append(
            {
                "from_name": "corrected",
                "to_name": "response",
                "type": "textarea",
                "value": {
                    "text": [pretty(draft["text"] if draft_note and draft else record.response_text())]
                },
            }
        )
    elif kind == "pairwise":
        assert isinstance(record, PreferenceRecord)
        chosen, rejected = record.response_text(), record.rejected_text()
        left_chosen = _left_is_chosen(record)
        left, right = (chosen, rejected) if left_chosen else (rejected, chosen)
        data["left"], data["right"] = visible(left), visible(right)
        meta["left_is"] = "chosen" if left_chosen else "rejected"
        c_fail = [
            c.rule
            for c in run_rules(spec, record, response=chosen) + counted.get("chosen", [])
            if c.status == "fail"
        ]
        r_fail = [
            c.rule
            for c in run_rules(spec, record, response=rejected) + counted.get("rejected", [])
            if c.status == "fail"
        ]
        left_fail, right_fail = (c_fail, r_fail) if left_chosen else (r_fail, c_fail)
        data["check_summary"] = (
            f"left: {'FAILS ' + ', '.join(left_fail) if left_fail else 'passes'} | "
            f"right: {'FAILS ' + ', '.join(right_fail) if right_fail else 'passes'}"
        )
        sides = [
            (name, suggestion_text(suggested[side]))
            for name, side in (
                ("left", "chosen" if left_chosen else "rejected"),
                ("right", "rejected" if left_chosen else "chosen"),
            )
            if suggested.get(side)
        ]
        if sides:
            data["judge_suggestions"] = visible(" | ".join(f"{name}: {text}" for name, text in sides))
            data["check_summary"] += " || " + data["judge_suggestions"]
        if bool(left_fail) != bool(right_fail):  # exactly one side breaks rules: pre-tick them
            result.append(
                {
                    "from_name": "loser_violates",
                    "to_name": "left",
                    "type": "choices",
                    "value": {"choices": left_fail or right_fail},
                }
            )
    elif kind == "write":
        data["draft_summary"] = draft_note
        if draft_note and draft:
            result.append(
                {
                    "from_name": "ideal",
                    "to_name": "prompt",
                    "type": "textarea",
                    "value": {"text": [pretty(draft["text"])]},
                }
            )
    task: dict[str, Any] = {"data": data, "meta": meta}
    if result or (predictions == "all" and kind == "pairwise"):
        task["predictions"] = [{"model_version": PREDICTION_MODEL, "score": score, "result": result}]
    return task


def _judge_parts(
    spec: Spec, judged: dict[str, dict[str, Any]], counting: frozenset[str]
) -> tuple[dict[str, list[CheckResult]], dict[str, dict[str, Any]]]:
    """Per side: the counting judge verdicts as check results, and the others (suggestions)."""
    counted: dict[str, list[CheckResult]] = {}
    suggested: dict[str, dict[str, Any]] = {}
    for side, got in judged.items():
        for rid, v in sorted(got.items()):
            if rid in counting:
                counted.setdefault(side, []).append(
                    CheckResult(
                        rule=rid,
                        category=spec.rule(rid).category,
                        status=v.status,
                        detail=f"judge: {v.reason}",
                    )
                )
            else:
                suggested.setdefault(side, {})[rid] = v
    return counted, suggested


def _judge_batch(gate: Any, kind: str, records: list[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """{record id: {side: {rule id: Verdict}}} for a batch (review: the response; pairwise: both sides)."""
    if gate is None or kind not in ("review", "pairwise") or not (gate.counting or gate.suggesting):
        return {}
    items: list[tuple[str, str]] = []
    where: list[tuple[str, str]] = []
    for r in records:
        if kind == "review":
            items.append((r.user_text(), r.response_text()))
            where.append((r.id, "response"))
        elif isinstance(r, PreferenceRecord):
            items += [(r.user_text(), r.response_text()), (r.user_text(), r.rejected_text())]
            where += [(r.id, "chosen"), (r.id, "rejected")]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (rid, side), got in zip(where, gate.verdicts(items), strict=True):
        out.setdefault(rid, {})[side] = got
    return out


def _drafts(spec: Spec, kind: str, records: list[Record], drafter: Drafter) -> dict[str, dict[str, str]]:
    """{record id: {"model", "text"}} for the records of a batch that want a draft (none for pairwise)."""
    if kind == "pairwise":
        return {}
    want = [r for r in records if kind == "write" or any(c.status == "fail" for c in run_rules(spec, r))]
    convs = [draft_conversation(spec, [m.to_trl() for m in r.prompt_messages()]) for r in want]
    texts = drafter.draft_many(convs)
    return {r.id: {"model": drafter.name, "text": t} for r, t in zip(want, texts, strict=True) if t.strip()}


# ---------------------------------------------------------------- reading input


def read_records(paths: Iterable[str | Path], *, spec: Spec, ctx: RunContext) -> Iterator[Record]:
    """Our native JSONL records from `paths`; bad lines go to quarantine (step "label_push")."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise LabelingError(f"{path}: no such input file")
        for line, obj in read_jsonl(path):
            src = Source(file=str(path), line=line, format="jsonl")
            ctx.count("in:" + str(path))
            if isinstance(obj, LineError):
                ctx.quarantine(
                    step="label_push", reason=obj.reason, detail=obj.detail, source=src, original=obj.raw
                )
                continue
            try:
                rec = record_from_native(
                    obj, spec=spec.ref, source=None if isinstance(obj.get("source"), dict) else src
                )
            except (ValueError, TypeError) as err:
                ctx.quarantine(
                    step="label_push",
                    reason="bad_record",
                    detail=str(err).splitlines()[0],
                    source=src,
                    original=obj,
                )
                continue
            yield rec


# ---------------------------------------------------------------- push


def existing_ids(client: StudioClient, project_id: int) -> dict[str, int]:
    """curate record id -> task id, for every task the server holds in the project."""
    out: dict[str, int] = {}
    for t in client.task_data(project_id):
        rid = t["data"].get("curate_id")
        if rid:
            out.setdefault(rid, t["id"])
    return out


def push(
    spec: Spec,
    kind: str,
    *,
    client: StudioClient,
    records: Iterable[Record] | None = None,
    inputs: Iterable[str | Path] | None = None,
    overlap: int | None = None,
    batch_size: int = 1000,
    ctx: RunContext | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    max_batch_retries: int = 5,
    predictions: str = "failing",
    drafts: Drafter | None = None,
) -> PushResult:
    """Create/update the project for `spec` and `kind` and import the records it does not hold yet.

    `drafts` (curate.labeling.drafts.make_drafter) drafts an answer for every write task and for every review
    task whose response fails an automatic rule.
    """
    t0 = time.perf_counter()
    ctx = ctx or RunContext()
    if records is None:
        paths = list(inputs) if inputs is not None else spec.data_paths()
        if not paths:
            raise LabelingError(f"{spec.ref} lists no data files; pass --input FILE")
        records = read_records(paths, spec=spec, ctx=ctx)
    project, created = ensure_project(client, spec, kind, overlap=overlap)
    pid = int(project["id"])
    res = PushResult(
        project_id=pid, project_url=f"{client.url}/projects/{pid}/data", kind=kind, created_project=created
    )
    # what the server holds decides what to send (not local state); a new or empty project holds nothing
    known: dict[str, int] = {} if created or project.get("task_number") == 0 else existing_ids(client, pid)
    seen: set[str] = set()
    batch: list[Record] = []
    pending: list[Future[tuple[list[int], int, int]]] = []

    def send(tasks: list[dict[str, Any]], ids: list[str]) -> tuple[list[int], int, int]:
        """Import one batch; on a lost connection re-check the server and send only what it lacks."""
        already = retries = 0
        for attempt in range(max_batch_retries + 1):
            try:
                return client.import_tasks(pid, tasks), already, retries
            except TransientServerError as err:
                if attempt == max_batch_retries:
                    raise
                retries += 1
                delay = client.backoff * (2**attempt)
                log.warning(
                    "import of %d tasks failed (%s); re-checking the server in %.1f s", len(tasks), err, delay
                )
                time.sleep(delay)
                # the batch may have landed before the connection dropped: keep only what the server lacks
                held = existing_ids(client, pid)
                keep = [i for i, rid in enumerate(ids) if rid not in held]
                already += len(ids) - len(keep)
                tasks, ids = [tasks[i] for i in keep], [ids[i] for i in keep]
                if not tasks:
                    return [], already, retries
        raise AssertionError("unreachable")

    def settle() -> None:
        """Wait for the batch in flight and fold its outcome into the result."""
        while pending:
            got, already, retries = pending.pop().result()
            res.pushed += len(got)
            res.task_ids.extend(got)
            res.already += already
            res.retries += retries
            res.batches += 1
            if progress:
                progress("push", res.pushed + res.already, None)

    def flush(pool: ThreadPoolExecutor) -> None:
        # the next batch is built (rule checks, JSON) while the server stores the previous one
        if not batch:
            return
        drafted = _drafts(spec, kind, batch, drafts) if drafts is not None else {}
        res.drafts += len(drafted)
        judged = _judge_batch(gate, kind, batch)
        tasks = [
            to_task(
                spec,
                kind,
                r,
                predictions=predictions,
                draft=drafted.get(r.id),
                judged=judged.get(r.id),
                counting=counting,
            )
            for r in batch
        ]
        ids = [r.id for r in batch]
        batch.clear()
        settle()
        pending.append(pool.submit(send, tasks, ids))

    # judge rules: counting ones pre-annotate like code checks, the others are suggestions (curate.judge.gate)
    gate = (
        open_gate(spec, suggestions=True) if kind in ("review", "pairwise") and spec.judge_rules() else None
    )
    counting = gate.counting_ids if gate is not None else frozenset()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-push") as pool:
        try:
            for rec in records:
                res.records_in += 1
                if rec.spec is None:
                    rec = rec.model_copy(update={"spec": spec.ref})
                why = eligible(rec, kind)
                if why:
                    ctx.quarantine(
                        step="label_push",
                        reason=why,
                        detail=f"a {rec.kind} record cannot be labeled as {kind}",
                        record=rec,
                    )
                    continue
                if kind == "write" and isinstance(rec, SFTRecord) and rec.response_text():
                    rec = prompt_record(rec)  # one task per prompt: records that share it are duplicates here
                if rec.id in seen:
                    res.duplicates_in_input += 1
                    continue
                seen.add(rec.id)
                res.eligible += 1
                if rec.id in known:
                    res.already += 1
                    continue
                batch.append(rec)
                if len(batch) >= batch_size:
                    flush(pool)
            flush(pool)
            settle()
        finally:
            for f in pending:
                f.cancel()
            if gate is not None:
                gate.close()
    res.quarantined = ctx.n_quarantined
    res.seconds = round(time.perf_counter() - t0, 3)
    log.info("pushed %d tasks to project %d (%d already there)", res.pushed, pid, res.already)
    return res


__all__ = [
    "PushResult",
    "ServerError",
    "ensure_project",
    "existing_ids",
    "find_project",
    "push",
    "read_records",
    "to_task",
]
