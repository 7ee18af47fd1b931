"""`curate studio` and `curate label` through click: JSON on stdout, one-line errors, no token in output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from lshelpers import choices, make_spec, textarea

from curate.cli import main


@pytest.fixture()
def env(studio, token, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the CLI writes .curate/ in the working folder
    monkeypatch.setenv("LABEL_STUDIO_URL", studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", token)
    return {"url": studio.url, "token": token}


@pytest.mark.studio
def test_push_pull_conflicts_json(env, tmp_path, client, users):
    spec = make_spec(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["label", "push", str(spec.path), "--kind", "review", "--overlap", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["pushed"] == 6 and out["spec"] == spec.ref and out["quarantine"]["label_push/not_sft"] == 6
    rows = [json.loads(x) for x in Path(out["quarantine_files"][0]).read_text().splitlines()]
    assert len(rows) == 7 and {r["reason"] for r in rows} == {"not_sft", "no_response"}
    r = runner.invoke(main, ["label", "push", str(spec.path), "--kind", "review", "--json"])
    assert json.loads(r.stdout)["already"] == 6
    pid = out["project_id"]
    tasks = {t["data"]["response"]: t["id"] for t in client.task_data(pid)}
    tid = tasks["I've reset your password."]
    client.create_annotation(
        tid,
        [choices("verdict", ["reject"]), choices("violates", ["no-action-claims"])],
        completed_by=users["ann@labelers.test"],
    )
    client.create_annotation(
        tid,
        [
            choices("verdict", ["edit"]),
            textarea("corrected", '{"intent": "other", "next_step": "Which account?"}'),
        ],
        completed_by=users["bob@labelers.test"],
    )
    records = tmp_path / "pulled.jsonl"
    r = runner.invoke(
        main,
        [
            "label",
            "pull",
            str(spec.path),
            "--out-file",
            str(records),
            "--build-dir",
            str(tmp_path / "build"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    pulled = json.loads(r.stdout)
    assert pulled["counts"]["conflicts"] == 1 and pulled["counts"]["annotations"] == 2
    assert (tmp_path / "build" / "agreement.json").exists() and records.exists()
    r = runner.invoke(main, ["label", "conflicts", str(spec.path), "--json"])
    rows = json.loads(r.stdout)["conflicts"]
    assert len(rows) == 1 and rows[0]["task"] == tid
    assert set(rows[0]["answers"].values()) == {"reject", "edit"}
    for text in (r.output, records.read_text()):
        assert env["token"] not in text


@pytest.mark.studio
def test_studio_status_json(studio):
    r = CliRunner().invoke(main, ["studio", "status", "--studio-dir", studio.data_dir, "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert st["healthy"] and st["url"] == studio.url
    assert [r["running"] for r in st["readers"]] == [True]
    r = CliRunner().invoke(main, ["studio", "status", "--studio-dir", studio.data_dir])
    assert r.exit_code == 0 and r.stdout.strip() == f"up {studio.url} (pid {st['pid']}, 1 reader process)"


@pytest.mark.studio
def test_studio_up_reuses_the_running_server_and_hides_the_token(studio, token):
    r = CliRunner().invoke(main, ["studio", "up", "--studio-dir", studio.data_dir])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == studio.url and token not in r.output
    r = CliRunner().invoke(main, ["studio", "up", "--studio-dir", studio.data_dir, "--json", "--show-token"])
    info = json.loads(r.stdout)
    assert info["token"] == token and info["url"] == studio.url
    assert info["credentials_file"].endswith("curate-credentials.json")


def test_studio_status_down_and_down_without_server(tmp_path):
    r = CliRunner().invoke(main, ["studio", "status", "--studio-dir", str(tmp_path), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["running"] is False
    r = CliRunner().invoke(main, ["studio", "down", "--studio-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["stopped"] is False


def test_server_down_is_one_line_exit_1(tmp_path, monkeypatch):
    from curate.labeling.server import free_port

    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a-secret-token")
    monkeypatch.setattr(
        "curate.labeling.client.StudioClient.__init__.__kwdefaults__",
        {"retries": 1, "backoff": 0.01, "timeout": 5.0},
    )
    spec = make_spec(tmp_path)
    r = CliRunner().invoke(main, ["label", "push", str(spec.path), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)  # under --json, the error as one JSON document
    assert doc["ok"] is False and doc["error"]["message"].startswith("cannot reach Label Studio")
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Label Studio")
    assert "a-secret-token" not in r.stderr


def test_no_server_configured_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    spec = make_spec(tmp_path)
    r = CliRunner().invoke(main, ["label", "pull", str(spec.path), "--studio-dir", str(tmp_path / "none")])
    assert r.exit_code == 1 and "curate studio up" in r.stderr
