"""The local engine's process pool gives exactly what the serial validate step gives."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from curate.engine import pool, validate_step
from curate.spec import load_spec
from curate.steps.base import RunContext
from curate.steps.read import read_inputs
from curate.steps.validate import LengthCounter, validate

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


@pytest.fixture()
def inputs(tmp_path: Path) -> list[str]:
    lines = []
    for i in range(300):
        lines.append(_chat(f"Refund order A-1 please, attempt {i} " + "word " * (i % 7) * 40, GOOD))
        if i % 25 == 0:
            lines += [
                _chat("Refund my order", CLAIM),  # rule_failed
                _chat("Refund order A-1", CLAIM, category="negative"),  # violates filled from the checks
                _chat("Refund order A-1", GOOD, category="negative", violates=["no-action-claims"]),
                _chat("", GOOD),
                b'{"messages": [{"role": "user", "content": "hi"}]}',
                b'{"messages": [',
                orjson.dumps(
                    {
                        "prompt": [{"role": "user", "content": f"Refund order A-1 ({i})"}],
                        "chosen": [{"role": "assistant", "content": GOOD}],
                        "rejected": [{"role": "assistant", "content": CLAIM}],
                    }
                ),
            ]
    chat = tmp_path / "chat.jsonl"
    chat.write_bytes(b"\n".join(lines) + b"\n")
    return [str(chat), str(SPEC / "data.jsonl")]


def _run(fn, inputs: list[str], **kw):
    spec = load_spec(SPEC)
    ctx = RunContext()
    lengths = LengthCounter(spec)
    out = list(
        fn(read_inputs(inputs, ctx=ctx, spec=spec), spec=spec, ctx=ctx, lengths=lengths, max_tokens=450, **kw)
    )
    return out, ctx, lengths


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch) -> None:
    """Threads left by other tests (a Ray driver, a server) would turn the pool off; these tests are about it."""
    import threading

    main = threading.main_thread()
    real = threading.enumerate
    monkeypatch.setattr(
        pool.threading,
        "enumerate",
        lambda: [t for t in real() if t is main or t.name.startswith(("someone-else", "curate-"))],
    )


def test_pool_gives_the_serial_results(inputs: list[str]) -> None:
    serial, sctx, slen = _run(validate, inputs)
    pooled, pctx, plen = _run(pool.validate_local, inputs, workers=2, min_records=0, chunk=50)
    assert len(serial) > 250 and serial == pooled
    assert [r.model_fields_set for r in serial] == [r.model_fields_set for r in pooled]
    assert dict(sctx.quarantined) == dict(pctx.quarantined)
    for reason in ("rule_failed", "too_long", "no_assistant_turn", "negative_passes_rules"):
        assert sctx.reasons[("validate", reason)] > 0, reason
    assert sctx.reasons == pctx.reasons and sctx.per_file_quarantined == pctx.per_file_quarantined
    assert sctx.counters == pctx.counters
    assert list(slen.lengths.items()) == list(plen.lengths.items())
    assert any(r.violates and r.category == "negative" for r in pooled)


def test_pool_is_used_only_when_worth_it(inputs: list[str], monkeypatch) -> None:
    calls = []
    real = pool._pooled
    monkeypatch.setattr(pool, "_pooled", lambda *a, **k: calls.append(1) or real(*a, **k))
    _run(pool.validate_local, inputs, workers=2)  # below min_records: serial
    _run(pool.validate_local, inputs, workers=1, min_records=0)  # one worker: serial
    import threading

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="someone-else", daemon=True)
    other.start()
    try:
        _run(pool.validate_local, inputs, workers=2, min_records=0)  # another thread running: no fork
    finally:
        stop.set()
        other.join()
    assert calls == []
    _run(pool.validate_local, inputs, workers=2, min_records=0, chunk=100)
    assert calls == [1]
    monkeypatch.setenv("CURATE_WORKERS", "1")
    assert pool.default_workers() == 1 and validate_step("local") is pool.validate_local
    monkeypatch.setenv("CURATE_WORKERS", "3")
    assert pool.default_workers() == 3


def test_a_record_changed_elsewhere_comes_back_whole(inputs: list[str], monkeypatch) -> None:
    """Should validate ever change another field, the pool sends the whole record instead of its decisions."""
    import curate.steps.validate as step

    real = step.validate

    def tagging(records, **kw):
        for rec in real(records, **kw):
            yield rec.model_copy(update={"tags": (*rec.tags, "seen")})

    monkeypatch.setattr(pool, "validate", tagging)
    serial, _, _ = _run(tagging, inputs)
    pooled, _, _ = _run(pool.validate_local, inputs, workers=2, min_records=0, chunk=50)
    assert serial == pooled and all("seen" in r.tags for r in pooled)


def test_the_progress_display_thread_does_not_turn_the_pools_off() -> None:
    """The CLI's progress watcher (a daemon thread named curate-progress) only writes to stderr: builds from the CLI
    still fork their pools; any other thread still turns them off."""
    import threading

    from curate.engine.pool import fork_safe

    assert fork_safe()  # (threads other tests left behind are hidden by the _one_thread fixture)
    stop = threading.Event()
    for name, expected in (("curate-progress", True), ("someone-else", False)):
        t = threading.Thread(target=stop.wait, name=name, daemon=True)
        t.start()
        try:
            assert fork_safe() is expected, name
        finally:
            stop.set()
            t.join()
            stop.clear()


def test_pool_workers_die_on_terminate_whatever_the_parents_sigterm_handler(tmp_path: Path) -> None:
    """A host program (a server, a test runner) may catch SIGTERM in Python; the pools' workers inherit the handler
    at the fork. `Pool.terminate` (leaving a pool early: an error, a generator closed) SIGTERMs its workers and
    joins them: a worker whose inherited handler returns would go on with its task and the join would wait for it
    for ever (a hung CI run). `worker_init` gives the workers the default action back. (In a child Python, so a
    regression fails here on the timeout instead of hanging the test run.)"""
    import os
    import signal
    import subprocess
    import sys

    script = """
import multiprocessing, signal, time
from curate.engine.pool import worker_init
seen = []
signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
t0 = time.monotonic()
with multiprocessing.get_context("fork").Pool(2, initializer=worker_init) as p:
    busy = [p.apply_async(time.sleep, (600,)) for _ in range(2)]
    time.sleep(1.0)  # both workers inside their task
    assert not any(r.ready() for r in busy)
print(round(time.monotonic() - t0, 1), seen)
"""
    out = tmp_path / "out.txt"  # (a file, not a pipe: workers left behind would hold a pipe open)
    with open(out, "w") as fh:
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=fh, stderr=fh, cwd=REPO, start_new_session=True
        )
        try:
            rc = child.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the child and the workers it left
            child.wait()
            pytest.fail("the pool's terminate waited for its workers: they did not die on SIGTERM")
    assert rc == 0, out.read_text()
    took, seen = out.read_text().split(" ", 1)
    assert float(took) < 60 and seen.strip() == "[]"  # terminated, not waited for; the parent got no SIGTERM
