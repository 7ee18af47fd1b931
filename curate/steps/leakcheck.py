"""The independent leakage check: every held-out text against every training text, blocked by cheap keys, decided
exactly by `curate.relation.leak_score` (user texts similar, or one's user turns a near prefix of the other's).

    >>> from curate.steps.leakcheck import leak_pairs
    >>> leak_pairs(["how do i reset my password?"], ["how do i reset my pasword?", "where is my order?"], 0.8)
    [(0, 0, 0.9811)]
    >>> leak_pairs([("write a poem about rain.", "now make it rhyme.")], ["write a poem about rain!"], 0.8)
    [(0, 0, 1.0)]

It shares the definition with the split's grouping (`relation.text_score` of normalized user texts) and nothing
else: its own blocking, so a pair the grouping's candidates missed is found here. The blocks (a pair is compared
when it shares one):
- the exact normalized text;
- the skeleton keys of short texts (`curate.near.skeleton_keys`: every pair the strict rule can merge shares one,
  so the short rule is checked completely);
- MinHash LSH over character 3-grams (other shingles than the grouping's 5-grams): in the build (behind the
  split's grouping, which already joins every leak pair it finds) bands for 0.8 and 64 candidates a text; for
  `curate leakage A B` (`loose=True`, nothing before it) bands for 0.5 and 128 candidates a text; a candidate
  whose character 5-gram MinHash slots agree less than `minhash.agreement_floor` (51 of 128 at 0.8, 27 at 0.5)
  is not compared: the floor the grouping applies, a function of the pair (3-gram Jaccard cannot tell templated
  letters apart: unrelated ones agree in ~60% of 3-gram slots, as much as a near pair).
  scripts/bench_dedup.py measures both against brute force;
- with `brute=True` (tests, small data): every pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from curate.errors import InputError
from curate.minhash import BandSketch, agreement_floor
from curate.near import (
    MAX_VERIFY,
    SHORT_CHARS,
    candidate_pairs_counted,
    cap_candidates,
    key_pairs,
    over_floor,
    scored_pairs,
    skeleton_keys,
)
from curate.records import PreferenceRecord, SFTRecord, normalize_text
from curate.relation import has_cjk, is_short, leak_compared, leak_parts
from curate.steps.base import RunContext

__all__ = ["LOOSE", "TIGHT", "Leakage", "dataset_texts", "leak_pairs", "leakage", "leakage_between"]

Rec = SFTRecord | PreferenceRecord
TIGHT = 0.8  # the build's check: bands for the 0.8 threshold over char 3-grams (other shingles than dedup's)
LOOSE = 0.5  # `curate leakage A B` (loose=True): bands for 0.5, 128 candidates a text: more recall, more time


def leak_pairs(
    train: Sequence[str | Sequence[str]],
    test: Sequence[str | Sequence[str]],
    threshold: float,
    *,
    brute: bool = False,
    loose: bool = False,
    runner: Callable[..., Iterable[Any]] | None = None,
) -> list[tuple[int, int, float]]:
    """(train index, test index, score) of every leak (`relation.leak_score`) between items given as their
    normalized user turns (a str is one turn), sorted. `runner`: an engine's task runner for the verification
    (`near.scored_pairs`)."""
    tr = [leak_parts((t,) if isinstance(t, str) else tuple(t)) for t in train]
    te = [leak_parts((t,) if isinstance(t, str) else tuple(t)) for t in test]
    nt, nh = len(tr), len(te)
    if not nt or not nh:
        return []
    if brute:
        cand = [(i, j) for i in range(nt) for j in range(nh)]
    else:
        # blocking texts: each item's joined user text and, for multi-turn items, its first turn (prefix leaks);
        # a pair is compared when any of its texts meet in a block
        texts: list[str] = []
        owner: list[int] = []
        for k, (joined, _, turns, _) in enumerate(tr + te):
            if not turns:
                continue
            texts.append(joined)
            owner.append(k)
            if len(turns) > 1:
                texts.append(turns[0])
                owner.append(k)
        side = np.array([o >= nt for o in owner], dtype=bool)
        order = np.argsort(side, kind="stable")  # training texts first
        texts = [texts[q] for q in order.tolist()]
        own = np.array(owner, dtype=np.int64)[order]
        n_train_texts = int((~side).sum())
        got = _blocks(
            texts, n_train_texts, LOOSE if loose else TIGHT, 2 * MAX_VERIFY if loose else MAX_VERIFY
        )
        pairs = (
            np.stack((own[got[:, 0]], own[got[:, 1]] - nt), axis=1)
            if len(got)
            else np.empty((0, 2), np.int64)
        )
        cand = np.unique(pairs, axis=0) if len(pairs) else pairs
        del got, pairs
    out = scored_pairs(cand, lambda i, j: leak_compared(tr[i], te[j], threshold), runner)
    out.sort()
    return out


def _blocks(texts: list[str], nt: int, lsh_threshold: float, per_text: int) -> np.ndarray:
    n = len(texts)
    pairs = []
    first: dict[str, list[int]] = {}
    for k in range(nt):
        first.setdefault(texts[k], []).append(k)
    ex = [(i, k) for k in range(nt, n) for i in first.get(texts[k], ())]
    if ex:
        pairs.append(np.array(ex, dtype=np.int64))
    keyed: list[tuple[int, int]] = []
    for k, t in enumerate(texts):
        if len(t) < SHORT_CHARS and is_short(t):
            keyed += [(k, h) for h in skeleton_keys([t])]
    pairs.append(key_pairs(keyed, np.arange(n, dtype=np.int64), max_run=64))
    sketch = BandSketch(lsh_threshold, 128, 3)
    floor_sketch = BandSketch(lsh_threshold, 128, 5)  # (its slots only: the floor is made for 5-gram Jaccard)
    bands = np.empty((n, sketch.bands), dtype=np.uint32)
    digest = np.empty((n, 128), dtype=np.uint8)
    for a in range(0, n, sketch.CHUNK):
        chunk = texts[a : a + sketch.CHUNK]
        bands[a : a + sketch.CHUNK] = sketch.bands32_of(chunk)
        floor_sketch.bands32_of(chunk, digest=digest[a : a + sketch.CHUNK])
    cjk = np.fromiter(map(has_cjk, texts), dtype=bool, count=n)
    lsh, counts = candidate_pairs_counted(
        bands, small=16, window=4, keep=over_floor(digest, agreement_floor(lsh_threshold, 128), cjk)
    )
    del bands, digest, cjk
    pairs.append(cap_candidates(lsh, counts, n, per_text))
    cand = np.concatenate(pairs)
    cand = cand[(cand[:, 0] < nt) & (cand[:, 1] >= nt)]  # only training x held-out
    return np.unique(cand, axis=0) if len(cand) else cand


# ---------------------------------------------------------------- `curate leakage A B`: two datasets


@dataclass
class Leakage:
    exact: int = 0
    near: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    threshold: float = 0.8
    repaired: int = 0  # training items moved out (split.repair_leakage); exact + near are what was found
    checked: int = 0  # held-out x training pairs the check covered

    @property
    def empty(self) -> bool:
        return self.exact == 0 and self.near == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "near": self.near,
            "threshold": self.threshold,
            "repaired": self.repaired,
            "checked_pairs": self.checked,
            "examples": self.examples,
        }


def leakage(
    train: Iterable[tuple[Any, str | Sequence[str]]],
    test: Iterable[tuple[Any, str | Sequence[str]]],
    *,
    threshold: float = 0.8,
    max_examples: int = 20,
) -> Leakage:
    """Exact and near matches between two collections of (key, user text or user turns); each test item counts once,
    with its best training match. The decision is `relation.leak_score` (`leakcheck.leak_pairs`)."""
    from curate.steps.leakcheck import leak_pairs

    tr = list(train)
    te = list(test)
    out = Leakage(threshold=threshold, checked=len(tr) * len(te))
    best: dict[int, tuple[float, int]] = {}

    def norm(t: str | Sequence[str]) -> tuple[str, ...]:
        return (normalize_text(t),) if isinstance(t, str) else tuple(normalize_text(x) for x in t)

    for i, j, score in leak_pairs([norm(t) for _, t in tr], [norm(t) for _, t in te], threshold, loose=True):
        if score > best.get(j, (-1.0, 0))[0]:
            best[j] = (score, i)
    for j in sorted(best):
        score, i = best[j]
        method = "exact" if score >= 1.0 else "near"
        setattr(out, method, getattr(out, method) + 1)
        if len(out.examples) < max_examples:
            text = te[j][1] if isinstance(te[j][1], str) else " / ".join(te[j][1])
            out.examples.append(
                {"method": method, "a": tr[i][0], "b": te[j][0], "score": round(score, 4), "text": text[:200]}
            )
    return out


def leak_text(rec: Rec) -> str:
    """The text compared for leakage and grouping: the user turns of the prompt."""
    return rec.user_text()


def _user_text_of_row(row: dict[str, Any]) -> str | None:
    """The user-side text of one row of any common dataset shape, or None."""

    def from_msgs(
        msgs: Any,
        role_key: str = "role",
        content_key: str = "content",
        users: tuple[str, ...] = ("user", "human"),
    ) -> str | None:
        if not isinstance(msgs, list):
            return None
        parts = []
        for m in msgs:
            if isinstance(m, dict) and str(m.get(role_key, "")).lower() in users:
                c = m.get(content_key)
                if isinstance(c, list):
                    c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
                parts.append(str(c or ""))
        return "\n".join(parts) if parts else None

    for key in ("messages", "prompt"):
        v = row.get(key)
        if isinstance(v, str):
            return v
        got = from_msgs(v)
        if got:
            return got
    got = from_msgs(row.get("conversations"), "from", "value", ("human", "user"))
    if got:
        return got
    if isinstance(row.get("instruction"), str):
        return "\n".join(x for x in (row["instruction"], row.get("input") or "") if isinstance(x, str) and x)
    if isinstance(row.get("turns"), list) and row["turns"]:  # MT-bench style: the opening question
        return str(row["turns"][0])
    for key in ("question", "query", "input", "text"):
        if isinstance(row.get(key), str):
            return row[key]
    return None


def _rows_of_file(path: Path) -> Iterable[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif suffix == ".json":
        data = orjson.loads(path.read_bytes())
        yield from (data if isinstance(data, list) else [data])
    else:
        from curate.records import read_jsonl

        for _, obj in read_jsonl(path):
            if isinstance(obj, dict):
                yield obj


def _build_read_texts(f: Path) -> list[tuple[str, Any]]:
    """(where, user turns) of every record the build's readers get out of a file (nothing when they get none)."""
    from curate.errors import CurateError
    from curate.steps.read import read_inputs

    try:
        return [
            (r.source.where(), t)
            for r in read_inputs([str(f)], ctx=RunContext())
            if (t := tuple(m.content for m in r.prompt_messages() if m.role == "user"))
        ]
    except CurateError:
        return []


