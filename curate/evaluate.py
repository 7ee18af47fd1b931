"""Evaluate a model with the spec's own rules: held-out pass rates, failure categories, regressions, comparisons.

    >>> from curate.spec import load_spec
    >>> from curate.evaluate import EvalOptions, evaluate_model, compare
    >>> spec = load_spec("specs/support-triage")
    >>> before = evaluate_model(spec, "base-model/", data="out/support-triage/v1")   # doctest: +SKIP
    >>> after = evaluate_model(spec, "models/sft", data="out/support-triage/v1")     # doctest: +SKIP
    >>> compare(before, after)["rules"][0]["delta"]                                  # doctest: +SKIP

The held-out prompts are the `test` splits of the export (sft/ and dpo/, deduplicated by prompt), or a frozen
held-out file (`heldout_file`: rows with a `reference` intent give the intent accuracy). Responses are generated
greedily, in batches with left padding, then every automatic rule of the spec runs over each one, through the
spec's compiled rules (`curate.checks.compiled`: the same verdicts as `check_response`, several times faster).
`bootstrap_ci` gives a percentile bootstrap interval for any per-prompt rate. Regression checks: a sample of the
MT-bench and Vicuna-bench questions (shipped in curate/assets/) must get non-empty, non-refusing, non-degenerate
answers, and prompts tagged `safe` (or, when none is, the `typical` ones) give the over-refusal rate.

Failures can go back to labeling (`write_to_label`): they are written as records marked `tags: ["heldout"]` and
`labels: {"heldout": true}`, so that a build never moves a held-out prompt into training.

Failures on training prompts are the model's own mistakes, the rejected answers DPO learns most from
(`write_negatives`, `curate eval --prompts TRAIN.jsonl --negatives-out NEG.jsonl`): each failing response becomes a
labeled negative (`violates` = the automatic rules it fails, tag `eval-failure`), and the next `curate build` with
that file among its data pairs it with a passing answer to the same prompt: a certified pair. Never use held-out
prompts for it (the CLI refuses `--negatives-out` without `--prompts`; a build with the held-out lock keeps
near-copies of held-out prompts out of training anyway).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from curate._version import __version__
from curate.errors import EvalError
from curate.evaluation.compare import REPORT_KIND, compare, load_report
from curate.evaluation.general import general_problem, general_questions, score_general
from curate.evaluation.generation import (
    Generator,
    Progress,
    common_prefix_len,  # noqa: F401 (moved; tests import it from here)
)
from curate.evaluation.prompts import Prompt, heldout_file, heldout_prompts, prompt_key
from curate.evaluation.scoring import bootstrap_ci, paired_bootstrap_ci, score
from curate.records import (
    CheckResult,
    LineError,
    Message,
    SFTRecord,
    Source,
    dump_record,
    read_jsonl,
    write_atomic,
    write_jsonl_atomic,
)
from curate.spec import Spec

log = logging.getLogger(__name__)

HELDOUT_TAG = "heldout"


@dataclass
class EvalOptions:
    batch_size: int = 8
    max_new_tokens: int = 256
    general: int = 16  # MT-bench/Vicuna questions to ask (0: no general-ability check)
    general_max_new_tokens: int = 128
    limit: int | None = None  # only the first N held-out prompts
    device: str = "auto"


def _header(spec: Spec, **extra: Any) -> dict[str, Any]:
    return {
        "kind": REPORT_KIND,
        "format_version": 1,
        "tool": {"name": "curate", "version": __version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "spec": spec.ref,
        "spec_sha256": spec.digest,
        **_contract(spec),
        **extra,
    }


def _contract(spec: Spec) -> dict[str, Any]:
    """The rule hashes this evaluation measured (curate.versioning): `curate spec diff` finds stale
    results."""
    from curate.versioning import spec_version

    v = spec_version(spec)
    return {"rules_sha": v["rules"], "spec_version_sha": v["sha"]}


def _resolve_data(spec: Spec, data: str | Path | None) -> Path:
    export = Path(data) if data is not None else spec.default_out_dir()
    if not export.is_dir():
        raise EvalError(f"no export folder at {export}; run `curate build` for {spec.ref} or pass --data")
    return export


def evaluate_model(
    spec: Spec,
    model: str | Path,
    *,
    data: str | Path | None = None,
    opts: EvalOptions | None = None,
    progress: Progress | None = None,
    prompts: list[Prompt] | None = None,
) -> dict[str, Any]:
    """Generate for the held-out prompts with `model`, score them with the spec; the eval report dict.

    `prompts` (e.g. `heldout_file(...)`) replaces the export's test splits."""
    opts = opts or EvalOptions()
    export: Path | str | None = None
    if prompts is None:
        export = _resolve_data(spec, data)
        prompts = heldout_prompts(export, spec)
    if opts.limit is not None:
        prompts = prompts[: opts.limit]
    t0 = time.perf_counter()
    gen = Generator(model, device=opts.device)
    t_load = time.perf_counter() - t0
    responses = gen.generate(
        [p.messages for p in prompts],
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
        progress=progress,
    )
    t_gen = time.perf_counter() - t0 - t_load
    questions = general_questions(opts.general)
    general = None
    if questions:
        answers = gen.generate(
            [[{"role": "user", "content": q["question"]}] for q in questions],
            max_new_tokens=opts.general_max_new_tokens,
            batch_size=opts.batch_size,
            progress=progress,
            step="general",
        )
        general = score_general(questions, answers)
    report = _header(
        spec,
        model=str(model),
        outputs_file=None,
        data=str(export) if export else None,
        settings={**asdict(opts), "device": gen.device, "decoding": "greedy"},
    )
    report.update(score(spec, prompts, responses))
    report["general"] = general
    report["timing"] = {
        "load_s": round(t_load, 2),
        "generate_s": round(t_gen, 2),
        "total_s": round(time.perf_counter() - t0, 2),
    }
    return report


