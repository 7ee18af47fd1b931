"""The written definition of duplicates (curate/relation.py) as tables and properties.

A table of short pairs that must stay apart and pairs that must merge, compared as the contract says
(`text_score(normalize_text(a), normalize_text(b), 0.8)`), and hypothesis properties of the predicates:
symmetry, reflexivity, purity (a verdict depends on the two texts only), continuation as a strict partial
order, and exact_key equal <=> normalized turns equal.

The one-typo rule merges two words one edit apart with 5+ letters and the same first letter. Where that is a
different place ("Ireland" / "Iceland") the table says they must stay apart; other such words are left out of
the tables (they merge by the rule as written): "Daniel" / "Daniela", "Carla" / "Carlo", "desert" / "dessert",
"quiet" / "quite", "order" / "orders".
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.records import normalize_text
from curate.relation import (
    SHORT_TOKENS,
    View,
    continuation,
    exact_key,
    is_short,
    is_typo,
    leak_compared,
    leak_parts,
    leak_score,
    near_score,
    skeleton,
    skeleton_sketch,
    strict_may_match,
    text_score,
    view,
)

T = 0.8

APART = [
    # capitals and places
    ("What is the capital of France?", "What is the capital of Spain?"),
    ("What is the capital of Italy?", "What is the capital of Greece?"),
    ("capital of Germany", "capital of Austria"),
    ("What is the capital of Ireland?", "What is the capital of Iceland?"),
    ("Is Slovakia in the EU?", "Is Slovenia in the EU?"),
    ("Is Austria bigger than Hungary?", "Is Australia bigger than Hungary?"),
    ("Weather in Paris tomorrow", "Weather in London tomorrow"),
    ("Flights from Berlin to Rome", "Flights from Berlin to Madrid"),
    ("Which river flows through Cairo?", "Which river flows through Baghdad?"),
    # numbers, dates, amounts
    ("Is it 2023 already?", "Is it 2024 already?"),
    ("Book a table for 2", "Book a table for 4"),
    ("Order 3 units", "Order three units"),
    ("Refund $50 to my card", "Refund $500 to my card"),
    ("Set an alarm for 7:30", "Set an alarm for 7:45"),
    ("What is 12 times 13?", "What is 12 times 14?"),
    ("My order #1234 is late", "My order #1243 is late"),
    ("Meeting on March 3", "Meeting on March 30"),
    ("Convert 5 km to miles", "Convert 50 km to miles"),
    # yes/no flips
    ("Yes", "No"),
    ("yes please", "no please"),
    ("Is it safe? Yes.", "Is it safe? No."),
    ("Answer yes or no: is water wet? Yes", "Answer yes or no: is water wet? No"),
    ("True", "False"),
    ("Should I accept? Yes", "Should I accept? No"),
    # negations
    ("Reset my password", "Don't reset my password"),
    ("I can log in", "I can't log in"),
    ("I can log in", "I cannot log in"),
    ("The app is working", "The app is not working"),
    ("I want a refund", "I don't want a refund"),
    ("Please cancel the subscription", "Please never cancel the subscription"),
    ("It was charged twice", "It was not charged twice"),
    ("Always send me emails", "Never send me emails"),
    # different products and plans
    ("Buy the iPhone 14", "Buy the iPhone 15"),
    ("My Pixel 7 won't charge", "My Pixel 8 won't charge"),
    ("Upgrade to the Pro plan", "Upgrade to the Team plan"),
    ("Is the Kindle waterproof?", "Is the Kobo waterproof?"),
    ("Compare Windows and macOS", "Compare Windows and Linux"),
    ("How much is Netflix?", "How much is Spotify?"),
    ("Install Python 3.11", "Install Python 3.12"),
    # different names
    ("Send the invoice to Alice", "Send the invoice to Bob"),
    ("Call Maria tomorrow", "Call Sofia tomorrow"),
    ("Who is Ada Lovelace?", "Who is Grace Hopper?"),
    ("Email John Smith", "Email John Brown"),
    ("Assign the ticket to Priya", "Assign the ticket to Chen"),
    ("Is Jackson available?", "Is Jason available?"),
    # symbols and emoji
    ("x + y", "x - y"),
    ("Is a > b?", "Is a < b?"),
    ("Price is $5", "Price is €5"),
    ("I love it 😀", "I love it 😢"),
    ("Rate it ⭐⭐⭐", "Rate it ⭐"),
    ("Discount of 5%", "Discount of 5"),
    ("What is C#?", "What is C?"),
    ("Temperature 20°C", "Temperature 20°F"),
    # word order
    ("Dog bites man", "Man bites dog"),
    ("Transfer from savings to checking", "Transfer from checking to savings"),
    ("Is Paris bigger than Rome?", "Is Rome bigger than Paris?"),
    ("Alice owes Bob money", "Bob owes Alice money"),
    ("Convert dollars to euros", "Convert euros to dollars"),
    ("Sort ascending not descending", "Sort descending not ascending"),
]
MERGE = [
    # case
    ("What is the capital of France?", "what is the capital of france?"),
    ("RESET MY PASSWORD", "reset my password"),
    ("How Do I Cancel?", "how do i cancel?"),
    ("Hello World", "hello world"),
    ("iPhone battery drains fast", "IPHONE battery drains fast"),
    ("Order Status Please", "order status please"),
    ("I CANNOT LOG IN", "I cannot log in"),
    ("Track My Package", "track my package"),
    # punctuation
    ("What is the capital of France?", "What is the capital of France"),
    ("Hello, world!", "Hello world"),
    ("Can I go?", "Can I go!"),
    ("Reset my password.", "Reset my password"),
    ("Help... please", "Help please"),
    ("Cancel it; now.", "Cancel it, now"),
    ("(urgent) refund please", "urgent refund please"),
    ('"Where" is my order?', "Where is my order?"),
    ("Whats the weather", "What's the weather?"),
    ("I cant log in", "I can't log in"),
    # whitespace
    ("Hello,   world", "hello world"),
    ("  reset my password  ", "reset my password"),
    ("reset\tmy\npassword", "reset my password"),
    ("where is\n\nmy order", "where is my order"),
    ("cancel   the   plan", "cancel the plan"),
    ("book a\u00a0table", "book a table"),
    ("two  spaces", "two spaces"),
    ("line\r\nbreak", "line break"),
    # articles
    ("Tell me a joke", "Tell me joke"),
    ("Where is the station", "Where is a station"),
    ("Book a table for 2", "Book table for 2"),
    ("Give me an example", "Give me example"),
    ("What is the time", "What is time"),
    ("Find the nearest ATM", "Find nearest ATM"),
    ("Open an account", "Open the account"),
    ("Show me the menu", "Show me a menu"),
    # one typo
    ("How do I reset my password?", "how do i reset my pasword"),
    ("Recieve the package", "Receive the package"),
    ("tomorow at 5", "tomorrow at 5"),
    ("Cancel my subscription", "Cancel my subscripton"),
    ("Where is my delivery", "Where is my delivrey"),
    ("Update my address", "Update my adress"),
    ("I need a refund", "I need a refnud"),
    ("The invoice is wrong", "The invoise is wrong"),
    ("Change my shipping address", "Change my shiping address"),
    ("Is the account locked?", "Is the acount locked?"),
    ("Please schedule a meeting", "Please schedule a meetting"),
    ("My password expired", "My password expried"),
    # unicode forms
    ("Ｈｅｌｌｏ", "hello"),
    ("Straße", "strasse"),
    ("café", "cafe\u0301"),
    ("ﬁle a claim", "file a claim"),
    # long texts: one word changed (the fuzzy rule)
    (
        (
            "I ordered a pair of running shoes three weeks ago and they still have not arrived; the tracking page "
            "has said in transit for ten days and nobody answers the phone."
        ),
        (
            "I ordered a pair of running shoes three weeks ago and they still have not arrived; the tracking page "
            "has said in transit for twelve days and nobody answers the phone."
        ),
    ),
]


def score(a: str, b: str, t: float = T) -> float:
    return text_score(normalize_text(a), normalize_text(b), t)


def test_tables_are_large_enough() -> None:
    assert len(APART) >= 50 and len(MERGE) >= 50
    assert len(set(APART)) == len(APART) and len(set(MERGE)) == len(MERGE)


@pytest.mark.parametrize("a,b", APART, ids=[f"{a}|{b}" for a, b in APART])
def test_short_pairs_stay_apart(a: str, b: str) -> None:
    assert score(a, b) == 0.0
    assert score(b, a) == 0.0


@pytest.mark.parametrize("a,b", MERGE, ids=[f"{a}|{b}" for a, b in MERGE])
def test_pairs_merge(a: str, b: str) -> None:
    s = score(a, b)
    assert T <= s <= 1.0
    assert score(b, a) == s


def test_typo_rule_boundaries() -> None:
    assert is_typo("password", "pasword") and is_typo("receive", "recieve")  # deletion, swap of neighbours
    assert not is_typo("cat", "cut")  # under 5 letters
    assert not is_typo("12345", "12346")  # not letters: a number is a number
    assert not is_typo("gambia", "zambia")  # first letter differs
    assert not is_typo("austria", "australia")  # two edits
    # two typos in one short text is no longer "one slip"
    assert score("Cancel my subscription please", "Cancel my subscripton pleese") == 0.0


def test_numbers_in_short_texts_always_count() -> None:
    rng = random.Random(7)
    for _ in range(200):
        x, y = rng.sample(range(10000), 2)
        assert score(f"Refund order {x} today", f"Refund order {y} today") == 0.0


# ---------------------------------------------------------------- properties

_WORDS = (
    "account password reset please help refund order invoice charged twice email login error page blank "
    "button urgent cancel subscription yesterday today shipping address delivery tracking number broken "
    "not no yes the a an 12 13 2024 $5 € 😀 ü ß straße café"
)
WORDS = _WORDS.split()

words = st.lists(st.sampled_from(WORDS), min_size=0, max_size=SHORT_TOKENS + 12).map(" ".join)
raw = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
texts = st.one_of(words, raw)
thresholds = st.sampled_from([0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0])


@st.composite
def near_text_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """A text and a lightly edited copy, so the fuzzy and typo branches are reached, not only 0.0."""
    base = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=SHORT_TOKENS + 12))
    other = list(base)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(other) - 1))
        op = draw(st.sampled_from(["swap", "drop", "typo", "case"]))
        if op == "swap":
            other[i] = draw(st.sampled_from(WORDS))
        elif op == "drop" and len(other) > 1:
            other.pop(i)
        elif op == "typo" and len(other[i]) > 2:
            w = other[i]
            other[i] = w[:1] + w[2] + w[1] + w[3:]
        else:
            other[i] = other[i].upper()
    return " ".join(base), " ".join(other)


pairs_of_texts = st.one_of(st.tuples(texts, texts), near_text_pairs())

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(pairs_of_texts, thresholds)
def test_text_score_is_symmetric_bounded_and_thresholded(ab: tuple[str, str], t: float) -> None:
    a, b = normalize_text(ab[0]), normalize_text(ab[1])
    s = text_score(a, b, t)
    assert s == text_score(b, a, t)
    assert s == 0.0 or t <= s <= 1.0
    if a == b:
        assert s == 1.0


@PROPS
@given(texts, thresholds)
def test_text_score_is_reflexive(a: str, t: float) -> None:
    n = normalize_text(a)
    assert text_score(n, n, t) == 1.0
    if a.isascii():
        assert text_score(n, normalize_text(" " + a.upper() + "\n"), t) == 1.0


@PROPS
@given(pairs_of_texts, thresholds)
def test_short_texts_with_different_skeletons_need_one_typo(ab: tuple[str, str], t: float) -> None:
    """The strict rule as documented: a short text merges only with an equal skeleton or one typo."""
    a, b = normalize_text(ab[0]), normalize_text(ab[1])
    s = text_score(a, b, t)
    ta, tb = skeleton(a), skeleton(b)
    if a != b and (is_short(a) or is_short(b)) and s:
        diff = [(x, y) for x, y in zip(ta, tb) if x != y]
        assert len(ta) == len(tb)
        assert not diff or (len(diff) == 1 and is_typo(*diff[0]))


turn_text = st.one_of(
    st.sampled_from(["hi", "Hi!", "hello", "reset my password", "Reset my  password", "no", "yes", "thanks"]),
    words,
)
roles = st.sampled_from(["user", "assistant"])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": turn_text}), min_size=1, max_size=5)
systems = st.lists(st.fixed_dictionaries({"role": st.just("system"), "content": turn_text}), max_size=1)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, str]]:
    return draw(systems) + draw(messages)


@st.composite
def record_views(draw: st.DrawFn) -> View:
    if draw(st.booleans()):
        return view(draw(conversations()))
    prompt = draw(systems) + draw(
        st.lists(
            st.fixed_dictionaries({"role": st.just("user"), "content": turn_text}), min_size=1, max_size=3
        )
    )
    chosen = [{"role": "assistant", "content": draw(turn_text)}]
    return view(prompt, chosen)


@PROPS
@given(record_views(), record_views(), thresholds)
def test_near_and_leak_scores_are_symmetric_and_reflexive(a: View, b: View, t: float) -> None:
    assert near_score(a, b, t) == near_score(b, a, t)
    assert leak_score(a.user_turns, b.user_turns, t) == leak_score(b.user_turns, a.user_turns, t)
    assert near_score(a, a, t) == 1.0
    assert leak_score(a.user_turns, a.user_turns, t) == (1.0 if a.user_turns else 0.0)
    n = near_score(a, b, t)
    assert n == 0.0 or t <= n <= 1.0
    # near needs the prompts to be similar: never more than the prompt's own score
    assert n <= text_score(a.prompt, b.prompt, t)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(texts, texts), min_size=2, max_size=12), thresholds, st.randoms(use_true_random=False)
)
def test_scores_are_pure_functions_of_the_pair(
    pairs: list[tuple[str, str]], t: float, rnd: random.Random
) -> None:
    """A verdict depends on the two texts and the threshold only: the same in any order of calls, after any other
    calls, and on equal (not identical) string objects."""
    norm = [(normalize_text(a), normalize_text(b)) for a, b in pairs]
    first = [text_score(a, b, t) for a, b in norm]
    order = list(range(len(norm)))
    rnd.shuffle(order)
    again = {}
    for k in order:
        a, b = norm[k]
        text_score(b + " extra words", a, t)  # unrelated calls in between
        again[k] = text_score("".join(list(a)), "".join(list(b)), t)
    assert [again[k] for k in range(len(norm))] == first
    views = [view([{"role": "user", "content": a}, {"role": "assistant", "content": b}]) for a, b in pairs]
    before = [
        (near_score(x, y, t), leak_score(x.user_turns, y.user_turns, t))
        for x, y in itertools.combinations(views, 2)
    ]
    after = [
        (near_score(x, y, t), leak_score(x.user_turns, y.user_turns, t))
        for x, y in reversed(list(itertools.combinations(views, 2)))
    ][::-1]
    assert before == after


@st.composite
def prefix_chains(draw: st.DrawFn) -> list[View]:
    """Views of one conversation cut at several lengths, plus unrelated conversations."""
    base = draw(
        st.lists(st.fixed_dictionaries({"role": roles, "content": turn_text}), min_size=1, max_size=7)
    )
    sys_msgs = draw(systems)
    cuts = draw(st.lists(st.integers(1, len(base)), min_size=1, max_size=4))
    vs = [view(draw(systems) + base[:k]) for k in cuts]  # a system turn is not compared
    vs += [view(sys_msgs + base)]
    vs += draw(st.lists(conversations().map(view), max_size=3))
    return vs


@PROPS
@given(prefix_chains())
def test_continuation_is_a_strict_partial_order(vs: list[View]) -> None:
    for a in vs:
        assert not continuation(a, a)  # irreflexive
    for a, b in itertools.product(vs, repeat=2):
        if continuation(a, b):
            assert not continuation(b, a)  # asymmetric
            assert len(a.turns) < len(b.turns) and b.turns[: len(a.turns)] == a.turns
    for a, b, c in itertools.product(vs, repeat=3):
        if continuation(a, b) and continuation(b, c):
            assert continuation(a, c)  # transitive


@PROPS
@given(prefix_chains())
def test_prefix_chain_members_are_continuations(vs: list[View]) -> None:
    base = max(vs[:-1] or vs, key=lambda v: len(v.turns))
    for v in vs:
        if len(v.turns) < len(base.turns) and base.turns[: len(v.turns)] == v.turns:
            assert continuation(v, base)


@PROPS
@given(record_views(), record_views())
def test_exact_key_equal_iff_turns_equal(a: View, b: View) -> None:
    assert (exact_key(a) == exact_key(b)) == (a.turns == b.turns)
    assert exact_key(a) == exact_key(a)


@PROPS
@given(conversations())
def test_exact_key_ignores_case_whitespace_and_system_turns(msgs: list[dict[str, str]]) -> None:
    noisy = [
        {"role": m["role"], "content": "  " + m["content"].upper().replace(" ", "  \n")}
        for m in msgs
        if m["role"] != "system"
    ]
    assert exact_key(view(msgs)) == exact_key(view(noisy))


def test_exact_key_separates_turn_boundaries() -> None:
    one = view([{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}])
    two = view([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b c"}])
    three = view([{"role": "user", "content": "a b"}, {"role": "user", "content": "c"}])
    assert len({exact_key(one), exact_key(two), exact_key(three)}) == 3
    # control characters that look like the key's separators are whitespace to normalize_text
    tricky = view([{"role": "user", "content": "a\x1fb\x1euser\x1fc"}])
    assert exact_key(tricky) != exact_key(
        view([{"role": "user", "content": "a"}, {"role": "user", "content": "c"}])
    )


@settings(max_examples=400, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("abc xyz'’.,!?;:%#$-_1209\"{}()\u4e2d\u6587\u00e9\u00df\u2019")),
        max_size=60,
    )
)
def test_skeleton_equals_the_reference_tokenizer(raw):
    """The cached skeleton (plain pattern on ASCII texts) gives the tokens of the reference: `_TOKEN` on every text,
    punctuation, articles and filler words left out."""
    from curate.relation import _SENTENCE_PUNCT, _TOKEN, ARTICLES, FILLER, skeleton

    norm = normalize_text(raw)
    text = norm.replace("'", "").replace("\u2019", "")
    ref = [
        t for t in _TOKEN.findall(text) if t not in _SENTENCE_PUNCT and t not in ARTICLES and t not in FILLER
    ]
    assert skeleton(norm) == ref
    assert skeleton(norm) == ref  # (again: from the cache)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_token_pattern_equals_the_word_pattern(text):
    """The spelt-out ASCII pattern finds what `\\w+|[^\\w\\s]` (and the reference `_TOKEN`) find on any ASCII
    text, control characters and the separators \\x1c-\\x1f (whitespace to str.isspace) included."""
    import re

    from curate.relation import _TOKEN, _TOKEN_ASCII

    want = re.compile(r"\w+|[^\w\s]").findall(text)
    assert _TOKEN_ASCII.findall(text) == want == _TOKEN.findall(text)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
            st.lists(
                st.sampled_from(
                    [
                        "the",
                        "The",
                        "a",
                        "i",
                        "I",
                        "hi",
                        "please",
                        "thanks",
                        "don't",
                        "'",
                        "x_1",
                        "A-20",
                        "--",
                        "{",
                        "}",
                    ]
                    + ["order", "12345678", '"', ":", ",", "\x1c", "\t", "  ", "\x00", "%", "caf\u00e9"]
                ),
                max_size=30,
            ).map(" ".join),
        ),
        max_size=6,
    )
)
def test_skeleton_kernel_equals_skeleton_sketch(texts):
    """The compiled sketches (dedup's key pass) are `skeleton_sketch`'s, text for text: any ASCII text (control
    characters, the separators \\x1c-\\x1f, apostrophes, dropped words in any case, punctuation), and non-ASCII
    texts (through skeleton_sketch itself)."""
    from curate.skeleton_kernel import sketches

    assert sketches(texts) == [skeleton_sketch(t) for t in texts]


def _view_reference(messages, chosen=None):
    """`view` as first written: every turn through `_content`, the joined parts normalized again."""
    from curate.relation import _content

    turns = [
        (str(m.get("role", "")), normalize_text(_content(m))) for m in messages if m.get("role") != "system"
    ]
    if chosen is not None:
        prompt_turns = turns
        answer = [normalize_text(_content(m)) for m in chosen if m.get("role") != "system"]
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
    return View(
        prompt=normalize_text("\n".join(c for _, c in prompt_turns)),
        response=response,
        user=normalize_text("\n".join(c for role, c in prompt_turns if role == "user")),
        turns=tuple(turns),
        user_turns=tuple(c for role, c in prompt_turns if role == "user"),
    )


_CONTENT = st.one_of(
    st.text(alphabet=st.sampled_from(list("aB c\n\t\x1c\x00.'é\u00a0ﬁ中 ")), max_size=12),
    st.sampled_from(["", "   ", "Hello  World", None, 3]),
)
_MSG = st.builds(
    lambda role, content, calls: {"role": role, "content": content, **calls},
    st.sampled_from(["user", "assistant", "system", "tool"]),
    _CONTENT,
    st.sampled_from([{}, {}, {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_MSG, max_size=5), st.none() | st.lists(_MSG, max_size=2))
def test_view_equals_its_reference(messages, chosen):
    """`view`'s shortcuts (a plain turn's content read directly; normalized ASCII parts joined, not normalized
    again) change no field: whitespace of every kind, case, NFKC forms, empty and non-string contents, tool calls."""
    assert view(messages, chosen) == _view_reference(messages, chosen)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.sampled_from(list("HumanAsistre:#\n xy")), max_size=30),
            st.sampled_from(
                ["Human: hi", "### Instruction: go", "a\n  assistant : b", "user:", "", "no colon"]
            ),
            st.none(),
            st.integers(),
        ),
        max_size=4,
    )
)
def test_turn_markers_equal_the_pattern_on_every_turn(contents):
    """turn_markers' shortcuts (no colon, no cue word: no marker) change no result: the pattern run on every
    string turn."""
    from curate.relation import _MARKER, turn_markers

    msgs = [{"role": "user", "content": c} for c in contents]
    want = [h.group(1).lower() for c in contents if isinstance(c, str) for h in _MARKER.finditer(c)]
    assert turn_markers(msgs) == want


# ---------------------------------------------------------------- bounds a verifier may apply before the rule

# templated text (issue 15): form letters and JSON answers over a few dozen words, an order number in each
_TEMPLATED_WORDS = (
    "your order has been shipped and will arrive soon please contact us if you have any questions"
)
_TEMPLATED = _TEMPLATED_WORDS.split()


@st.composite
def templated_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """A short templated text (a JSON answer or a form line with an order number) and a copy with up to two
    edits: another number, a word replaced, dropped, added, or a typo (the strict rule's one allowance)."""
    order = str(draw(st.integers(10**7, 10**8 - 1)))
    body = draw(st.lists(st.sampled_from(_TEMPLATED), min_size=1, max_size=SHORT_TOKENS - 4))
    as_json = draw(st.booleans())

    def render(words: list[str], number: str) -> str:
        text = " ".join(words)
        if as_json:
            return f'{{"intent":"other","entities":{{"order":"{number}"}},"missing_info":[],"next_step":"{text}"}}'
        return f"dear sam order {number} {text}"

    other, number = list(body), order
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["number", "replace", "drop", "add", "typo"]))
        i = draw(st.integers(0, len(other) - 1))
        if op == "number":
            number = str(draw(st.integers(10**7, 10**8 - 1)))
        elif op == "replace":
            other[i] = draw(st.sampled_from(_TEMPLATED))
        elif op == "drop" and len(other) > 1:
            other.pop(i)
        elif op == "add":
            other.insert(i, draw(st.sampled_from(_TEMPLATED)))
        elif len(other[i]) >= 5:
            w = other[i]
            other[i] = w[:2] + w[3] + w[2] + w[4:]  # two neighbours swapped: a typo
    return normalize_text(render(body, order)), normalize_text(render(other, number))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(templated_pairs(), pairs_of_texts), thresholds)
