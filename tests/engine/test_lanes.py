"""The read pool's lanes for ShareGPT, Alpaca, OpenAI, LLaMA-Factory DPO and preference lines
(`curate.engine.lanes`, `settle._RecordPath.lane`): a line takes a lane only when the row it makes is the very row
the record path (the format's reader, validate, `settle`) makes of it; builds on the pool write what the serial
record path writes, byte for byte."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import orjson
import pytest

from curate.engine import compact as C
from curate.engine import local_map
from curate.engine.lanes import LANES
from curate.engine.settle import _RecordPath, _Validator
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.read import _read_file
from curate.steps.validate import LengthCounter
from curate.steps.validate import validate as _validate
from tests.engine.test_compact import CLAIM, GOOD, TRIAGE, _both

REPO = Path(__file__).resolve().parents[2]
GENERIC = REPO / "tests" / "data" / "build-generic"

TEXTS = ["Refund A-1", "  café  ", "line\nbreak", "ok", "ÉTÉ? A-1 twice", GOOD, CLAIM, "", "  \n"]
BAD = [
    None,
    3,
    True,
    ["x"],
    {"a": 1},
    [{"type": "text", "text": "Refund A-1"}],  # typed content parts (the readers join text parts)
    [{"text": "Refund "}, "A-1 twice", {"type": "text", "value": "?"}],
    [{"type": "image_url", "image_url": {"url": "x"}}],
    [{"type": "text", "text": 3}],
    [],
    [{"type": "text", "text": "  "}],
]
EXTRA_KEYS = [
    "id",
    "metadata",
    "labels",
    "tools",
    "kind",
    "source",
    "checks",
    "spec",
    "category",
    "tags",
    "violates",
    "system",
    "label",
    "meta",
    "history",
    "input",
    "prompt",
    "messages",
]
EXTRA_VALUES = [
    "x",
    3,
    None,
    True,
    "",
    [],
    {},
    {"a": [1, 2]},
    ["refund"],
    "typical",
    "edge",
    "negative",
    "heldout",
    ["no-action-claims"],
    "no-action-claims",
    ["x", 3],
    "You triage tickets.",
]


def _strategies():
    from hypothesis import strategies as st

    text = st.sampled_from(TEXTS)
    good_user = st.sampled_from(["Refund A-1", "A-1 was charged twice", "ÉTÉ? A-1 twice"])
    answer = st.sampled_from([GOOD, GOOD, GOOD.replace("A-1", "A-7"), CLAIM])
    worse = st.sampled_from([CLAIM, CLAIM, "ok", GOOD.replace("A-1", "A-9")])
    value = st.one_of(text, text, st.sampled_from(BAD))
    role = st.sampled_from(
        [
            "human",
            "gpt",
            "user",
            "assistant",
            "system",
            "function_call",
            "observation",
            "bot",
            "Human",
            None,
            3,
        ]
    )
    odd_keys = st.dictionaries(st.sampled_from(EXTRA_KEYS), st.sampled_from(EXTRA_VALUES), max_size=4)
    ids = st.fixed_dictionaries(
        {}, optional={"id": st.sampled_from(["conv-1", 7]), "metadata": st.just({"ticket": 3, "tags": ["x"]})}
    )
    extra = st.one_of(ids, ids, odd_keys)  # the common case (an id, metadata) often: lanes are met every run
    turn_keys = st.sampled_from([("from", "value"), ("role", "content"), ("from", "content")])
    odd = st.dictionaries(
        st.sampled_from(["weight", "loss", "name"]), st.sampled_from([1, "x", None]), max_size=1
    )

    def sg_turn(r, v):
        return st.builds(lambda k, o: {k[0]: r, k[1]: v, **o}, turn_keys, odd)

    any_sg = st.one_of(
        st.builds(lambda r, v: (r, v), role, value).flatmap(lambda rv: sg_turn(*rv)), st.sampled_from(BAD)
    )
    plain_sg = st.builds(
        lambda u, a, more: [*more, u, a],
        good_user.flatmap(lambda u: sg_turn("human", u)),
        answer.flatmap(lambda a: sg_turn("gpt", a)),
        st.one_of(st.just([]), st.just([]), st.lists(any_sg, max_size=2)),
    )
    sharegpt = st.builds(
        lambda conv, ex: {**ex, "conversations": conv},
        st.one_of(plain_sg, plain_sg, st.lists(any_sg, max_size=4)),
        extra,
    )
    pair = st.one_of(st.tuples(good_user, answer).map(list), st.lists(value, min_size=1, max_size=3), value)
    alpaca = st.builds(
        lambda i, inp, out, key, hist, ex: {
            **ex,
            "instruction": i,
            **({} if inp is ... else {"input": inp}),
            key: out,
            **({} if hist is ... else {"history": hist}),
        },
        st.one_of(good_user, good_user, value),
        st.one_of(st.just(...), st.just(...), st.just(""), good_user, value),
        st.one_of(answer, answer, value),
        st.sampled_from(["output", "output", "response"]),
        st.one_of(
            st.just(...),
            st.just(...),
            st.lists(st.tuples(good_user, answer).map(list), max_size=2),
            st.lists(pair, max_size=2),
            st.sampled_from(BAD),
        ),
        extra,
    )
    oa_turn = st.one_of(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "human"]), "content": value}
        ),
        st.fixed_dictionaries(
            {"role": st.just("user"), "content": text, "name": st.sampled_from(["x", None])}
        ),
        st.fixed_dictionaries(  # OpenAI fine-tuning's `weight`, and the tool fields in every empty form
            {"role": st.sampled_from(["user", "assistant", "developer"]), "content": text},
            optional={
                "weight": st.sampled_from([0, 1]),
                "name": st.sampled_from(["", 3, None, "bob"]),
                "tool_calls": st.sampled_from(
                    [None, [], "x", [{"function": {"name": "f", "arguments": "{}"}}]]
                ),
                "function_call": st.sampled_from([None, {}, {"name": "f", "arguments": "{}"}]),
                "tool_call_id": st.sampled_from([None, "", "call-1"]),
            },
        ),
    )
    part = st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "value": text}),
        st.fixed_dictionaries({"type": st.just("text"), "text": text}),
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "tool_call"]), "value": value}),
    )

    def v1_turn(role, content):
        return st.builds(
            lambda c, lw: {"role": role, "content": c, **lw},
            st.one_of(
                content.map(lambda t: [{"type": "text", "value": t}]), st.lists(part, max_size=2), content
            ),
            st.fixed_dictionaries({}, optional={"loss_weight": st.sampled_from([0.0, 1.0])}),
        )

    any_v1 = st.one_of(
        st.sampled_from(["user", "assistant", "system", "human", None]).flatmap(lambda r: v1_turn(r, value)),
        st.sampled_from(BAD),
    )
    v1 = st.builds(
        lambda more, u, a, ex: {**ex, "messages": [*more, u, a]},
        st.one_of(st.just([]), st.lists(any_v1, max_size=2)),
        v1_turn("user", good_user),
        answer.flatmap(lambda a: v1_turn("assistant", st.just(a))),
        st.one_of(extra, st.just({"chosen_messages": []})),
    )
    openai = st.builds(
        lambda more, u, a, ex: {**ex, "messages": [*more, {"role": "user", "content": u}, a]},
        st.lists(oa_turn, max_size=2),
        good_user,
        st.one_of(st.builds(lambda a: {"role": "assistant", "content": a}, answer), oa_turn),
        extra,
    )
    dpo = st.builds(
        lambda conv, c, r, ex: {**ex, "conversations": conv, "chosen": c, "rejected": r},
        st.one_of(
            plain_sg.map(lambda t: t[:-1]), plain_sg.map(lambda t: t[:-1]), st.lists(any_sg, max_size=3)
        ),
        st.one_of(
            sg_turn("gpt", GOOD), sg_turn("gpt", GOOD), answer.flatmap(lambda a: sg_turn("gpt", a)), any_sg
        ),
        st.one_of(
            worse.flatmap(lambda a: sg_turn("gpt", a)), worse.flatmap(lambda a: sg_turn("gpt", a)), any_sg
        ),
        extra,
    )

    def side(ans):
        return st.one_of(
            ans,
            ans,
            st.lists(st.builds(lambda a: {"role": "assistant", "content": a}, ans), min_size=1, max_size=2),
            st.lists(oa_turn, max_size=2),
            value,
        )

    preference = st.builds(
        lambda p, c, r, ex: {**ex, "prompt": p, "chosen": c, "rejected": r},
        st.one_of(
            good_user,
            st.lists(st.builds(lambda u: {"role": "user", "content": u}, good_user), min_size=1, max_size=2),
            st.lists(oa_turn, max_size=3),
            value,
        ),
        side(answer),
        side(worse),
        extra,
    )
    return {
        "sharegpt": sharegpt,
        "alpaca": alpaca,
        "openai": openai,
        "llamafactory_dpo": dpo,
        "preference": preference,
        "llamafactory_v1": v1,
    }


@pytest.mark.parametrize("spec_dir", [TRIAGE, GENERIC], ids=["support-triage", "generic"])
def test_lane_rows_are_the_record_paths(tmp_path, spec_dir):
    """A generated line of each lane's format (with every mix of extra keys: ids, metadata, odd keys, keys the
    readers act on, wrong types, empty turns, tool and typed turns, system fields, history, categories, tags), read
    as a file of any lane's format, detected or given: when it takes a lane, its settled row and length are those
    the record path (the format's reader, validate, `settle`) makes of it, byte for byte (so every value of the row
    equals the reader's record: `settle` reads the stored line back and compares it with the record); and the
    record `materialize` makes of that row is the record path's."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    spec = load_spec(spec_dir / "spec.yaml")
    lengths = LengthCounter(spec)
    checker = C.Checker(spec)
    val = _Validator(spec, RunContext(), lengths, None, checker)
    store = C.RecordStore()
    settler = C._Settler(store)
    path = tmp_path / "lines.jsonl"
    strategies = _strategies()
    names = sorted(LANES)
    taken = dict.fromkeys(names, 0)
    seen = dict.fromkeys(names, 0)

    @settings(max_examples=1800, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(names), st.sampled_from(names), st.booleans(), st.data())
    def check(shape, made_as, detected, data):
        obj = data.draw(strategies[shape if data.draw(st.integers(0, 5)) else made_as])
        raw = orjson.dumps(obj)
        unit = (7, orjson.loads(raw), raw)
        rp = _RecordPath(path, shape, detected, None, spec, lengths, None, native=True)
        seen[shape] += 1
        lane = rp.lane(unit, val)
        if lane is None:
            return
        taken[shape] += 1
        ref = rp.lines([unit])[7]  # the record path alone (no validator: no lane)
        assert ref.quarantine == [] and ref.n_out == 1
        assert ref.rows == [lane], (shape, obj)
        wctx = RunContext()
        recs = list(
            _validate(
                _read_file(path, wctx, spec.ref, shape, None, units=iter([unit]), detected=detected),
                spec=spec,
                ctx=wctx,
                lengths=LengthCounter(spec),
            )
        )
        assert len(recs) == 1
        row = settler.row(lane[0])
        assert not row.is_record and row.id == recs[0].id and row.fmt == shape
        assert C.materialize(row, spec, checker) == recs[0]

    try:
        check()
    finally:
        store.close()
    assert all(n >= 100 for n in seen.values()), seen
    assert all(n >= (8 if spec_dir == TRIAGE else 20) for n in taken.values()), taken


def _lines_of(objs: list, bad: int, rng: random.Random) -> bytes:
    lines = [orjson.dumps(o) for o in objs]
    for _ in range(
        bad
    ):  # lines the record path quarantines or reads: broken JSON, a duplicate key, no format
        lines.insert(
            rng.randrange(len(lines) + 1),
            rng.choice(
                [b"{broken", b'{"id": 1, "id": 2, "instruction": "x", "output": "y"}', b'{"x": 1}', b"[1]"]
            ),
        )
    return b"\n".join(lines) + b"\n"


def _mixed_files(folder: Path, n: int = 120, seed: int = 3) -> list[Path]:
    """Files of each lane's format, lines with an id and a metadata object, duplicate families that cross files
    and formats (the same user text and answer in several formats), a few lines no lane takes."""
    rng = random.Random(seed)
    users = [f"Please refund order A-{i}, it was charged {i % 5 + 2} times." for i in range(n)]
    ans = [GOOD.replace("A-1", f"A-{i}") for i in range(n)]

    def meta(i: int) -> dict:
        return {"id": f"rec-{i}-{rng.randrange(10**6)}", "metadata": {"ticket": i, "channel": "email"}}

    def pick(i: int) -> int:
        return i if rng.random() < 0.7 else rng.randrange(n)  # a copy of another family's record

    sharegpt, alpaca, openai, dpo, pref, v1 = [], [], [], [], [], []
    for i in range(n):
        k = pick(i)
        sharegpt.append(
            {
                **meta(i),
                "system": rng.choice(["", "You triage support tickets.", None]),
                "conversations": [{"from": "human", "value": users[k]}, {"from": "gpt", "value": ans[k]}],
            }
        )
        k = pick(i)
        alpaca.append(
            {**meta(i), "instruction": users[k], "input": rng.choice(["", "A-9"]), "output": ans[k]}
        )
        k = pick(i)
        openai.append(
            {
                **meta(i),
                "messages": [
                    {"role": "user", "content": users[k]},
                    {"role": "assistant", "content": ans[k], **({"weight": 1} if i % 4 == 0 else {})},
                ],
                **({"category": "edge"} if i % 9 == 0 else {}),
                **({"tools": []} if i % 11 == 0 else {}),
            }
        )
        dpo.append(
            {
                **meta(i),
                "conversations": [{"from": "human", "value": users[k]}],
                "chosen": {"from": "gpt", "value": ans[k]},
                "rejected": {"from": "gpt", "value": CLAIM if i % 2 else ans[(k + 1) % n]},
            }
        )
        pref.append(
            {**meta(i), "prompt": users[pick(i)], "chosen": ans[k], "rejected": CLAIM, "violates": []}
        )
        k = pick(i)
        v1.append(
            {
                **meta(i),
                "messages": [
                    {"role": "user", "content": [{"type": "text", "value": users[k]}], "loss_weight": 0.0},
                    {"role": "assistant", "content": [{"type": "text", "value": ans[k]}], "loss_weight": 1.0},
                ],
            }
        )
    out = []
    for name, objs in [
        ("sharegpt", sharegpt),
        ("alpaca", alpaca),
        ("openai", openai),
        ("dpo", dpo),
        ("pref", pref),
        ("v1", v1),
    ]:
        p = folder / f"{name}.jsonl"
        p.write_bytes(_lines_of(objs, 4, rng))
        out.append(p)
    return out


def _real_as_jsonl(real: Path, folder: Path) -> list[Path]:
    """The real JSON-array fixtures of lane formats (Alpaca, LLaMA-Factory DPO, ShareGPT with tools, KTO) as JSONL."""
    out = []
    for rel in [
        "llama-factory/alpaca_zh_demo.json",
        "llama-factory/dpo_zh_demo.json",
        "llama-factory/glaive_toolcall_en_demo.json",
        "llama-factory/identity.json",
        "llama-factory/kto_en_demo.json",
        "axolotl/alpaca.json",
    ]:
        p = folder / rel.replace("/", "__").replace(".json", ".jsonl")
        p.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in json.loads((real / rel).read_text())))
        out.append(p)
    return out + sorted(real.rglob("*.jsonl"))