def dataset_texts(path: str | Path, *, split_name: str | None = None) -> list[tuple[str, Any]]:
    """(where, user turns, or a user text) of every row of a dataset file or folder (JSONL, JSON, Parquet; a build folder)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        files = sorted(
            f
            for f in p.rglob("*")
            if f.suffix in (".jsonl", ".json")
            and f.is_file()
            and f.name not in ("manifest.json", "clusters.jsonl")
            and "quarantine" not in f.parts
        )
        if split_name:
            files = [f for f in files if f.stem == split_name]
        if not files:  # parquet-only folder
            files = sorted(f for f in p.rglob("*.parquet") if not split_name or f.name.startswith(split_name))
    else:
        files = [p]
    out = []
    for f in files:
        got = _build_read_texts(
            f
        )  # every format the build reads (ShareGPT, Alpaca, OpenAI, HH, LS exports ...)
        if not got:  # anything else with a recognisable prompt field
            got = [
                (f"{f}:{i}", t)
                for i, row in enumerate(_rows_of_file(f), start=1)
                if isinstance(row, dict) and (t := _user_text_of_row(row))
            ]
        out += got
    if not out:
        raise InputError(
            f"{p}: no rows with a prompt or user turn found (JSONL/JSON/Parquet with messages, "
            "prompt, conversations, instruction, turns or question)"
        )
    return out


def leakage_between(a: str | Path, b: str | Path, *, threshold: float = 0.8) -> Leakage:
    """`curate leakage A B`: how many rows of B have an exact or near match among A's prompts."""
    return leakage(dataset_texts(a), dataset_texts(b), threshold=threshold)
