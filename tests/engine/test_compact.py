"""The read's shortcut for plain native lines (fast rows, curate.engine.compact) changes nothing: file for file,
byte for byte.

There is one build path; `build(..., compact=False)` only turns the shortcut off (every line goes through the
validate step as a pydantic record, as with the Ray engine); `compact=True` is the default. Both run here on the example specs, the build test data
(bad lines of every kind), every real fixture the build accepts, and a native file made to hit the paths where a
fast row meets the record path (negatives paired with fast answers, pairs without `violates`, held-out marks,
system turns, tool calls, over-long records, a previous build's lock).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from curate.engine import compact as C
from curate.engine import local_map
from curate.errors import CurateError
from curate.records import normalize_text
from curate.relation import view
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.dedup import record_messages
from curate.steps.export import dpo_row, sft_row, write_splits, write_splits_stream
from curate.steps.pairs import record_prompt_key
from curate.steps.pipeline import build
from curate.steps.validate import LengthCounter

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "specs" / "support-triage"
AGENT = REPO / "specs" / "support-agent"
DATA = REPO / "tests" / "data" / "build"
_STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")

GOOD = (
    '{"intent": "refund_request", "entities": {"order": "A-1"}, "missing_info": [], '
    '"next_step": "Route order A-1 to billing."}'
)
CLAIM = (
    '{"intent": "refund_request", "entities": {}, "missing_info": [], '
    '"next_step": "I have refunded the charge already."}'
)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a build folder, with the build time (manifest `created`, report header) blanked."""
    return {
        p.relative_to(folder).as_posix(): _STAMP.sub(b"<time>", p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".curate-build.json"
    }  # (a build id)


def _both(tmp_path: Path, spec, inputs, between=None, **kw) -> tuple[dict[str, bytes], dict[str, bytes]]:
    a, b = tmp_path / "records", tmp_path / "rows"
    build(spec, inputs, a, compact=False, **kw)
    if between is not None:
        between()
    build(spec, inputs, b, compact=True, **kw)
    return _files(a), _files(b)


def _assert_same(old: dict[str, bytes], new: dict[str, bytes]) -> None:
    assert sorted(old) == sorted(new)
    for name, got in old.items():
        assert got == new[name], f"{name} differs"


@pytest.mark.parametrize("spec", [TRIAGE, AGENT], ids=["support-triage", "support-agent"])
def test_example_specs_same_files(tmp_path, spec):
    old, new = _both(tmp_path, spec, None)
    assert {"sft/train.jsonl", "manifest.json", "clusters.jsonl", "heldout.lock"} <= set(new)
    _assert_same(old, new)


def test_bad_lines_same_files(tmp_path):
    old, new = _both(tmp_path, DATA, [DATA / "data.jsonl", DATA / "bad.jsonl"])
    assert b"bad_json" in new["quarantine/read.jsonl"] and b"rule_failed" in new["quarantine/validate.jsonl"]
    _assert_same(old, new)


def test_real_fixtures_same_files(tmp_path, real_fixtures):
    files = []
    for f in sorted(real_fixtures.rglob("*.json*")):
        try:
            build(TRIAGE, [f], tmp_path / "probe", compact=False)
        except CurateError:
            continue  # not a dataset (a column mapping, a config) or no record the build takes
        files.append(f)
    assert len(files) >= 20
    old, new = _both(tmp_path, TRIAGE, files)
    _assert_same(old, new)


def _mixed(path: Path) -> Path:
    """A native file where fast rows meet the record path at every turn."""
    lines = [orjson.loads(x) for x in (TRIAGE / "data.jsonl").read_bytes().splitlines()]
    user = "Please refund order A-1, it was charged twice."
    extra = [
        {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": GOOD}],
            "category": "typical",
            "tags": ["refund"],
        },
        {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": CLAIM}],
            "category": "negative",
            "violates": ["no-action-claims"],
        },  # pairs with the fast answer above
        {
            "prompt": [{"role": "user", "content": "Refund order A-2 please, charged twice."}],
            "chosen": [{"role": "assistant", "content": GOOD.replace("A-1", "A-2")}],
            "rejected": [{"role": "assistant", "content": CLAIM}],
            "category": "adversarial",
        },  # no violates
        {
            "prompt": [{"role": "user", "content": "Refund order A-3 please, it was charged twice."}],
            "chosen": [{"role": "assistant", "content": GOOD.replace("A-1", "A-3")}],
            "rejected": [{"role": "assistant", "content": CLAIM}],
            "category": "adversarial",
            "violates": ["no-action-claims"],
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Refund A-9 now"},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-9")},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Refund A-7 twice charged"},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-7")},
            ],
            "tags": ["heldout"],
        },
        {
            "messages": [
                {"role": "user", "content": "Refund A-8 " + "very " * 3000},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-8")},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Refund A-6 now"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "refund", "arguments": '{"order": "A-6"}'}}
                    ],
                },
                {"role": "tool", "content": "ok", "tool_call_id": "c1"},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-6")},
            ],
            "category": "edge",
        },
        {
            "messages": [{"role": "user", "content": "Refund A-5"}, {"role": "assistant", "content": GOOD}],
            "category": "typical",
            "violates": ["no-such-rule"],
        },
        {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": GOOD}]},
        {
            "messages": [
                {"content": "Refund A-4 now", "role": "user"},
                {"role": "assistant", "content": GOOD},
            ],
            "category": "edge",
            "tags": [],
        },
        {
            "messages": [
                {"role": "user", "content": "Rückerstattung für A-11, Straße ＡＢ"},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-11")},
                {"role": "user", "content": "Still  charged\ttwice"},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-11")},
            ],
            "category": "edge",
        },
        {
            "messages": [
                {"role": "user", "content": "Refund A-12 please"},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "Order A-12, charged TWICE"},
                {"role": "assistant", "content": GOOD.replace("A-1", "A-12")},
            ],
            "category": "edge",
        },
    ]
    rows = [orjson.dumps(x) for x in lines[:60] + extra + lines[60:]]
    rows.insert(30, b"{not json")
    rows.insert(31, b"")
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


