"""Fixtures for the labeling tests: ONE real Label Studio per test session (installed on first use).

The server is installed into `$CURATE_CACHE/label-studio-<version>/` (reused across runs) and started with its
data in a temporary folder of this session, bound to 127.0.0.1 on a free port, through curate.labeling.server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.labeling import server
from curate.labeling.client import StudioClient

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """The running server: ServerInfo (url, port, pid, data_dir, log)."""
    data_dir = tmp_path_factory.mktemp("studio")
    info = server.start(data_dir, timeout=300, from_template=True)
    yield info
    server.stop(data_dir)


@pytest.fixture(scope="session")
def token(studio) -> str:
    return server.credentials(Path(studio.data_dir))["token"]


@pytest.fixture()
def client(studio, token):
    with StudioClient(
        studio.url, token, retries=3, backoff=0.2, readers=server.reader_urls(Path(studio.data_dir))
    ) as c:
        yield c


@pytest.fixture(scope="session")
def users(studio, token) -> dict[str, int]:
    """Simulated labelers: email -> user id (annotations are created on their behalf with completed_by)."""
    out = {}
    with StudioClient(studio.url, token) as c:
        for name in ("ann", "bob", "cid", "judge"):
            email = f"{name}@labelers.test"
            r = c.request(
                "POST", "/api/users/", json={"email": email, "username": name, "password": "not-used-1234"}
            )
            out[email] = r.json()["id"]
    return out