def _pool(monkeypatch, chunk: int, log: Path) -> None:
    """Every file read on the fork pool, in chunks of `chunk` lines (0: no pool, every file read here); each row a
    lane makes is logged with the process that made it."""
    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setattr(local_map, "POOL_CHUNK", chunk or 4096)
    monkeypatch.setenv("CURATE_WORKERS", "2" if chunk else "1")
    monkeypatch.setattr(local_map, "_fork_safe", lambda: True)
    real = _RecordPath.lane

    def spy(self, unit, val, made=None):
        got = real(self, unit, val, made)
        if got is not None:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        return got

    monkeypatch.setattr(_RecordPath, "lane", spy)


def _lane_rows(files: list[Path], spec) -> int:
    """How many lines of the files take a lane (in this process, as a worker would: an OpenAI line the OpenAI lane
    takes as it is, `lane_shape`, never reaches these lanes)."""
    from curate.engine.settle import lane_shape
    from curate.readers.containers import iter_units
    from curate.steps.read import _detect

    lengths = LengthCounter(spec)
    val = _Validator(spec, RunContext(), lengths, None, C.Checker(spec))
    n = 0
    for p in files:
        shape, _ = _detect(iter_units(p, "jsonl"), p, None)
        rp = _RecordPath(p, shape, True, None, spec, lengths, None, native=True)
        for unit in iter_units(p, "jsonl"):
            if not isinstance(unit[1], dict):
                continue
            as_is = lane_shape(unit[1], unit[2], "openai") if shape == "openai" else None
            if as_is is not None and val.fast(as_is[0], unit[1], *as_is[1:]) is not None:
                continue
            n += rp.lane(unit, val) is not None
    return n