def evaluate_outputs(spec: Spec, outputs: str | Path, *, data: str | Path | None = None) -> dict[str, Any]:
    """Score responses produced elsewhere: JSONL rows `{"response", "messages"|"prompt"|"id", "category"?, "tags"?}`.

    A row with only an `id` takes its prompt from the held-out split (`--data`, default the spec's build).
    """
    outputs = Path(outputs)
    if not outputs.exists():
        raise EvalError(f"{outputs} does not exist")
    known: dict[str, Prompt] | None = None
    prompts, responses, bad = [], [], []
    for line, obj in read_jsonl(outputs):
        where = f"{outputs}:{line}"
        if isinstance(obj, LineError):
            bad.append({"where": where, "reason": obj.reason, "detail": obj.detail})
            continue
        if not isinstance(obj.get("response"), str):
            bad.append({"where": where, "reason": "no_response", "detail": "no string `response` field"})
            continue
        msgs: list[dict[str, Any]] | None = None
        if isinstance(obj.get("messages"), list):
            msgs = [m for m in obj["messages"]]
            if msgs and msgs[-1].get("role") == "assistant":
                msgs = msgs[:-1]
        elif isinstance(obj.get("prompt"), list):
            msgs = list(obj["prompt"])
        elif isinstance(obj.get("prompt"), str):
            msgs = [{"role": "user", "content": obj["prompt"]}]
        base = None
        if "id" in obj:
            if known is None:
                known = {}
                for p in heldout_prompts(_resolve_data(spec, data), spec):
                    known[p.id] = p
                    if p.row_id:
                        known[p.row_id] = p
            base = known.get(str(obj["id"]))
            if base is None and msgs is None:
                bad.append(
                    {
                        "where": where,
                        "reason": "unknown_id",
                        "detail": f"id {obj['id']!r} is not a held-out prompt of the export",
                    }
                )
                continue
        if msgs is None and base is None:
            bad.append({"where": where, "reason": "no_prompt", "detail": "no messages, prompt or id"})
            continue
        msgs = msgs if msgs is not None else base.messages  # type: ignore[union-attr]
        prompts.append(
            Prompt(
                id=base.id if base else prompt_key(msgs),
                messages=msgs,
                category=str(obj.get("category", base.category if base else "typical")),
                tags=[str(t) for t in obj.get("tags", base.tags if base else [])],
                where=where,
            )
        )
        responses.append(obj["response"])
    if not prompts:
        raise EvalError(f"{outputs}: no usable rows ({len(bad)} bad)")
    report = _header(
        spec, model=None, outputs_file=str(outputs), data=str(data) if data else None, settings={}
    )
    report.update(score(spec, prompts, responses))
    report["bad_lines"] = bad
    report["general"] = None
    return report