@pytest.mark.parametrize("hold", [True, False], ids=["texts-held", "texts-remade"])
def test_mixed_native_file_same_files(tmp_path, monkeypatch, hold):
    import curate.steps.split as split_mod

    if (
        not hold
    ):  # the split's near pairs from texts made on demand (near_pairs_lazy), as above HOLD_TEXTS rows
        monkeypatch.setattr(split_mod, "HOLD_TEXTS", 0)
    data = _mixed(tmp_path / "mixed.jsonl")
    old, new = _both(tmp_path, TRIAGE, [data])
    manifest = orjson.loads(new["manifest.json"])
    assert manifest["counts"]["pairs_made"] >= 1 and manifest["quarantine"]["validate/heldout_marked"] == 1
    assert manifest["quarantine"]["validate/too_long"] == 1 and manifest["quarantine"]["read/bad_json"] == 1
    _assert_same(old, new)


def test_prompt_completion_and_a_previous_lock_same_files(tmp_path, monkeypatch):
    import curate.steps.split as split_mod

    monkeypatch.setattr(split_mod, "HOLD_TEXTS", 0)
    data = _mixed(tmp_path / "mixed.jsonl")
    first = tmp_path / "first"
    build(TRIAGE, [data], first)
    more = tmp_path / "more.jsonl"
    more.write_bytes(
        data.read_bytes()
        + orjson.dumps(
            {
                "messages": [
                    {"role": "user", "content": "I can't get in"},
                    {"role": "assistant", "content": GOOD},
                ]
            }
        )
        + b"\n"
    )
    old, new = _both(tmp_path, TRIAGE, [more], lock=first / "heldout.lock", sft_format="prompt-completion")
    assert orjson.loads(new["manifest.json"])["split"]["locked_from_previous"] > 0
    _assert_same(old, new)


