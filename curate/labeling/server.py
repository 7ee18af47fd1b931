"""A local Label Studio server: install it into its own environment, start it on loopback, stop it.

    >>> from pathlib import Path
    >>> from curate.labeling import server
    >>> info = server.start(Path(".curate/studio"))       # installs Label Studio first if needed (minutes)
    >>> info.url                                           # doctest: +SKIP
    'http://127.0.0.1:8093'
    >>> server.stop(Path(".curate/studio"))               # stops the process it started, and only that one
    True

Label Studio's pins clash with ours, so it lives in its own venv under `$CURATE_CACHE` (default
`~/.cache/curate`)/label-studio-<version>/, shared by every workspace and test session on the machine.
The admin user and its API token are created on the first start from environment variables (never argv);
the credentials live in `<data dir>/curate-credentials.json`, readable by the owner only.

Label Studio's server (Django's threaded dev server) runs Python on one core. `readers=N` starts N more server
processes on the same data folder (SQLite in WAL mode, so reads run beside writes), each on its own loopback
port; the client sends the parts of a pull's export to them in parallel (`ServerInfo.urls`). `stop` stops them
too, and only them.

Where Label Studio is installed, and the install itself, are in `curate.labeling.install`; every name is
importable from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from curate.errors import ServerError
from curate.labeling.install import (  # noqa: F401 (moved; importable from here as before)
    LS_VERSION,
    _file_lock,
    cache_dir,
    ensure_installed,
    executable,
    install_dir,
    is_installed,
)

log = logging.getLogger(__name__)

ADMIN_USER = "admin@curate.local"
STATE_FILE = "curate-server.json"
CREDENTIALS_FILE = "curate-credentials.json"
PORT_FILE = "curate-port"  # the port the last start used: a restart takes it again when it is free
LAST_PORT_WAIT_S = 5.0
LOG_FILE = "label-studio.log"
_STARTED = re.compile(r"Starting development server at http://[\d.]+:(\d+)/?")


# ---------------------------------------------------------------- credentials and state


@dataclass(frozen=True)
class ServerInfo:
    url: str
    port: int
    pid: int
    data_dir: str
    log: str
    version: str = LS_VERSION
    readers: tuple[dict[str, object], ...] = field(
        default=()
    )  # {"pid", "port", "url"} of extra server processes

    def __post_init__(self) -> None:
        object.__setattr__(self, "readers", tuple(dict(r) for r in self.readers))

    @property
    def urls(self) -> list[str]:
        """The main server first, then its reader processes (same data, same token)."""
        return [self.url, *(str(r["url"]) for r in self.readers)]

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["readers"] = [dict(r) for r in self.readers]
        return out


def _write_private(path: Path, data: dict[str, object]) -> None:
    """Write JSON readable by the owner only (created 0600, never world-readable even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def credentials(data_dir: Path, *, create: bool = False) -> dict[str, str]:
    """The admin user, password and API token of the server in `data_dir` (created when asked)."""
    path = Path(data_dir) / CREDENTIALS_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("%s was readable by others (mode %o); set it to 0600", path, mode)
        return json.loads(path.read_text())
    if not create:
        raise ServerError(f"no credentials in {data_dir}; start the server with `curate studio up`")
    creds = {"username": ADMIN_USER, "password": secrets.token_urlsafe(18), "token": secrets.token_hex(20)}
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    _write_private(path, creds)
    return creds


def _read_state(data_dir: Path) -> ServerInfo | None:
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def _alive(pid: int, data_dir: Path | None = None) -> bool:
    """True if `pid` runs and is the Label Studio we started for `data_dir` (not a recycled PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust kill(0)
    args = [a.decode(errors="replace") for a in cmdline]
    if not any("label-studio" in a for a in args):
        return False
    return data_dir is None or str(Path(data_dir).resolve()) in args


def port_is_free(port: int) -> bool:
    """True if 127.0.0.1:port can be bound (with SO_REUSEADDR, as the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(data_dir: Path, creds: dict[str, str]) -> dict[str, str]:
    """A clean environment: Label Studio reads LABEL_STUDIO_X, HEARTEX_X and bare X, so nothing stray leaks in."""
    venv_bin = str(executable().parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_USERNAME": creds["username"],
        "LABEL_STUDIO_PASSWORD": creds["password"],
        "LABEL_STUDIO_USER_TOKEN": creds["token"],
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
        # Label Studio's own switch (server.py) that puts every SQLite connection in WAL mode: readers do not
        # block the writer, so reader processes can export while the main server stores annotations
        "LABEL_STUDIO_AZURE_MOUNT_FIX": "1",
        # a feature flag Label Studio evaluates 4 times per exported task through its LaunchDarkly client (measured:
        # 0.78 s -> 0.19 s of CPU per 40k calls, ~4% of a 10k-task export); pinned to the value 1.23.2 evaluates
        # it to, so flag_set reads it from the environment (checked first) and nothing else changes
        "fflag_feat_fit_568_finite_state_management": "false",
    }


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


TEMPLATE_FILES = ("label_studio.sqlite3", ".env", CREDENTIALS_FILE)


def _template(timeout: float, progress: Callable[[str], None] | None) -> Path:
    """A migrated, stopped data folder (with its admin user and token) kept beside the install, made once."""
    tpl = install_dir() / "template-data"
    with _file_lock(install_dir().parent / f".label-studio-{LS_VERSION}-template.lock"):
        if (tpl / ".ready").exists() and all((tpl / f).exists() for f in TEMPLATE_FILES):
            return tpl
        shutil.rmtree(tpl, ignore_errors=True)
        start(tpl, timeout=timeout, progress=progress)
        stop(tpl)
        (tpl / ".ready").write_text(LS_VERSION + "\n")
    return tpl


def start(
    data_dir: str | os.PathLike[str],
    *,
    port: int | None = None,
    timeout: float = 180.0,
    progress: Callable[[str], None] | None = None,
    from_template: bool = False,
    readers: int = 1,
) -> ServerInfo:
    """Start Label Studio bound to 127.0.0.1 with its data in `data_dir`; reuse it when it already runs there.

    Waits until the server answers and the API token works. Raises ServerError with the log's last lines.
    `from_template=True` (tests) fills an empty `data_dir` with a copy of a migrated database made once per
    machine, which skips the ~30 s of migrations; its admin token is then the template's.
    `readers` more server processes on the same data (free loopback ports) serve the parts of a pull's export
    in parallel; 0 runs the main server alone.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    running = status(data_dir)
    if running.get("running") and running.get("healthy"):
        info = _read_state(data_dir)
        assert info is not None
        return info
    old = _read_state(data_dir)
    if old is not None:  # the main server died: its readers (ours, same data folder) go too
        for r in old.readers:
            _terminate(int(r["pid"]), data_dir)  # type: ignore[call-overload]
        if not _alive(old.pid, data_dir):
            (data_dir / STATE_FILE).unlink(missing_ok=True)
    exe = ensure_installed(progress=progress)
    if from_template and not (data_dir / "label_studio.sqlite3").exists():
        tpl = _template(timeout, progress)
        for name in TEMPLATE_FILES:
            shutil.copy2(tpl / name, data_dir / name)
            os.chmod(data_dir / name, 0o600)
    creds = credentials(data_dir, create=True)
    if port is not None and not port_is_free(port):
        raise ServerError(f"port {port} on 127.0.0.1 is busy; pick another with --port or leave it out")
    last = _last_port(data_dir) if port is None else None
    if last is not None:  # a server stopped a moment ago may still hold it: give it a few seconds
        deadline = time.monotonic() + LAST_PORT_WAIT_S
        while not port_is_free(last) and time.monotonic() < deadline:
            time.sleep(0.2)
    for attempt in range(3):
        try:
            use = (
                port
                if port is not None
                else last
                if last is not None and attempt == 0 and port_is_free(last)
                else free_port()
            )
            info = _launch(exe, data_dir, creds, use, timeout, progress)
            break
        except _PortTaken:
            if port is not None or attempt == 2:
                raise ServerError(
                    "Label Studio's port was taken by another program while it started; run the command again"
                ) from None
            log.info("the free port was taken meanwhile; trying another")
    if readers > 0:
        info = _start_readers(exe, info, creds, readers, timeout, progress)
    return info


def _start_readers(
    exe: Path,
    info: ServerInfo,
    creds: dict[str, str],
    n: int,
    timeout: float,
    progress: Callable[[str], None] | None,
) -> ServerInfo:
    """Start `n` more server processes on the main server's data folder (all at once, then wait for each)."""
    data_dir = Path(info.data_dir)
    env = {
        k: v
        for k, v in _clean_env(data_dir, creds).items()
        if k not in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN")
    }  # the user exists already
    if progress:
        progress(f"starting {n} reader process{'es' if n > 1 else ''} for parallel exports")
    started: list[tuple[subprocess.Popen[bytes], ServerInfo, int]] = []
    readers: list[dict[str, object]] = []
    try:
        for k in range(n):
            port = free_port()
            logfile = data_dir / f"label-studio-reader{k + 1}.log"
            cmd = [
                str(exe),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "WARNING",
            ]
            with open(logfile, "ab") as out:
                offset = out.tell()
                proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=str(data_dir),
                    start_new_session=True,
                )
            rinfo = ServerInfo(
                url=f"http://127.0.0.1:{port}",
                port=port,
                pid=proc.pid,
                data_dir=str(data_dir),
                log=str(logfile),
            )
            started.append((proc, rinfo, offset))
            readers.append({"pid": proc.pid, "port": port, "url": rinfo.url})
        info = ServerInfo(**{**info.as_dict(), "readers": readers})  # type: ignore[arg-type]
        _write_private(data_dir / STATE_FILE, info.as_dict())  # recorded before waiting: `down` finds them
        ok = []
        for (proc, rinfo, offset), r in zip(started, readers):
            try:
                _wait_ready(proc, rinfo, offset, timeout)
                ok.append(r)
            except ServerError as err:  # a reader is optional: go on without it
                log.warning("a Label Studio reader process did not start (%s); going on without it", err)
                _terminate(proc.pid, data_dir)
    except BaseException:
        for proc, _rinfo, _o in started:
            _terminate(proc.pid, data_dir)
        info = ServerInfo(**{**info.as_dict(), "readers": []})  # type: ignore[arg-type]
        _write_private(data_dir / STATE_FILE, info.as_dict())
        raise
    readers = ok
    info = ServerInfo(**{**info.as_dict(), "readers": readers})  # type: ignore[arg-type]
    _write_private(data_dir / STATE_FILE, info.as_dict())
    log.info("label studio readers up at %s", ", ".join(str(r["url"]) for r in readers))
    return info


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        r = httpx.get(url + "/health", timeout=3)
        return r.status_code == 200 and r.json().get("status") == "UP"
    return False


class _PortTaken(ServerError):
    """The server moved to another port (the one asked for was taken between the check and the bind)."""


def _launch(
    exe: Path,
    data_dir: Path,
    creds: dict[str, str],
    port: int,
    timeout: float,
    progress: Callable[[str], None] | None,
) -> ServerInfo:
    logfile = data_dir / LOG_FILE
    cmd = [
        str(exe),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--enable-legacy-api-token",
        "--log-level",
        "WARNING",
    ]
    if progress:
        progress(f"starting Label Studio on 127.0.0.1:{port} (first start runs migrations, ~30 s)")
    with open(logfile, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_clean_env(data_dir, creds),
            cwd=str(data_dir),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    info = ServerInfo(url=url, port=port, pid=proc.pid, data_dir=str(data_dir), log=str(logfile))
    _write_private(data_dir / STATE_FILE, info.as_dict())
    try:
        _wait_ready(proc, info, offset, timeout)
        _check_token(url, creds["token"])
    except BaseException:
        _terminate(proc.pid, data_dir)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    (data_dir / PORT_FILE).write_text(f"{port}\n")
    log.info("label studio %s up at %s (pid %d)", LS_VERSION, url, proc.pid)
    return info


def _last_port(data_dir: Path) -> int | None:
    """The port the server of `data_dir` used last (so bookmarks and LABEL_STUDIO_URL survive a restart)."""
    try:
        port = int((data_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 1024 <= port < 65536 else None


def _wait_ready(proc: subprocess.Popen[bytes], info: ServerInfo, offset: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    logfile = Path(info.log)
    seen_port: int | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"Label Studio exited with code {proc.returncode} while starting; "
                f"log {logfile}: {_tail(logfile)}"
            )
        if seen_port is None:
            with open(logfile, "rb") as fh:
                fh.seek(offset)
                m = _STARTED.search(fh.read().decode(errors="replace"))
            if m:
                seen_port = int(m.group(1))
                if seen_port != info.port:
                    raise _PortTaken(
                        f"Label Studio started on port {seen_port}, not {info.port} (the port "
                        "was taken meanwhile); run the command again"
                    )
        if seen_port is not None:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(info.url + "/health", timeout=5)
                if r.status_code == 200 and r.json().get("status") == "UP":
                    return
        time.sleep(0.5)
    raise ServerError(
        f"Label Studio did not answer on {info.url} within {timeout:.0f} s; log {logfile}: {_tail(logfile)}"
    )


def _check_token(url: str, token: str) -> None:
    r = httpx.get(url + "/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=15)
    if r.status_code != 200:
        raise ServerError(
            f"Label Studio at {url} refused curate's API token (HTTP {r.status_code}); the data "
            "folder may come from another tool: start with a fresh --dir"
        )


def _terminate(pid: int, data_dir: Path | None, timeout: float = 20.0) -> bool:
    """SIGTERM the one process we started (then SIGKILL after `timeout`); True if it was running."""
    if not _alive(pid, data_dir):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        if not _alive(pid, data_dir):
            return True
        time.sleep(0.1)
    log.warning("label studio pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True


def stop(data_dir: str | os.PathLike[str], *, timeout: float = 20.0) -> bool:
    """Stop the server started for `data_dir` (only that process); False if none was running."""
    data_dir = Path(data_dir).resolve()
    info = _read_state(data_dir)
    if info is None:
        return False
    for r in info.readers:
        _terminate(int(r["pid"]), data_dir, timeout)  # type: ignore[call-overload]
    was_running = _terminate(info.pid, data_dir, timeout)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return was_running


def status(data_dir: str | os.PathLike[str]) -> dict[str, object]:
    """{"running", "healthy", "url", "pid", "port", "data_dir", "version"} for the server of `data_dir`."""
    data_dir = Path(data_dir).resolve()
    info = _read_state(data_dir)
    out: dict[str, object] = {
        "running": False,
        "healthy": False,
        "url": None,
        "pid": None,
        "port": None,
        "data_dir": str(data_dir),
        "version": LS_VERSION,
        "installed": is_installed(),
    }
    if info is None:
        return out
    out.update(
        url=info.url,
        pid=info.pid,
        port=info.port,
        readers=[{**r, "running": _alive(int(r["pid"]), data_dir)} for r in info.readers],
    )  # type: ignore[call-overload]
    if not _alive(info.pid, data_dir):
        return out
    out["running"] = True
    out["healthy"] = _answers(info.url)
    return out


def connection(data_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """(url, token) of the running server in `data_dir`; ServerError when it is not running."""
    data_dir = Path(data_dir).resolve()
    info = _read_state(data_dir)
    if info is None or not _alive(info.pid, data_dir):
        raise ServerError(
            f"no Label Studio running for {data_dir}; start one with `curate studio up` or set "
            "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"
        )
    return info.url, credentials(data_dir)["token"]


def reader_urls(data_dir: str | os.PathLike[str]) -> list[str]:
    """URLs of the running reader processes of the server in `data_dir` (empty when none)."""
    data_dir = Path(data_dir).resolve()
    info = _read_state(data_dir)
    if info is None:
        return []
    return [str(r["url"]) for r in info.readers if _alive(int(r["pid"]), data_dir)]  # type: ignore[call-overload]
