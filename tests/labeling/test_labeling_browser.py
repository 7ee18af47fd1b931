"""The labeling page as a labeler sees it (headless Chromium): every control the config defines is shown,
spec text appears as written (escaping, `$` not swallowed as a task field), predictions pre-tick failing rules."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from curate.labeling.config import KINDS, build_config, controls
from curate.labeling.push import find_project, push
from curate.labeling.screens import LabelerBrowser
from curate.records import record_from_native
from lshelpers import make_spec

pytestmark = [pytest.mark.studio, pytest.mark.browser]


def test_every_control_of_every_config_is_on_the_page(client, tmp_path):
    spec = make_spec(tmp_path)
    for kind in KINDS:
        push(spec, kind, client=client)
    with LabelerBrowser(client, width=1400, height=2200) as browser:
        for kind in KINDS:
            pid = find_project(client, spec, kind)["id"]
            tasks = list(client.task_data(pid))
            # review: the negative example, whose failing rules come pre-ticked from the prediction
            task = next((t for t in tasks if t["data"].get("response") == "I've reset your password."), tasks[0])
            browser.open_task(pid, task["id"])
            text = browser.visible_text().replace("\u200b", "")
            root = ET.fromstring(build_config(spec, kind))
            for header in root.iter("Header"):
                assert header.get("value").replace("\u200b", "") in text, (kind, header.get("value"))
            for choice in root.iter("Choice"):
                assert choice.get("value").replace("\u200b", "") in text, (kind, choice.get("value"))
            assert "or charged $5." in text or kind == "write"  # `$5` is not read as a task field
            ctrls = controls(spec, kind)
            n_textareas = sum(1 for c in ctrls.values() if c.type == "textarea")
            assert browser.evaluate("document.querySelectorAll('textarea').length") >= n_textareas, kind
            prompt = [m["content"] for m in task["data"]["messages"] if m["role"] == "user"][-1]
            assert prompt in text, kind
            if kind == "review":
                assert task["data"]["response"] in text and task["data"]["check_summary"][:40] in text
                ticked = browser.evaluate(
                    "[...document.querySelectorAll('input[type=checkbox]:checked')]"
                    ".map(i => i.closest('label') ? i.closest('label').innerText : '')")
                ticked = " ".join(ticked).replace("\u200b", "")
                for rule in ("valid-json", "no-action-claims"):
                    assert f"violates: {spec.rule(rule).says}" in ticked
                assert f"violates: {spec.rule('tone').says}" not in ticked
            if kind == "pairwise":
                rec = record_from_native(task["data"]["record"])
                assert rec.response_text() in text and rec.rejected_text() in text
                assert "Response A (left)" in text and "Response B (right)" in text