def test_fast_rows_equal_their_records(tmp_path):
    """Every value a step derives from a fast row equals the one it derives from the record."""
    spec = load_spec(TRIAGE)
    data = _mixed(tmp_path / "mixed.jsonl")
    opened: list[C.Input] = []
    lengths = LengthCounter(spec)
    rows = list(
        C.read_validate_rows(
            [data], ctx=RunContext(), spec=spec, lengths=lengths, max_tokens=None, opened=opened
        )
    )
    try:
        fast = [r for r in rows if not r.is_record]
        assert len(fast) >= 100 and any(r.kind == "preference" for r in fast)
        assert any("A-11" in C.user_text(r) for r in fast) and any("A-12" in C.user_text(r) for r in fast)
        assert any(r.is_record for r in rows)
        checker = C.Checker(spec)
        once = Counter(r.id for r in rows)
        for row in fast:
            rec = C.materialize(row, spec, checker)
            assert rec.id == row.id == rec.content_id()
            assert (row.kind, row.category, row.tags, row.violates) == (
                rec.kind,
                rec.category,
                rec.tags,
                rec.violates,
            )
            assert C.user_text(row) == rec.user_text() and C.response_text(row) == rec.response_text()
            assert C.split_keys(row) == (normalize_text(rec.user_text()), record_prompt_key(rec))
            assert view(*C.dedup_messages(row)[:2]) == view(*record_messages(rec))
            assert row.where() == rec.source.where() and C.source_file(row) == rec.source.file
            if once[row.id] == 1:  # (same id, other whitespace: the last one measured wins, in both paths)
                assert lengths.lengths[row.id] == LengthCounter(spec).measure(rec)
            assert row.statuses == tuple(c.status for c in rec.checks)
            for fmt in ("messages", "prompt-completion"):
                assert C.sft_row(row, spec, fmt) == sft_row(rec, spec, fmt)
            if row.kind == "preference":
                assert C.dpo_row(row, spec) == dpo_row(rec, spec)  # type: ignore[arg-type]
    finally:
        for src in opened:
            src.close()


def test_content_id_of_unicode_and_whitespace_equals_the_records():
    spec = load_spec(TRIAGE)
    obj = {
        "messages": [
            {"role": "system", "content": "x"},
            {"role": "user", "content": "  Ｆｕｌｌ\u00a0WIDTH  Straße "},
            {"role": "assistant", "content": "ﬁne\tDONE"},
        ]
    }
    from curate.readers.shapes import convert_native

    rec = convert_native(obj, {"file": "f", "line": 1, "format": "native"}, spec.ref)
    assert C.content_id("sft", obj) == rec.id
    assert normalize_text("  Ｆｕｌｌ\u00a0WIDTH ") == "full width"


def _rows(n: int, tools_at: int | None = None) -> list[dict]:
    out = [
        {
            "messages": [
                {"role": "user", "content": f"q{i} " * (i % 7 + 1)},
                {"role": "assistant", "content": f"a{i}"},
            ],
            "id": f"{i:016x}",
        }
        for i in range(n)
    ]
    if tools_at is not None:
        out[tools_at]["tools"] = '[{"type": "function"}]'
    return out


@pytest.mark.parametrize("n,tools_at", [(5000, None), (3000, 1200)])
def test_stream_writer_small_split_is_the_same_file(tmp_path, n, tools_at):
    rows = _rows(n, tools_at)
    a = write_splits(tmp_path / "a", {"train": [dict(r) for r in rows]}, title="t", name="x")
    # the shapes in order of first appearance; a row with tools gives every row a tools column (null elsewhere)
    sample = [dict(rows[0])] + ([dict(rows[tools_at])] if tools_at is not None else [])
    b = write_splits_stream(
        tmp_path / "b",
        {"train": lambda: (dict(r) for r in rows)},
        sample=sample,
        title="t",
        name="x",
        row_group=8192,
    )
    assert a == b
    assert (b'"tools":null' in (tmp_path / "b" / "train.jsonl").read_bytes()) == (tools_at is not None)
    for name in ("train.jsonl", "data/train-00000-of-00001.parquet", "README.md"):
        got_a, got_b = ((tmp_path / d / name).read_bytes() for d in ("a", "b"))
        if name == "README.md":  # (its loading hint names the folder)
            got_a = got_a.replace(b"vN/a`", b"vN/b`")
        assert got_a == got_b


