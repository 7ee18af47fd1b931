"""One bad record never aborts a build (#16): deep nesting, huge numbers, NaN, duplicate keys, CSV text cells,
quarantine rows that spill to disk; then hypothesis fuzzing of every reader, of spec loading and of whole builds.

The fuzz tests run a short, fixed (derandomized) set of cases here; `scripts/fuzz.py` runs the same properties
with 10,000 cases per reader (CURATE_FUZZ_EXAMPLES) and prints what they met (CURATE_FUZZ_STATS).
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import re
import shutil
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import InputError, SpecError
from curate.records import Source, dump_record
from curate.spec import load_spec
from curate.steps import base
from curate.steps.base import RunContext
from curate.steps.pipeline import build
from curate.steps.read import read_inputs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "build"
REASON = re.compile(r"^[a-z][a-z0-9_]*$")
GOOD = {
    "messages": [
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": '{"answer": "It ships today."}'},
    ]
}


def read(path: Path) -> tuple[list, RunContext]:
    ctx = RunContext()
    return list(read_inputs([path], ctx=ctx)), ctx


def qrows(ctx: RunContext, step: str = "read") -> list[dict]:
    return list(ctx.quarantined.get(step, []))


def conserved(path: Path, recs: list, ctx: RunContext) -> None:
    f = str(path)
    assert (
        ctx.counters["in:" + f]
        == ctx.counters["read:out:" + f] + ctx.per_file_quarantined[f]
        == len(recs) + len(qrows(ctx))
    )


def nested(depth: int, leaf: object = 1) -> object:
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


# ---------------------------------------------------------------- the faults, one by one


def test_deep_nesting_in_jsonl_and_json_is_one_quarantined_record(tmp_path):
    deep = {**GOOD, "labels": {"x": nested(300)}}  # orjson writes at most 255 levels
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(GOOD) + "\n" + json.dumps(deep) + "\n" + "[" * 1500 + "]" * 1500 + "\n")
    recs, ctx = read(f)
    assert len(recs) == 1 and [q["reason"] for q in qrows(ctx)] == ["too_deep", "too_deep"]
    conserved(f, recs, ctx)
    g = tmp_path / "a.json"  # a .json array whose 2nd element is nested past Python's recursion limit
    g.write_text(
        "["
        + json.dumps(GOOD)
        + ",\n"
        + "[" * 1500
        + "]" * 1500
        + ",\n"
        + json.dumps(deep)
        + ",\n"
        + json.dumps({**GOOD, "category": "edge"})
        + "]"
    )
    recs, ctx = read(g)
    assert [r.category for r in recs] == ["typical", "edge"]
    assert [(q["reason"], q["source"]["line"]) for q in qrows(ctx)] == [("too_deep", 2), ("too_deep", 3)]
    conserved(g, recs, ctx)
    ctx.flush_quarantine(tmp_path / "q")  # the quarantine writer copes with what it holds
    assert len((tmp_path / "q" / "read.jsonl").read_text().splitlines()) == 2


def test_huge_integers_and_non_finite_numbers_follow_one_rule(tmp_path):
    big = {**GOOD, "labels": {"n": 2**70}}
    nan = (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "labels": '
        '{"score": NaN}}'
    )
    inf = nan.replace("NaN", "1e400")
    f, g = tmp_path / "n.jsonl", tmp_path / "n.json"
    f.write_text(json.dumps(big) + "\n" + nan + "\n" + inf + "\n")
    g.write_text("[" + json.dumps(big) + ",\n" + nan + ",\n" + inf + "]")
    for path in (f, g):
        recs, ctx = read(path)
        assert len(recs) == 1 and recs[0].labels["n"] == float(2**70)  # read as a float, like orjson does
        orjson.dumps(dump_record(recs[0]))
        assert [q["reason"] for q in qrows(ctx)] == ["not_finite", "not_finite"], path
        conserved(path, recs, ctx)


def test_duplicate_keys_are_flagged_in_jsonl_json_and_csv(tmp_path):
    dup = (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], '
        '"category": "edge", "category": "typical"}'
    )
    inner = (
        '{"messages": [{"role": "user", "content": "a", "content": "c"}, {"role": "assistant", '
        '"content": "{\\"x\\": 1}"}]}'
    )
    f, g = tmp_path / "d.jsonl", tmp_path / "d.json"
    f.write_text(dup + "\n" + inner + "\n" + json.dumps(GOOD) + "\n")
    g.write_text("[" + dup + ",\n" + inner + ",\n" + json.dumps(GOOD) + "]")
    for path in (f, g):
        recs, ctx = read(path)
        assert len(recs) == 1
        assert [(q["reason"], q["detail"].split(": ", 1)[1]) for q in qrows(ctx)] == [
            ("duplicate_key", "key 'category' appears twice in one object"),
            ("duplicate_key", "key 'content' appears twice in one object"),
        ], path
    c = tmp_path / "d.csv"
    c.write_text("prompt,completion,prompt\nq,a,r\n")
    recs, ctx = read(c)
    assert recs == [] and [q["reason"] for q in qrows(ctx)] == ["duplicate_key"]


_KEYS = st.sampled_from(["a", "b", "role", "content", 'q"', "x:", "k\\", '\\"', "", "é", '":'])
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from(list('ab:"\\{}[],é ')), max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEYS, kids, max_size=3),
    max_leaves=12,
)


@st.composite
def _jsonl_lines(draw: st.DrawFn) -> bytes:
    """A JSONL object line: compact or spaced, maybe nested past MAX_DEPTH, maybe with a key written twice."""
    from curate.readers.guard import MAX_DEPTH

    obj = draw(st.dictionaries(_KEYS, _JSON, min_size=1, max_size=4))
    if draw(st.booleans()):
        deep: object = 1
        for _ in range(draw(st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3))):
            deep = [deep] if draw(st.booleans()) else {"d": deep}
        obj["deep"] = deep
    text = json.dumps(obj, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])), ensure_ascii=False)
    if draw(st.booleans()):  # a key written twice: at the top, or inside the first nested object
        at = text.find("{", 1) if draw(st.booleans()) else 0
        if at >= 0:
            text = text[: at + 1] + '"a": 0, ' + text[at + 1 :]
            text = text.replace('{"a": 0, }', '{"a": 0}')
    return text.encode("utf-8")


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(_jsonl_lines())
def test_line_fault_equals_unit_fault(raw):
    """The fast pool lanes' guard (`line_fault`, no walk) finds what `unit_fault` finds on every line orjson parses:
    too deep, duplicate keys (at any depth, keys with quotes, colons and backslashes), or nothing."""
    from curate.readers.guard import line_fault, unit_fault

    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if type(obj) is not dict:
        return
    want, got = unit_fault(obj, raw), line_fault(obj, raw)
    assert (want is None) == (got is None)
    if want is not None:
        assert (got.reason, got.detail) == (want.reason, want.detail)


def test_csv_cells_are_text_unless_they_hold_messages(tmp_path):
    f = tmp_path / "pc.csv"
    f.write_text(
        'prompt,completion\n"Triage this?","{""intent"": ""refund"",  ""urgent"": true}"\n'
        '"Primes?","[2, 3, 5]"\n"Is it on?","True"\n'
        '"[{""role"": ""user"", ""content"": ""Hi""}]","[{""role"": ""assistant"", ""content"": ""Yo""}]"\n'
    )
    recs, ctx = read(f)
    assert [r.completion[0].content for r in recs] == [
        '{"intent": "refund",  "urgent": true}',
        "[2, 3, 5]",
        "True",
        "Yo",
    ]
    assert recs[3].prompt[0].content == "Hi" and qrows(ctx) == []


def test_quarantine_rows_spill_to_disk_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "SPILL_ROWS", 7)
    f = tmp_path / "bad.jsonl"
    f.write_text("".join(f"not json {i}\n" for i in range(50)) + json.dumps(GOOD) + "\n")
    recs, ctx = read(f)
    rows = ctx.quarantined["read"]
    assert len(recs) == 1 and len(rows) == 50 and len(rows._mem) < 7 and rows._n_file >= 44
    assert [r["source"]["line"] for r in rows] == list(range(1, 51)) and rows[49]["original"] == "not json 49"
    assert pickle.loads(pickle.dumps(rows)) == list(rows)
    ctx.flush_quarantine(tmp_path / "q")
    lines = (tmp_path / "q" / "read.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["source"]["line"] for x in lines] == list(range(1, 51))


def test_the_quarantine_writer_never_raises():
    ctx = RunContext()
    ctx.quarantine(step="s", reason="r", detail="d", source=Source(file="f", line=1), original={"n": 2**80})
    ctx.quarantine(step="s", reason="r", detail="d", original=nested(400))
    ctx.quarantine(step="s", reason="r", detail="d", original=nested(5000))
    out = b"".join(base.encode_row(r) for r in ctx.quarantined["s"])
    rows = [orjson.loads(x) for x in out.splitlines()]
    assert rows[0]["original"] == '{"n": 1208925819614629174706176}' and len(rows) == 3


# ---------------------------------------------------------------- fuzzing (hypothesis)

EXAMPLES = int(os.environ.get("CURATE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="CURATE_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
    database=None,
)
STATS: Counter[str] = Counter()


def _stats(prefix: str, ctx: RunContext | None, outcome: str) -> None:
    STATS[f"{prefix}:cases"] += 1
    STATS[f"{prefix}:{outcome}"] += 1
    if ctx is not None:
        for (step, reason), n in ctx.reasons.items():
            STATS[f"{prefix}:quarantined:{step}/{reason}"] += n
    if STATS["_writes"] % 20 == 0:
        _write_stats()
    STATS["_writes"] += 1


def _write_stats() -> None:
    path = os.environ.get("CURATE_FUZZ_STATS")
    if path:
        Path(path).write_text(
            json.dumps({k: v for k, v in sorted(STATS.items()) if k != "_writes"}, indent=1)
        )


atexit.register(_write_stats)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", "gpt", "x", ""]),
        "content": st.one_of(st.text(max_size=40), json_value),
    }
)
record = st.one_of(
    st.fixed_dictionaries(
        {"messages": st.lists(message, max_size=4)},
        optional={
            "category": st.sampled_from(["typical", "edge", "negative", ""]),
            "tags": st.lists(st.text(max_size=5), max_size=2),
            "labels": json_value,
        },
    ),
    st.fixed_dictionaries(
        {
            "prompt": st.one_of(st.text(max_size=30), st.lists(message, max_size=2)),
            "chosen": st.one_of(st.text(max_size=30), st.lists(message, max_size=2)),
            "rejected": st.one_of(st.text(max_size=30), st.lists(message, max_size=2)),
        }
    ),
    st.fixed_dictionaries({"prompt": st.text(max_size=30), "completion": st.text(max_size=30)}),
    st.dictionaries(st.text(max_size=10), json_value, max_size=5),
)


def _dumps(v: object) -> str:
    """JSON text allowing what JSON forbids (NaN, Infinity, integers beyond 64 bits)."""
    return json.dumps(v, ensure_ascii=False, allow_nan=True)


@st.composite
def jsonl_text(draw: st.DrawFn) -> bytes:
    """Lines of records and garbage: deep nesting, duplicate keys, broken lines, python reprs, blank lines."""
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(
            st.sampled_from(["good", "record", "deep", "dup", "cut", "repr", "blank", "bytes", "scalar"])
        )
        if kind == "good":
            lines.append(_dumps(GOOD))
        elif kind == "record":
            lines.append(_dumps(draw(record)))
        elif kind == "deep":
            d = draw(st.integers(60, 1500))
            lines.append(_dumps({**GOOD, "labels": nested(d)}) if d < 900 else "[" * d + "]" * d)
        elif kind == "dup":
            lines.append(_dumps(GOOD)[:-1] + ', "messages": []}')
        elif kind == "cut":
            s = _dumps(draw(record))
            lines.append(s[: draw(st.integers(0, len(s)))])
        elif kind == "repr":
            lines.append(repr(draw(record)))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=60)).decode("latin-1"))
        else:
            lines.append(_dumps(draw(json_leaf)))
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))
    return _encode(text, draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "nul"])))


def _encode(text: str, how: str) -> bytes:
    if how == "nul":
        return text.encode("utf-8", "surrogatepass").replace(b"\n", b"\x00\n", 1)
    try:
        return text.encode(how, "surrogatepass")
    except (UnicodeEncodeError, LookupError):
        return text.encode("utf-8", "surrogatepass")


@st.composite
def json_array_text(draw: st.DrawFn) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["good", "record", "deep", "dup", "value"]))
        if kind == "good":
            items.append(_dumps(GOOD))
        elif kind == "record":
            items.append(_dumps(draw(record)))
        elif kind == "deep":
            d = draw(st.integers(60, 2000))
            items.append("[" * d + "]" * d)
        elif kind == "dup":
            items.append(_dumps(GOOD)[:-1] + ', "messages": 1}')
        else:
            items.append(_dumps(draw(json_value)))
    text = "[" + ",\n".join(items) + "]"
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    return _encode(text, draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "nul"])))


@st.composite
def csv_text(draw: st.DrawFn) -> bytes:
    header = draw(
        st.sampled_from(
            [
                ["prompt", "completion"],
                ["messages", "category"],
                ["prompt", "chosen", "rejected"],
                ["prompt", "completion", "prompt"],
                ["a"],
            ]
        )
    )
    cell = st.one_of(
        st.text(max_size=30), st.builds(_dumps, json_value), st.builds(_dumps, st.lists(message))
    )
    rows = [
        [draw(cell) for _ in range(draw(st.sampled_from([len(header), len(header), len(header) + 1])))]
        for _ in range(draw(st.integers(0, 6)))
    ]
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return _encode(buf.getvalue(), draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "nul"])))


def _check_read(tmp_path: Path, name: str, data: bytes, prefix: str) -> None:
    folder = tmp_path / f"case{STATS[prefix + ':cases']}"
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    ctx = RunContext()
    try:
        recs = list(read_inputs([path], ctx=ctx))
    except InputError:  # a whole-file verdict (e.g. no format): one line for the user, nothing half-read
        _stats(prefix, None, "input_error")
        return
    conserved(path, recs, ctx)
    for q in qrows(ctx):
        assert REASON.match(q["reason"]) and q["detail"].startswith(f"{path}:"), q
    for rec in recs:
        orjson.dumps(dump_record(rec))  # whatever was read can be written
    ctx.flush_quarantine(folder / "quarantine")
    got = sum(len(p.read_bytes().splitlines()) for p in (folder / "quarantine").glob("*.jsonl"))
    assert got == ctx.n_quarantined
    _stats(prefix, ctx, "read")
    shutil.rmtree(folder)


@FUZZ
@given(data=st.one_of(jsonl_text(), st.binary(max_size=400)))
def test_fuzz_jsonl_reader(tmp_path_factory, data):
    _check_read(tmp_path_factory.mktemp("jsonl"), "f.jsonl", data, "jsonl")


@FUZZ
@given(
    data=st.one_of(
        json_array_text(), st.binary(max_size=400), st.builds(lambda v: _dumps(v).encode(), record)
    )
)
def test_fuzz_json_reader(tmp_path_factory, data):
    _check_read(tmp_path_factory.mktemp("json"), "f.json", data, "json")


@FUZZ
@given(data=st.one_of(csv_text(), st.binary(max_size=300)), tsv=st.booleans())
def test_fuzz_csv_reader(tmp_path_factory, data, tsv):
    _check_read(tmp_path_factory.mktemp("csv"), "f.tsv" if tsv else "f.csv", data, "csv")


@FUZZ
@given(
    data=st.one_of(jsonl_text(), json_array_text(), csv_text(), st.binary(max_size=300)),
    ext=st.sampled_from(["data", "txt", "jsonl", "json", "parquet", "arrow"]),
)
def test_fuzz_mixed_formats_and_wrong_extensions(tmp_path_factory, data, ext):
    """Any bytes under any name: the read ends with records + reasons, or one InputError line for the file."""
    _check_read(tmp_path_factory.mktemp("mixed"), f"f.{ext}", data, "mixed")


@FUZZ
@given(
    rows=st.lists(
        st.one_of(record, st.fixed_dictionaries({"messages": st.just(GOOD["messages"])})), max_size=6
    ),
    kind=st.sampled_from(["parquet", "arrow"]),
)
def test_fuzz_parquet_and_arrow_readers(tmp_path_factory, rows, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{k: _dumps(v) if k == "labels" else v for k, v in r.items()} for r in rows]
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        _stats(kind, None, "not_a_table")  # pyarrow cannot make one: nothing a user could have written
        return
    folder = tmp_path_factory.mktemp(kind)
    path = folder / f"t.{kind}"
    try:
        if kind == "parquet":
            pq.write_table(table, path)
        else:
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
    except pa.ArrowException:
        _stats(kind, None, "not_a_table")  # pyarrow cannot write it (e.g. an empty struct)
        return
    _check_read(folder, path.name, path.read_bytes(), kind)


spec_yaml = (DATA / "spec.yaml").read_text()


@FUZZ
@given(
    cut=st.integers(0, len(spec_yaml)),
    junk=st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1"))),
    where=st.integers(0, len(spec_yaml)),
    bomb=st.integers(0, 12),
    how=st.sampled_from(["utf-8", "utf-16", "nul", "latin-1"]),
)
def test_fuzz_spec_loading(tmp_path_factory, cut, junk, where, bomb, how):
    """Any damaged spec: a Spec or one SpecError, never another exception, a hang or a MemoryError."""
    text = spec_yaml[:where] + junk + spec_yaml[where:cut] if cut > where else spec_yaml[:cut] + junk
    if bomb:
        text += "\nx0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
            f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, bomb)
        )
    f = tmp_path_factory.mktemp("spec") / "spec.yaml"
    f.write_bytes(_encode(text, how))
    try:
        load_spec(f)
        _stats("spec", None, "loaded")
    except SpecError as err:
        assert "\n" not in str(err).strip() or str(err).count("\n") < 3
        _stats("spec", None, "spec_error")


def _spec_doc() -> dict:
    from ruamel.yaml import YAML

    return json.loads(json.dumps(YAML(typ="safe").load(spec_yaml)))


SPEC_DOC = _spec_doc()
spec_paths = st.sampled_from(
    [
        ("name",),
        ("version",),
        ("description",),
        ("output", "schema"),
        ("rules",),
        ("rules", 0),
        ("rules", 2, "check"),
        ("rules", 2, "check", "pattern"),
        ("cases",),
        ("split", "heldout"),
        ("export", "formats"),
        ("data",),
        ("data", 0),
        ("coverage",),
    ]
)


@FUZZ
@given(
    path=spec_paths,
    value=st.one_of(
        json_value, st.integers(0, 400).map(nested), st.text(max_size=40).map(lambda t: "(a|aa)+" + t)
    ),
)
def test_fuzz_spec_values(tmp_path_factory, path, value):
    """A well-formed spec (JSON is YAML) with any value anywhere: a Spec (then lint and the checks' compile run) or
    one SpecError naming the file."""
    doc = json.loads(json.dumps(SPEC_DOC))
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    folder = tmp_path_factory.mktemp("specv")
    f = folder / "spec.yaml"
    f.write_text(_dumps(doc))
    try:
        spec = load_spec(f)
    except SpecError as err:
        assert str(err).startswith(str(f))
        _stats("spec_values", None, "spec_error")
        return
    from curate.checks.compiled import compile_rules
    from curate.spec import lint

    lint(spec)
    compile_rules(spec)
    _stats("spec_values", None, "loaded")


BUILD_EXAMPLES = int(os.environ.get("CURATE_FUZZ_BUILDS", max(3, EXAMPLES // 10)))


@settings(
    max_examples=BUILD_EXAMPLES,
    deadline=None,
    derandomize="CURATE_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(data=jsonl_text())
def test_fuzz_build_finishes_and_conserves(tmp_path_factory, data):
    """A build over the example data plus a fuzzed file finishes; every input line is exported, a duplicate or
    quarantined with a reason."""
    folder = tmp_path_factory.mktemp("build")
    fuzz = folder / "fuzz.jsonl"
    fuzz.write_bytes(data)
    try:
        res = build(DATA, [DATA / "data.jsonl", fuzz], folder / "out")
    except InputError:
        _stats("build", None, "input_error")
        return
    m = res.manifest
    assert m["conservation"]["ok"]
    for inp in m["inputs"]:
        assert inp["in"] == inp["exported"] + inp["quarantined"] + inp["duplicates"]
    rows = [
        orjson.loads(x)
        for p in (folder / "out" / "quarantine").glob("*.jsonl")
        for x in p.read_bytes().splitlines()
    ]
    assert len(rows) == m["counts"]["quarantined"] and all(REASON.match(r["reason"]) for r in rows)
    STATS["build:quarantined_rows"] += len(rows)
    _stats("build", None, "built")


@pytest.mark.parametrize("n", [0])
def test_fuzz_stats_are_written(tmp_path, monkeypatch, n):
    monkeypatch.setenv("CURATE_FUZZ_STATS", str(tmp_path / "s.json"))
    _stats("probe", None, "ok")
    _write_stats()
    assert json.loads((tmp_path / "s.json").read_text())["probe:cases"] >= 1 + n


def test_detection_does_not_hold_a_file_of_bad_lines(tmp_path, monkeypatch):
    """Format detection replays the units it looked at; past _MAX_SEEN it reads the file again instead of holding
    them all (5M bad lines before the first record used to be held in memory)."""
    from curate.steps import read as read_mod

    monkeypatch.setattr(read_mod, "_MAX_SEEN", 5)
    f = tmp_path / "late.jsonl"
    f.write_text("".join(f"bad {i}\n" for i in range(20)) + json.dumps(GOOD) + "\n" + "{'py': True}\n")
    recs, ctx = read(f)
    assert (
        len(recs) == 1
        and len(qrows(ctx)) == 21
        and [q["source"]["line"] for q in qrows(ctx)] == list(range(1, 20 + 1)) + [22]
    )
    conserved(f, recs, ctx)
    g = tmp_path / "only_bad.jsonl"
    g.write_text("".join(f"bad {i}\n" for i in range(20)))
    recs, ctx = read(g)
    assert recs == [] and len(qrows(ctx)) == 20
    conserved(g, recs, ctx)
    h = tmp_path / "unknown.jsonl"  # objects of no known shape after many bad lines: quarantined unit by unit
    h.write_text(
        "".join(f"bad {i}\n" for i in range(20)) + "".join(json.dumps({"q": i}) + "\n" for i in range(120))
    )
    recs, ctx = read(h)
    assert (
        recs == []
        and len(qrows(ctx)) == 140
        and {q["reason"] for q in qrows(ctx)} == {"bad_json", "unknown_format"}
    )
    conserved(h, recs, ctx)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_build_flags_duplicate_keys_on_plain_lines_too(tmp_path, monkeypatch, workers):
    """Plain native lines skip the record path in a build (engine.compact); one with a key twice must not."""
    from curate.engine import local_map

    monkeypatch.setattr(local_map, "POOL_MIN_LINES", 0)
    monkeypatch.setenv("CURATE_WORKERS", workers)
    monkeypatch.setattr(
        local_map, "_fork_safe", lambda: True
    )  # (a thread an earlier test left must not turn the pool off)
    f = tmp_path / "data.jsonl"
    dup = (
        '{"messages": [{"role": "user", "content": "Dup key question here?"}, {"role": "assistant", "content": '
        '"{\\"answer\\": \\"Fine.\\"}"}], "category": "edge", "category": "typical"}\n'
    )
    f.write_text((DATA / "data.jsonl").read_text() + dup)
    res = build(DATA, [f], tmp_path / "o")
    assert res.manifest["quarantine"].get("read/duplicate_key") == 1
    assert res.manifest["conservation"]["ok"]
