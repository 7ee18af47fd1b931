"""The labeling page as a labeler sees it (headless Chromium): every control the config defines is shown,
spec text appears as written (escaping, `$` not swallowed as a task field), predictions pre-tick failing rules."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from lshelpers import make_spec

from curate.labeling.config import KINDS, build_config, controls
from curate.labeling.push import find_project, push
from curate.labeling.screens import LabelerBrowser
from curate.records import record_from_native

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
            task = next(
                (t for t in tasks if t["data"].get("response") == "I've reset your password."), tasks[0]
            )
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
            # an empty text area, or one pre-filled by the prediction (the correction field starts with the answer)
            assert (
                browser.evaluate(
                    "document.querySelectorAll('textarea, [data-testid=htx-textbox-content]').length"
                )
                >= n_textareas
            ), kind
            prompt = [m["content"] for m in task["data"]["messages"] if m["role"] == "user"][-1]
            assert prompt in text, kind
            if kind == "review":
                assert task["data"]["response"] in text and task["data"]["check_summary"][:40] in text
                ticked = browser.evaluate(
                    "[...document.querySelectorAll('input[type=checkbox]:checked')]"
                    ".map(i => i.closest('label') ? i.closest('label').innerText : '')"
                )
                ticked = " ".join(ticked).replace("\u200b", "")
                for rule in ("valid-json", "no-action-claims"):
                    assert f"violates: {spec.rule(rule).says}" in ticked
                assert f"violates: {spec.rule('tone').says}" not in ticked
            if kind == "pairwise":
                rec = record_from_native(task["meta"]["record"])
                assert rec.response_text() in text and rec.rejected_text() in text
                assert "Response A (left)" in text and "Response B (right)" in text


def test_labelers_never_see_what_biases_them(client, tmp_path):
    """The data's own answer (write), the category and `violates` (review), the side the data prefers (pairwise):
    none of it is on the labeling page or in the Data Manager beside it; the guide and the draft are."""
    import json

    spec = make_spec(tmp_path)
    for kind in KINDS:
        push(spec, kind, client=client)
    answers = [
        o["messages"][-1]["content"]
        for o in map(json.loads, (spec.base_dir / "data.jsonl").read_text().splitlines())
        if "messages" in o and len(o["messages"]) > 1
    ]
    with LabelerBrowser(client, width=1400, height=1600) as browser:
        for kind in KINDS:
            pid = find_project(client, spec, kind)["id"]
            tasks = list(client.task_data(pid))
            task = next((t for t in tasks if t["meta"]["record"].get("category") == "negative"), tasks[0])
            browser.open_task(pid, task["id"])
            page = browser.evaluate("document.documentElement.outerHTML") + browser.visible_text()
            for secret in (
                "left_is",
                "curate_sha256",
                '"violates"',
                "&quot;violates&quot;",
                '"category"',
                "&quot;category&quot;",
            ):
                assert secret not in page, (kind, secret)
            if kind == "write":
                for answer in answers:  # no answer of the data, for any prompt in the Data Manager's table
                    assert answer not in page and json.dumps(answer)[1:-1] not in page, answer
            text = browser.visible_text().replace("\u200b", "")
            for rule in spec.rules:  # the guide beside the text: rules and the output format
                if kind != "pairwise":
                    assert rule.says.strip() in text, (kind, rule.id)
            if kind != "pairwise":
                assert "Output format" in text and "Keys: intent, next_step." in text
            # the panels on the right (region details, regions) are collapsed away by the config
            assert browser.evaluate(
                "[...document.querySelectorAll('.lsf-sidepanels__wrapper_align_right')]"
                ".every(e => getComputedStyle(e).display === 'none')"
            )
            if kind == "review":  # the correction field starts with the current answer, ready to edit
                shown = browser.evaluate(
                    "document.querySelector('[data-testid=htx-textbox-content]"
                    '[name^="corrected:"]\').innerText'
                )
                assert shown.strip() == task["data"]["response"].strip()
