"""The shared prefix: the tokens every row of a batch starts with (the system prompt) run once per batch, with the
same loss, gradients and log-probabilities as the plain forward pass (`TrainOptions.shared_prefix`).
"""

from __future__ import annotations

from typing import Any


def shared_prefix_len(input_ids: Any, attention_mask: Any, labels: Any) -> int:
    """How many leading tokens every row of the batch shares (and attends to) before the first trained label.

    The prediction of the first label token must come from the suffix, so the prefix ends one token before it.
    """
    import torch

    same = (input_ids == input_ids[:1]).all(0) & (attention_mask == 1).all(0)
    n = int(torch.cumprod(same.long(), 0).sum())
    trained = labels != -100
    if trained.any():
        first = int(torch.nonzero(trained.any(0))[0, 0])
        n = min(n, first - 1)
    return max(n, 0)


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder stack, LM head) of a causal LM, through a PEFT wrapper; None when the model has no such split."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(core, "base_model_prefix", "model")
    backbone = getattr(core, prefix, None)
    head = core.get_output_embeddings() if hasattr(core, "get_output_embeddings") else None
    if backbone is None or head is None or backbone is core:
        return None
    cfg = core.config.get_text_config() if hasattr(core.config, "get_text_config") else core.config
    # models that scale or cap their logits after the head (Gemma, Cohere, Granite ...) take the plain path
    if any(
        getattr(cfg, k, None) not in (None, 1, 1.0)
        for k in (
            "final_logit_softcapping",
            "logit_scale",
            "output_multiplier",
            "lm_head_multiplier",
            "logits_scaling",
        )
    ):
        return None
    return backbone, head


def _prefix_pass(model: Any, inputs: dict[str, Any], min_prefix: int) -> tuple[Any, ...] | None:
    """The shared-prefix forward both losses use: (logits at the trained positions, their log-softmax, each
    target's log-probability, the targets, the trained-position mask (batch, seq - 1), the prefix length); None when
    the batch or the model does not allow it."""
    import torch

    if set(inputs) - {"input_ids", "attention_mask", "labels", "use_cache"}:
        return None
    ids, mask, labels = inputs.get("input_ids"), inputs.get("attention_mask"), inputs.get("labels")
    if ids is None or mask is None or labels is None or ids.shape[0] < 2:
        return None
    parts = _backbone_and_head(model)
    if parts is None:
        return None
    backbone, head = parts
    n_prefix = shared_prefix_len(ids, mask, labels)
    if n_prefix < min_prefix:
        return None
    batch, total = ids.shape
    pre = backbone(input_ids=ids[:1, :n_prefix], use_cache=True)
    cache = pre.past_key_values
    cache.batch_repeat_interleave(batch)
    positions = torch.arange(n_prefix, total, device=ids.device).unsqueeze(0).expand(batch, -1)
    out = backbone(
        input_ids=ids[:, n_prefix:],
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        position_ids=positions,
    )
    hidden = out.last_hidden_state[:, :-1]  # position t predicts token t + 1
    target = labels[:, n_prefix + 1 :]
    keep = target != -100
    logits = head(hidden[keep]).float()
    full_keep = torch.zeros(batch, total - 1, dtype=torch.bool, device=ids.device)
    full_keep[:, n_prefix:] = keep
    tgt = target[keep]
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return logits, logp, token_logp, tgt, full_keep, n_prefix


def shared_prefix_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None, min_prefix: int = 8
) -> tuple[Any, dict[str, Any]] | None:
    """The SFT loss with the batch's common prefix run once: same value and gradients as the plain forward.

    Every row of a curate export starts with the same system prompt (~80% of the tokens of a short row). Its
    keys and values are computed once for the batch, repeated for each row (autograd sums the gradients of all
    rows back into that one computation), and only the rest of each row runs through the model. The LM head runs
    only on positions whose next token is trained. Causal attention makes this exact: no token of the prefix
    sees anything after it. Returns None (use the plain path) when the batch shares no useful prefix.
    """
    import torch

    got = _prefix_pass(model, inputs, min_prefix)
    if got is None:
        return None
    logits, logp, token_logp, tgt, keep, n_prefix = got
    n_tokens = keep.sum() if num_items_in_batch is None else num_items_in_batch
    loss = -token_logp.sum() / torch.as_tensor(n_tokens, device=token_logp.device).clamp(min=1)
    with torch.no_grad():
        n = int(keep.sum())
        entropy = float(-(logp.exp() * logp).sum(-1).sum()) / n if n else 0.0
        accuracy = float((logits.argmax(-1) == tgt).sum()) / n if n else 0.0
    return loss, {
        "prefix_tokens": n_prefix,
        "tokens": int(inputs["attention_mask"].sum()),
        "entropy": entropy,
        "mean_token_accuracy": accuracy,
    }


def shared_prefix_logps(model: Any, inputs: dict[str, Any], min_prefix: int = 8) -> Any | None:
    """What TRL's fused LM head (`model(..., labels=, fused_lm_head=True)`) gives DPO, with the batch's common
    prefix run once: per-token log-probabilities of the labels, (batch, seq - 1), zero where the label is -100,
    plus entropy, mean logit and top-1 flags for TRL's metrics. A DPO batch is [chosen rows, rejected rows], all
    starting with the system prompt. None when the batch shares no useful prefix (use the plain path)."""
    from types import SimpleNamespace

    import torch

    got = _prefix_pass(model, inputs, min_prefix)
    if got is None:
        return None
    logits, logp, token_logp, tgt, keep, n_prefix = got

    def spread(x: Any) -> Any:
        return x.new_zeros(keep.shape).masked_scatter(keep, x)

    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
        mean_logits = logits.mean(-1)
        top1 = logits.argmax(-1) == tgt
    n = keep.sum().clamp(min=1)
    log_probs = spread(token_logp)
    return SimpleNamespace(
        loss=-token_logp.sum() / n,
        log_probs=log_probs,
        entropy=spread(entropy),
        mean_logits=spread(mean_logits),
        is_top1=spread(top1),
        log_sum_sq_probs=None,
        label_mask=keep,
        aux_loss=None,
        prefix_tokens=n_prefix,
    )


class _SharedPrefixLM:
    """Stands in for a model where TRL's DPO calls `model(**kwargs, labels=, fused_lm_head=True)`: the shared-prefix
    path when the call allows it, else the model itself. Counts the calls that took the shared path."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.shared = 0

    def __call__(self, *args: Any, fused_lm_head: bool = False, **kw: Any) -> Any:
        if fused_lm_head and not args:
            got = shared_prefix_logps(self.model, kw)
            if got is not None:
                self.shared += 1
                return got
        return (
            self.model(*args, fused_lm_head=fused_lm_head, **kw) if fused_lm_head else self.model(*args, **kw)
        )
