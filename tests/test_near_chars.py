"""The character-count bound of two long CJK texts (`curate.near_chars.CharBound`): it never drops a pair
`relation.text_score` calls similar (hypothesis, against rapidfuzz's LCS and the brute-force character multiset);
in the floor's kernel (`near.SlotFloor(chars=)`) it gives the pairs and counts of the numpy reference and of the
rule written out per pair; on CJK pairs at Indel 0.80-0.85 it keeps every pair the bands meet, and `text_pairs`
finds the same pairs with it as without it."""

from __future__ import annotations

import random
from collections import Counter
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from rapidfuzz import fuzz
from rapidfuzz.distance import LCSseq

from curate import near, near_chars
from curate.minhash import BandSketch
from curate.near_chars import CharBound, char_counts
from curate.relation import has_cjk, is_short, text_score
from tests.test_near_floor import band_matrices

T = 0.8
# a few Han characters, kana, digits, letters, a space and CJK punctuation: small, so characters repeat
ALPHABET = "订单号还没有收到请帮我查一下物流谢您好注文番のをにはがカタナ0123456789ab ，。"


def _edited(rng: random.Random, text: str, k: int, alphabet: str = ALPHABET) -> str:
    """`text` with k single-character edits (substitution, insertion, deletion) at random places."""
    chars = list(text)
    for _ in range(k):
        at, op = rng.randrange(max(1, len(chars))), rng.random()
        if op < 0.4 and chars:
            chars[at] = rng.choice(alphabet)
        elif op < 0.7 or not chars:
            chars.insert(at, rng.choice(alphabet))
        else:
            chars.pop(at)
    return "".join(chars)


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=ALPHABET, min_size=1, max_size=120),
    st.integers(0, 40),
    st.integers(0, 2**32 - 1),
    st.integers(0, 600),
    st.sampled_from([0.5, 0.8, 0.9, 1.0]),
    st.sampled_from([1, 2, 64, 128]),
)
def test_the_bound_never_drops_a_similar_pair(
    a: str, k: int, seed: int, repeat: int, t: float, buckets: int
) -> None:
    """LCS <= the characters' multiset intersection <= the bucketed one, so a pair at Indel t or more always
    passes; also past 255 of one bucket (a repeated character: the count saturates and says nothing)."""
    rng = random.Random(seed)
    a = a + "单" * repeat
    b = _edited(rng, a, k)
    ca, cb = Counter(a), Counter(b)
    exact = sum(min(ca[c], cb[c]) for c in ca)
    counts, lengths = char_counts([a, b], buckets)
    hashed = int(np.minimum(counts[0], counts[1]).sum())
    lcs = LCSseq.similarity(a, b)
    assert lcs <= exact <= hashed or bool(((counts[0] == 255) & (counts[1] == 255)).any())
    assert lengths.tolist() == [len(a), len(b)]
    bound = CharBound.of([a, b], t)
    if fuzz.ratio(a, b) >= 100 * t:
        assert bound(np.array([0]), np.array([1])).tolist() == [True]
    if not ((counts[0] == 255) & (counts[1] == 255)).any() and 2 * hashed < t * (len(a) + len(b)) - 1e-3:
        assert bound(np.array([0]), np.array([1])).tolist() == [False]


@st.composite
def char_bounds(draw: st.DrawFn, n: int) -> CharBound:
    """A CharBound over n records: rows for some (shared rows too), 1-2 parts of 1-8 buckets, counts near 0 and
    255, lengths from -1 (the part not tested) up."""
    parts, buckets = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 8]))
    m = draw(st.integers(0, max(0, n)))
    rows = np.full(n, -1, dtype=np.int64)
    if m:
        rows = draw(arrays(np.int64, (n,), elements=st.integers(-1, m - 1)))
    counts = draw(arrays(np.uint8, (m, parts, buckets), elements=st.sampled_from([0, 1, 2, 5, 254, 255])))
    lengths = draw(arrays(np.int64, (m, parts), elements=st.integers(-1, 14)))
    return CharBound(rows, counts, lengths, draw(st.sampled_from([0.0, 0.3, 0.8, 1.0])))


