"""What two records are to each other: exact duplicate, near duplicate, continuation, leak.

Every decision here is a function of the two records (their message turns) and the threshold only, never of
what else is in the build (docs/contracts.md, "What a duplicate is"). Candidate generation (LSH, keys) lives in
`curate.near` and `curate.steps.dedup` and may look at the corpus; the verdict is always made here.

    >>> from curate.records import normalize_text as norm
    >>> from curate.relation import text_score, view
    >>> text_score(norm("What is the capital of France?"), norm("what is  the capital of france"), 0.8)
    1.0
    >>> text_score(norm("What is the capital of France?"), norm("What is the capital of Spain?"), 0.8)
    0.0
    >>> v = view([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    >>> v.prompt, v.response
    ('hi', 'hello!')

The compared parts of a record (`view`), all normalized with `curate.records.normalize_text` and without role
prefixes (a "user: " prefix would make every short pair look alike):
- `prompt`: the contents of the non-system turns before the answer, joined by newlines;
- `response`: the answer: an SFT record's last assistant turn, a preference record's chosen side (the rejected
  side is left out: chosen and rejected are near-twins by design);
- `user`: the user turns only, joined (what split grouping compares); `user_turns`: each of them (leakage);
- `turns`: (role, content) of every non-system turn (exact duplicates, continuations).

`text_score(a, b, t)`: 1.0 for equal normal forms. If either text is SHORT (fewer than `SHORT_TOKENS` word
whitespace-separated words) the strict rule applies: the texts' token sequences (words, numbers and signs such as % # $ +;
sentence punctuation, apostrophes, the articles a/an/the and filler words (greetings, thanks,
please, "i") left out) must be equal, or differ in exactly one position where both tokens are a typo of
each other (`is_typo`: letters only, 4+ characters, same first letter, one letter missing, added, two
neighbours swapped, or replaced by a neighbouring key or a sound-alike; any other substituted letter makes other
words too often: Ireland / Iceland). A
different number, name, negation, yes/no or product keeps short texts apart. Otherwise the score is the
normalized Indel similarity (rapidfuzz `fuzz.ratio` / 100) and counts when it reaches `t`. 0.0 means "not
similar".
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein

from curate.records import normalize_text

__all__ = [
    "SHORT_TOKENS",
    "View",
    "continuation",
    "exact_key",
    "has_cjk",
    "is_short",
    "is_typo",
    "leak_compared",
    "leak_parts",
    "leak_score",
    "near_score",
    "skeleton",
    "skeleton_sketch",
    "strict_may_match",
    "text_score",
    "turn_digests",
    "turn_markers",
    "view",
    "view_of_record",
]

SHORT_TOKENS = 16  # a text with fewer word tokens than this is compared by the strict (token) rule
ARTICLES = frozenset(("a", "an", "the"))
# words that change no request: greetings, thanks, please, and the speaker's "i" ("I can't log in" / "can't log in")
FILLER = frozenset(
    (
        "hi",
        "hello",
        "hey",
        "dear",
        "please",
        "pls",
        "plz",
        "kindly",
        "thanks",
        "thank",
        "thx",
        "ty",
        "cheers",
        "regards",
        "appreciate",
        "advance",
        "i",
    )
)
# a CJK (Han, kana, Hangul) character is a word of its own: those scripts write no spaces
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CLASS}]")
_TOKEN = re.compile(f"[{_CJK_CLASS}]|[^\\W{_CJK_CLASS}]+|[^\\w\\s]")
# punctuation that only shapes a sentence; any other sign (%, #, $, +, @ ...) is a token that can change the meaning
_SENTENCE_PUNCT = frozenset('.,!?;:"()[]{}-\u2013\u2014\u2026\u00bf\u00a1\u00ab\u00bb\u201c\u201d\u2018')
_DROP = _SENTENCE_PUNCT | ARTICLES | FILLER  # what the strict rule leaves out of a text's tokens
# _TOKEN on an ASCII text: there a str pattern's \w is [A-Za-z0-9_] and \s what str.isspace() takes (\x1c-\x1f too);
# spelt out as classes under re.ASCII, ~25% faster than r"\w+|[^\w\s]" (tests/test_relation.py compares them)
_TOKEN_ASCII = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\t\n\x0b\x0c\r\x1c-\x1f ]", re.ASCII)


@dataclass(frozen=True)
class View:
    """The compared parts of one record (normalized; see the module doc)."""

    prompt: str
    response: str
    user: str
    turns: tuple[tuple[str, str], ...]
    user_turns: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """What candidate generation hashes: prompt and response."""
        return self.prompt + "\n" + self.response if self.response else self.prompt


def _content(m: Mapping[str, Any]) -> str:
    """A turn's compared content: its text plus its tool calls (name and JSON arguments)."""
    text = m.get("content") or ""
    if not isinstance(text, str):
        text = str(text)
    for tc in m.get("tool_calls") or ():
        fn = tc.get("function") if isinstance(tc, Mapping) else getattr(tc, "function", None)
        if isinstance(fn, Mapping):
            text += f" [call {fn.get('name', '')} {fn.get('arguments', '')}]"
        elif fn is not None:
            text += f" [call {fn.name} {fn.arguments}]"
    return text


