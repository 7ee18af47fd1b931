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
- the skeleton keys of short texts (`curate.near_short.skeleton_keys`: every pair the strict rule can merge shares one,
  so the short rule is checked completely);
- MinHash LSH over character 3-grams (other shingles than the grouping's 5-grams): in the build (behind the
  split's grouping, which already joins every leak pair it finds) bands for 0.8 and 64 candidates a text; for
  `curate leakage A B` (`loose=True`, nothing before it) bands for 0.5 and 128 candidates a text; a candidate
  whose character 5-gram MinHash slots agree less than `minhash.agreement_floor` (51 of 128 at 0.8, 27 at 0.5)
  is not compared: the floor the grouping applies, a function of the pair (3-gram Jaccard cannot tell templated
  letters apart: unrelated ones agree in ~60% of 3-gram slots, as much as a near pair). Only training x held-out
  pairs are met (`near.SlotFloor.cross`): a text's candidates are all of the other side, so the cap keeps every
  cross pair it kept when pairs of one side competed for the same places, and more;
  scripts/bench_dedup.py measures both against brute force;
- with `brute=True` (tests, small data): every pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from curate.errors import InputError
from curate.minhash import BandSketch, agreement_floor
from curate.near import MAX_VERIFY, SlotFloor, candidate_pairs_counted, cap_candidates, scored_pairs
from curate.near_chars import CharRows
from curate.near_short import SHORT_CHARS, Keyed, ShortSketches, key_pairs, skeleton_keys
from curate.records import PreferenceRecord, SFTRecord, normalize_text
from curate.relation import LeakParts, has_cjk, is_short, leak_compared, leak_parts
from curate.steps.base import RunContext
from curate.steps.dedup_keys import floor_test
from curate.steps.spill import Lazy, RowFile

__all__ = [
    "LOOSE",
    "TIGHT",
    "Leakage",
    "dataset_texts",
    "leak_pairs",
    "leakage",
    "leakage_between",
    "repair_leakage",
]

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
    (`near.scored_pairs`). The items are read in chunks and again for the pairs to verify (`train` and `test` may
    make them on demand: the build's split reads them back from disk), so besides fixed-size arrays per text no
    text is held."""
    nt, nh = len(train), len(test)
    if not nt or not nh:
        return []

    def parts(items: Sequence[str | Sequence[str]], k: int) -> LeakParts:
        t = items[k]
        return leak_parts((t,) if isinstance(t, str) else tuple(t))

    if brute:
        tr = [parts(train, i) for i in range(nt)]
        te = [parts(test, j) for j in range(nh)]
        cand: Any = [(i, j) for i in range(nt) for j in range(nh)]
        out = scored_pairs(cand, lambda i, j: leak_compared(tr[i], te[j], threshold), runner)
    else:
        cand = _blocks(
            train, test, LOOSE if loose else TIGHT, 2 * MAX_VERIFY if loose else MAX_VERIFY, threshold
        )

        def per_task(pairs: list[tuple[int, int]]) -> Callable[[int, int], float]:
            a = {i: parts(train, i) for i in sorted({i for i, _ in pairs})}
            b = {j: parts(test, j) for j in sorted({j for _, j in pairs})}
            return lambda i, j: leak_compared(a[i], b[j], threshold)

        out = scored_pairs(cand, per_task=per_task, runner=runner)
    return sorted(out)


_ITEM_CHUNK = 4096  # items whose blocking texts are made at a time


def _blocks(
    train: Sequence[str | Sequence[str]],
    test: Sequence[str | Sequence[str]],
    lsh_threshold: float,
    per_text: int,
    threshold: float = TIGHT,
) -> np.ndarray:
    """The unique (train index, test index) pairs whose blocking texts meet in a block (the module doc): each
    item's joined user text and, for multi-turn items, its first turn; training items' texts first. The texts of
    two one-turn items, long and CJK (exempt from the slot floor), must pass `near_chars.CharBound` at `threshold`,
    the verification's: such items leak only when their texts are similar at it. (A multi-turn item's texts get
    no bound: its leak may be met through a pair of its texts that is not itself similar.)"""
    nt = len(train)
    sketch = BandSketch(lsh_threshold, 128, 3)
    floor_sketch = BandSketch(lsh_threshold, 128, 5)  # (its slots only: the floor is made for 5-gram Jaccard)
    # one row per blocking text, filled chunk by chunk (no list of chunks concatenated at the end: that held the
    # arrays twice); room for one text an item, doubled when multi-turn items (two texts) need more
    cap = max(1, nt + len(test))
    cols = {
        "owner": np.empty(
            cap, dtype=np.int64
        ),  # the item (train first, then test at nt + index) of each text
        "keys": np.empty((cap, 2), dtype=np.uint64),  # each text's exact key (16 bytes of sha256)
        "bands": np.empty((cap, sketch.bands), dtype=np.uint32),
        "cjk": np.empty(cap, dtype=bool),
    }
    # each text's 5-gram slot digest, read only for the LSH pairs the floor tests: a `spill.RowFile` with room for
    # two texts an item (past the RowFile budget on disk, a sparse file: nothing resident but the pairs' rows)
    digest = RowFile(2 * cap, (128,), np.uint8)
    keyed = Keyed()
    # two short texts whose typo-masked skeletons differ cannot be similar: no leak comes from such a pair of
    # blocking texts (a leak needs one similar pair: the joined texts, or the first turns)
    strict = ShortSketches()
    counted = CharRows()  # (long CJK texts' character counts: `near_chars.CharBound`)
    n = 0  # texts so far
    n_train_texts = 0
    for items, base in ((train, 0), (test, nt)):
        for a in range(0, len(items), _ITEM_CHUNK):
            texts: list[str] = []
            own: list[int] = []
            single: list[bool] = []  # (the text of a one-turn item)
            for k in range(a, min(len(items), a + _ITEM_CHUNK)):
                t = items[k]
                turns = (t,) if isinstance(t, str) else tuple(t)
                if not turns:
                    continue
                texts.append(" ".join(turns))
                own.append(base + k)
                single.append(len(turns) == 1)
                if len(turns) > 1:
                    single.append(False)
                    texts.append(turns[0])
                    own.append(base + k)
            if not texts:
                continue
            m = len(texts)
            if n + m > cap:
                cap = max(2 * cap, n + m)
                for name, col in list(cols.items()):
                    grown = np.empty((cap, *col.shape[1:]), dtype=col.dtype)
                    grown[:n] = col[:n]
                    cols[name] = grown
            cols["owner"][n : n + m] = own
            cols["keys"][n : n + m] = np.frombuffer(
                b"".join(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()[:16] for t in texts),
                dtype=np.uint64,
            ).reshape(-1, 2)
            cols["bands"][n : n + m] = sketch.bands32_of(texts)
            got = np.empty((m, 128), dtype=np.uint8)
            floor_sketch.bands32_of(texts, digest=got)
            digest.put(np.arange(n, n + m), got)
            del got
            cols["cjk"][n : n + m] = np.fromiter(map(has_cjk, texts), dtype=bool, count=m)
            short = [is_short(t) for t in texts]
            for k, t in enumerate(texts):
                if short[k] and len(t) < SHORT_CHARS:
                    keyed.add(n + k, skeleton_keys([t]))
            strict.add(n, texts, short)
            counted.add(n, texts, cols["cjk"][n : n + m] & ~np.array(short, dtype=bool) & np.array(single))
            n += m
        if base == 0:
            n_train_texts = n
    if not n:
        digest.close()
        return np.empty((0, 2), dtype=np.int64)
    own_all = cols.pop("owner")[:n]
    pairs = [_equal_pairs(cols.pop("keys")[:n], n_train_texts)]
    pairs.append(key_pairs(keyed, np.arange(n, dtype=np.int64), max_run=64))
    del keyed
    bh, cj = cols.pop("bands")[:n], cols.pop("cjk")[:n]
    at = np.arange(n, dtype=np.int64)
    over: Any = floor_test(digest, at, agreement_floor(lsh_threshold, 128), cj, counted.bound(n, threshold))
    del counted
    # only training x held-out pairs are met (no other pair can be a leak): tested in the kernel with the floor, so
    # a text's candidates (capped below) are all of the other side, and the pairs of one side (a family of
    # templated CJK texts, which the floor does not filter) are never folded
    over = over._replace(cross=n_train_texts) if isinstance(over, SlotFloor) else _across(over, n_train_texts)
    lsh, counts = candidate_pairs_counted(bh, small=16, window=4, floor=over, keep=strict.meet())
    digest.close()
    del bh, cj, digest
    pairs.append(cap_candidates(lsh, counts, n, per_text))
    del lsh, counts
    cand = np.concatenate(pairs)
    cand = cand[(cand[:, 0] < n_train_texts) & (cand[:, 1] >= n_train_texts)]  # only training x held-out
    if not len(cand):
        return np.empty((0, 2), dtype=np.int64)
    got = np.stack((own_all[cand[:, 0]], own_all[cand[:, 1]] - nt), axis=1)
    return np.unique(got, axis=0)


def _across(test: Callable[[np.ndarray, np.ndarray], np.ndarray], nt: int) -> Callable[..., np.ndarray]:
    """`test` of the pairs of one text below `nt` and one not; False for the others (`SlotFloor.cross` as a
    function: the floor over rows on disk)."""

    def across(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        ok = (i < nt) != (j < nt)
        ok[ok] = test(i[ok], j[ok])
        return ok

    return across


def _equal_pairs(keys: np.ndarray, nt: int) -> np.ndarray:
    """(i, k) text index pairs, i < nt <= k, of equal keys (rows of an (n, 2) array): every training text with
    every held-out text of the same exact key."""
    n = len(keys)
    o = np.lexsort((np.arange(n), keys[:, 1], keys[:, 0]))  # (within a key: training texts first)
    ks = keys[o]
    new = np.ones(n, dtype=bool)
    new[1:] = (ks[1:] != ks[:-1]).any(axis=1)
    run = np.cumsum(new) - 1
    start = np.flatnonzero(new)
    is_tr = o < nt
    n_tr = np.bincount(run[is_tr], minlength=len(start))  # training texts of each key
    tpos = np.flatnonzero(~is_tr & (n_tr[run] > 0))  # held-out texts with a training twin
    if not len(tpos):
        return np.empty((0, 2), dtype=np.int64)
    reps = n_tr[run[tpos]]
    firsts = start[run[tpos]]
    offs = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    i = o[np.repeat(firsts, reps) + offs]
    k = np.repeat(o[tpos], reps)
    return np.stack((i, k), axis=1).astype(np.int64)


# ---------------------------------------------------------------- `curate leakage A B`: two datasets


@dataclass
class Leakage:
    exact: int = 0
    near: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    threshold: float = 0.8
    repaired: int = 0  # training items moved out (repair_leakage); exact + near are what was found
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


def repair_leakage(
    res: Any,
    train_turns: Sequence[tuple[str, ...]],
    test_turns: Sequence[tuple[str, ...]],
    record: Callable[[Any], Rec],
    *,
    ctx: RunContext,
    threshold: float,
    frozen: Sequence[str] = (),
    runner: Callable[..., Iterable[Any]] | None = None,
) -> tuple[Leakage, set[str]]:
    """The independent leakage check after the split (`curate.steps.leakcheck.leak_pairs`: every held-out item
    against every training item, blocked by its own keys, decided by `relation.text_score` on the user texts).
    A training item in a leak pair is moved out of training (quarantined as `leak_train_twin`, naming its
    held-out twin); a held-out item is never touched. `train_turns[k]` / `test_turns[k]`: the normalized user
    turns of res.train[k] / res.test[k] (sequences that may make them on demand). `frozen`: the user texts of a
    previous lock's held-out set,
    checked as held-out items too (they need not be in this build). Returns what was found (all of it repaired)
    and the ids of the training items moved out (the new lock leaves them out of its training ids)."""
    out = Leakage(threshold=threshold)
    if not res.train or not (res.test or frozen):
        return out, set()

    ctx.report("leakage", 0, 1)
    n_test = len(test_turns)
    locked = [(normalize_text(p),) for p in frozen]
    if locked:
        held = test_turns
        test_turns = Lazy(n_test + len(locked), lambda k: held[k] if k < n_test else locked[k - n_test])
    found = leak_pairs(train_turns, test_turns, threshold, runner=runner)
    ctx.report("leakage", 1, 1)
    out.checked = len(res.train) * (len(res.test) + len(frozen))
    if not found:
        return out, set()
    twin: dict[int, tuple[int, float]] = {}
    for i, j, score in found:  # (train index, test index, score): one held-out twin per training item
        if i not in twin or (score, -j) > (twin[i][1], -twin[i][0]):
            twin[i] = (j, score)
    for i in sorted(twin):
        j, score = twin[i]
        r = res.train[i]
        held = res.test[j].id if j < n_test else "a prompt of the frozen held-out set (heldout.lock)"
        method = "exact" if score >= 1.0 else "near"
        setattr(out, method, getattr(out, method) + 1)
        if len(out.examples) < 20:
            out.examples.append(
                {
                    "method": method,
                    "a": r.id,
                    "b": held,
                    "score": score,
                    "text": " / ".join(test_turns[j])[:200],
                }
            )
        ctx.quarantine(
            step="split",
            reason="leak_train_twin",
            record=record(r),
            detail=f"user text {'equal' if method == 'exact' else 'near'} (score {score}) to held-out "
            f"{held if j >= n_test else 'record ' + held}; moved out of training (the held-out "
            "set is never changed)",
        )
    gone = {res.train[i].id for i in twin}
    res.train = [r for k, r in enumerate(res.train) if k not in twin]
    out.repaired = len(twin)
    return out, gone
