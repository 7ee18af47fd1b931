"""Judges (local model, OpenAI-compatible endpoint), the judge prompt, verdict parsing and the verdict cache."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from curate.errors import CurateError
from curate.spec import JudgeCheck, Rule, Spec
from curate.versioning import rule_hash

log = logging.getLogger(__name__)
PROMPT_VERSION = "1"  # part of every judge id: a new prompt never reuses old cached verdicts
SYSTEM = (
    "You are a strict grader. You read one rule and one assistant response and decide whether the response "
    "follows the rule. Answer with PASS or FAIL on the first line, then one short sentence saying why."
)


class JudgeError(CurateError):
    """A judge cannot run: no model configured, the model does not load, the endpoint fails."""


@dataclass(frozen=True)
class Verdict:
    rule: str
    passed: bool | None  # None: the judge gave no verdict (unparseable answer)
    reason: str
    judge: str
    cached: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.passed is None else ("pass" if self.passed else "fail")

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "status": self.status,
            "reason": self.reason,
            "judge": self.judge,
            "cached": self.cached,
        }


def judge_prompt(rule: Rule, response: str, user_text: str = "") -> list[dict[str, str]]:
    """The chat messages a judge reads for one rule and one response."""
    check = rule.check
    assert isinstance(check, JudgeCheck), rule.id
    parts = [f"Rule: {' '.join(rule.says.split())}", f"What passes and what fails: {check.rubric.strip()}"]
    for label, examples in (("passes", check.pass_examples), ("fails", check.fail_examples)):
        for ex in examples[:2]:
            parts.append(f"Example that {label}: {ex.strip()}")
    if user_text.strip():
        parts.append(f"The customer wrote:\n{user_text.strip()}")
    parts.append(f"The response to grade:\n{response.strip()}")
    parts.append("Does the response follow the rule? Answer PASS or FAIL, then why.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_verdict(text: str) -> tuple[bool | None, str]:
    """(passed, reason) from a judge's answer: the first PASS or FAIL word decides; None when neither
    occurs."""
    import re

    m = re.search(r"\b(PASS(?:ES|ED)?|FAIL(?:S|ED)?)\b", text, flags=re.IGNORECASE)
    if not m:
        return None, f"no PASS/FAIL in the judge's answer: {text.strip()[:120]!r}"
    reason = text[m.end() :].lstrip(" \t\r\n:.-–—").strip()
    return m.group(1).upper().startswith("PASS"), " ".join(reason.split())[:200]


def response_hash(response: str, user_text: str = "") -> str:
    """The hash of a response in its context (what the customer wrote is part of what the judge reads)."""
    return hashlib.sha256(json.dumps([user_text, response]).encode("utf-8")).hexdigest()[:16]


class Judge(Protocol):
    id: str

    def judge(self, rule: Rule, response: str, user_text: str = "") -> tuple[bool | None, str]: ...


# ---------------------------------------------------------------- local model (transformers; HF folder or GGU


class LocalJudge:
    """A local chat model; the verdict is the likelier continuation, "PASS" or "FAIL", after the judge prompt.

    Scoring the two answers instead of sampling text means a small model always gives a verdict, greedily and
    deterministically; the reason is the probability it gave PASS."""

    def __init__(self, model: str | Path, *, gguf_file: str | None = None, device: str = "cpu") -> None:
        from curate.errors import TrainError
        from curate.training.models import load_model, load_tokenizer, pick_device, quiet_hf, resolve_model

        target = Path(model) / gguf_file if gguf_file else Path(model)
        try:
            ref = resolve_model(target)
            self.device = pick_device(device)
            with quiet_hf():
                self.tokenizer = load_tokenizer(ref)
                self.model = load_model(ref, merge=True, device=self.device)
        except TrainError as err:
            raise JudgeError(f"judge model: {err}") from None
        if not self.tokenizer.chat_template:
            raise JudgeError(f"the tokenizer of {target} has no chat template; a judge needs a chat model")
        self.model.eval()
        name = f"{ref.path.name}/{ref.gguf_file}" if ref.gguf_file else ref.path.name
        self.id = f"local:{name}:logprob:p{PROMPT_VERSION}"
        self._answers = [
            self.tokenizer("PASS", add_special_tokens=False)["input_ids"],
            self.tokenizer("FAIL", add_special_tokens=False)["input_ids"],
        ]

    def judge(self, rule: Rule, response: str, user_text: str = "") -> tuple[bool | None, str]:
        import torch

        text = self.tokenizer.apply_chat_template(
            judge_prompt(rule, response, user_text), tokenize=False, add_generation_prompt=True
        )
        prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        scores = []
        with torch.no_grad():
            # the prompt once (it is nearly all the work); each answer's later tokens on a copy of its cache
            out = self.model(input_ids=torch.tensor([prompt], device=self.device), use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            for answer in self._answers:
                score = float(first[answer[0]])
                if len(answer) > 1:
                    more = (
                        self.model(
                            input_ids=torch.tensor([answer[:-1]], device=self.device),
                            past_key_values=copy.deepcopy(out.past_key_values),
                            use_cache=True,
                        )
                        .logits[0]
                        .float()
                    )
                    logp = torch.log_softmax(more, dim=-1)
                    score += float(sum(logp[i, t] for i, t in enumerate(answer[1:])))
                scores.append(score)
        p_pass = 1.0 / (1.0 + math.exp(max(-50.0, min(50.0, scores[1] - scores[0]))))
        return p_pass >= 0.5, f"p(PASS)={p_pass:.2f}"


# ---------------------------------------------------------------- OpenAI-compatible endpoint


class EndpointJudge:
    """POST {base_url}/chat/completions; the key comes from the environment variable `api_key_env` only."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_tokens: int = 48,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise JudgeError(
                f"judge base_url {base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.id = f"openai:{base_url.rstrip('/')}:{model}:p{PROMPT_VERSION}"

    def judge(self, rule: Rule, response: str, user_text: str = "") -> tuple[bool | None, str]:
        body = json.dumps(
            {
                "model": self.model,
                "messages": judge_prompt(rule, response, user_text),
                "temperature": 0,
                "max_tokens": self.max_tokens,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            hint = f" (is {self.api_key_env} set?)" if err.code in (401, 403) else ""
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {err.code}{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise JudgeError(
                f"judge endpoint {self.url} is not reachable: {getattr(err, 'reason', err)}"
            ) from None
        except json.JSONDecodeError:
            raise JudgeError(f"judge endpoint {self.url} did not answer JSON") from None
        try:
            text = doc["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeError(
                f"judge endpoint {self.url}: no choices[0].message.content in the answer"
            ) from None
        return parse_verdict(text)


def make_judge(
    spec: Spec,
    *,
    model: str | None = None,
    gguf_file: str | None = None,
    base_url: str | None = None,
    endpoint_model: str | None = None,
    device: str = "cpu",
) -> Judge:
    """The judge the flags (or else the spec's `judge:` settings) name; an endpoint wins over a local
    model."""
    s = spec.judge
    base_url = base_url or (None if model else s.base_url)
    if base_url:
        name = endpoint_model or s.endpoint_model
        if not name:
            raise JudgeError(
                "a judge endpoint needs a model name: judge.endpoint_model in the spec or --judge-model"
            )
        return EndpointJudge(base_url, name, api_key_env=s.api_key_env, max_tokens=s.max_new_tokens)
    model = model or s.model
    if not model:
        raise JudgeError(
            f"{spec.ref} names no judge: set judge.model (an HF folder or .gguf file) or "
            "judge.base_url in the spec, or pass --model / --base-url"
        )
    path = Path(model)
    if spec.path is not None and not path.is_absolute() and not path.exists():
        path = spec.base_dir / path
    return LocalJudge(path, gguf_file=gguf_file or (None if model != s.model else s.gguf_file), device=device)


# ---------------------------------------------------------------- cache and runner


class JudgeCache:
    """Verdicts by (rule hash, response hash, judge id) in a SQLite file (plain rows; nothing is
    unpickled)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (rule_sha TEXT, response_sha TEXT, judge TEXT, "
            "passed INTEGER, reason TEXT, PRIMARY KEY (rule_sha, response_sha, judge))"
        )

    def get(self, rule_sha: str, response_sha: str, judge: str) -> tuple[bool | None, str] | None:
        row = self.db.execute(
            "SELECT passed, reason FROM verdicts WHERE rule_sha=? AND response_sha=? AND judge=?",
            (rule_sha, response_sha, judge),
        ).fetchone()
        if row is None:
            return None
        return (None if row[0] is None else bool(row[0])), row[1]

    def put(self, rule_sha: str, response_sha: str, judge: str, passed: bool | None, reason: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
            (rule_sha, response_sha, judge, None if passed is None else int(passed), reason),
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_cache_path(spec: Spec) -> Path:
    return Path(".curate") / "judge" / spec.name / "cache.sqlite"


def run_judge(
    spec: Spec,
    judge: Judge,
    items: Iterable[tuple[str, str]],
    *,
    rules: Iterable[Rule] | None = None,
    cache: JudgeCache | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[list[Verdict]]:
    """Verdicts of every judge rule (or `rules`) over (user_text, response) items, one list per item."""
    rules = list(rules) if rules is not None else spec.judge_rules()
    shas = {r.id: rule_hash(spec, r) for r in rules}
    out: list[list[Verdict]] = []
    for n, (user_text, response) in enumerate(items, 1):
        rsha = response_hash(response, user_text)
        row = []
        for rule in rules:
            hit = cache.get(shas[rule.id], rsha, judge.id) if cache is not None else None
            if hit is not None:
                row.append(Verdict(rule.id, hit[0], hit[1], judge.id, cached=True))
                continue
            passed, reason = judge.judge(rule, response, user_text)
            if cache is not None:
                cache.put(shas[rule.id], rsha, judge.id, passed, reason)
            row.append(Verdict(rule.id, passed, reason, judge.id))
        out.append(row)
        if progress:
            progress("judge", n, None)
    return out


__all__ = [
    "EndpointJudge",
    "Judge",
    "JudgeCache",
    "JudgeError",
    "LocalJudge",
    "Verdict",
    "default_cache_path",
    "judge_prompt",
    "make_judge",
    "parse_verdict",
    "response_hash",
    "run_judge",
]
