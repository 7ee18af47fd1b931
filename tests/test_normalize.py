"""normalize_text: NFKC, casefold, collapsed whitespace; the fast paths give the reference's result."""

from __future__ import annotations

import random
import re
import unicodedata

from curate.records import normalize_text


def _reference(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def test_matches_the_reference_on_whitespace_and_case_variants() -> None:
    rng = random.Random(3)
    alphabet = [
        "a",
        "B",
        "z",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x1f",
        "\x85",
        "\xa0",
        "é",
        "ß",
        "ﬁ",
        "\u2003",
        "{",
        '"',
        ":",
        "0",
        "\x00",
        "\x7f",
    ]
    texts = ["", " ", "a", " a", "a ", "a  b", "A b", "a\tb", "plain ascii text", "Hello World!"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(5000)]
    for t in texts:
        assert normalize_text(t) == _reference(t), repr(t)
