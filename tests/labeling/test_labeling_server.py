"""The local server and the client's reliability: loopback, private token, clear errors, retries, stop."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from curate.errors import ServerError
from curate.labeling import server
from curate.labeling.client import StudioClient, TransientServerError, connect


@pytest.mark.studio
def test_server_is_private_and_on_loopback(studio, token):
    data = Path(studio.data_dir)
    st = server.status(data)
    assert st["running"] and st["healthy"] and st["url"].startswith("http://127.0.0.1:")
    # the credentials file is the owner's only, and the token is nowhere in the process's argv or the log
    mode = stat.S_IMODE((data / server.CREDENTIALS_FILE).stat().st_mode)
    assert mode == 0o600
    cmdline = Path(f"/proc/{st['pid']}/cmdline").read_bytes().decode(errors="replace")
    assert token not in cmdline and "label-studio" in cmdline
    assert "--internal-host\x00127.0.0.1" in cmdline
    assert token not in (data / server.LOG_FILE).read_text(errors="replace")
    # it listens on 127.0.0.1 only (0100007F in /proc/net/tcp), on the port its log line announced
    port_hex = f"{st['port']:04X}"
    listening = [
        ln.split()[1] for ln in Path("/proc/net/tcp").read_text().splitlines()[1:] if ln.split()[3] == "0A"
    ]
    assert f"0100007F:{port_hex}" in listening
    assert not any(a.endswith(":" + port_hex) and not a.startswith("0100007F") for a in listening)
    assert (
        f"Starting development server at http://127.0.0.1:{st['port']}/"
        in (data / server.LOG_FILE).read_text()
    )


@pytest.mark.studio
def test_start_reuses_the_running_server(studio):
    again = server.start(studio.data_dir)
    assert again.url == server.status(studio.data_dir)["url"]
    assert again.pid == server.status(studio.data_dir)["pid"]


@pytest.mark.studio
def test_wrong_token_is_a_clear_error(studio):
    with StudioClient(studio.url, "0" * 40) as bad, pytest.raises(ServerError, match="refused the API token"):
        bad.whoami()


def test_server_down_is_a_clear_error():
    port = server.free_port()
    with (
        StudioClient(f"http://127.0.0.1:{port}", "secret-token-value", retries=2, backoff=0.01) as c,
        pytest.raises(TransientServerError, match="cannot reach Label Studio") as err,
    ):
        c.whoami()
    assert "secret-token-value" not in str(err.value)


def test_connect_without_any_server_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ServerError, match="curate studio up"):
        connect(workspace=tmp_path)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    with pytest.raises(ServerError, match="LABEL_STUDIO_API_KEY"):
        connect(workspace=tmp_path)


class _Flaky(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self):
        type(self).calls += 1
        code = 503 if type(self).calls <= 2 else 200
        body = b'{"email": "x@y"}' if code == 200 else b"busy"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_retries_5xx_with_backoff_then_succeeds():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with StudioClient(f"http://127.0.0.1:{srv.server_address[1]}", "tok", retries=3, backoff=0.01) as c:
            assert c.whoami() == {"email": "x@y"}
        assert _Flaky.calls == 3
        _Flaky.calls = -10  # always 503 now: the client gives up with a clear error
        with (
            StudioClient(f"http://127.0.0.1:{srv.server_address[1]}", "tok", retries=2, backoff=0.01) as c,
            pytest.raises(TransientServerError, match="HTTP 503"),
        ):
            c.whoami()
    finally:
        srv.shutdown()


def test_stop_only_stops_the_process_it_started(tmp_path):
    """A state file pointing at a process that is not our Label Studio (a recycled pid) is left alone."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        info = server.ServerInfo(
            url="http://127.0.0.1:1",
            port=1,
            pid=other.pid,
            data_dir=str(tmp_path),
            log=str(tmp_path / "x.log"),
        )
        server._write_private(tmp_path / server.STATE_FILE, info.as_dict())
        assert server.stop(tmp_path) is False
        assert other.poll() is None  # still running
        assert server.status(tmp_path)["running"] is False
    finally:
        other.kill()
        other.wait()


def test_credentials_are_created_owner_only(tmp_path):
    creds = server.credentials(tmp_path, create=True)
    assert len(creds["token"]) == 40 and creds["username"]
    assert stat.S_IMODE((tmp_path / server.CREDENTIALS_FILE).stat().st_mode) == 0o600
    assert server.credentials(tmp_path) == creds  # reused, not regenerated
    os.chmod(tmp_path / server.CREDENTIALS_FILE, 0o644)
    server.credentials(tmp_path)
    assert stat.S_IMODE((tmp_path / server.CREDENTIALS_FILE).stat().st_mode) == 0o600


@pytest.mark.studio
def test_a_personal_access_token_works_too(client, studio):
    """Label Studio's newer tokens are JWT refresh tokens: the client trades them for access tokens."""
    pat = client.request("POST", "/api/token/").json()["token"]
    with StudioClient(studio.url, pat) as c:
        assert c.whoami()["email"] == server.ADMIN_USER
        c._http.headers["Authorization"] = (
            "Bearer expired.or.wrong"  # the access token lapses: renewed on 401
        )
        assert c.whoami()["email"] == server.ADMIN_USER
    with pytest.raises(ServerError, match="personal access token"):
        StudioClient(studio.url, pat[:-4] + "AAAA")


@pytest.mark.studio
def test_a_busy_port_is_refused_before_anything_starts(studio, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} on 127.0.0.1 is busy"):
            server.start(tmp_path / "busy", port=port)
    assert server.status(tmp_path / "busy")["running"] is False


@pytest.mark.studio
def test_reader_processes_are_private_and_serve_the_same_data(studio, token):
    data = Path(studio.data_dir)
    st = server.status(data)
    assert len(st["readers"]) == 1  # the session's server runs with the default: one reader process
    listening = [
        ln.split()[1] for ln in Path("/proc/net/tcp").read_text().splitlines()[1:] if ln.split()[3] == "0A"
    ]
    for r in st["readers"]:
        assert r["running"]
        cmdline = Path(f"/proc/{r['pid']}/cmdline").read_bytes().decode(errors="replace")
        assert token not in cmdline and "--internal-host\x00127.0.0.1" in cmdline and str(data) in cmdline
        environ = Path(f"/proc/{r['pid']}/environ").read_bytes().decode(errors="replace").split("\0")
        assert not [e for e in environ if token in e]
        assert "LABEL_STUDIO_AZURE_MOUNT_FIX=1" in environ  # Label Studio's switch for WAL mode
        assert f"0100007F:{r['port']:04X}" in listening
        with StudioClient(r["url"], token) as c:  # the same users, projects and token as the main server
            assert c.whoami()["email"] == server.ADMIN_USER
    assert server.reader_urls(data) == [r["url"] for r in st["readers"]]
    import sqlite3

    db = sqlite3.connect(f"file:{data / 'label_studio.sqlite3'}?mode=ro", uri=True)
    try:  # WAL: the readers' exports do not block the main server's writes
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