def test_skeleton_sketch_never_rejects_a_pair_the_strict_rule_accepts(ab: tuple[str, str], t: float) -> None:
    """`strict_may_match` is exact: a pair of short texts it rejects scores 0 under the strict rule (dedup drops
    such candidates before verifying them, `steps.dedup.parts_meet`)."""
    a, b = normalize_text(ab[0]), normalize_text(ab[1])
    if not (is_short(a) and is_short(b)):
        return
    if text_score(a, b, t, True):
        assert strict_may_match(skeleton_sketch(a), skeleton_sketch(b)), (a, b)
    assert strict_may_match(skeleton_sketch(a), skeleton_sketch(a))


def test_skeleton_sketch_rejects_templated_answers_with_another_order() -> None:
    a = '{"intent":"other","entities":{"order":"54050620"},"next_step":"route the ticket with order 54050620"}'
    b = a.replace("54050620", "13131040")
    assert not strict_may_match(skeleton_sketch(normalize_text(a)), skeleton_sketch(normalize_text(b)))
    assert text_score(normalize_text(a), normalize_text(b), T) == 0.0


def _leak_reference(a: tuple[str, ...], b: tuple[str, ...], t: float) -> float:
    """leak_score as written before `leak_parts` (shortness worked out per pair)."""
    if not a or not b:
        return 0.0
    whole = text_score(" ".join(a), " ".join(b), t)
    if whole or len(a) == len(b):
        return whole
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    scores = [text_score(x, y, t) for x, y in zip(short, long_)]
    return min(scores) if all(scores) else 0.0


@PROPS
@given(record_views(), record_views(), thresholds)
def test_leak_compared_equals_the_per_pair_definition(a: View, b: View, t: float) -> None:
    ref = _leak_reference(a.user_turns, b.user_turns, t)
    assert leak_compared(leak_parts(a.user_turns), leak_parts(b.user_turns), t) == ref
    # a question and the same question with a follow-up: the prefix branch
    longer = (*a.user_turns, "and now in french please")
    assert leak_score(a.user_turns, longer, t) == _leak_reference(a.user_turns, longer, t)
