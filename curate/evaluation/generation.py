"""Greedy generation with a local model, in batches with left padding (the models of `curate.training.models`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.errors import EvalError, TrainError

# ---------------------------------------------------------------- generation

Progress = Callable[[str, int, "int | None"], None]


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
        from curate.training.models import load_model, load_tokenizer, pick_device, quiet_hf, resolve_model

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