def view(messages: Sequence[Mapping[str, Any]], chosen: Sequence[Mapping[str, Any]] | None = None) -> View:
    """The compared parts of an SFT conversation (`messages`) or a preference record (`messages` = its prompt,
    `chosen` = its chosen turns). Messages are dicts with role / content (/ tool_calls)."""
    turns = [(str(m.get("role", "")), _normal_content(m)) for m in messages if m.get("role") != "system"]
    if chosen is not None:
        prompt_turns = turns
        answer = [_normal_content(m) for m in chosen if m.get("role") != "system"]
        turns = turns + [
            ("chosen:" + str(m.get("role", "")), a)
            for m, a in zip([m for m in chosen if m.get("role") != "system"], answer)
        ]
        response = "\n".join(answer)
    else:
        last = max((k for k, (role, _) in enumerate(turns) if role == "assistant"), default=None)
        if last is None:
            prompt_turns, response = turns, ""
        else:
            prompt_turns, response = turns[:last], turns[last][1]
    user_turns = tuple(c for role, c in prompt_turns if role == "user")
    return View(
        prompt=_normal_lines([c for _, c in prompt_turns]),
        response=response,
        user=_normal_lines(user_turns),
        turns=tuple(turns),
        user_turns=user_turns,
    )


def _normal_content(m: Mapping[str, Any]) -> str:
    """normalize_text(_content(m)), a plain turn's content (a string, no tool calls) read directly."""
    c = m.get("content")
    if type(c) is not str or m.get("tool_calls"):
        c = _content(m)
    return normalize_text(c)


def _normal_lines(parts: Sequence[str]) -> str:
    """normalize_text("\\n".join(parts)) of normalized parts: for ASCII parts (lowercase words joined by single
    spaces) the non-empty ones joined by spaces, without splitting the text again."""
    if all(map(str.isascii, parts)):
        return " ".join([p for p in parts if p])
    return normalize_text("\n".join(parts))


def view_of_record(rec: Any) -> View:
    """`view` of a curate record (SFTRecord or PreferenceRecord)."""
    if rec.kind == "preference":
        return view([m.model_dump() for m in rec.prompt], [m.model_dump() for m in rec.chosen])
    return view([m.model_dump() for m in rec.conversation()])


def turn_digests(v: View) -> list[bytes]:
    """The sha256 of the normalized turns (roles included) after each turn: the last one is `exact_key`'s, the
    others are the keys of the record's strict prefixes (continuations). One hash pass serves both."""
    h = hashlib.sha256()
    out = []
    for role, content in v.turns:
        h.update(role.encode() + b"\x1f" + content.encode("utf-8") + b"\x1e")
        out.append(h.digest())
    return out or [h.digest()]


def exact_key(v: View) -> str:
    """Two records are exact duplicates when their normalized turns (roles included) are equal."""
    return turn_digests(v)[-1].hex()[:32]


def skeleton(norm: str) -> list[str]:
    """The tokens the strict rule compares: words, numbers and symbols, without punctuation and articles."""
    return list(_skeleton(norm))


@functools.lru_cache(maxsize=8192)
def _skeleton(norm: str) -> tuple[str, ...]:
    # (cached: a verifying process meets a text in up to MAX_VERIFY pairs; an ASCII text is cut by the plain
    # pattern, which finds the same tokens there: no CJK character can occur)
    text = norm.replace("'", "").replace("\u2019", "")
    toks = (_TOKEN_ASCII if text.isascii() else _TOKEN).findall(text)
    return tuple(itertools.filterfalse(_DROP.__contains__, toks))


SKETCH_PARTS = 4  # `skeleton_sketch`: a token sequence cut into this many pieces


