"""Dedup's chunked tasks on the compact build's fork pool give what they give in-process, and the pieces under
them (bulk line reads, the MinHash kernel with a common-shingle table, 32-bit band keys, thread counts) equal
their references.

The pool is forced on small inputs (POOL_MIN_LINES = 0, small task chunks, 2 workers) so that every kind of
task crosses the fork; a spy on `RowAccess.eager_pool_map` proves the tasks went there.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from curate import minhash as M
from curate import near_index as NI
from curate.engine import compact as C
from curate.engine import local_map
from curate.records import normalize_text
from curate.spec import load_spec
from curate.steps import dedup as D
from curate.steps.base import RunContext
from curate.steps.pipeline import build
from curate.steps.validate import LengthCounter

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "specs" / "support-triage"


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_build", REPO / "scripts" / "bench_build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _workload(folder: Path, n: int = 900) -> list[Path]:
    """The benchmark's workload (exact and near copies of chat lines, pairs) plus a file of slow rows that outrank
    or yield to fast ones: human-reviewed near copies (kept over the imported original), generated exact copies
    placed first (dropped for the imported original), system-turn copies (same dedup text as their original)."""
    folder.mkdir(parents=True, exist_ok=True)
    _bench().make_workload(folder, n, seed=11)  # type: ignore[attr-defined]
    chat = (folder / "chat.jsonl").read_bytes().splitlines()
    rng = random.Random(5)
    extra = []
    for raw in rng.sample(chat, 60):
        obj = orjson.loads(raw)
        kind = rng.choice(["reviewed", "generated", "system"])
        if kind == "reviewed":
            words = obj["messages"][0]["content"].split()
            words[-1] = words[-1] + "x"
            obj["messages"][0]["content"] = " ".join(words)
            obj["labels"] = {"reviewed": True}
            obj["source"] = {"annotator": "ann"}
        elif kind == "generated":
            obj["source"] = {"generator": "curate.expand.edge", "parent": "x"}
        else:
            obj["messages"].insert(0, {"role": "system", "content": "Be brief."})
        extra.append(orjson.dumps(obj))
    extra_path = folder / "extra.jsonl"
    extra_path.write_bytes(b"\n".join(extra) + b"\n")
    return [extra_path, folder / "chat.jsonl", folder / "pairs.jsonl"]


def _rows(paths: list[Path], opened: list[C.Input]) -> tuple[list[C.Row], object]:
    spec = load_spec(TRIAGE / "spec.yaml")
    rows = list(
        C.read_validate_rows(
            paths,
            ctx=RunContext(),
            spec=spec,
            lengths=LengthCounter(spec, None),
            max_tokens=spec.export.max_tokens,
            opened=opened,
        )
    )
    return rows, spec


def _force_pool(
    monkeypatch: pytest.MonkeyPatch, chunk: int = 64, verify_chunk: int = 16
) -> list[tuple[str, int]]:
    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setenv("CURATE_WORKERS", "2")
    monkeypatch.setattr(
        local_map, "_fork_safe", lambda: True
    )  # a thread an earlier test left running must not turn it off
    monkeypatch.setattr(D, "_CHUNK", chunk)
    monkeypatch.setattr(D, "_VERIFY_CHUNK", verify_chunk)
    mapped: list[tuple[str, int]] = []
    real = local_map._pool_map
    real_eager = local_map.RowAccess.eager_pool_map

    def spy(fn, items, workers, chunk):  # the split's keys, the export's batches
        mapped.append((fn.__name__, len(items)))
        yield from real(fn, items, workers, chunk)

    def spy_eager(fn, tasks, workers):  # dedup's tasks
        assert workers == 2
        mapped.append((fn.__name__, len(tasks)))
        yield from real_eager(fn, tasks, workers)

    monkeypatch.setattr(local_map, "_pool_map", spy)
    monkeypatch.setattr(local_map.RowAccess, "eager_pool_map", staticmethod(spy_eager))
    return mapped


def _collect_maps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list]]:
    """Record what every dedup task returned (the keys per chunk, the verified pairs per chunk)."""
    seen: list[tuple[str, list]] = []
    real = D._map

    def spy(acc, fn, tasks, work):
        got = list(real(acc, fn, tasks, work))
        seen.append((fn.__name__, got))
        return iter(got)

    monkeypatch.setattr(D, "_map", spy)
    return seen


def _same_arrays(a: list[tuple[str, list]], b: list[tuple[str, list]]) -> None:
    assert [name for name, _ in a] == [name for name, _ in b]
    for (_, xs), (_, ys) in zip(a, b):
        assert len(xs) == len(ys)
        for x, y in zip(xs, ys):
            assert len(x) == len(y)
            for u, v in zip(x, y):
                _same_value(u, v)


def _same_value(u, v) -> None:
    if isinstance(u, list | bytes):  # (skeleton keys, prefix hashes, turn markers; the compared texts)
        assert u == v
    elif isinstance(u, tuple):  # (the compared texts: bytes, ends, response starts, flags)
        assert len(u) == len(v)
        for a, b in zip(u, v):
            _same_value(a, b)
    else:
        assert u.dtype == v.dtype and u.shape == v.shape and (u == v).all()


def test_pooled_keys_and_pairs_equal_in_process(tmp_path, monkeypatch):
    paths = _workload(tmp_path / "wl")
    opened: list[C.Input] = []
    try:
        rows, spec = _rows(paths, opened)
        assert sum(not r.is_record for r in rows) > 800 and sum(r.is_record for r in rows) >= 40
        with monkeypatch.context() as m:
            m.setenv("CURATE_WORKERS", "1")
            m.setattr(D, "_CHUNK", 16)
            m.setattr(D, "_VERIFY_CHUNK", 16)
            here = _collect_maps(m)
            kept_here, clusters_here = D.dedup(rows, ctx=RunContext(), access=local_map.RowAccess)
        mapped = _force_pool(monkeypatch, chunk=16)
        pooled = _collect_maps(monkeypatch)
        kept_pool, clusters_pool = D.dedup(rows, ctx=RunContext(), access=local_map.RowAccess)
        pooled = list(pooled)
        # the record path (no hooks: in-process, one record at a time) decides the same
        checker = C.Checker(spec)
        recs = [C.materialize(r, spec, checker) for r in rows]
        kept_rec, clusters_rec = D.dedup(recs, ctx=RunContext())
    finally:
        for src in opened:
            src.close()
    names = [name for name, _ in mapped]
    assert (
        names == ["dedup_task"] * 3
    )  # SFT keys, SFT verification, preference keys (no preference candidates)
    assert min(n for _, n in mapped) >= 2
    assert [name for name, _ in pooled] == ["row_keys", "verify", "row_keys", "verify"]
    _same_arrays(here, pooled)
    keys = np.concatenate([got[0] for got in pooled[0][1]])
    assert len(keys) > 800 and len(np.unique(keys)) < len(keys)  # exact copies share a key
    bands = pooled[0][1][0][3]  # (exact key, raw hash, length, band hashes, ...)
    assert bands.dtype == np.uint32 and bands.shape[1] == M.lsh_params(0.8, 128)[0]
    assert sum(len(i) for i, _, _ in pooled[1][1]) > 50  # verified near pairs came back from the workers
    assert [r.id for r in kept_pool] == [r.id for r in kept_here] == [r.id for r in kept_rec]
    assert clusters_pool == clusters_here == clusters_rec
    methods = {c["method"] for c in clusters_pool}
    whys = {c["why"] for c in clusters_pool}
    assert methods == {"exact", "near"}
    assert {
        "human-reviewed over imported",
        "imported over generated",
        "both imported: longer, then smaller content hash kept",
    } <= whys


def test_forced_pool_build_is_byte_identical_to_the_record_path(tmp_path, monkeypatch):
    paths = _workload(tmp_path / "wl", n=600)
    a, b = tmp_path / "records", tmp_path / "rows"
    build(TRIAGE, paths, a, compact=False)
    mapped = _force_pool(monkeypatch, chunk=50, verify_chunk=7)
    build(TRIAGE, paths, b, compact=True)
    assert [n for fn, n in mapped if fn == "dedup_task"]
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    manifest = orjson.loads((b / "manifest.json").read_bytes())
    assert manifest["dedup"]["exact"] > 20 and manifest["dedup"]["near"] > 40
    for name in files_a:
        if name in (
            "manifest.json",
            "report.html",
            ".curate-build.json",
        ):  # the build time differs; compared without it below
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma = orjson.loads((a / "manifest.json").read_bytes())
    ma.pop("created")
    manifest.pop("created")
    assert ma == manifest


def test_read_objs_equal_row_obj(tmp_path):
    lines = [
        orjson.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Refund order A-{i} now please"},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        )
        for i in range(40)
    ]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[7] = lines[7] + b"\r"
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    src = C.Input(path)
    try:

        def row(no: int) -> C.Row:
            return C.Row("sft", f"id{no}", src, str(path), no, "native", "typical", (), (), None, None)

        store = C.RecordStore()
        slow = C.row_of(D_rec(), load_spec(TRIAGE / "spec.yaml"), store)
        assert slow.is_record and slow.rec == D_rec() and slow._rec is None  # stored, read back
        picks = [row(no) for no in (1, 2, 3, 8, 9, 20, 40, 39, 5)] + [slow, row(1)]
        got = C.read_objs(picks)
        assert got[-2] is None
        assert [g for g, r in zip(got, picks) if not r.is_record] == [
            r.obj() for r in picks if not r.is_record
        ]
        assert local_map.RowAccess.messages(picks) == [C.dedup_messages(r) for r in picks]
        store.close()
    finally:
        src.close()


def D_rec():
    from curate.records import Message, SFTRecord, Source

    return SFTRecord.build(
        messages=[Message(role="user", content="Hi"), Message(role="assistant", content="Hello")],
        source=Source(file="x.jsonl", line=3),
    )


def _texts(rng: random.Random, n: int) -> list[str]:
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randrange(2, 9))) for _ in range(3000)]
    skeleton = '{"intent": "refund", "entities": {}, "missing_info": [], "next_step": "route it"}'
    out = [
        " ".join(rng.choice(words) for _ in range(rng.randrange(3, 60))) + " " + skeleton for _ in range(n)
    ]
    out += ["", "a", "abcd", "日本語のテキストです", "emoji 😀 text", skeleton, skeleton + " x"]
    return [normalize_text(t) for t in out]


def test_kernel_with_a_common_shingle_table_equals_the_numpy_reference():
    rng = random.Random(9)
    norms = _texts(rng, 1200)
    stop = M.common_shingles(norms, 5)
    assert stop is not None and stop.sum() > 10  # the skeleton's shingles are common
    for table in (stop, stop * 3):  # any non-zero slot counts as common
        h = M._Hasher(128, 5)
        fast = h.signatures_normalized(norms, kernel="numba", stop=table)
        ref = h.signatures_normalized(norms, kernel="numpy", stop=table)
        assert (fast == ref).all()
    # a text made only of common shingles falls back to all of them (the skeleton alone)
    h = M._Hasher(64, 5)
    only = [
        normalize_text('{"intent": "refund", "entities": {}, "missing_info": [], "next_step": "route it"}')
    ]
    assert (
        h.signatures_normalized(only, kernel="numba", stop=stop)
        == h.signatures_normalized(only, kernel="numpy", stop=None)
    ).all()


def test_band_keys_32_bit_and_thread_counts_agree():
    rng = random.Random(4)
    norms = _texts(rng, 5000)
    sketch = M.BandSketch(0.8, 128, 5, stop=M.common_shingles(norms, 5))
    full = sketch.bands_of(norms)
    top = sketch.bands32_of(norms, threads=1)
    assert top.dtype == np.uint32 and top.shape == full.shape
    assert (top == (full >> np.uint64(32))).all()
    assert (sketch.bands32_of(norms, threads=2) == top).all()
    assert (sketch.bands_of(norms, threads=3) == full).all()
    cand = NI.candidate_pairs(top, threads=1)
    assert 0 < len(cand) < 5000 and (cand == NI.candidate_pairs(full, threads=1)).all()
    assert (NI.candidate_pairs(top, threads=2) == cand).all()


@pytest.mark.parametrize("max_run", [1, 2, 256])
def test_candidate_pairs_equal_all_pairs_per_bucket(max_run):
    """Against a plain reference: every pair of members of a bucket within `max_run` positions (index order)."""
    rng = np.random.default_rng(max_run)
    bh = rng.integers(0, 6, size=(400, 5)).astype(np.uint32)  # few buckets: runs of ~70 members
    want = set()
    for b in range(bh.shape[1]):
        for value in np.unique(bh[:, b]):
            members = np.flatnonzero(bh[:, b] == value).tolist()
            want |= {
                (members[p], members[q])
                for p in range(len(members))
                for q in range(p + 1, min(len(members), p + max_run + 1))
            }
    for threads in (1, 2):
        got = NI.candidate_pairs(bh, max_run, threads=threads)
        assert [tuple(x) for x in got.tolist()] == sorted(want)


def test_ascii_normalization_kernel_equals_normalize_text():
    rng = random.Random(8)
    alpha = "aZ~@[`{\x00\x7f \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # every ASCII whitespace str.split() knows
    cases = [[], [""], ["   "], [" A  b\t"], ["", "x", ""]]
    cases += [
        ["".join(rng.choice(alpha) for _ in range(rng.randrange(0, 40))) for _ in range(n)]
        for n in (1, 7, 500)
    ]
    cases.append(["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(0, 80))) for _ in range(3000)])
    for texts in cases:
        assert M.normalize_many(texts) == [normalize_text(t) for t in texts]
        packed = M.normalize_ascii_packed(texts)
        assert packed is not None
        buf, off = packed
        assert buf.dtype == np.uint8 and off.tolist()[0] == 0 and len(off) == len(texts) + 1
    mixed = ["Straße  ＡＢ", "plain  Text"]
    assert M.normalize_ascii_packed(mixed) is None
    assert M.normalize_many(mixed) == [normalize_text(t) for t in mixed]
    # the kernel's signatures over packed ASCII bytes == over the strings' code points
    texts = [normalize_text(t) for t in _texts(rng, 300)]
    ascii_texts = [t for t in texts if t.isascii()]
    buf, off = M.normalize_ascii_packed(ascii_texts)
    h = M._Hasher(128, 5)
    assert (
        h.signatures_packed(buf, off, threads=1) == h.signatures_normalized(ascii_texts, kernel="numpy")
    ).all()
