"""Compile a behavior spec into Label Studio labeling configs (XML) and labeling instructions (HTML).

    >>> from curate.spec import load_spec
    >>> from curate.labeling.config import build_config, controls
    >>> spec = load_spec("specs/support-triage")
    >>> xml = build_config(spec, "review")          # the labeling interface for reviewing responses
    >>> sorted(controls(spec, "review"))             # what an annotation may contain, checked on pull
    ['category', 'corrected', 'note', 'verdict', 'violates']

Three kinds of project:
- review   (SFT): the conversation, the response, a verdict (accept / edit / reject), the corrected response,
            a per-rule checklist ("violates: <rule says>"), the case category and a note;
- pairwise (preference): the prompt, two responses (Label Studio's Pairwise control), the rules the losing
            response breaks, a rationale;
- write    (prompts without responses): the prompt and a text area for the ideal response.

Every text that comes from a spec or from data is XML-escaped; values that Label Studio would read as a task
field reference (a leading `$`) are guarded. Choice values shown to labelers are the rule's words; the value
stored in annotations is the rule id (`alias`), so annotations stay stable when wording changes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from curate.errors import LabelingError
from curate.spec_model import Spec

Kind = Literal["review", "pairwise", "write"]
KINDS: tuple[str, ...] = ("review", "pairwise", "write")
VERDICTS: tuple[str, ...] = ("accept", "edit", "reject")
PAIRWISE_SIDES: tuple[str, ...] = ("left", "right")


@dataclass(frozen=True)
class Control:
    """One control tag of a config: what an annotation result from it may hold."""

    name: str
    type: str  # the result "type" Label Studio writes: choices | textarea | pairwise
    to_name: str
    values: frozenset[str] | None = None  # allowed choice values (aliases) or pairwise sides; None: free text
    multiple: bool = False
    required: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # stored value -> text shown to labelers


_VARIABLE = re.compile(r"\$(?=[\w{])")
# characters XML 1.0 cannot hold (C0 controls but tab/newline/return, lone surrogates, U+FFFE/U+FFFF) and DEL
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _picture(m: re.Match[str]) -> str:
    c = ord(m.group())
    return chr(0x2400 + c) if c < 0x20 else "\u2421" if c == 0x7F else "\ufffd"


def visible(text: str) -> str:
    """`text` with the characters XML cannot hold made visible (U+0001 -> U+2401 "SOH" symbol, DEL -> U+2421).

    Used on every spec or data text that goes into a config, the instructions or a task's visible data, so a
    control character in data can neither break the XML Label Studio parses nor hide from the labeler.
    """
    return _NOT_XML.sub(_picture, text) if _NOT_XML.search(text) else text


def _attr(value: str, *, shown: bool = True) -> str:
    """An XML attribute value, quoted and escaped, with Label Studio's `$field` references defused.

    Label Studio's interface replaces `$name` anywhere in a shown value with the task's field (`$5` became
    "undefined" in a real browser), and its backend reads a value starting with `$` as a data key. A zero-width
    space after each `$` (shown values) or before a leading one (stored aliases) keeps the text as written.
    """
    text = visible(str(value)).replace("\n", " ")
    if shown:
        text = _VARIABLE.sub("$\u200b", text)
    if text.startswith("$"):
        text = "\u200b" + text
    return quoteattr(text)


def _rule_label(says: str) -> str:
    return f"violates: {says.strip()}"


def _category_names(spec: Spec) -> list[str]:
    return list(spec.cases) or ["typical"]


def controls(spec: Spec, kind: str) -> dict[str, Control]:
    """The controls of `kind`'s config, keyed by name (used to check annotations against the config)."""
    rule_labels = {r.id: _rule_label(r.says) for r in spec.rules}
    if kind == "review":
        cats = _category_names(spec)
        out = [
            Control(
                "verdict",
                "choices",
                "response",
                frozenset(VERDICTS),
                required=True,
                labels={v: v for v in VERDICTS},
            ),
            Control("corrected", "textarea", "response"),
            Control(
                "violates", "choices", "response", frozenset(rule_labels), multiple=True, labels=rule_labels
            ),
            Control("category", "choices", "response", frozenset(cats), labels={c: c for c in cats}),
            Control("note", "textarea", "response"),
        ]
    elif kind == "pairwise":
        out = [
            Control("comparison", "pairwise", "comparison", frozenset(PAIRWISE_SIDES), required=True),
            Control(
                "loser_violates", "choices", "left", frozenset(rule_labels), multiple=True, labels=rule_labels
            ),
            Control("rationale", "textarea", "left"),
        ]
    elif kind == "write":
        out = [Control("ideal", "textarea", "prompt", required=True)]
    else:
        raise LabelingError(f"unknown labeling kind {kind!r}; use one of: {', '.join(KINDS)}")
    return {c.name: c for c in out}