def test_stream_writer_large_split_row_groups_same_table(tmp_path):
    rows = _rows(10_000)
    write_splits(tmp_path / "a", {"train": [dict(r) for r in rows], "test": []}, title="t", name="x")
    info = write_splits_stream(
        tmp_path / "b",
        {"train": lambda: (dict(r) for r in rows), "test": lambda: iter(())},
        sample=rows[:1],
        title="t",
        name="x",
        row_group=4096,
    )
    assert info["train"]["num_examples"] == 10_000 and info["test"]["num_examples"] == 0
    pa_, pb = (tmp_path / x / "data" / "train-00000-of-00001.parquet" for x in ("a", "b"))
    assert pq.ParquetFile(pb).metadata.num_row_groups == 3
    assert pq.read_table(pa_).equals(pq.read_table(pb))
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    assert pq.read_table(tmp_path / "b" / "data" / "test-00000-of-00001.parquet").num_rows == 0


def test_inputs_are_closed_after_the_build(tmp_path, monkeypatch):
    opened: list[C.Input] = []
    real = C.Input

    def spy(path):
        src = real(path)
        opened.append(src)
        return src

    stores: list[C.RecordStore] = []
    real_store = C.RecordStore

    def spy_store():
        store = real_store()
        stores.append(store)
        return store

    monkeypatch.setattr(C, "Input", spy)
    monkeypatch.setattr(C, "RecordStore", spy_store)
    build(TRIAGE, None, tmp_path / "o")
    assert opened and all(src.fd == -1 for src in opened)
    assert (
        len(stores) == 1 and stores[0].fd == -1 and len(stores[0].starts) > 1
    )  # it held records, now closed
    shutil.rmtree(tmp_path / "o")


def test_near_pairs_lazy_equals_near_pairs():
    """Over 1,000 texts (boilerplate shingles left out) and with near twins: the same pairs as near_pairs."""
    import random

    from curate.near_index import near_pairs, near_pairs_lazy

    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8))) for _ in range(3000)]
    texts = []
    for i in range(1500):
        if i % 10 == 9:  # a near twin of an earlier text
            w = texts[rng.randrange(len(texts))].split()
            w[rng.randrange(len(w))] = rng.choice(words)
            texts.append(" ".join(w))
        else:
            texts.append("order status please " + " ".join(rng.choice(words) for _ in range(40)))
    made = []

    def norm_of(i: int) -> str:
        made.append(i)
        return texts[i]

    want = near_pairs(texts, normalized=True)
    assert len(want) >= 100
    assert near_pairs_lazy(len(texts), norm_of) == want
    assert len(made) >= len(texts)


