"""Look at a labeling task the way a labeler sees it: headless Chromium, logged in as a labeler.

    >>> from curate.labeling.screens import LabelerBrowser
    >>> with LabelerBrowser(url, client) as b:                                  # doctest: +SKIP
    ...     b.screenshot_task(project_id, task_id, Path("review.png"))
    ...     b.visible_text()

The labeler joins the organization through Label Studio's own invite link and signs up with the form (no admin
token in the browser). Driven over the Chrome DevTools protocol (curate.report.browser), no Playwright.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Self

from curate.errors import LabelingError
from curate.labeling.client import StudioClient
from curate.report.browser import Chromium, Page


class LabelerBrowser:
    """A headless Chromium signed in to Label Studio as a fresh labeler account."""

    def __init__(
        self,
        client: StudioClient,
        *,
        email: str | None = None,
        timeout: float = 60.0,
        width: int = 1400,
        height: int = 1000,
    ):
        self.client = client
        self.email = email or f"labeler-{secrets.token_hex(3)}@curate.local"
        self.password = secrets.token_urlsafe(12)
        self.timeout = timeout
        self.width, self.height = width, height
        self.browser = Chromium(timeout=timeout)
        self.page: Page | None = None

    def __enter__(self) -> Self:
        self.browser.__enter__()
        target = next(t for t in self.browser._targets() if t.get("type") == "page")
        self.page = Page(target["webSocketDebuggerUrl"], self.timeout)
        self.browser.pages.append(self.page)
        for domain in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.page.send(domain)
        self.page.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self._sign_up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.browser.__exit__(*exc)

    # ------------------------------------------------------------ navigation

    def goto(self, path: str) -> None:
        assert self.page is not None
        self.page.events.clear()
        self.page.send("Page.navigate", url=self.client.url + path)
        self.page.wait_event("Page.loadEventFired")

    def wait_for(self, js_condition: str, what: str) -> None:
        assert self.page is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.page.evaluate(f"Boolean({js_condition})"):
                return
            time.sleep(0.3)
        raise LabelingError(
            f"the labeling page did not show {what} within {self.timeout:.0f} s "
            f"(at {self.page.evaluate('location.href')})"
        )

    def _sign_up(self) -> None:
        invite = self.client.get_json("/api/invite")["invite_url"]
        self.goto(invite)
        self.wait_for("document.querySelector('input[name=email]')", "the sign-up form")
        assert self.page is not None
        self.page.evaluate(
            "(() => {const f = document.querySelector('input[name=email]').form;"
            f"f.querySelector('input[name=email]').value = {json.dumps(self.email)};"
            f"f.querySelector('input[name=password]').value = {json.dumps(self.password)};"
            "const box = f.querySelector('input[name=how_find_us]'); if (box) box.value = 'curate';"
            "f.submit(); return true})()"
        )
        self.page.wait_event("Page.loadEventFired")
        self.wait_for("!location.pathname.startsWith('/user/signup')", "a signed-in page after sign-up")

    # ------------------------------------------------------------ the labeling view

    def open_task(self, project_id: int, task_id: int) -> None:
        """The labeling interface of one task (the data manager's labeling panel)."""
        self.goto(f"/projects/{project_id}/data?task={task_id}")
        self.wait_for(
            "document.querySelector('.lsf-main-view, [class*=\"lsf-main-content\"], .lsf-editor')",
            "the labeling interface",
        )
        self.wait_for(
            'document.querySelectorAll(\'[class*="lsf-choice"], textarea, [class*="lsf-text"]\').length > 0',
            "the controls",
        )
        time.sleep(1.0)  # fonts and layout settle

    def visible_text(self) -> str:
        assert self.page is not None
        return str(self.page.evaluate("document.body.innerText"))

    def evaluate(self, expression: str) -> Any:
        assert self.page is not None
        return self.page.evaluate(expression)

    def screenshot(self, path: Path) -> Path:
        assert self.page is not None
        return self.page.screenshot(path, full_page=False, width=self.width, height=self.height)

    # ------------------------------------------------------------ labeling by script (as a labeler would)

    def tick(self, choice: str) -> None:
        """Click the choice whose shown text starts with `choice` (verdict, rules, category)."""
        ok = self.evaluate(
            "(() => { const l = [...document.querySelectorAll('label.lsf-choice__checkbox')]"
            f".find(x => x.innerText.replace(/\\u200b/g, '').startsWith({json.dumps(choice)}));"
            " if (!l) return false; l.click(); return true })()"
        )
        if not ok:
            raise LabelingError(f"no choice {choice!r} on the labeling page")

    def pick(self, text: str) -> None:
        """Click the pairwise response showing `text` (the better one)."""
        ok = self.evaluate(
            "(() => { const all = [...document.querySelectorAll('.lsf-main-view [class*=cursor-pointer]')]"
            f".filter(e => (e.innerText || '').includes({json.dumps(text.strip())}));"
            " all.sort((a, b) => a.innerText.length - b.innerText.length);"
            " if (!all.length) return false; all[0].click(); return true })()"
        )
        if not ok:
            raise LabelingError("no pairwise response with that text on the labeling page")

    def edit_text(self, control: str, text: str) -> None:
        """Replace the text of the `control` text area's pre-filled answer in place (Edit, select all, type,
        Shift+Enter), as a labeler correcting a draft does."""
        found = self.evaluate(
            "(() => { const r = document.querySelector("
            f"'[data-testid=htx-textbox-content][name^=\"{control}:\"]');"
            " if (!r) return false; r.closest('[data-testid=textarea-region]')"
            ".querySelector('[data-testid=htx-textbox-edit-button]').click(); return true })()"
        )
        if not found:
            raise LabelingError(f"no pre-filled {control!r} answer to edit on the labeling page")
        self.wait_for(
            f"document.querySelector('[data-testid=textarea-region] textarea[name^=\"{control}:\"]')",
            f"the {control} editor",
        )
        self.evaluate(
            f"(() => {{ const t = document.querySelector('textarea[name^=\"{control}:\"]');"
            " t.focus(); t.select(); return true })()"
        )
        self._type(text)

    def write_text(self, control: str, text: str) -> None:
        """Type an answer into the empty `control` text area and add it (Shift+Enter)."""
        if not self.evaluate(
            f"(() => {{ const t = document.querySelector('textarea[name=\"{control}\"]');"
            " if (!t) return false; t.focus(); return true })()"
        ):
            raise LabelingError(f"no {control!r} text area on the labeling page")
        self._type(text)

    def _type(self, text: str) -> None:
        assert self.page is not None
        self.page.send("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):  # Shift+Enter adds the text to the annotation
            self.page.send(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                modifiers=8,
            )

    def submit(self, task_id: int) -> dict[str, Any]:
        """Press Submit and wait until the server holds this labeler's annotation of the task; returns it."""
        before = {a["id"] for a in self.client.get_json(f"/api/tasks/{task_id}/annotations/")}
        if not self.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')]"
            ".find(x => x.innerText.trim() === 'Submit'); if (!b) return false; b.click();"
            " return true })()"
        ):
            raise LabelingError("no Submit button on the labeling page")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            new = [
                a for a in self.client.get_json(f"/api/tasks/{task_id}/annotations/") if a["id"] not in before
            ]
            if new:
                return dict(new[0])
            time.sleep(0.2)
        raise LabelingError(f"the annotation of task {task_id} was not saved within {self.timeout:.0f} s")