def _choices(ctrl: Control, *, to_name: str, extra: str = "") -> list[str]:
    choice = "multiple" if ctrl.multiple else "single"
    required = ' required="true"' if ctrl.required else ""
    lines = [
        f'  <Choices name="{ctrl.name}" toName="{to_name}" choice="{choice}" showInline="false"{required}{extra}>'
    ]
    for value, shown in ctrl.labels.items():
        lines.append(f"    <Choice value={_attr(shown)} alias={_attr(value, shown=False)}/>")
    lines.append("  </Choices>")
    return lines


def _header(text: str) -> str:
    return f"  <Header value={_attr(text)}/>"


def output_format(spec: Spec) -> list[str]:
    """The output format in a few lines a labeler can check by eye (from output.format and its schema)."""
    if spec.output.format != "json":
        return ["Plain text."]
    lines = ["One JSON object."]
    schema = spec.output.schema_ or {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    required = schema.get("required") if isinstance(schema, dict) else None
    if isinstance(required, list) and required:
        lines.append("Keys: " + ", ".join(str(k) for k in required) + ".")
    if isinstance(props, dict):
        for key, sub in props.items():
            if isinstance(sub, dict) and isinstance(sub.get("enum"), list):
                lines.append(f"{key}: one of " + ", ".join(str(v) for v in sub["enum"]) + ".")
    return lines


# the right-hand panels (region details, regions, relations) have nothing to show for these text tasks
_PANELS_CSS = ".lsf-sidepanels__wrapper_align_right { display: none !important; }"


def _guide(spec: Spec) -> list[str]:
    """The column beside the text: the output format, the rules as labelers read them, the system prompt."""
    lines = ['    <Header value="Output format" size="4"/>']
    lines += [f'    <Header value={_attr(t)} size="6"/>' for t in output_format(spec)]
    lines.append('    <Header value="Rules" size="4"/>')
    for r in spec.rules:
        how = "" if r.automatic else " (you judge)"
        lines.append(f'    <Header value={_attr(f"{r.id}{how}: {r.says.strip()}")} size="6"/>')
    if spec.system_prompt:
        lines.append('    <Header value="The assistant\'s instructions" size="4"/>')
        # one line each: a Header's value is one line, and the prompt's line breaks matter
        lines += [
            f'    <Header value={_attr(ln)} size="6"/>'
            for ln in spec.system_prompt.strip().splitlines()
            if ln.strip()
        ]
    return lines


def _two_columns(main: list[str], spec: Spec) -> list[str]:
    """The task's text and controls on the left, the guide on the right (kept in view while scrolling)."""
    return [
        f"  <Style>{_PANELS_CSS}</Style>",
        '  <View style="display: flex; gap: 1.5em; align-items: flex-start;">',
        '   <View style="flex: 3; min-width: 0;">',
        *["  " + ln for ln in main],
        "   </View>",
        (
            '   <View style="flex: 2; min-width: 0; position: sticky; top: 0; padding: 0.5em 1em; '
            'background: #f6f7fb; border-radius: 6px;">'
        ),
        *_guide(spec),
        "   </View>",
        "  </View>",
    ]


def build_config(spec: Spec, kind: str) -> str:
    """The Label Studio XML config for one kind of project."""
    ctrls = controls(spec, kind)
    lines = [
        "<View>",
        (
            f"  <!-- generated by curate from spec {escape(visible(spec.ref)).replace('--', '- -')}; "
            "do not edit -->"
        ),
    ]
    if kind == "review":
        lines += _two_columns(
            [
                _header("Conversation"),
                '  <Paragraphs name="dialogue" value="$messages" layout="dialogue" nameKey="role" textKey="content"/>',
                _header("Response to review"),
                '  <Text name="response" value="$response"/>',
                _header("Automatic checks"),
                '  <Text name="check_summary" value="$check_summary"/>',
                _header("Verdict"),
                *_choices(ctrls["verdict"], to_name="response"),
                _header("Corrected response (when the verdict is edit): edit the text in place"),
                (
                    '  <TextArea name="corrected" toName="response" rows="10" maxSubmissions="1" editable="true"'
                    ' placeholder="The response as it should be"/>'
                ),
                _header("Rules this response breaks"),
                *_choices(ctrls["violates"], to_name="response"),
                _header("Case category"),
                *_choices(ctrls["category"], to_name="response"),
                _header("Note"),
                '  <TextArea name="note" toName="response" rows="2" maxSubmissions="1" editable="true"/>',
            ],
            spec,
        )
    elif kind == "pairwise":
        lines += [
            f"  <Style>{_PANELS_CSS}</Style>",
            _header("Prompt"),
            '  <Paragraphs name="prompt" value="$messages" layout="dialogue" nameKey="role" textKey="content"/>',
            _header("Which response is better? Click it."),
            '  <View style="display: flex; gap: 1em;">',
            '    <View style="flex: 1;">',
            '      <Header value="Response A (left)" size="5"/>',
            '      <Text name="left" value="$left"/>',
            "    </View>",
            '    <View style="flex: 1;">',
            '      <Header value="Response B (right)" size="5"/>',
            '      <Text name="right" value="$right"/>',
            "    </View>",
            "  </View>",
            '  <Pairwise name="comparison" toName="left,right" selectionStyle="background: #d1f7c4;"/>',
            _header("Automatic checks"),
            '  <Text name="check_summary" value="$check_summary"/>',
            _header("Rules the losing response breaks"),
            *_choices(ctrls["loser_violates"], to_name="left"),
            _header("Rationale"),
            '  <TextArea name="rationale" toName="left" rows="3" maxSubmissions="1" editable="true"/>',
        ]
    else:  # write
        lines += _two_columns(
            [
                _header("Prompt"),
                '  <Paragraphs name="prompt" value="$messages" layout="dialogue" nameKey="role" textKey="content"/>',
                _header("Write the ideal response"),
                (
                    '  <TextArea name="ideal" toName="prompt" rows="10" maxSubmissions="1" editable="true" required="true"'
                    ' placeholder="The response the model should give"/>'
                ),
                '  <Text name="draft_summary" value="$draft_summary"/>',
            ],
            spec,
        )
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def data_fields(kind: str) -> tuple[str, ...]:
    """The task data fields the config of `kind` reads."""
    return {
        "review": ("messages", "response", "check_summary"),
        "pairwise": ("messages", "left", "right", "check_summary"),
        "write": ("messages", "draft_summary"),
    }[kind]


def instructions(spec: Spec, kind: str) -> str:
    """The project's labeling instructions (HTML, shown before labeling): rules, categories, examples."""

    def e(text: str) -> str:
        return html.escape(visible(text))

    what = {
        "review": "Read the conversation and the response. Accept it when it follows every rule; choose "
        "<b>edit</b> and write the corrected response when it can be fixed; <b>reject</b> it when it "
        "cannot. Tick every rule the response breaks (the automatic checks are pre-ticked: verify them).",
        "pairwise": "Read the prompt and both responses, pick the better one, tick the rules the other one breaks, "
        "and say why in a sentence.",
        "write": "Read the prompt and write the response the assistant should give, following every rule.",
    }[kind]
    parts = [f"<h2>{e(spec.name)} (version {e(str(spec.version))}): {e(kind)}</h2>"]
    if spec.description:
        parts.append(f"<p>{e(spec.description)}</p>")
    parts.append(f"<p>{what}</p>")
    if spec.system_prompt:
        parts.append(
            f"<p><b>The assistant's instructions:</b><br>{e(spec.system_prompt.strip()).replace(chr(10), '<br>')}"
            "</p>"
        )
    parts.append("<h3>Rules</h3><ul>")
    for r in spec.rules:
        how = "checked automatically" if r.automatic else "judged by you"
        parts.append(f"<li><b>{e(r.id)}</b> ({e(r.category)}, {how}): {e(r.says)}</li>")
    parts.append("</ul><h3>Case categories</h3><ul>")
    for name, cat in spec.cases.items():
        desc = f": {e(cat.description)}" if cat.description else ""
        parts.append(f"<li><b>{e(name)}</b>{desc}</li>")
    parts.append("</ul>")
    if spec.examples:
        parts.append("<h3>Examples</h3>")
        for ex in spec.examples:
            note = f"<br><i>{e(ex.note)}</i>" if ex.note else ""
            parts.append(
                f"<p><b>User:</b> {e(ex.user)}<br><b>Assistant:</b> <code>{e(ex.assistant)}</code>{note}</p>"
            )
    return "\n".join(parts)


def project_title(spec: Spec, kind: str) -> str:
    """A project title (Label Studio allows 50 characters)."""
    title = f"{spec.name}@{spec.version} {kind}"
    return title if len(title) <= 50 else title[:41] + "~" + kind[:8]


def project_marker(spec: Spec, kind: str) -> str:
    """The line in the project's description that identifies it as curate's project for this spec and kind."""
    return f"curate:{spec.ref}:{kind}"


# ---------------------------------------------------------------- generated files under schemas/


def schema_files(spec_dirs: list[str] | None = None, root: str = ".") -> dict[str, str]:
    """{path: XML} of the configs for the example specs: schemas/labeling/<spec>.<kind>.xml."""
    from pathlib import Path

    from curate.spec_load import load_spec

    base = Path(root)
    dirs = (
        [Path(d) for d in spec_dirs]
        if spec_dirs
        else sorted(p.parent for p in (base / "specs").glob("*/spec.yaml"))
    )
    out: dict[str, str] = {}
    for d in dirs:
        spec = load_spec(d)
        for kind in KINDS:
            out[str(Path("schemas") / "labeling" / f"{spec.name}.{kind}.xml")] = build_config(spec, kind)
    return out


def write_schema_files(root: str = ".") -> list[str]:
    """Regenerate schemas/labeling/*.xml (run `python -m curate.labeling.config` from the repository root)."""
    from pathlib import Path

    from curate.records import write_atomic

    files = schema_files(root=root)
    for rel, text in files.items():
        write_atomic(Path(root) / rel, text.encode("utf-8"))
    return sorted(files)


if __name__ == "__main__":
    for path in write_schema_files():
        print(path)