@pytest.mark.parametrize("chunk", [7, 4096, 0])
def test_pooled_lanes_same_files_generated(tmp_path, monkeypatch, chunk):
    """A build of generated files of every lane's format (ids, metadata, families across files and formats, lines
    no lane takes) on the fork pool, or read here without one (chunk 0: the lanes run in the build process), writes
    what the serial record path writes, byte for byte."""
    files = _mixed_files(tmp_path)
    spec = load_spec(TRIAGE / "spec.yaml")
    taken = _lane_rows(files, spec)
    assert taken >= 300
    log = tmp_path / "lanes.log"
    _pool(monkeypatch, chunk, log)
    old, new = _both(tmp_path, TRIAGE, files)
    pids = log.read_text().split()
    assert len(pids) == taken  # every lane line, in the workers (or here without a pool)
    assert (os.getpid() in set(map(int, pids))) == (chunk == 0)
    manifest = orjson.loads(new["manifest.json"])
    assert manifest["counts"]["exported"] > 200 and manifest["counts"]["duplicates"] > 50
    assert new == old


@pytest.mark.parametrize("chunk", [64, 0])
def test_pooled_lanes_same_files_real(tmp_path, monkeypatch, real_fixtures, chunk):
    """The real fixtures of lane formats (as JSONL) and every real JSONL fixture, built with a permissive spec (so
    that their lines pass and take the lanes) on the fork pool: the serial record path's files, byte for byte."""
    files = _real_as_jsonl(real_fixtures, tmp_path)
    spec = load_spec(GENERIC / "spec.yaml")
    taken = _lane_rows(files, spec)
    assert taken >= 1000
    log = tmp_path / "lanes.log"
    _pool(monkeypatch, chunk, log)
    old, new = _both(tmp_path, GENERIC, files)
    assert len(log.read_text().split()) == taken
    assert orjson.loads(new["manifest.json"])["counts"]["exported"] > 1000
    assert new == old