@pytest.mark.parametrize("chunk,hold", [(1, False), (7, False), (4096, False), (7, True), (4096, True)])
def test_pool_read_same_files(tmp_path, monkeypatch, chunk, hold):
    """The compact read on the fork pool (forced on a small input, chunks crossing every kind of line) writes
    what the record path writes. With `hold` (few rows: the split holds the texts) the read's workers also make
    the split's keys (Row.keys); without, the split's keys are made on the pool after dedup."""
    import curate.steps.export as export_mod
    import curate.steps.pipeline as pipeline_mod
    import curate.steps.split as split_mod

    if not hold:
        monkeypatch.setattr(split_mod, "HOLD_TEXTS", 0)
    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setattr(local_map, "POOL_CHUNK", chunk)
    monkeypatch.setenv("CURATE_WORKERS", "2")
    monkeypatch.setattr(
        local_map, "_fork_safe", lambda: True
    )  # a thread an earlier test left running must not turn it off
    used = []
    real = C._pooled_verdicts

    def spy(src, val, rp, native, workers, mapper=None):
        used.append(workers)
        yield from real(src, val, rp, native, workers, mapper)

    monkeypatch.setattr(C, "_pooled_verdicts", spy)
    mapped = []
    real_map = local_map._pool_map

    def spy_map(fn, items, workers, chunk):  # the split's keys, the export's batches
        mapped.append((fn.__name__, len(items)))
        yield from real_map(fn, items, workers, chunk)

    monkeypatch.setattr(local_map, "_pool_map", spy_map)
    monkeypatch.setattr(export_mod, "_ARROW_CHUNK", 7)  # several batches per split, made by the workers
    monkeypatch.setattr(pipeline_mod, "EXPORT_POOL_MIN_ROWS", 0)
    data = _mixed(tmp_path / "mixed.jsonl")
    # a BOM on line 1, a broken line joined to the next, a CRLF line, an array: the pool's walk must be iter_jsonl's
    raw = data.read_bytes().splitlines(keepends=True)
    raw[0] = b"\xef\xbb\xbf" + raw[0]
    raw.insert(40, b'{"messages": [{"role": "user", "content": "Refund A-20\n')
    raw.insert(41, b'now"}, {"role": "assistant", "content": "ok"}]}\n')
    raw[50] = raw[50].rstrip(b"\n") + b"\r\n"
    raw.insert(55, b"[1, 2]\n")
    data.write_bytes(b"".join(raw))
    old, new = _both(tmp_path, TRIAGE, [data, DATA / "bad.jsonl"], between=mapped.clear)
    assert used and set(used) == {2}
    keyed = [
        n for fn, n in mapped if fn == "split_keys"
    ]  # on the pool after dedup: every row's, or the slow rows'
    split_in = orjson.loads(new["manifest.json"])["counts"]["exported"]  # (no negatives here: all were split)
    if hold:  # only the record path's rows (the slow ones) still need theirs
        assert 0 < sum(keyed) < split_in / 3
    else:
        assert keyed and min(keyed) == split_in
    assert [n for fn, n in mapped if fn == "user_text"]  # the held-out rows' texts for the lock
    assert [n for fn, n in mapped if fn == "batch"] and max(n for fn, n in mapped if fn == "batch") > 5
    manifest = orjson.loads(new["manifest.json"])
    assert (
        manifest["quarantine"]["read/broken_line"] == 1 and manifest["quarantine"]["read/not_an_object"] >= 1
    )
    _assert_same(old, new)


def test_pool_off_with_one_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setenv("CURATE_WORKERS", "1")
    used = []
    monkeypatch.setattr(C, "_pooled_verdicts", lambda *a: used.append(a) or iter(()))
    monkeypatch.setattr(local_map, "_pool_map", lambda *a: used.append(a) or iter(()))
    build(TRIAGE, None, tmp_path / "out")
    assert local_map.pool_workers() == 1 and not used


def test_id_and_keys_equal_content_id_and_split_keys() -> None:
    """The read workers' one-pass (content id, split keys) equals the two functions it stands for."""
    import random

    rng = random.Random(5)
    words = ["Refund", "order", "A-20", "café", "  spaced  ", "line\nbreak", "ÉTÉ", "ok", "?"]

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))

    for _ in range(300):
        sys_turn = [{"role": "system", "content": text()}] if rng.random() < 0.3 else []
        prompt = (
            sys_turn
            + [
                {"role": rng.choice(["user", "assistant"]), "content": text()}
                for _ in range(rng.randint(0, 3))
            ]
            + [{"role": "user", "content": text()}]
        )
        if rng.random() < 0.5:
            kind, obj = "sft", {"messages": prompt + [{"role": "assistant", "content": text()}]}
        else:
            kind, obj = (
                "preference",
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": text()}],
                    "rejected": [{"role": "assistant", "content": text()}],
                },
            )
        assert C._id_and_keys(kind, obj) == (C.content_id(kind, obj), C._keys_of(kind, obj))


