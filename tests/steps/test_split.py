"""split: deterministic, stratified, group-aware, frozen held-out across builds, zero leakage; `curate leakage`."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.cli import main
from curate.records import Message, PreferenceRecord, SFTRecord, Source
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.leakcheck import leakage
from curate.steps.split import HeldoutLock, split

DATA = Path(__file__).resolve().parents[1] / "data" / "build"
VOCAB = [
    "apple",
    "harbor",
    "violet",
    "engine",
    "quiet",
    "marble",
    "thunder",
    "pocket",
    "lantern",
    "meadow",
    "copper",
    "signal",
    "orbit",
    "canvas",
    "falcon",
    "ribbon",
    "glacier",
    "puzzle",
    "saddle",
    "timber",
    "velvet",
    "anchor",
    "bramble",
    "cinder",
    "dune",
    "ember",
    "fjord",
    "garnet",
    "hollow",
    "ivory",
    "jasper",
    "kettle",
    "lilac",
    "mosaic",
    "nectar",
    "oyster",
    "pebble",
    "quartz",
    "raven",
    "spruce",
    "tulip",
    "umber",
    "walnut",
    "yarrow",
    "zephyr",
]


@pytest.fixture(scope="module")
def spec():
    return load_spec(DATA)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def make(
    n: int, seed: int = 0, cats=("typical", "typical", "typical", "edge", "adversarial")
) -> list[SFTRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            SFTRecord.build(
                messages=(
                    Message(role="user", content=f"{_words(rng, 8)} {i}?"),
                    Message(role="assistant", content=json.dumps({"answer": _words(rng, 6)})),
                ),
                category=cats[i % len(cats)],
                source=Source(file="s.jsonl", line=i + 1),
            )
        )
    return out


def paraphrase(rec: SFTRecord, n: int) -> SFTRecord:
    user = rec.messages[0].content
    return SFTRecord.build(
        messages=(
            Message(role="user", content=user[:-1] + "!" * 1),
            Message(role="assistant", content=json.dumps({"answer": f"variant {n}"})),
        ),
        category=rec.category,
        source=Source(file="s.jsonl", line=1000 + n),
    )


def ids(recs) -> set[str]:
    return {r.id for r in recs}


def test_deterministic_and_order_independent(spec):
    recs = make(200)
    a = split(recs, spec=spec, ctx=RunContext())
    b = split(list(reversed(recs)), spec=spec, ctx=RunContext())
    assert [r.id for r in a.test] == [r.id for r in b.test]
    assert ids(a.train) | ids(a.test) == ids(recs) and not ids(a.train) & ids(a.test)
    c = split(recs, spec=spec, ctx=RunContext(), seed=spec.split.seed + 1)
    assert ids(c.test) != ids(a.test)


def test_stratified_by_category(spec):
    recs = make(300)
    res = split(recs, spec=spec, ctx=RunContext())
    total = Counter(r.category for r in recs)
    held = Counter(r.category for r in res.test)
    for cat, n in total.items():
        assert held[cat] == round(spec.split.heldout * n), (cat, held[cat], n)


def test_groups_never_straddle(spec):
    base = make(60)
    para = [paraphrase(base[i], i) for i in range(0, 60, 3)]
    # a DPO pair sharing its prompt with an SFT record
    pairs = [
        PreferenceRecord.build(
            prompt=base[i].messages[:1],
            chosen=base[i].messages[1:],
            rejected=(Message(role="assistant", content="I have reset it."),),
            category="negative",
            source=Source(file="s.jsonl", line=2000 + i),
        )
        for i in range(1, 60, 4)
    ]
    res = split(base + para + pairs, spec=spec, ctx=RunContext())
    side = {r.id: "train" for r in res.train} | {r.id: "test" for r in res.test}
    for i, p in zip(range(0, 60, 3), para):
        assert side[p.id] == side[base[i].id]
    for i, p in zip(range(1, 60, 4), pairs):
        assert side[p.id] == side[base[i].id]
    assert res.leakage.empty and res.leakage.as_dict()["examples"] == []
    assert res.test  # something is held out


def test_frozen_heldout_across_builds(spec):
    old = make(120, seed=1)
    first = split(old, spec=spec, ctx=RunContext())
    lock = HeldoutLock(**{k: v for k, v in vars(first.lock).items()})
    # round trip through the file format
    lock = HeldoutLock(**vars(lock))
    new = make(200, seed=2)
    near_train = [paraphrase(r, 1) for r in first.train[:5]]
    near_test = [paraphrase(r, 2) for r in first.test[:5]]
    ctx = RunContext()
    second = split(old + new + near_train + near_test, spec=spec, ctx=ctx, lock=lock)
    assert ids(first.test) <= ids(second.test)  # every held-out id stays held out
    assert ids(first.train) <= ids(second.train)  # and no training record moves into held-out
    assert ids(near_train) <= ids(second.train)  # new near-duplicates of training data stay in train
    assert ids(near_test) <= ids(second.test)  # ... of held-out data go to held-out
    assert second.leakage.empty and ctx.n_quarantined == 0
    assert ids(new) & ids(second.test)  # new data is split too


def test_frozen_heldout_from_lock_alone(spec, tmp_path):
    """The later build may not contain the old records: held-out prompts are matched from the lock file."""
    old = make(80, seed=3)
    first = split(old, spec=spec, ctx=RunContext())
    (tmp_path / "heldout.lock").write_bytes(first.lock.to_bytes())
    lock = HeldoutLock.load(tmp_path / "heldout.lock")
    assert lock.ids == ids(first.test)
    near_test = [paraphrase(r, 3) for r in first.test]
    second = split(make(50, seed=4) + near_test, spec=spec, ctx=RunContext(), lock=lock)
    assert ids(near_test) <= ids(second.test)


def test_record_near_both_sides_is_quarantined(spec):
    """A new record near-duplicate of a training record AND of a held-out record cannot go anywhere safely."""
    prefix = (
        "please help me with the apple harbor violet engine that broke down last week on the long "
        "road north "
    )  # 16+ words: the Indel rule, not the strict short-text rule
    tail_a, tail_b = "x" * 28, "z" * 28
    ans = Message(role="assistant", content='{"answer": "ok"}')

    def rec(user: str, line: int) -> SFTRecord:
        return SFTRecord.build(
            messages=(Message(role="user", content=user), ans), source=Source(file="s.jsonl", line=line)
        )

    a, b = rec(prefix + tail_a, 1), rec(prefix + tail_b, 2)
    c = rec(prefix + tail_a[:14] + tail_b[14:], 3)
    from curate.near_index import similarity

    assert (
        similarity(a.user_text(), b.user_text())
        < 0.8
        <= min(similarity(c.user_text(), a.user_text()), similarity(c.user_text(), b.user_text()))
    )
    lock = HeldoutLock(spec=spec.name, ids={b.id}, train_ids={a.id})
    ctx = RunContext()
    res = split(make(30) + [a, b, c], spec=spec, ctx=ctx, lock=lock)
    assert b.id in ids(res.test) and a.id in ids(res.train)
    assert [(r["reason"], r["record_id"]) for r in ctx.quarantined["split"]] == [("heldout_prompt", c.id)]
    assert c.id not in ids(res.train) | ids(res.test)
    assert res.leakage.empty


def test_broken_lock_is_an_error(tmp_path):
    from curate.errors import InputError

    (tmp_path / "heldout.lock").write_text("{not json")
    with pytest.raises(InputError, match="not a valid held-out lock"):
        HeldoutLock.load(tmp_path / "heldout.lock")
    assert HeldoutLock.load(tmp_path / "missing.lock") is None


def test_leakage_finds_exact_and_near():
    train = [
        ("t1", "How do I reset my password? I forgot it yesterday."),
        ("t2", "Totally unrelated text here."),
    ]
    test = [
        ("x1", "how do i reset my password?  i forgot it YESTERDAY."),  # exact after normalization
        ("x2", "How do I reset my pasword? I forgot it yesterday."),  # near: one typo in a short text
        ("x4", "How do I reset my password? I forgot it last week."),  # short, other words: no leak
        ("x3", "Where is the invoice for March?"),
    ]  # clean
    rep = leakage(train, test)
    assert (rep.exact, rep.near) == (1, 1)
    assert [(e["method"], e["a"], e["b"]) for e in rep.examples] == [
        ("exact", "t1", "x1"),
        ("near", "t1", "x2"),
    ]
    assert not rep.empty


def test_leakage_cli(tmp_path, real_fixtures):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text(
        "\n".join(
            json.dumps({"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]})
            for t in [
                (
                    "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting "
                    "cultural experiences and must-see attractions!"
                ),
                "Something nobody asks in a benchmark.",
            ]
        )
        + "\n"
    )
    b.write_text(json.dumps({"prompt": "Completely different question about cheese?"}) + "\n")
    r = CliRunner().invoke(main, ["leakage", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["exact"] == 0
    # against a public benchmark's prompts (MT-bench `turns`): the first one leaks
    bench = real_fixtures / "fastchat" / "mt_bench_question.jsonl"
    r = CliRunner().invoke(main, ["leakage", str(bench), str(a), "--json"])
    doc = json.loads(r.output)
    assert r.exit_code == 1 and doc["exact"] + doc["near"] == 1, doc
    r = CliRunner().invoke(main, ["leakage", str(bench), str(a)])
    assert r.exit_code == 1 and "0 exact, 1 near" in r.output


# ---------------------------------------------------------------- split_rows (the compact build's split) == split


def _rows_split(recs, spec, lock, hold, monkeypatch):
    import curate.steps.split as split_mod
    from curate.engine.compact import row_of
    from curate.records import normalize_text
    from curate.steps.pairs import record_prompt_key

    monkeypatch.setattr(split_mod, "HOLD_TEXTS", 10**9 if hold else 0)
    ctx = RunContext()
    res = split_mod.split_rows(
        [row_of(r, spec) for r in recs],
        spec=spec,
        ctx=ctx,
        lock=lock,
        keys=lambda r: (normalize_text(r.rec.user_text()), record_prompt_key(r.rec)),
        text=lambda r: r.rec.user_text(),
        record=lambda r: r.rec,
    )
    return res, ctx


@pytest.mark.parametrize("hold", [True, False], ids=["texts-held", "texts-remade"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_split_equals_record_split_with_a_lock_pinning_both_ways(spec, monkeypatch, hold, seed):
    """split_rows (arrays, codes, vectorized grouping and fill) decides what split (records, union-find, dicts)
    decides: sides, lock bytes, quarantine rows in order, groups; on near twins, same-text records, DPO pairs
    sharing a prompt, several strata, and a lock that pins groups to both sides at once."""
    from curate.steps.pairs import record_prompt_key

    rng = random.Random(seed)
    base = make(150, seed=seed, cats=("typical", "edge", "adversarial", "typical"))
    para = [paraphrase(base[i], i) for i in range(0, 150, 4)]
    same = [
        SFTRecord.build(
            messages=(
                Message(role="user", content=base[i].messages[0].content.upper()),
                Message(role="assistant", content=f'{{"answer": "again {i}"}}'),
            ),
            category="edge",
            source=Source(file="s.jsonl", line=3000 + i),
        )
        for i in range(2, 150, 9)
    ]
    pairs = [
        PreferenceRecord.build(
            prompt=base[i].messages[:1],
            chosen=base[i].messages[1:],
            rejected=(Message(role="assistant", content="I have reset it."),),
            category="negative",
            source=Source(file="s.jsonl", line=2000 + i),
        )
        for i in range(1, 150, 7)
    ]
    # a, b: apart; c: near both (the quarantine case) -- pinned to both sides by the lock below
    prefix = (
        "please help me with the apple harbor violet engine that broke down last week on the long "
        "road north "
    )  # 16+ words: the Indel rule, not the strict short-text rule
    ans = Message(role="assistant", content='{"answer": "ok"}')
    abc = [
        SFTRecord.build(
            messages=(Message(role="user", content=prefix + t), ans),
            source=Source(file="s.jsonl", line=4000 + k),
        )
        for k, t in enumerate(("x" * 28, "z" * 28, "x" * 14 + "z" * 14))
    ]
    recs = base + para + same + pairs + abc
    some = [r for r in recs if rng.random() < 0.1]
    lock = HeldoutLock(
        spec=spec.name,
        ids={r.id for r in some[::2]} | {abc[1].id, "0" * 16},
        prompt_keys={record_prompt_key(r) for r in recs if rng.random() < 0.03},
        prompts=[r.user_text() + " again" for r in recs if rng.random() < 0.03],
        train_ids={r.id for r in some[1::2]} | {abc[0].id},
        train_prompt_keys={record_prompt_key(r) for r in recs if rng.random() < 0.03},
    )
    rng.shuffle(recs)
    ctx_a = RunContext()
    want = split(recs, spec=spec, ctx=ctx_a, lock=lock)
    got, ctx_b = _rows_split(recs, spec, lock, hold, monkeypatch)
    assert [r.id for r in got.train] == [r.id for r in want.train]
    assert [r.id for r in got.test] == [r.id for r in want.test]
    assert got.groups == want.groups and got.lock.to_bytes() == want.lock.to_bytes()
    assert ctx_b.quarantined["split"] == ctx_a.quarantined["split"]
    assert abc[2].id in {r["record_id"] for r in ctx_b.quarantined["split"]}  # the mixed group was there
    assert got.leakage.exact == want.leakage.exact


def test_rows_split_of_nothing_and_of_one(spec, monkeypatch):
    res, _ = _rows_split([], spec, None, True, monkeypatch)
    assert (res.train, res.test, res.groups) == ([], [], 0)
    one = make(1)
    res, _ = _rows_split(one, spec, None, True, monkeypatch)
    want = split(one, spec=spec, ctx=RunContext())
    assert [r.id for r in res.train] == [
        r.id for r in want.train
    ] and res.lock.to_bytes() == want.lock.to_bytes()


def test_min_roots_is_the_union_finds_smallest_root():
    import numpy as np

    from curate.steps.split import _min_roots, _UnionFind

    rng = random.Random(5)
    for n, m in ((1, 0), (10, 3), (200, 150), (500, 40), (300, 900)):
        a = [rng.randrange(n) for _ in range(m)]
        b = [rng.randrange(n) for _ in range(m)]
        if n == 300:  # a long chain as well
            a += list(range(1, n))
            b += list(range(n - 1))
        uf = _UnionFind(n)
        for x, y in zip(a, b):
            uf.union(x, y)
        got = _min_roots(n, np.array(a, dtype=np.int64), np.array(b, dtype=np.int64))
        assert got.tolist() == [uf.find(i) for i in range(n)]


def test_lock_ids_kept_sorted_are_written_as_sorted():
    """The ids split_rows hands over already sorted are written as they are, and sorted again once changed."""
    from curate.steps.split import _SortedSet

    lock = HeldoutLock(spec="x", ids=_SortedSet(["a", "b", "d"]), train_ids=_SortedSet(["c", "c", "e"]))
    assert lock.as_dict()["ids"] == ["a", "b", "d"] and lock.as_dict()["train_ids"] == ["c", "e"]
    lock.ids.add("0")
    lock.ids.discard("b")
    lock.train_ids.add("a")
    assert lock.as_dict()["ids"] == ["0", "a", "d"] and lock.as_dict()["train_ids"] == ["a", "c", "e"]
    assert lock.to_bytes() == HeldoutLock(spec="x", ids={"0", "a", "d"}, train_ids={"a", "c", "e"}).to_bytes()
    import copy
    import pickle

    for made in (copy.deepcopy(lock), pickle.loads(pickle.dumps(lock))):
        assert made.as_dict() == lock.as_dict()


def test_rank_order_breaks_first_word_ties_on_the_whole_digest():
    import numpy as np

    from curate.steps.split import _rank_order

    rng = np.random.default_rng(3)
    n = 400
    rank = rng.integers(0, 2**63, size=(4, n), dtype=np.int64).astype(np.uint64)
    rank[0, 50:60] = rank[
        0, 0
    ]  # the same first word: order on the next ones (as sorting the hex digests would)
    rank[:, 70] = rank[:, 71]  # the same digest: by root
    group = rng.integers(0, 3, size=n)
    group[50:60] = group[0]
    group[70] = group[71]
    root = np.arange(n)[::-1].copy()
    want = sorted(range(n), key=lambda i: (group[i], tuple(rank[:, i].tolist()), root[i]))
    assert _rank_order(group, rank, root).tolist() == want
    untied = np.arange(n) != 71
    sub = np.flatnonzero(untied & ~((np.arange(n) >= 50) & (np.arange(n) < 60)))
    want = sorted(
        range(sub.size), key=lambda k: (group[sub[k]], tuple(rank[:, sub[k]].tolist()), root[sub[k]])
    )
    assert _rank_order(group[sub], rank[:, sub], root[sub]).tolist() == want


def test_lock_ids_merged_with_a_previous_lock_stay_sorted():
    from curate.steps.split import _sorted_union

    got = _sorted_union(["b", "d", "f"], {"a", "d", "g"})
    assert got == {"a", "b", "d", "f", "g"} and HeldoutLock(ids=got).as_dict()["ids"] == [
        "a",
        "b",
        "d",
        "f",
        "g",
    ]
    same = _sorted_union(["b", "d"], {"d"})
    assert same == {"b", "d"} and same.ordered == ["b", "d"]


def test_in_memory_order_gives_the_results_in_the_items_order():
    from curate.steps.split import _in_memory_order

    items = [object() for _ in range(50)]
    items = items[::3] + items[1::3] + items[2::3]
    asked = []

    def fn_all(got):
        asked.append(list(got))
        return [id(x) for x in got]

    assert _in_memory_order(items, fn_all) == [id(x) for x in items]
    assert [id(x) for x in asked[0]] == sorted(id(x) for x in items)


@settings(max_examples=25, deadline=None)
@given(st.integers(8, 120), st.integers(0, 1000), st.randoms(use_true_random=False))
def test_the_lock_leaves_out_the_training_twins_the_leakage_check_moved(spec, n, seed, rnd):
    """The lock is made after the leakage check: the training items the check moved out (here the pairs it
    reports are drawn at random: any subset of the training items, each leaking into any held-out item) are in
    none of its training ids, every other side is named as it is, and the training prompt keys are those of the
    split's assignment (the moved twins' included, as before the check ran)."""
    from unittest import mock

    from curate.steps import leakcheck
    from curate.steps.pairs import record_prompt_key

    recs = make(n, seed=seed)
    plain = split(recs, spec=spec, ctx=RunContext())
    leaking = sorted(k for k in range(len(plain.train)) if rnd.random() < 0.3)

    def some_leaks(train, test, threshold, **_kw):
        return [(i, rnd.randrange(len(test)), 0.9) for i in leaking]

    ctx = RunContext()
    with mock.patch.object(leakcheck, "leak_pairs", some_leaks):
        res = split(recs, spec=spec, ctx=ctx)
    moved = {plain.train[k].id for k in leaking} if plain.test else set()
    assert ids(res.train) == ids(plain.train) - moved and len(moved) == res.leakage.repaired
    assert sum(n for (_, why), n in ctx.reasons.items() if why == "leak_train_twin") == len(moved)
    lock = res.lock
    assert not moved & set(lock.train_ids)
    assert set(lock.train_ids) == ids(res.train) and set(lock.ids) == ids(res.test) == ids(plain.test)
    assert lock.as_dict()["train_ids"] == sorted(ids(res.train))
    assert lock.train_prompt_keys == {record_prompt_key(r) for r in plain.train}
    assert lock.prompt_keys == {record_prompt_key(r) for r in res.test}
    assert sorted(lock.prompts) == sorted({r.user_text() for r in res.test})
