"""Render a local HTML file in headless Chromium and look at it through the DevTools protocol.

Used by the report's browser test and by scripts/screenshot_report.py; needs Debian's `chromium` and the
`websocket-client` package (the `test` extra). Offline by construction: background networking, sync and
component updates are off, and every request the page makes is recorded so a test can assert there was none.

    with Chromium() as browser:
        page = browser.open(Path("out/support-triage/v1/report.html"))
        page.evaluate("document.querySelectorAll('svg.chart').length")
        page.screenshot(Path("report.png"))
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

from curate.errors import CurateError

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


class BrowserError(CurateError):
    """Chromium is missing, did not start, or the page did not load."""


def find_chromium() -> str | None:
    for cand in (
        os.environ.get("CURATE_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if cand and Path(cand).is_file():
            return cand
    return None


class Page:
    """One tab, driven over its DevTools websocket."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg_id = self._next
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"chromium: {method} failed: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise BrowserError(f"chromium: no answer to {method} within {self.timeout:.0f} s")

    def wait_event(self, method: str) -> dict[str, Any]:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise BrowserError(f"chromium: no {method} within {self.timeout:.0f} s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results only)."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"chromium: {expression[:60]!r} threw {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def requests(self) -> list[str]:
        """Every URL the page asked for since it was opened."""
        return [
            ev["params"]["request"]["url"]
            for ev in self.events
            if ev["method"] == "Network.requestWillBeSent"
        ]

    def screenshot(
        self,
        path: Path,
        *,
        full_page: bool = True,
        width: int = 1280,
        max_height: int = 16000,
        height: int | None = None,
    ) -> Path:
        """PNG of the page (the whole height by default, capped at max_height)."""
        if full_page and height is None:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            height = min(max_height, int(size["height"]))
        height = height or 900
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead socket is fine
            self.ws.close()


class Chromium:
    """A headless Chromium with its own throw-away profile, stopped (only it) on exit."""

    def __init__(self, *, binary: str | None = None, timeout: float = 30.0) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError(
                "chromium not found: install it (`apt-get install -y chromium`) or set CURATE_CHROMIUM"
            )
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile: str | None = None
        self.port: int | None = None
        self.pages: list[Page] = []

    def __enter__(self) -> Self:
        self.profile = tempfile.mkdtemp(prefix="curate-chromium-")
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if port_file.is_file():
                lines = port_file.read_text().splitlines()
                if lines and lines[0].strip().isdigit():
                    self.port = int(lines[0])
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise BrowserError(f"chromium did not open its DevTools port within {self.timeout:.0f} s")

    def _targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def open(self, file: Path, *, width: int = 1280, height: int = 900) -> Page:
        """Load a local file in the first tab and wait for its load event."""
        target = next(t for t in self._targets() if t.get("type") == "page")
        page = Page(target["webSocketDebuggerUrl"], self.timeout)
        self.pages.append(page)
        page.send("Page.enable")
        page.send("Network.enable")
        page.send("Runtime.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        page.events.clear()
        page.send("Page.navigate", url=Path(file).resolve().as_uri())
        page.wait_event("Page.loadEventFired")
        return page

    def __exit__(self, *exc: object) -> None:
        for page in self.pages:
            page.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