def test_lane_rows_fused_dedup_keys(tmp_path, monkeypatch):
    """With dedup's keys made by the read's workers (`read_validate_rows(dedup_keys=...)`), a lane row's keys are
    made there too: `item_keys` of its `dedup_messages`, value for value (as test_fused_keys checks for fast rows);
    and so are its split keys (`split_keys_all` gives `split_keys` of every row)."""
    from curate.steps.dedup_keys import KeySketches, TextSpool, item_keys
    from tests.engine.test_fused_keys import _same

    files = _mixed_files(tmp_path, n=60)
    spec = load_spec(TRIAGE / "spec.yaml")
    _pool(monkeypatch, 16, tmp_path / "lanes.log")
    ks = KeySketches(0.8)
    spool = TextSpool()
    opened: list = [spool]
    fused = 0
    try:
        rows = list(
            C.read_validate_rows(
                files,
                ctx=RunContext(),
                spec=spec,
                lengths=LengthCounter(spec, None),
                max_tokens=spec.export.max_tokens,
                opened=opened,
                dedup_keys=ks,
                spool=spool,
            )
        )
        # the split's keys the workers made of the lane rows (Row.keys) are split_keys of the rows
        stored = sum(1 for r in rows if r.keys is not None and type(r.src) is C.RecordStore)
        assert stored == len((tmp_path / "lanes.log").read_text().split())
        expect = [C.split_keys(r) for r in rows]
        one = [len(C.user_turns(r)) == 1 for r in rows]
        made = [r.keys is not None for r in rows]
        got = list(local_map.split_keys_all(rows))
        assert [g[:2] for g in got] == expect and all(r.keys is None for r in rows)
        # a third value: True where the workers saw one user turn (the split then reads no user turns of the row)
        assert [len(g) == 3 for g in got] == [m and o for m, o in zip(made, one)]
        assert all(g[2] is True for g in got if len(g) == 3)
        for row in rows:
            got = local_map.RowAccess.fused(row)
            if got is None:
                continue
            fused += type(row.src) is C.RecordStore  # (else a fast row of an input line: test_fused_keys)
            chunk, i = got
            assert len(chunk.keys.digest) == 0 == len(chunk.keys.part_bands)  # (not held: in the spool)
            dg, pb = chunk.spilled()
            keys = chunk.keys._replace(digest=dg, part_bands=pb)
            _same(keys, i, item_keys([C.dedup_messages(row)], ks), 0, spool, int(chunk.start[i]))
    finally:
        for x in opened:
            x.close()
    assert fused == len((tmp_path / "lanes.log").read_text().split()) and fused >= 150  # every lane row's