def _chars_brute(cb: CharBound, i: int, j: int) -> bool:
    """The bound of one pair, written out: each part both rows test holds up, or saturates in both."""
    x, y = int(cb.rows[i]), int(cb.rows[j])
    if x < 0 or y < 0:
        return True
    for p in range(cb.counts.shape[1]):
        la, lb = int(cb.lengths[x, p]), int(cb.lengths[y, p])
        if la < 0 or lb < 0:
            continue
        u, v = cb.counts[x, p].tolist(), cb.counts[y, p].tolist()
        if any(a == 255 and b == 255 for a, b in zip(u, v)):
            continue
        if 2 * sum(map(min, u, v)) + 1e-6 * (la + lb) < cb.threshold * (la + lb):
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(band_matrices(), st.data(), st.integers(0, 9), st.integers(0, 5), st.sampled_from([1, 7, 1 << 18]))
def test_chars_in_the_kernel_equal_the_numpy_reference_and_the_rule(
    case: tuple[np.ndarray, np.ndarray, int, np.ndarray | None], data, small: int, window: int, chunk: int
) -> None:
    """`SlotFloor(chars=)`: the kernel's pairs and counts are the numpy reference's (the floor tested on the
    distinct pairs of each fold), and exactly the pairs of the floor without it less the exempt pairs the bound,
    written out per pair, rejects (a pair over the slot floor with no exempt text is never tested)."""
    bh, digest, floor, exempt = case
    cb = data.draw(char_bounds(len(bh)))
    test = near.SlotFloor(digest, floor, exempt, chars=cb)
    assert near._fusable(test)
    with mock.patch.object(near, "_FLOORED_CHUNK", chunk):
        got = near.candidate_pairs_counted(bh, small=small, window=window, floor=test, threads=1)
    want = near.candidate_pairs_counted(bh, small=small, window=window, keep=test)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    met = near.candidate_pairs_counted(bh, small=small, window=window, floor=test._replace(chars=None))
    pairs = met[0]
    free = [exempt is not None and bool(exempt[i] or exempt[j]) for i, j in pairs.tolist()]
    brute = np.array(
        [not f or _chars_brute(cb, i, j) for f, (i, j) in zip(free, pairs.tolist())], dtype=bool
    ).reshape(-1)
    assert np.array_equal(got[0], pairs[brute]) and np.array_equal(got[1], met[1][brute])


