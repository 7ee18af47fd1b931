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
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import importlib.resources
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate import __version__
from curate.checks.compiled import compile_rules
from curate.checks.runner import RuleStats, add_result, by_category, new_report
from curate.checks.semantic_checks import REFUSAL_PHRASES
from curate.checks.text_checks import phrase_regex
from curate.errors import EvalError, TrainError
from curate.records import (
    CheckResult,
    LineError,
    Message,
    SFTRecord,
    Source,
    dump_record,
    normalize_text,
    read_jsonl,
    write_atomic,
    write_jsonl_atomic,
)
from curate.spec import Spec

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]

HELDOUT_TAG = "heldout"
REPORT_KIND = "curate-eval"


@dataclass
class EvalOptions:
    batch_size: int = 8
    max_new_tokens: int = 256
    general: int = 16  # MT-bench/Vicuna questions to ask (0: no general-ability check)
    general_max_new_tokens: int = 128
    limit: int | None = None  # only the first N held-out prompts
    device: str = "auto"


@dataclass
class Prompt:
    """One held-out prompt: the messages before the answer, plus what the rules need to know about it."""

    id: str
    messages: list[dict[str, Any]]
    category: str = "typical"
    tags: list[str] = field(default_factory=list)
    where: str = ""
    row_id: str | None = None
    reference: dict[str, Any] | None = None  # e.g. {"intent": ...} of a frozen held-out file

    def user_text(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.messages if m.get("role") == "user")


