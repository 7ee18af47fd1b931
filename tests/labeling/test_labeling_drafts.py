"""`curate label push --drafts MODEL`: a model's draft fills empty or failing answers as the prediction, with its
rule checks beside it; the pulled record says a draft was behind it and whether the labeler kept it. Real models:
the tiny local one and the bundled SmolLM2 (GGUF through transformers); an OpenAI-compatible endpoint on loopback."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from lshelpers import choices, make_spec, textarea

from curate.labeling.drafts import EndpointDrafter, make_drafter
from curate.labeling.pull import pull
from curate.labeling.push import find_project, push
from curate.records import lineage_of

pytestmark = pytest.mark.studio

FIX = '{"intent": "reset_password", "next_step": "Which account is it?"}'

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_k] = "1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _preds(client, task_id):
    p = client.get_json("/api/predictions/", task=task_id)
    return p.get("results", p) if isinstance(p, dict) else p


def test_a_local_model_that_drafts_nothing_leaves_the_answer_empty(client, tmp_path, tiny):
    """The tiny model (random weights) answers only whitespace: no empty draft is shown as if it were one."""
    spec = make_spec(tmp_path)
    res = push(spec, "write", client=client, drafts=make_drafter(str(tiny), max_new_tokens=12))
    assert res.pushed == 7 and res.drafts == 0
    for t in client.task_data(find_project(client, spec, "write")["id"]):
        assert "draft" not in t["meta"] and t["data"]["draft_summary"] == "" and not _preds(client, t["id"])


def test_the_bundled_smollm2_drafts_every_write_task_through_transformers(client, tmp_path):
    spec = make_spec(tmp_path)
    res = push(spec, "write", client=client, drafts=make_drafter("smollm2", max_new_tokens=24))
    assert res.pushed == res.drafts == 7  # one write task per prompt, each with the model's draft
    for t in client.task_data(find_project(client, spec, "write")["id"]):
        draft = t["meta"]["draft"]
        assert draft["model"] == "smollm2" and draft["text"].strip()
        assert t["data"]["draft_summary"].startswith("model draft (smollm2): ")  # its own checks, shown
        (pred,) = _preds(client, t["id"])
        assert [x["value"]["text"] for x in pred["result"]] == [
            [draft["text"]]
        ]  # the answer starts as the draft


class _Endpoint(BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Endpoint.seen.append((self.path, self.headers.get("Authorization"), body))
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": FIX}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_an_openai_compatible_endpoint_drafts_failing_answers_and_lineage_says_so(
    client, tmp_path, monkeypatch, users
):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CURATE_DRAFTS_API_KEY", "sk-test-secret")
        drafter = make_drafter(f"http://127.0.0.1:{srv.server_port}/v1", endpoint_model="tiny-chat")
        assert isinstance(drafter, EndpointDrafter)
        spec = make_spec(tmp_path)
        assert push(spec, "write", client=client, drafts=drafter).drafts == 7
        path, auth, body = _Endpoint.seen[-1]
        assert path == "/v1/chat/completions" and auth == "Bearer sk-test-secret"
        assert body["model"] == "tiny-chat" and body["temperature"] == 0
        assert body["messages"][0] == {"role": "system", "content": spec.system_prompt}
        res = push(spec, "review", client=client, drafts=drafter)
        assert res.drafts == 1  # only the response that fails an automatic rule
        for t in client.task_data(find_project(client, spec, "review")["id"]):
            assert "sk-test-secret" not in json.dumps(t)
            if "draft" not in t["meta"]:
                assert "model draft" not in t["data"]["check_summary"]
                continue
            assert t["data"]["check_summary"].endswith(
                "model draft (" + drafter.name + "): passes every automatic rule"
            )
            (pred,) = _preds(client, t["id"])
            assert [x["value"]["text"] for x in pred["result"] if x["type"] == "textarea"] == [
                ['{\n  "intent": "reset_password",\n  "next_step": "Which account is it?"\n}']
            ]
            # the labeler keeps the draft as it is
            client.create_annotation(
                t["id"],
                [choices("verdict", ["edit"]), textarea("corrected", FIX)],
                completed_by=users["ann@labelers.test"],
            )
        got = pull(spec, client=client, out=tmp_path / "p.jsonl", kinds=["review"])
        assert got.records and all(
            r.labels["draft"] == {"model": drafter.name, "kept": True} for r in got.records
        )
        assert all(lineage_of(r)["draft"] is False for r in got.records)  # a person submitted it
    finally:
        srv.shutdown()