def _openai_with_ids(path: Path, n: int = 60) -> Path:
    """OpenAI chat lines with an id and metadata (most real exports): the record path's, not native."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"chatcmpl-{i}",
                "metadata": {"source": "support", "n": i},
                "messages": [
                    {"role": "system", "content": "You triage support tickets."},
                    {"role": "user", "content": f"Please refund order A-{i}, it was charged {i} times."},
                    {"role": "assistant", "content": GOOD.replace("A-1", f"A-{i}") if i % 7 else CLAIM},
                ],
            }
        )
    rows.insert(13, {"id": "x", "messages": [{"role": "user", "content": "   "}]})  # empty turn
    rows[20]["labels"] = {"annotations": [1]}  # a key the readers act on: the record path
    rows[21]["category"] = "edge"  # detected as native by itself: the record path
    deep: dict = {}
    for _ in range(70):
        deep = {"x": deep}
    rows[22]["metadata"] = deep  # too deep: quarantined by the guard, not taken as a fast row
    lines = [orjson.dumps(r) for r in rows]
    lines[23] = lines[23].replace(b'{"id":', b'{"id":"dup","id":', 1)  # a duplicate key: quarantined
    path.write_bytes(b"\n".join(lines) + b"\n{broken\n")
    return path


@pytest.mark.parametrize("chunk", [7, 4096])
def test_pooled_record_path_same_files(tmp_path, monkeypatch, real_fixtures, chunk):
    """Every JSONL format on the fork pool (the workers take OpenAI lines the native reader reads alike as fast rows,
    run the record path on the rest and store what it passes, as native lines where the native reader gives the
    record back) writes what the serial record path writes: real fixtures of each format, and OpenAI lines with
    ids and metadata, labels, a category, a too-deep metadata value and a duplicate key."""
    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setattr(local_map, "POOL_CHUNK", chunk)
    monkeypatch.setenv("CURATE_WORKERS", "2")
    monkeypatch.setattr(local_map, "_fork_safe", lambda: True)
    pooled = []
    real = C._pooled_verdicts

    def spy(src, val, rp, lane, workers, mapper=None):
        pooled.append((Path(src.name).name, lane))
        yield from real(src, val, rp, lane, workers, mapper)

    monkeypatch.setattr(C, "_pooled_verdicts", spy)
    files = sorted(real_fixtures.rglob("*.jsonl")) + [_openai_with_ids(tmp_path / "openai.jsonl")]
    old, new = _both(tmp_path, TRIAGE, files)
    assert ("openai.jsonl", "openai") in pooled and len({n for n, lane in pooled if lane != "native"}) >= 4
    manifest = orjson.loads(new["manifest.json"])
    assert manifest["counts"]["exported"] > 40 and manifest["quarantine"]["read/empty_turn"] >= 1
    assert manifest["quarantine"]["read/too_deep"] == 1 and manifest["quarantine"]["read/duplicate_key"] == 1
    _assert_same(old, new)


def test_stored_rows_equal_their_records(tmp_path):
    """A record the record path passes becomes a fast row on a RecordStore line only when the native reader
    gives that very record back; then every value a step derives from the row is the record's; else it is a
    record row that reads its record back. Generated records of every kind of turn, category and tag."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from curate.records import Message, PreferenceRecord, SFTRecord, Source
    from curate.steps.export import dpo_row as rec_dpo_row
    from curate.steps.export import sft_row as rec_sft_row

    spec = load_spec(TRIAGE / "spec.yaml")
    rules = spec.automatic_rules()
    ids = tuple(r.id for r in rules)
    checker = C.Checker(spec)
    store = C.RecordStore()
    settler = C._Settler(store)
    text = st.sampled_from(["Refund A-1", "  café  ", "ok", "line\nbreak", GOOD, CLAIM, "ÉTÉ?"])
    turn = st.builds(Message, role=st.sampled_from(["user", "assistant", "system"]), content=text)
    meta = st.fixed_dictionaries(
        {
            "category": st.sampled_from(["typical", "typical", "edge", "adversarial", "negative"]),
            "tags": st.lists(st.sampled_from(["refund", "unlabeled", "x"]), max_size=2, unique=True).map(
                tuple
            ),
            "violates": st.sampled_from([(), (), ("no-action-claims",)]),
            "labels": st.sampled_from([{}, {}, {}, {"annotations": [3]}]),
            "source": st.sampled_from(
                [
                    Source(file="a.jsonl", line=4, format="openai"),
                    Source(file="b.json", line=9, format="sharegpt"),
                    Source(file="a.jsonl", line=5, format="openai"),
                    Source(file="d.csv", line=2, format="alpaca"),
                    Source(project=1, task=2, annotation=3),
                    Source(file="c.jsonl", line=1, format="native", generator="expand", parent="p"),
                ]
            ),
        }
    )
    answer = st.sampled_from([GOOD, GOOD, GOOD.replace("A-1", "A-7"), CLAIM, "ok"])
    system = st.lists(st.builds(Message, role=st.just("system"), content=text), max_size=1)
    prompt = st.builds(
        lambda s, t, u: [*s, *t, u],
        system,
        st.lists(turn, max_size=2),
        st.builds(Message, role=st.just("user"), content=text),
    )
    sft = st.builds(
        lambda m, msgs, last: SFTRecord(messages=(*msgs, last), spec=spec.ref, **m),
        meta,
        prompt,
        st.builds(Message, role=st.sampled_from(["assistant", "assistant", "user"]), content=answer),
    )
    pref = st.builds(
        lambda m, p, c, r: PreferenceRecord(prompt=tuple(p), chosen=(c,), rejected=(r,), spec=spec.ref, **m),
        meta,
        prompt,
        st.builds(Message, role=st.just("assistant"), content=answer),
        st.builds(Message, role=st.just("assistant"), content=answer),
    )
    # the common case, so that fast rows are met at every run and not by chance: an imported answer that passes
    user = st.builds(
        Message, role=st.just("user"), content=st.sampled_from(["Refund A-1", "A-1 was charged twice"])
    )
    plain = st.builds(
        lambda sys, u, a, src: SFTRecord(messages=(*sys, u, a), spec=spec.ref, source=src),
        system,
        user,
        st.builds(
            Message, role=st.just("assistant"), content=st.sampled_from([GOOD, GOOD.replace("A-1", "A-7")])
        ),
        st.sampled_from(
            [Source(file="a.jsonl", line=4, format="openai"), Source(file="d.csv", line=2, format="alpaca")]
        ),
    )
    seen = {"fast": 0, "record": 0}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(sft, pref, plain))
    def check(rec):
        rec = rec.model_copy(update={"id": rec.content_id()})
        st_ = checker.statuses(rec.response_text(), rec.user_text(), rec.category, rec.tags)
        results = checker.results(rec.response_text(), rec.user_text(), rec.category, rec.tags)
        assert tuple(c.status for c in results) == st_
        rec = rec.model_copy(update={"checks": tuple(results)})
        row = settler.row(C.settle(rec, spec, ids, rules))
        assert row.id == rec.id and row.kind == rec.kind and row.where() == rec.source.where()
        if row.is_record:
            seen["record"] += 1
            assert row.rec == rec
        else:
            seen["fast"] += 1
            assert C.materialize(row, spec, checker) == rec
        assert C.response_text(row) == rec.response_text() and C.user_text(row) == rec.user_text()
        assert C.prompt_key(row) == C.prompt_key(C.row_of(rec, spec))
        assert C.split_keys(row) == C.split_keys(C.row_of(rec, spec))
        assert C.user_turns(row) == C.user_turns(C.row_of(rec, spec))
        assert C.dedup_messages(row) == C.dedup_messages(C.row_of(rec, spec))
        assert C.keep_priority(row) == C.keep_priority(C.row_of(rec, spec))
        assert C.is_negative_sft(row) == (isinstance(rec, SFTRecord) and rec.is_negative)
        assert C.lineage([row]) == C.lineage([C.row_of(rec, spec)])
        hits = C.row_hits(spec, checker)
        assert sorted(hits(row, rules)) == sorted(hits(C.row_of(rec, spec), rules))
        if rec.kind == "preference" or not rec.is_negative:
            assert C.sft_row(row, spec, "messages") == rec_sft_row(rec, spec, "messages")
        if rec.kind == "preference":
            assert C.dpo_row(row, spec) == rec_dpo_row(rec, spec)

    try:
        check()
    finally:
        store.close()
    assert seen["fast"] >= 20 and seen["record"] >= 20


