"""Dedup's keys made by the read's pool workers (*fused* keys: `compact.read_validate_rows(dedup_keys=...)`, taken by
`RowAccess.fused`) are the keys dedup's own key pass makes of the same rows (`dedup_keys.item_keys` over
`dedup_messages(row)`), value for value, for every format the pool takes lines of as fast rows; and a build that
uses them writes what the record path writes.

The pool is forced on small inputs (POOL_MIN_LINES = 0, small chunks, 2 workers) so the keys cross the fork.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.engine import compact as C
from curate.engine import local_map
from curate.spec import load_spec
from curate.steps import dedup as D
from curate.steps.base import RunContext
from curate.steps.dedup_keys import Keys, KeySketches, TextSpool, item_keys
from curate.steps.pipeline import build
from curate.steps.validate import LengthCounter

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "specs" / "support-triage"
GOOD = (
    '{"intent": "refund_request", "entities": {"order": "A-1"}, "missing_info": [], '
    '"next_step": "Route order A-1 to billing."}'
)
LANES = (
    "native",
    "openai",
)  # the formats whose lines the pool's workers take as fast rows (settle.lane_shape)


def _force_pool(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setattr(local_map, "POOL_CHUNK", chunk)
    monkeypatch.setenv("CURATE_WORKERS", "2")
    # (a thread an earlier test left must not turn it off)
    monkeypatch.setattr(local_map, "_fork_safe", lambda: True)


_WORDS = [
    "refund",
    "order",
    "A-20",
    "café",
    "  spaced  ",
    "line\nbreak",
    "ÉTÉ",
    "ok",
    "?",
    "the",
    "please",
    "退款",
    "Human: hi",
    "\n### Instruction: do it",
    "12345678",
    "billing",
]
_text = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=40).map(" ".join)
# answers that pass every rule when the user names the orders (most lines: fast rows), and free text (fails: the
# record path quarantines it, or keeps it as a record row)
_answer = (
    st.sampled_from([GOOD, GOOD, GOOD.replace("A-1", "A-7"), GOOD.replace("billing", "BILLING  team")])
    | _text
)
_turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": _text})
_system = st.lists(st.fixed_dictionaries({"role": st.just("system"), "content": _text}), max_size=1)
_meta = st.fixed_dictionaries(
    {},
    optional={
        "category": st.sampled_from(["typical", "edge", "adversarial"]),
        "tags": st.lists(st.sampled_from(["refund", "x", "y"]), max_size=2, unique=True),
    },
)


@st.composite
def _line(draw: st.DrawFn, lane: str) -> dict:
    user = {"role": "user", "content": draw(_text) + " orders A-1 and A-7"}
    prompt = draw(_system) + draw(st.lists(_turn, max_size=2)) + [user]
    meta = draw(_meta)
    if lane == "openai":  # ids and metadata (real exports), which both readers drop
        if draw(st.sampled_from([True, True, False])):
            meta = {}  # (a category or tags: a native-looking object, the record path's)
        obj = {"id": f"chat-{draw(st.integers(0, 10**6))}", "messages": prompt, **meta}
        obj["messages"] = prompt + [{"role": "assistant", "content": draw(_answer)}]
        obj["metadata"] = {"ticket": draw(st.integers(0, 99)), "channel": "email"}
        return obj
    if draw(st.booleans()):
        return {"messages": prompt + [{"role": "assistant", "content": draw(_answer)}], **meta}
    return {  # a pair: its rejected answer fails a rule (violates names it)
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": draw(_answer)}],
        "rejected": [{"role": "assistant", "content": "I have refunded the charge already."}],
        "violates": ["no-action-claims"],
        **meta,
    }


def _same(a: Keys, i: int, b: Keys, j: int, spool: TextSpool, start: int) -> None:
    """Item i of fused keys `a` (texts in the spool from `start`) equals item j of keys `b` made here."""
    for name in ("ek", "raw", "length", "bands", "first", "part_bands", "digest", "sk_len", "sk_crc", "cjk"):
        x, y = getattr(a, name)[i], getattr(b, name)[j]
        assert np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype, name
    (ka, va), (kb, vb) = a.skel, b.skel  # (item, key) arrays
    assert va[ka == i].tolist() == vb[kb == j].tolist() and va.dtype == vb.dtype == np.uint64
    (pa, ha), (pb, hb) = a.pre, b.pre  # (item, prefix key) arrays
    assert ha[pa == i].tolist() == hb[pb == j].tolist() and ha.dtype == hb.dtype == np.uint64
    assert [v for k, v in a.marks if k == i] == [v for k, v in b.marks if k == j]
    blob, ends, cuts, flags = b.texts
    lo = ends[j - 1] if j else 0
    assert os.pread(spool.fd, int(a.texts[1][i]) - start, start) == blob[lo : ends[j]]
    assert int(a.texts[2][i]) - start == cuts[j] - lo and a.texts[3][i] == flags[j]


@pytest.mark.parametrize("lane", LANES)
def test_fused_keys_equal_the_key_pass(tmp_path, monkeypatch, lane):
    """Generated lines of each lane (turns of every kind, short and long, CJK, turn markers, pairs, categories,
    tags; OpenAI lines with ids and metadata), read on the forced pool with dedup's keys fused: every fast row's
    keys are `item_keys` of its `dedup_messages`, and the build process read none of those rows for them."""
    _force_pool(monkeypatch, chunk=5)
    spec = load_spec(TRIAGE / "spec.yaml")
    ks = KeySketches(0.8)
    seen = {"fused": 0}
    path = tmp_path / f"{lane}.jsonl"

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_line(lane), min_size=10, max_size=30))
    def check(objs):
        lines = [orjson.dumps(o) for o in objs]
        path.write_bytes(b"\n".join(lines) + b"\n{broken\n")  # (a line the pool leaves: no keys)
        spool = TextSpool()
        opened: list = [spool]
        try:
            rows = list(
                C.read_validate_rows(
                    [path],
                    ctx=RunContext(),
                    spec=spec,
                    lengths=LengthCounter(spec, None),
                    max_tokens=spec.export.max_tokens,
                    opened=opened,
                    format=lane if lane != "native" else None,
                    dedup_keys=ks,
                    spool=spool,
                )
            )
            src = [x for x in opened if type(x) is C.Input]
            for row in rows:
                got = local_map.RowAccess.fused(row)
                if got is None:  # a line the workers left to the record path: it is not a row of the input
                    assert row.src is not src[0], row.where()
                    continue
                seen["fused"] += 1
                chunk, i = got
                assert chunk.params == ks.params and chunk.spool is spool
                assert local_map.RowAccess.fused(row) is None  # taken once
                here = item_keys([C.dedup_messages(row)], ks)
                assert len(chunk.keys.digest) == 0 == len(chunk.keys.part_bands)  # (not held: in the spool)
                dg, pb = chunk.spilled()
                _same(chunk.keys._replace(digest=dg, part_bands=pb), i, here, 0, spool, int(chunk.start[i]))
        finally:
            for x in opened:
                x.close()

    check()
    assert seen["fused"] >= 20  # (fast rows met at every run, not by chance: ~50-150 expected)


def _openai_file(path: Path, n: int = 400) -> Path:
    """OpenAI lines with ids and metadata: exact copies (case, spacing), near copies (one word), turn markers."""
    import random

    rng = random.Random(3)
    words = [
        "refund",
        "order",
        "billing",
        "invoice",
        "charged",
        "twice",
        "please",
        "help",
        "account",
        "email",
        "reset",
        "password",
    ]
    lines = []
    for i in range(n):
        k = rng.randrange(max(1, i)) if i > 20 and rng.random() < 0.3 else i
        user = " ".join(random.Random(k).choice(words) for _ in range(24)) + f" order A-{k}"
        if k != i and rng.random() < 0.5:
            user = user.replace("refund", "refnud", 1) if rng.random() < 0.5 else user.upper()
        if i % 50 == 7:
            user = "Human: " + user
        lines.append(
            orjson.dumps(
                {
                    "id": f"conv-{i}",
                    "messages": [
                        {"role": "system", "content": "You triage support tickets."},
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": GOOD.replace("A-1", f"A-{k}")},
                    ],
                    "metadata": {"n": i},
                }
            )
        )
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_build_with_fused_keys_writes_the_record_paths_files(tmp_path, monkeypatch):
    """A pooled build whose dedup takes the read's keys (most of them: a spy counts) writes the files the record
    path (compact=False: no pool, no fused keys) writes, byte for byte, with exact and near duplicates found."""
    from tests.engine.test_compact import _assert_same, _files

    data = _openai_file(tmp_path / "openai.jsonl")
    build(TRIAGE, [data], tmp_path / "records", compact=False)
    _force_pool(monkeypatch, chunk=64)
    taken = []
    real = local_map.RowAccess.fused

    def spy(row):
        got = real(row)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(local_map.RowAccess, "fused", staticmethod(spy))
    monkeypatch.setattr(D, "_CHUNK", 50)
    build(TRIAGE, [data], tmp_path / "rows", compact=True)
    assert sum(taken) > 300
    manifest = orjson.loads((tmp_path / "rows" / "manifest.json").read_bytes())
    assert manifest["dedup"]["exact"] > 10 and manifest["dedup"]["near"] >= 5
    _assert_same(_files(tmp_path / "records"), _files(tmp_path / "rows"))
