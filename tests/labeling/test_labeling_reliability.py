"""A push interrupted half-way resumes without duplicates: a real server killed mid-push, and a batch whose
answer was lost after the server stored it."""

from __future__ import annotations

import json
import os
import signal

import pytest
from lshelpers import make_spec

from curate.errors import ServerError
from curate.labeling import server
from curate.labeling.client import TransientServerError
from curate.labeling.push import existing_ids, find_project, push

pytestmark = pytest.mark.studio


def _records(path, n):
    with open(path, "w") as fh:
        fh.writelines(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Question number {i}?"},
                        {"role": "assistant", "content": f"Answer {i}."},
                    ]
                }
            )
            + "\n"
            for i in range(n)
        )
    return path


def test_push_resumes_after_the_server_is_killed(client, studio, tmp_path):
    spec = make_spec(tmp_path)
    data = _records(tmp_path / "many.jsonl", 1200)
    batches = []

    old_readers = [r["pid"] for r in server.status(studio.data_dir)["readers"]]

    def kill_after_two(step, done, total):
        batches.append(done)
        if len(batches) == 2:
            os.kill(server.status(studio.data_dir)["pid"], signal.SIGKILL)

    with pytest.raises(ServerError, match="cannot reach Label Studio"):
        push(spec, "review", client=client, inputs=[data], batch_size=300, progress=kill_after_two)
    assert batches == [300, 600]
    port = studio.port
    info = server.start(studio.data_dir, port=port)  # same data, same port
    # the dead server's reader processes went with it; the new one has its own
    assert old_readers and not any(server._alive(pid, studio.data_dir) for pid in old_readers)
    assert len(info.readers) == 1 and info.readers[0]["pid"] not in old_readers
    res = push(spec, "review", client=client, inputs=[data], batch_size=300)
    assert (res.already, res.pushed) == (600, 600)
    pid = find_project(client, spec, "review")["id"]
    tasks = list(client.task_data(pid))
    assert len(tasks) == 1200 and len({t["data"]["curate_id"] for t in tasks}) == 1200


def test_a_batch_stored_before_the_connection_dropped_is_not_sent_twice(client, tmp_path, monkeypatch):
    spec = make_spec(tmp_path)
    data = _records(tmp_path / "few.jsonl", 50)
    real = client.import_tasks
    calls = []

    def lossy(project_id, tasks):
        calls.append(len(tasks))
        got = real(project_id, tasks)  # the server stores the batch...
        if len(calls) == 2:
            raise TransientServerError("connection reset")  # ...but the answer never arrives
        return got

    monkeypatch.setattr(client, "import_tasks", lossy)
    res = push(spec, "review", client=client, inputs=[data], batch_size=20)
    assert calls == [20, 20, 10] and res.retries == 1
    assert res.pushed + res.already == 50 and res.already == 20
    assert len(existing_ids(client, find_project(client, spec, "review")["id"])) == 50
    tasks = list(client.task_data(find_project(client, spec, "review")["id"]))
    assert len(tasks) == 50