def skeleton_sketch(norm: str) -> tuple[int, tuple[int, ...]]:
    """(the number of tokens of `skeleton(norm)`, a CRC-32 of each of its `SKETCH_PARTS` pieces): a necessary
    condition of the strict rule, cheap to compare in bulk (`strict_may_match`). The pieces are cut at positions
    that depend on the length alone, so two skeletons of one length that differ in one position (all the strict
    rule allows) have all pieces but one equal."""
    toks = _skeleton(norm)
    n = len(toks)
    cuts = [n * k // SKETCH_PARTS for k in range(SKETCH_PARTS + 1)]
    return n, tuple(
        zlib.crc32("\x1f".join(toks[a:b]).encode("utf-8", "surrogatepass"))
        for a, b in itertools.pairwise(cuts)
    )


def strict_may_match(a: tuple[int, tuple[int, ...]], b: tuple[int, tuple[int, ...]]) -> bool:
    """False when the strict rule cannot call two texts similar, given their `skeleton_sketch`es: the token counts
    differ, or more than one piece differs. True says nothing (a CRC collision, or a difference the rule rejects)."""
    return a[0] == b[0] and sum(x != y for x, y in zip(a[1], b[1])) <= 1


def has_cjk(text: str) -> bool:
    """Whether a text holds a CJK (Han, kana, Hangul) character: one whose edits are single characters (no
    spaces), so a near copy shares far fewer character n-grams than an English one at the same score (the
    slot-agreement floor leaves such texts alone, `curate.near.over_floor`)."""
    return not text.isascii() and _CJK.search(text) is not None


def is_short(norm: str) -> bool:
    """Fewer than SHORT_TOKENS words in a normalized text: whitespace-separated words, each CJK character
    counting as one more (Chinese or Japanese text has no spaces)."""
    n = len(norm.split(None, SHORT_TOKENS))
    if n >= SHORT_TOKENS or norm.isascii():
        return n < SHORT_TOKENS
    return n + len(_CJK.findall(norm)) < SHORT_TOKENS


_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_SLIPS = frozenset(
    {frozenset(p) for row in _ROWS for p in itertools.pairwise(row)}  # neighbouring keys
    | {frozenset(p) for p in ("cs", "sz", "ck", "ie", "ei", "ao", "ou", "mn", "td", "bp", "gj")}
)


def is_typo(a: str, b: str) -> bool:
    """Two different tokens one slip apart: letters only, both 4+ characters, same first letter, one letter
    inserted, deleted, two neighbours swapped, or one letter replaced by a neighbouring key or a sound-alike
    (c/s, s/z, c/k, i/e, a/o, o/u, m/n, t/d, b/p, g/j)."""
    if len(a) < 4 or len(b) < 4 or not a.isalpha() or not b.isalpha() or a[0] != b[0]:
        return False
    if len(a) == len(b):
        diff = [(x, y) for x, y in zip(a, b) if x != y]
        if (
            len(diff) == 1
        ):  # a substituted letter: only a slip of the finger or of the ear (Ireland / Iceland are two
            return frozenset(diff[0]) in _SLIPS  # words), never any letter for any other
    return DamerauLevenshtein.distance(a, b, score_cutoff=1) <= 1


def text_score(a: str, b: str, threshold: float, short: bool | None = None) -> float:
    """The similarity of two normalized texts under the contract (module doc); 0.0 when not similar. `short`:
    `is_short(a) or is_short(b)` when the caller knows it already (`Compared` carries it)."""
    if a == b:
        return 1.0
    if short is None:
        short = is_short(a) or is_short(b)
    if short:
        ta, tb = _skeleton(a), _skeleton(b)
        if len(ta) != len(tb):
            return 0.0
        diff = [(x, y) for x, y in zip(ta, tb) if x != y]
        if not diff:
            return 1.0
        if len(diff) == 1 and is_typo(*diff[0]):
            return max(round(fuzz.ratio(a, b) / 100.0, 4), threshold)
        return 0.0
    cutoff = threshold * 100.0
    score = fuzz.ratio(a, b, score_cutoff=cutoff)
    return round(score / 100.0, 4) if score >= cutoff and score > 0 else 0.0


# what near_score reads of one record: (prompt, response, flags); flags bit 1: the prompt is short (`is_short`),
# bit 2: the response is short. A verifying process keeps these (a few hundred bytes) instead of whole Views.
Compared = tuple[str, str, int]


def compared(v: View) -> Compared:
    """The parts of a view near_score compares, with their shortness worked out once."""
    return v.prompt, v.response, (1 if is_short(v.prompt) else 0) | (2 if is_short(v.response) else 0)


def near_score(a: View, b: View, threshold: float) -> float:
    """Near duplicates: the prompts AND the responses are similar (`text_score`); the score is the lower one.
    A different request with a templated answer, or the same request with a different answer, is not a duplicate.
    A record with no answer (an unlabeled prompt, a text record: `response` empty) is compared with records with
    no answer only, on the prompt: never a near twin of an answered record with the same prompt."""
    return near_compared(compared(a), compared(b), threshold)


def near_compared(a: Compared, b: Compared, threshold: float) -> float:
    """`near_score` of two records given their `compared` parts (the one implementation)."""
    pa, ra, fa = a
    pb, rb, fb = b
    if (not ra) != (not rb):
        return 0.0
    # both parts must be similar: the cheaper comparison first (a short part's token rule, else the shorter
    # texts' Indel), so most non-duplicates cost one cheap test (templated letters: 18 us the prompts' Indel
    # against 2 us the short answers' rule). The order changes no score.
    short_p, short_r = bool((fa | fb) & 1), bool((fa | fb) & 2)
    prompt_first = short_p if short_p != short_r else len(pa) + len(pb) <= len(ra) + len(rb)
    if prompt_first:
        p = text_score(pa, pb, threshold, short_p)
        r = text_score(ra, rb, threshold, short_r) if p else 0.0
    else:
        r = text_score(ra, rb, threshold, short_r)
        p = text_score(pa, pb, threshold, short_p) if r else 0.0
    return min(p, r)


# what leak_score reads of one record: (user text = its user turns joined, is_short of it, the user turns, is_short
# of each turn): made once per record (`leak_parts`), not once per compared pair
LeakParts = tuple[str, bool, tuple[str, ...], tuple[bool, ...]]


def leak_parts(turns: Sequence[str]) -> LeakParts:
    """The parts of a record's normalized user turns `leak_compared` reads, with their shortness worked out once."""
    turns = tuple(turns)
    whole = " ".join(turns)
    short = is_short(whole)
    return whole, short, turns, tuple(is_short(x) for x in turns) if len(turns) > 1 else (short,)


def leak_score(a: Sequence[str], b: Sequence[str], threshold: float) -> float:
    """A leak between a training and a held-out record, given each one's normalized user turns: their user texts
    (the turns joined) are similar (`text_score`), or one's user turns are a prefix of the other's, turn by turn
    similar (a benchmark question and the same question with a follow-up). Symmetric; 0.0 when no leak."""
    if not a or not b:
        return 0.0
    return leak_compared(leak_parts(a), leak_parts(b), threshold)


def leak_compared(a: LeakParts, b: LeakParts, threshold: float) -> float:
    """`leak_score` of two records given their `leak_parts` (the one implementation)."""
    if not a[2] or not b[2]:
        return 0.0
    whole = text_score(a[0], b[0], threshold, a[1] or b[1])
    if whole or len(a[2]) == len(b[2]):
        return whole
    short, long_ = (a, b) if len(a[2]) < len(b[2]) else (b, a)
    scores = []
    for k, (x, y) in enumerate(zip(short[2], long_[2])):
        score = text_score(x, y, threshold, short[3][k] or long_[3][k])
        if not score:
            return 0.0
        scores.append(score)
    return min(scores)


def continuation(a: View, b: View) -> bool:
    """`a` is a strict prefix of `b`: the same first turns, and `b` has more (one conversation and its
    continuation). Not a duplicate: both are kept unless the spec asks to drop prefixes, and they share a split."""
    return len(a.turns) < len(b.turns) and b.turns[: len(a.turns)] == a.turns


_MARKER = re.compile(r"(?im)^\s*(?:#{1,3}\s*)?(human|assistant|user|gpt|system|instruction|response)\s*:")
_MARKER_CUE = ("human", "assistant", "user", "gpt", "system", "instruction", "response")


def turn_markers(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Turn markers inside turn text ("Human:", "Assistant:", "### Instruction:" at a line start): the sign of a
    transcript pasted into one turn. Returns the markers found (lowercase), in order."""
    found: list[str] = []
    for m in messages:
        text = m.get("content")
        if not isinstance(text, str) or ":" not in text:  # (every marker ends with a colon)
            continue
        low = text.lower()
        if not any(c in low for c in _MARKER_CUE):
            continue
        found += [hit.group(1).lower() for hit in _MARKER.finditer(text)]
    return found