# ---------------------------------------------------------------- failures back to labeling


def failure_records(spec: Spec, report: dict[str, Any], *, negatives: bool = False) -> list[SFTRecord]:
    """The failing responses as records. By default they are held-out responses for `curate label push`, marked
    held-out (never train on them). With `negatives=True` the prompts were training prompts: each record is a
    labeled negative instead (`violates` = the automatic rules its response fails, tag `eval-failure`, not
    held-out), for a build to pair with a passing answer to the same prompt."""
    recs = []
    who = report.get("model") or report.get("outputs_file")
    for it in report.get("items", []):
        if not it["failed"]:
            continue
        file, _, line = (it.get("where") or "").rpartition(":")
        msgs = [Message.model_validate(m) for m in it["prompt"]] + [
            Message(role="assistant", content=it["response"])
        ]
        mark = ["eval-failure"] if negatives else [HELDOUT_TAG, "eval-failure"]
        tags = tuple(
            dict.fromkeys([*(t for t in it.get("tags", []) if not negatives or t != HELDOUT_TAG), *mark])
        )
        cats = {r.id: r.category for r in spec.rules}
        eval_label = {"model": who, "prompt_id": it["id"], "failed": sorted(it["failed"])}
        checks = tuple(
            CheckResult(
                rule=rule, category=cats.get(rule, "format"), status=status, detail=it["failed"].get(rule, "")
            )
            for rule, status in it["results"].items()
        )
        recs.append(
            SFTRecord.build(
                messages=tuple(msgs),
                spec=spec.ref,
                category=it.get("category", "typical"),
                tags=tags,
                labels={"eval": eval_label} if negatives else {"heldout": True, "eval": eval_label},
                violates=tuple(sorted(it["failed"])) if negatives else (),
                checks=checks,
                source=Source(
                    file=file or None, line=int(line) if line.isdigit() else None, format="curate-eval"
                ),
            )
        )
    return recs


def write_to_label(spec: Spec, report: dict[str, Any], path: str | Path) -> int:
    """Write the failures as JSONL records (atomically); returns how many."""
    recs = failure_records(spec, report)
    return write_jsonl_atomic(path, [dump_record(r) for r in recs])


def write_negatives(spec: Spec, report: dict[str, Any], path: str | Path) -> int:
    """Write the failures on training prompts as labeled negatives (JSONL, atomically); returns how many."""
    recs = failure_records(spec, report, negatives=True)
    return write_jsonl_atomic(path, [dump_record(r) for r in recs])


def write_report(report: dict[str, Any], path: str | Path) -> None:
    write_atomic(
        path, orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str)
    )


__all__ = [
    "HELDOUT_TAG",
    "EvalOptions",
    "Generator",
    "Prompt",
    "bootstrap_ci",
    "compare",
    "evaluate_model",
    "evaluate_outputs",
    "failure_records",
    "general_problem",
    "general_questions",
    "heldout_file",
    "heldout_prompts",
    "load_report",
    "paired_bootstrap_ci",
    "score",
    "write_negatives",
    "write_report",
    "write_to_label",
]