def _cjk_pairs_at_the_threshold(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n pairs of CJK texts (30-80 characters of 400 Han characters) at Indel 0.80-0.85, made by single-character
    substitutions, insertions and deletions."""
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
    out: list[tuple[str, str]] = []
    while len(out) < n:
        a = "".join(rng.choice(han) for _ in range(rng.randint(30, 80)))
        b = a
        for _ in range(200):
            b = _edited(rng, b, 1, "".join(han))
            s = fuzz.ratio(a, b) / 100
            if s < T:
                break
            if s < 0.85:
                out.append((a, b))
                break
    return out


def test_char_bound_recall_at_the_threshold() -> None:
    """On CJK pairs at Indel 0.80-0.85 (single-character edits) the bound keeps every pair: recall with it equals
    recall without it (the pairs the 5-gram bands meet, exempt from the slot floor); while pairs of one template
    replaced in 6-10 of 40 characters (bench_build's cjk workload: Indel ~0.63) are nearly all dropped."""
    rng = random.Random(31)
    pairs = _cjk_pairs_at_the_threshold(rng, 150)
    texts = [x for p in pairs for x in p]
    assert all(has_cjk(t) and not is_short(t) for t in texts)
    bands = BandSketch(T).bands32_of(texts)
    i = np.arange(0, len(texts), 2)
    met = (bands[i] == bands[i + 1]).any(axis=1)
    kept = met & CharBound.of(texts, T)(i, i + 1)
    assert kept.sum() == met.sum() > 0, (int(met.sum()), int(kept.sum()))
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    template = "".join(rng.choice(han) for _ in range(40))

    def member() -> str:
        c = list(template)
        for at in rng.sample(range(40), rng.randint(6, 10)):
            c[at] = rng.choice(han)
        return "".join(c) + "订单号" + str(rng.randrange(10**7, 10**8))

    family = [member() for _ in range(200)]
    j = np.arange(0, 200, 2)
    passed = CharBound.of(family, T)(j, j + 1)
    assert passed.mean() <= 0.05, passed.mean()
    assert not any(text_score(family[a], family[a + 1], T) for a in j.tolist())


def test_text_pairs_of_cjk_texts_equal_the_pairs_without_the_bound() -> None:
    """`text_pairs` over templated CJK texts with near copies (and short ones, whose strict rule the bound leaves
    alone): the same verified pairs with the bound as with every CJK pair exempt (fewer than 64 candidates a text:
    the cap changes nothing), and fewer candidates."""
    rng = random.Random(5)
    han = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 600))
    templates = ["".join(rng.choice(han) for _ in range(40)) for _ in range(4)]
    texts = []
    for _ in range(300):
        base = _edited(rng, rng.choice(templates), rng.randint(2, 10), han)
        texts.append(base)
        if rng.random() < 0.3:
            texts.append(_edited(rng, base, rng.randint(1, 4), han))
        if rng.random() < 0.1:
            texts.append(base[: rng.randint(3, 12)])
    seen: dict[str, list[int]] = {"with": [], "without": []}
    orig = near.cap_candidates

    def cap(key: str):
        def inner(cand, counts, n, limit):
            seen[key].append(len(cand))
            return orig(cand, counts, n, limit)

        return inner

    with mock.patch.object(near, "cap_candidates", cap("with")):
        got = sorted(near.text_pairs(len(texts), texts.__getitem__, T))
    with (
        mock.patch.object(near_chars.CharRows, "bound", lambda self, n, t: None),
        mock.patch.object(near, "cap_candidates", cap("without")),
    ):
        want = sorted(near.text_pairs(len(texts), texts.__getitem__, T))
    assert got == want and len(got) > 50
    assert seen["with"][0] < seen["without"][0], seen


def test_leak_pairs_of_cjk_texts_with_the_bound_equal_those_without() -> None:
    """The leakage check with the bound on its CJK blocking texts finds the leaks it finds with every CJK pair
    exempt (a superset where the cap binds: dropped candidates only free places), every one of them a leak by brute
    force, on templated CJK texts with near copies across the two sides (one- and two-turn items)."""
    from curate.steps.leakcheck import leak_pairs

    rng = random.Random(9)
    han = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 600))
    templates = ["".join(rng.choice(han) for _ in range(40)) for _ in range(3)]
    items: list[str | tuple[str, str]] = []
    for _ in range(160):
        base = _edited(rng, rng.choice(templates), rng.randint(2, 10), han)
        items.append(base if rng.random() < 0.7 else (base, _edited(rng, rng.choice(templates), 8, han)))
        if rng.random() < 0.4:
            near_copy = _edited(rng, base, rng.randint(1, 5), han)
            items.append(near_copy if rng.random() < 0.7 else (near_copy, "再问一个问题好吗谢谢您"))
    rng.shuffle(items)
    train, test = items[:130], items[130:]
    got = leak_pairs(train, test, T)
    with mock.patch.object(near_chars.CharRows, "bound", lambda self, n, t: None):
        want = leak_pairs(train, test, T)
    assert got == want and len(got) > 10
    assert set(got) <= set(leak_pairs(train, test, T, brute=True))
