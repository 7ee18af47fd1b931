"""The Ray Data engine gives exactly what the local engine gives: records, quarantine rows, lengths, exports.

A real local Ray (127.0.0.1, no dashboard, 2 CPUs) is started once for this module.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import orjson
import pytest

from curate.engine import ray_engine, validate_step
from curate.errors import CurateError
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.read import read_inputs
from curate.steps.validate import LengthCounter

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "support-triage"

GOOD = (
    '{"intent": "refund_request", "entities": {"order": "A-1"}, "missing_info": [], '
    '"next_step": "Route order A-1 to billing."}'
)
CLAIM = (
    '{"intent": "refund_request", "entities": {}, "missing_info": [], '
    '"next_step": "I have refunded the charge already."}'
)


def _chat(user: str, answer: str, **extra) -> bytes:
    return orjson.dumps(
        {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}
    )


@pytest.fixture(scope="module")
def ray_local():
    with ray_engine.ray_session(num_cpus=2) as ray:  # the `ray` extra, installed by scripts/test
        yield ray


def test_local_ray_is_on_loopback_only(ray_local) -> None:
    assert [n["NodeManagerAddress"] for n in ray_local.nodes()] == ["127.0.0.1"]


@pytest.fixture()
def mixed_input(tmp_path: Path) -> Path:
    """Good records, rule failures, a negative, a pair, structural problems and malformed lines."""
    lines = [_chat(f"Refund order A-1 please, attempt {i}", GOOD) for i in range(30)]
    lines += [
        _chat("Refund my order", CLAIM),  # rule_failed (no-action-claims)
        _chat("Refund order A-1", CLAIM, category="negative", violates=["no-action-claims"]),  # a negative
        _chat("", GOOD),  # empty turn
        b'{"messages": [{"role": "user", "content": "hi"}]}',  # no assistant turn
        b"{'messages': []}",  # python literal
        b'{"messages": [',  # bad json
        orjson.dumps(
            {
                "prompt": [{"role": "user", "content": "Refund order A-1"}],
                "chosen": [{"role": "assistant", "content": GOOD}],
                "rejected": [{"role": "assistant", "content": CLAIM}],
            }
        ),
        _chat("Refund order A-1 please, attempt 0", GOOD),  # an exact duplicate
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _validate(fn, path: Path, spec, **kw):
    ctx = RunContext()
    lengths = LengthCounter(spec)
    out = list(
        fn(
            read_inputs([str(path)], ctx=ctx, spec=spec),
            spec=spec,
            ctx=ctx,
            lengths=lengths,
            max_tokens=None,
            **kw,
        )
    )
    return out, ctx, lengths


def test_validate_step_is_identical_on_both_engines(ray_local, mixed_input: Path) -> None:
    spec = load_spec(SPEC)
    local, lctx, llen = _validate(validate_step("local"), mixed_input, spec)
    remote, rctx, rlen = _validate(validate_step("ray"), mixed_input, spec, batch_size=8)
    assert local == remote and len(local) >= 30
    assert dict(lctx.quarantined) == dict(rctx.quarantined)
    assert lctx.reasons == rctx.reasons and lctx.reasons[("validate", "rule_failed")] == 1
    assert lctx.per_file_quarantined == rctx.per_file_quarantined
    assert lctx.counters == rctx.counters
    assert llen.lengths == rlen.lengths


def _build(engine: str, spec_dir: Path, inputs: list[Path], out: Path) -> dict:
    from curate.steps import pipeline

    return pipeline.build(spec_dir, inputs, out, engine=engine).manifest


def test_build_exports_are_identical_on_both_engines(ray_local, mixed_input: Path, tmp_path: Path) -> None:
    spec_dir = tmp_path / "spec"
    shutil.copytree(SPEC, spec_dir)
    inputs = [mixed_input, spec_dir / "data.jsonl"]
    runs_before = ray_engine.RUNS
    local = _build("local", spec_dir, inputs, tmp_path / "local")
    assert ray_engine.RUNS == runs_before
    remote = _build("ray", spec_dir, inputs, tmp_path / "ray")
    assert ray_engine.RUNS == runs_before + 1  # the ray engine really ran
    files_l = {p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file()}
    files_r = {p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    assert files_l == files_r
    assert Path("sft/train.jsonl") in files_l and Path("clusters.jsonl") in files_l
    for rel in sorted(files_l):
        if rel.name in ("manifest.json", "README.md", "report.html", ".curate-build.json"):
            continue  # they carry the creation time
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "ray" / rel).read_bytes(), rel
    for key in ("counts", "conservation", "quarantine", "dedup", "leakage", "inputs", "lengths"):
        assert local[key] == remote[key], key
    assert local["quarantine"].get("validate/rule_failed") == 1 and local["dedup"]["exact"] >= 1
    assert set(local["files"]) == set(remote["files"])


def test_unknown_engine_is_a_one_line_error(tmp_path: Path) -> None:
    from curate.steps.pipeline import build

    with pytest.raises(CurateError, match="unknown engine 'spark'; use one of: local, ray"):
        validate_step("spark")
    with pytest.raises(CurateError, match="unknown engine 'spark'"):
        build(SPEC, out=tmp_path / "x", engine="spark")
    assert not (tmp_path / "x").exists()


def test_cli_build_engine_ray(ray_local, mixed_input: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from curate.cli import main

    runs_before = ray_engine.RUNS
    got = CliRunner().invoke(
        main,
        [
            "build",
            str(SPEC),
            "-i",
            str(mixed_input),
            "--out",
            str(tmp_path / "o"),
            "--engine",
            "ray",
            "--json",
        ],
    )
    assert got.exit_code == 0, got.output
    assert ray_engine.RUNS == runs_before + 1
    doc = orjson.loads(got.stdout)
    assert doc["conservation"]["ok"] and doc["quarantine"]["validate/rule_failed"] == 1
    bad = CliRunner().invoke(main, ["build", str(SPEC), "--engine", "spark"])
    assert bad.exit_code == 1 and "spark" in bad.output


def test_ray_address_is_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
    assert ray_engine.ray_session().address == "ray://head.example:10001"
    monkeypatch.delenv("RAY_ADDRESS")
    session = ray_engine.ray_session(num_cpus=3)
    assert session.address is None and session.num_cpus == 3


# ---------------------------------------------------------------- every stage on Ray (issue 15, part 3)


def _edit(text: str, k: int) -> str:
    """A near copy: one word of a longer text replaced."""
    words = text.split()
    if len(words) < 6:
        return text + " please"
    words[k % len(words)] = "kindly"
    return " ".join(words)


@pytest.fixture()
def mixed_formats(tmp_path: Path, mixed_input: Path, real_fixtures: Path) -> list[Path]:
    """Native JSONL, OpenAI chat with ids and metadata, ShareGPT (real fixtures and our own): near copies planted
    across files and formats."""
    natives = [orjson.loads(x) for x in (SPEC / "data.jsonl").read_bytes().splitlines() if x.strip()]
    plain = [r for r in natives if "messages" in r and r.get("category") != "negative"]
    folder = tmp_path / "in"
    folder.mkdir()
    openai = []
    for k, r in enumerate(plain[:60]):
        msgs = [dict(m) for m in r["messages"]]
        if k % 3 == 0:  # a near copy of a native record, in another format
            msgs[0]["content"] = _edit(msgs[0]["content"], k)
        openai.append(
            orjson.dumps({"id": f"conv_{k:05d}", "messages": msgs, "metadata": {"ticket": 1000 + k}})
        )
    (folder / "openai.jsonl").write_bytes(b"\n".join(openai) + b"\n")
    role = {"user": "human", "assistant": "gpt", "system": "system"}
    share = [
        {"conversations": [{"from": role[m["role"]], "value": m["content"]} for m in r["messages"]]}
        for r in plain[60:100]
    ]
    share += [  # near copies of the ShareGPT records just above
        {
            "conversations": [
                {**c, "value": _edit(c["value"], 3)} if c["from"] == "human" else c
                for c in s["conversations"]
            ]
        }
        for s in share[:10]
    ]
    (folder / "sharegpt.json").write_bytes(orjson.dumps(share))
    shutil.copy(real_fixtures / "llama-factory" / "glaive_toolcall_en_demo.json", folder / "glaive.json")
    shutil.copy(real_fixtures / "axolotl" / "conversation.json", folder / "axolotl.json")
    return [mixed_input, SPEC / "data.jsonl", *sorted(folder.iterdir())]


def _tree(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest_sans_time(doc: dict) -> dict:
    doc = dict(doc)
    doc.pop("created")
    doc["files"] = {k: v for k, v in doc["files"].items() if k not in ("README.md", "report.html")}
    return doc


def test_every_stage_runs_on_ray_and_exports_are_byte_identical(
    ray_local, mixed_formats: list[Path], tmp_path: Path
) -> None:
    import os

    from curate.engine import ray_map

    spec_dir = tmp_path / "spec"
    shutil.copytree(SPEC, spec_dir)
    local = _build("local", spec_dir, mixed_formats, tmp_path / "local")
    runs = dict(ray_map.RUNS)
    remote = _build("ray", spec_dir, mixed_formats, tmp_path / "ray")
    ran = {name: n - runs.get(name, 0) for name, n in ray_map.RUNS.items() if n > runs.get(name, 0)}
    stages = {
        "read_chunks",  # read + validate of the JSONL inputs' lines (compact.chunk_verdicts, as the fork pool)
        "_dedup_kind.<locals>.row_keys",  # dedup: exact keys, raw hashes, MinHash bands, skeleton keys
        "_dedup_kind.<locals>.verify",  # dedup: candidate verification (relation.near_score)
        "pool_map[split_keys]",  # split: normalized user texts and prompt keys
        "pool_map[user_turns]",  # split: user turns (prefix links, the leakage check)
        "scored_pairs.<locals>.task",  # split: near pairs' and the leakage check's verification
    }
    assert stages <= set(ran), ran
    assert any("batch" in name for name in ran), ran  # export: TRL rows, JSONL bytes, Arrow tables
    pids = set().union(*(ray_map.PIDS[name] for name in ran))
    assert pids and os.getpid() not in pids  # on Ray's workers, not in this process
    assert remote["dedup"]["near"] >= 10 and remote["dedup"]["exact"] >= 1
    assert (
        remote["counts"]["sft"]["test"] > 0
        and remote["counts"]["dpo"]["train"] + remote["counts"]["dpo"]["test"] > 0
    )
    got_l, got_r = _tree(tmp_path / "local"), _tree(tmp_path / "ray")
    assert set(got_l) == set(got_r)
    for rel in sorted(got_l):
        if rel.name in ("manifest.json", "README.md", "report.html", ".curate-build.json"):
            continue  # they carry the creation time
        assert got_l[rel] == got_r[rel], rel
    assert _manifest_sans_time(local) == _manifest_sans_time(remote)


def test_ray_mapper_runs_tasks_in_order_with_shared_rows(ray_local, tmp_path: Path) -> None:
    from curate.engine.compact import Input, Row, read_objs, row_of
    from curate.engine.ray_map import RayMapper
    from curate.records import parse_record

    recs = [
        parse_record(
            {
                "kind": "sft",
                "messages": [{"role": "user", "content": f"q{k}"}, {"role": "assistant", "content": "a"}],
            }
        )
        for k in range(50)
    ]
    rows = [row_of(r, load_spec(SPEC)) for r in recs]
    mapper = RayMapper()
    try:
        mapper.share(rows)
        blob = mapper._dumps(lambda t, threads: [rows[i].id for i in t])
        assert len(blob) < 2_000  # the rows travel as their positions, not pickled with the task
        # the shared rows go to the object store compressed: its pages the driver writes are its memory
        stored = mapper.ray.get(mapper._chunks[0])
        assert 8 < len(stored) < len(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)) / 3
        tasks = [(k, (k * 7) % 50) for k in range(40)]
        got = list(mapper.map(lambda t, threads: [rows[i].id for i in t] + [threads], tasks, 40))
        assert got == [[rows[a].id, rows[b].id, 1] for a, b in tasks]
        assert list(mapper.pool_map(lambda r: r.rec.user_text(), rows, chunk=7)) == [
            f"q{k}" for k in range(50)
        ]
        # a plain-line row re-reads its file by descriptor here; on a worker it has its line's bytes
        path = tmp_path / "x.jsonl"
        path.write_bytes(b"".join(_chat(f"p{k}", "a") + b"\n" for k in range(3)))
        src = Input(path)
        plain = [
            Row("sft", f"{k:016d}", src, str(path), k + 1, "native", "", (), (), ("pass",), None)
            for k in range(3)
        ]
        mapper.share(plain)
        assert list(mapper.pool_map(lambda r: r.obj()["messages"][0]["content"], plain)) == ["p0", "p1", "p2"]
        got = list(mapper.map(lambda t, threads: read_objs([plain[i] for i in t]), [(2, 0, 1)], 3))
        assert got == [read_objs([plain[2], plain[0], plain[1]])]
        assert [o["messages"][0]["content"] for o in got[0]] == ["p2", "p0", "p1"]
        src.close()
    finally:
        mapper.close()
    assert ray_local.is_initialized()  # a Ray it did not start is left running


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_head():
    """A Ray head on 127.0.0.1 with its Ray Client server, as a cluster has it: yields its `ray://` address."""
    import os
    import socket
    import subprocess
    import sys
    import time

    gcs, client = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",  # (stops what it started when terminated)
            f"--port={gcs}",
            f"--ray-client-server-port={client}",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", client)) == 0:
                    break
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        yield f"ray://127.0.0.1:{client}"
    finally:
        head.terminate()
        head.wait(timeout=60)


def test_ray_client_address_builds_what_local_builds(
    ray_head: str, mixed_input: Path, tmp_path: Path
) -> None:
    """The README's cluster line as written: RAY_ADDRESS=ray://HEAD:PORT curate build ... --engine ray (the `ray`
    extra brings Ray Client); the export is the local engine's, byte for byte."""
    import os
    import subprocess
    import sys

    curate = str(Path(sys.executable).parent / "curate")
    env = {**os.environ, "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    args = ["build", str(SPEC), "-i", str(mixed_input), "-i", str(SPEC / "data.jsonl"), "--json"]
    for _ in range(2):  # Ray's client proxy can lose a race with the server process it starts: once more then
        remote = subprocess.run(
            [curate, *args, "--out", str(tmp_path / "ray"), "--engine", "ray"],
            env=env,
            capture_output=True,
            check=False,
        )
        if b"initialization failure from server" not in remote.stderr:
            break
    assert remote.returncode == 0, remote.stderr.decode()[-2000:]
    env.pop("RAY_ADDRESS")
    local = subprocess.run(
        [curate, *args, "--out", str(tmp_path / "local")], env=env, capture_output=True, check=False
    )
    assert local.returncode == 0, local.stderr.decode()[-2000:]
    got_l, got_r = _tree(tmp_path / "local"), _tree(tmp_path / "ray")
    assert set(got_l) == set(got_r) and Path("sft/data/train-00000-of-00001.parquet") in got_l
    for rel in sorted(got_l):
        if rel.name not in ("manifest.json", "README.md", "report.html", ".curate-build.json"):
            assert got_l[rel] == got_r[rel], rel
    assert _manifest_sans_time(orjson.loads(got_l[Path("manifest.json")])) == _manifest_sans_time(
        orjson.loads(got_r[Path("manifest.json")])
    )