def test_openai_lane_rows_equal_the_openai_reader(tmp_path):
    """An OpenAI line the pool's workers take as a fast row (`settle.lane_shape`) is one the OpenAI reader turns
    into exactly the record its row stands for: generated lines with every mix of extra keys (ids, metadata, keys
    the readers act on), categories and tags."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from curate.engine.settle import lane_shape
    from curate.readers.common import Reject
    from curate.readers.shapes import CONVERTERS
    from curate.steps.export import sft_row as rec_sft_row

    spec = load_spec(TRIAGE / "spec.yaml")
    checker = C.Checker(spec)
    text = st.sampled_from(["Refund A-1", "  café  ", "line\nbreak", GOOD, "ok"])
    turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": text})
    extra = st.dictionaries(
        st.sampled_from(["id", "metadata", "labels", "tools", "kind", "source", "category", "tags", "label"]),
        st.sampled_from(["x", 3, {"a": [1, 2]}, ["refund"], "typical", True, None]),
        max_size=3,
    )
    taken = {"fast": 0, "not": 0}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(turn, min_size=1, max_size=3), text, extra)
    def check(prompt, answer, keys):
        obj = {**keys, "messages": [*prompt, {"role": "assistant", "content": answer}]}
        raw = orjson.dumps(obj)
        shape = lane_shape(orjson.loads(raw), raw, "openai")
        if shape is None:
            taken["not"] += 1
            return
        taken["fast"] += 1
        src = {"file": "o.jsonl", "line": 7, "format": "openai"}
        try:
            rec = CONVERTERS["openai"](orjson.loads(raw), src, spec.ref)
        except Reject:
            raise AssertionError(f"a fast line the OpenAI reader rejects: {obj}") from None
        kind, cat, tags, violates = shape
        assert (kind, cat, tags, violates) == (rec.kind, rec.category, rec.tags, rec.violates)
        path = tmp_path / "o.jsonl"
        path.write_bytes(b"\n" * 6 + raw + b"\n")
        inp = C.Input(path)
        try:
            row = C.Row(
                kind,
                C.content_id(kind, orjson.loads(raw)),
                inp,
                "o.jsonl",
                7,
                "openai",
                cat,
                tags,
                violates,
                None,
                None,
            )
            assert row.id == rec.id
            assert C.materialize_plain(row, spec) == rec
            assert C.split_keys(row) == C.split_keys(C.row_of(rec, spec))
            assert C.dedup_messages(row) == C.dedup_messages(C.row_of(rec, spec))
            assert C.sft_row(row, spec, "messages") == rec_sft_row(rec, spec, "messages")
            assert C.materialize(row, spec, checker).checks == tuple(
                checker.results(rec.response_text(), rec.user_text(), rec.category, rec.tags)
            )
        finally:
            inp.close()

    check()
    assert taken["fast"] >= 30 and taken["not"] >= 30