def prompt_key(messages: list[dict[str, Any]]) -> str:
    """A stable id for a prompt: sha256 of its normalized non-system turns, 16 hex chars."""
    h = hashlib.sha256()
    for m in messages:
        if m.get("role") == "system":
            continue
        h.update(f"{m.get('role')}:{normalize_text(str(m.get('content', '')))}\x1f".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- held-out prompts


def record_meta(spec: Spec | None) -> dict[str, tuple[str, list[str]]]:
    """record id -> (case category, tags) for the spec's own data files.

    Export rows carry only TRL columns and an `id`; the rules' `when: {category|tag}` conditions and the
    over-refusal rate need the category and tags back, so they are looked up by record id.
    """
    from curate.records import record_from_native

    meta: dict[str, tuple[str, list[str]]] = {}
    if spec is None:
        return meta
    for path in spec.data_paths():
        if not path.exists():
            continue
        for _line, obj in read_jsonl(path):
            if isinstance(obj, LineError):
                continue
            try:
                rec = record_from_native(obj, spec=spec.ref)
            except Exception:  # noqa: BLE001, S112 - a bad line has no metadata to give
                continue
            meta[rec.id] = (rec.category, list(rec.tags))
    return meta


def heldout_prompts(export: str | Path, spec: Spec | None = None) -> list[Prompt]:
    """The prompts of the export's test splits (sft/test.jsonl, then dpo/test.jsonl), each prompt once.

    Category and tags come from the row when it has them, else from the spec's data (matched by record id).
    """
    export = Path(export)
    meta = record_meta(spec)
    from curate.steps.export import read_rows, split_file

    files = [f for f in (split_file(export / "sft", "test"), split_file(export / "dpo", "test")) if f]
    if not files:
        raise EvalError(
            f"no held-out split in {export} (sft/test.jsonl or dpo/test.jsonl, or their Parquet files); run "
            "`curate build` or pass --data EXPORT_DIR"
        )
    seen: set[str] = set()
    out: list[Prompt] = []
    for f in files:
        for line, obj in read_rows(f):
            where = f"{f}:{line}"
            if isinstance(obj, LineError):
                raise EvalError(f"{where}: {obj.reason}: {obj.detail}; rebuild the export")
            if "messages" in obj:
                msgs = list(obj["messages"])
                if msgs and msgs[-1].get("role") == "assistant":
                    msgs = msgs[:-1]
            elif "prompt" in obj:
                msgs = (
                    list(obj["prompt"])
                    if isinstance(obj["prompt"], list)
                    else [{"role": "user", "content": str(obj["prompt"])}]
                )
            else:
                raise EvalError(f"{where}: a row with neither messages nor prompt")
            key = prompt_key(msgs)
            if key in seen:
                continue
            seen.add(key)
            cat, tags = meta.get(str(obj.get("id", "")), ("typical", []))
            out.append(
                Prompt(
                    id=key,
                    messages=msgs,
                    category=str(obj.get("category", cat)),
                    tags=[str(t) for t in obj.get("tags", tags)],
                    where=where,
                    row_id=str(obj["id"]) if "id" in obj else None,
                )
            )
    if not out:
        raise EvalError(f"the held-out split in {export} is empty")
    return out


def heldout_file(path: str | Path, spec: Spec | None = None) -> list[Prompt]:
    """The prompts of a frozen held-out JSONL file: rows `{"messages" | "prompt", "id"?, "category"?, "tags"?,
    "reference"?}` (a trailing assistant turn is dropped). The spec's system prompt is put first where a row has no
    system turn, as the export does; `reference` (e.g. {"intent": "refund_request"}) is kept for scoring."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path} does not exist; pass a held-out JSONL file")
    system = spec.system_prompt.strip() if spec is not None and spec.system_prompt else ""
    out: list[Prompt] = []
    seen: set[str] = set()
    for line, obj in read_jsonl(path):
        where = f"{path}:{line}"
        if isinstance(obj, LineError):
            raise EvalError(f"{where}: {obj.reason}: {obj.detail}; fix the held-out file")
        if isinstance(obj.get("messages"), list):
            msgs = list(obj["messages"])
        elif isinstance(obj.get("prompt"), list):
            msgs = list(obj["prompt"])
        elif isinstance(obj.get("prompt"), str):
            msgs = [{"role": "user", "content": obj["prompt"]}]
        else:
            raise EvalError(f"{where}: a row with neither messages nor prompt")
        if msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
        if not msgs or msgs[-1].get("role") != "user":
            raise EvalError(f"{where}: the prompt must end with a user turn")
        if system and msgs[0].get("role") != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        key = prompt_key(msgs)
        if key in seen:
            raise EvalError(f"{where}: the same prompt twice in a held-out file")
        seen.add(key)
        ref = obj.get("reference")
        out.append(
            Prompt(
                id=key,
                messages=msgs,
                category=str(obj.get("category", "typical")),
                tags=[str(t) for t in obj.get("tags", [])],
                where=where,
                row_id=str(obj["id"]) if "id" in obj else None,
                reference=ref if isinstance(ref, dict) else None,
            )
        )
    if not out:
        raise EvalError(f"{path} holds no prompts")
    return out


# ---------------------------------------------------------------- generation


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
    ids: list[int] = []
    for v in (tokenizer.eos_token_id, model.generation_config.eos_token_id):
        for i in v if isinstance(v, list) else [v]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        i = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if isinstance(i, int) and i not in ids:
            ids.append(i)
    return ids


class Generator:
    """A loaded local model that answers conversations greedily, in left-padded batches."""

    def __init__(self, model: str | Path, *, device: str = "auto") -> None:
        from curate.train import load_model, load_tokenizer, pick_device, quiet_hf, resolve_model

        try:
            ref = resolve_model(model)
        except TrainError as err:
            raise EvalError(str(err)) from None
        self.device = pick_device(device)
        with quiet_hf():
            try:
                self.tokenizer = load_tokenizer(ref)
                self.model = load_model(ref, merge=True, device=self.device)
            except TrainError as err:
                raise EvalError(str(err)) from None
        if not self.tokenizer.chat_template:
            raise EvalError(f"the tokenizer of {model} has no chat template; evaluate a chat/instruct model")
        self.model.eval()
        self.tokenizer.padding_side = "left"
        self.eos = _eos_ids(self.tokenizer, self.model)
        self.name = str(model)

    def generate(
        self,
        conversations: list[list[dict[str, Any]]],
        *,
        max_new_tokens: int,
        batch_size: int,
        progress: Progress | None = None,
        step: str = "generate",
        shared_prefix: bool = True,
    ) -> list[str]:
        """Greedy answers, in batches of similar length; stops each answer at an end-of-turn token.

        `shared_prefix`: the tokens every conversation starts with (the system prompt) are run through the model
        once; each batch continues from a copy of that cache, its rows padded between the prefix and their own
        part (positions come from the attention mask, so each row sees what it would see alone).
        """
        import torch

        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        n_prefix = common_prefix_len(ids) if shared_prefix and len(ids) > 1 else 0
        prefix_cache = self._prefix_cache(ids[0][:n_prefix]) if n_prefix >= 8 else None
        if prefix_cache is None:
            n_prefix = 0
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # similar lengths share a batch
        out: list[str] = [""] * len(ids)
        pad = self.tokenizer.pad_token_id
        done = 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            rows, masks = [], []
            for i in idx:  # [prefix][pad ...][rest of the row]: left padding after the shared prefix
                gap = width - len(ids[i])
                rows.append(ids[i][:n_prefix] + [pad] * gap + ids[i][n_prefix:])
                masks.append([1] * n_prefix + [0] * gap + [1] * (len(ids[i]) - n_prefix))
            input_ids = torch.tensor(rows, device=self.device)
            kw: dict[str, Any] = {}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(idx))
                kw["past_key_values"] = cache
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.tensor(masks, device=self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    eos_token_id=self.eos,
                    pad_token_id=pad,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    **kw,
                )
            new = gen[:, width:]
            for j, i in enumerate(idx):
                out[i] = self.tokenizer.decode(new[j], skip_special_tokens=True).strip()
            done += len(idx)
            if progress is not None:
                progress(step, done, len(ids))
        return out

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """The key/value cache of `prefix` (batch 1), or None when the model does not return one."""
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True)
        cache = getattr(out, "past_key_values", None)
        return cache if hasattr(cache, "batch_repeat_interleave") else None


def common_prefix_len(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix of token lists, leaving at least one token of each list after it."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


# ---------------------------------------------------------------- general-ability regressions


def general_questions(n: int) -> list[dict[str, Any]]:
    """`n` MT-bench and Vicuna-bench questions (first turns), spread evenly over both files and their categories."""
    if n <= 0:
        return []
    root = importlib.resources.files("curate") / "assets"
    per_file: list[list[dict[str, Any]]] = []
    for name in ("mt_bench_question.jsonl", "vicuna_bench_question.jsonl"):
        rows = [orjson.loads(line) for line in (root / name).read_bytes().splitlines() if line.strip()]
        per_file.append(
            [
                {
                    "id": f"{name.split('_')[0]}-{r['question_id']}",
                    "category": r.get("category", ""),
                    "question": r["turns"][0],
                }
                for r in rows
            ]
        )
    out = []
    for k, rows in enumerate(per_file):
        want = n // 2 + (n % 2 if k == 0 else 0)
        want = min(want, len(rows))
        out += [rows[int(i * len(rows) / want)] for i in range(want)] if want else []
    return out


_REFUSAL = phrase_regex(tuple(REFUSAL_PHRASES))


def general_problem(text: str) -> str | None:
    """None for an acceptable general answer, else `empty`, `refusal` or `degenerate`."""
    t = text.strip()
    if len(t) < 2:
        return "empty"
    if _REFUSAL.search(t):
        return "refusal"
    if re.search(r"(.)\1{24,}", t):
        return "degenerate"
    words = t.split()
    if len(words) >= 24:
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(grams)) / len(grams) < 0.5:
            return "degenerate"
    lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
    if len(lines) >= 6 and Counter(lines).most_common(1)[0][1] >= 4:
        return "degenerate"
    return None


def score_general(questions: list[dict[str, Any]], answers: list[str]) -> dict[str, Any]:
    problems: Counter[str] = Counter()
    failures = []
    for q, a in zip(questions, answers):
        p = general_problem(a)
        if p:
            problems[p] += 1
            failures.append({"id": q["id"], "question": q["question"], "answer": a[:400], "problem": p})
    n = len(questions)
    bad = {f["id"] for f in failures}
    return {
        "questions": n,
        "ok": n - sum(problems.values()),
        "rate": (n - sum(problems.values())) / n if n else None,
        "problems": dict(problems),
        "failures": failures,
        "per_question": [q["id"] not in bad for q in questions],
    }


# ---------------------------------------------------------------- scoring


def _valid_json(text: str) -> bool:
    try:
        orjson.loads(text.strip().encode("utf-8"))
    except orjson.JSONDecodeError:
        return False
    return True


def _answer_intent(text: str) -> str | None:
    """The `intent` value of a JSON answer, or None."""
    try:
        doc = orjson.loads(text.strip().encode("utf-8"))
    except orjson.JSONDecodeError:
        return None
    v = doc.get("intent") if isinstance(doc, dict) else None
    return v if isinstance(v, str) else None


def score(
    spec: Spec,
    prompts: list[Prompt],
    responses: list[str],
    *,
    check: Callable[..., list[CheckResult]] | None = None,
    gate: Any = None,
) -> dict[str, Any]:
    """Every automatic rule over every response; the per-rule table, categories, examples and items.

    Judge rules count like code checks only where their calibration passes the gate (`gate`, default
    `curate.judge.gate.open_gate(spec)`); the report's `judge_gate` says which did and why the others did not.

    `check(response, user_text, category, tags) -> [CheckResult]` defaults to the spec's compiled rules
    (`CompiledRules.results`, equal to `curate.checks.check_response`). Prompts with a reference intent give
    `intent_accuracy` (the answer's `intent` equals it).
    """
    check = check or compile_rules(spec).results
    report = new_report(spec)
    judged, gate_info = _judged(spec, prompts, responses, gate)
    for rule in spec.judge_rules():
        if gate_info["rules"][rule.id]["status"] == "automatic":
            report.rules[rule.id] = RuleStats(rule.id, rule.category)
    items = []
    safe = [i for i, p in enumerate(prompts) if "safe" in p.tags]
    basis = "tag:safe"
    if not safe:
        safe = [i for i, p in enumerate(prompts) if p.category == "typical"]
        basis = "category:typical (no prompt is tagged safe)"
    safe_set = set(safe)
    is_json = spec.output.format == "json"
    for i, (p, resp) in enumerate(zip(prompts, responses)):
        results = check(resp, p.user_text(), p.category, frozenset(p.tags))
        if judged:
            results = list(results) + judged[i]
        add_result(report, results, where=p.where or p.id, response=resp, expected_fail=None)
        item = {
            "id": p.id,
            "where": p.where,
            "category": p.category,
            "tags": p.tags,
            "prompt": p.messages,
            "response": resp,
            "results": {r.rule: r.status for r in results},
            "failed": {r.rule: r.detail for r in results if r.status == "fail"},
            "valid_json": _valid_json(resp) if is_json else None,
            "refused": bool(_REFUSAL.search(resp)) if i in safe_set else None,
        }
        want = (p.reference or {}).get("intent")
        if want is not None:
            got = _answer_intent(resp)
            item.update(reference_intent=want, intent=got, intent_ok=got == want)
        items.append(item)
    d = report.as_dict()
    d.pop("unexpected", None)
    n = len(responses)
    refused = [prompts[i].id for i in safe if items[i]["refused"]]
    scored = [it for it in items if "intent_ok" in it]
    correct = sum(it["intent_ok"] for it in scored)
    return {
        **d,
        "by_category": by_category(report),
        "valid_json_rate": (sum(it["valid_json"] for it in items) / n if n else None) if is_json else None,
        "intent_accuracy": {
            "prompts": len(scored),
            "correct": correct,
            "rate": correct / len(scored) if scored else None,
        }
        if scored
        else None,
        "over_refusal": {
            "basis": basis,
            "prompts": len(safe),
            "refused": len(refused),
            "rate": len(refused) / len(safe) if safe else None,
            "refused_ids": refused[:50],
        },
        "items": items,
        "judge_gate": gate_info,
    }


def _judged(
    spec: Spec, prompts: list[Prompt], responses: list[str], gate: Any
) -> tuple[list[list[CheckResult]] | None, dict[str, Any]]:
    """The counting judge rules' results per response (None when no judge rule counts) and the gate's
    summary."""
    from curate.judge.gate import judge_results, open_gate

    own = gate is None
    gate = open_gate(spec) if own else gate
    try:
        got = None
        if gate.counting:
            got = [
                r for r, _ in judge_results(gate, [(p.user_text(), x) for p, x in zip(prompts, responses)])
            ]
        return got, gate.summary()
    finally:
        if own:
            gate.close()


def bootstrap_ci(
    values: list[float] | list[bool], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-prompt values (e.g. 1 = passed every rule): `n_boot`
    resamples of the prompts with replacement, seeded; None for no values."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_bootstrap_ci(
    a: list[float] | list[bool],
    b: list[float] | list[bool],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Interval of mean(b) - mean(a) over the same prompts (resampled together): `a[i]` and `b[i]` belong to the
    same prompt."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired values of different lengths ({len(a)} vs {len(b)})")
    return bootstrap_ci(
        list(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)),
        n_boot=n_boot,
        seed=seed,
        level=level,
    )


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


# ---------------------------------------------------------------- comparison


def load_report(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        rep = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise EvalError(f"{p} does not exist") from None
    except orjson.JSONDecodeError as err:
        raise EvalError(f"{p} is not JSON ({err}); pass files written by `curate eval --json-out`") from None
    if not isinstance(rep, dict) or rep.get("kind") != REPORT_KIND:
        raise EvalError(f"{p} is not a curate eval report (written by `curate eval --json-out`)")
    rep.setdefault("path", str(p))
    return rep


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """B relative to A (baseline vs tuned): per-rule pass rates and deltas, headline figures, flipped prompts."""
    name_a, name_b = a.get("spec", "").split("@")[0], b.get("spec", "").split("@")[0]
    if name_a != name_b:
        raise EvalError(f"cannot compare evaluations of different specs ({a.get('spec')} vs {b.get('spec')})")
    ra = {r["rule"]: r for r in a.get("rules", [])}
    rb = {r["rule"]: r for r in b.get("rules", [])}
    rows = []
    for rule in list(ra) + [r for r in rb if r not in ra]:
        x, y = ra.get(rule), rb.get(rule)
        pa, pb = (x or {}).get("pass_rate"), (y or {}).get("pass_rate")
        rows.append(
            {
                "rule": rule,
                "category": (x or y or {}).get("category"),
                "a": pa,
                "b": pb,
                "delta": _delta(pa, pb),
                "a_n": (x["pass"] + x["fail"]) if x else 0,
                "b_n": (y["pass"] + y["fail"]) if y else 0,
            }
        )
    heads = {}
    for key, get in (
        ("overall", lambda r: r.get("overall_pass_rate")),
        ("valid_json", lambda r: r.get("valid_json_rate")),
        ("over_refusal", lambda r: (r.get("over_refusal") or {}).get("rate")),
        ("general", lambda r: (r.get("general") or {}).get("rate")),
    ):
        heads[key] = {"a": get(a), "b": get(b), "delta": _delta(get(a), get(b))}
    ia = {i["id"]: i for i in a.get("items", [])}
    fixed, broken = [], []
    for it in b.get("items", []):
        old = ia.get(it["id"])
        if old is None:
            continue
        if old["failed"] and not it["failed"]:
            fixed.append({"id": it["id"], "where": it.get("where"), "was": sorted(old["failed"])})
        elif not old["failed"] and it["failed"]:
            broken.append(
                {
                    "id": it["id"],
                    "where": it.get("where"),
                    "now": it["failed"],
                    "response": it["response"][:300],
                }
            )
    fa, fb = a.get("failures_by_category", {}), b.get("failures_by_category", {})
    return {
        "spec": b.get("spec"),
        "a": {
            "model": a.get("model") or a.get("outputs_file"),
            "path": a.get("path"),
            "responses": a.get("responses"),
        },
        "b": {
            "model": b.get("model") or b.get("outputs_file"),
            "path": b.get("path"),
            "responses": b.get("responses"),
        },
        "same_prompts": sorted(ia) == sorted(i["id"] for i in b.get("items", [])),
        "headline": heads,
        "rules": rows,
        "failures_by_category": {
            c: {"a": fa.get(c, 0), "b": fb.get(c, 0)} for c in sorted(set(fa) | set(fb))
        },
        "fixed": fixed[:50],
        "regressed": broken[:50],
        "n_fixed": len(fixed),
        "n_regressed": len(broken),
    }


# ---------------------------------------------------------------- failures back to labeling


def failure_records(spec: Spec, report: dict[str, Any]) -> list[SFTRecord]:
    """The failing held-out responses as records for `curate label push`, marked held-out (never train on them)."""
    recs = []
    who = report.get("model") or report.get("outputs_file")
    for it in report.get("items", []):
        if not it["failed"]:
            continue
        file, _, line = (it.get("where") or "").rpartition(":")
        msgs = [Message.model_validate(m) for m in it["prompt"]] + [
            Message(role="assistant", content=it["response"])
        ]
        tags = tuple(dict.fromkeys([*it.get("tags", []), HELDOUT_TAG, "eval-failure"]))
        cats = {r.id: r.category for r in spec.rules}
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
                labels={
                    "heldout": True,
                    "eval": {"model": who, "prompt_id": it["id"], "failed": sorted(it["failed"])},
                },
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
    "write_report",
    "write_to_label",
]
