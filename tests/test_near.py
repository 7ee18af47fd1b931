"""NearIndex and friends: kernel = reference, verified scores, LSH recall on known families, determinism."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.minhash import _Hasher, lsh_params, signatures
from curate.near_index import NearIndex, exact_key, near_groups, near_pairs, similarity
from curate.records import normalize_text

WORDS = [
    "account",
    "password",
    "reset",
    "please",
    "help",
    "refund",
    "order",
    "invoice",
    "charged",
    "twice",
    "email",
    "login",
    "error",
    "page",
    "blank",
    "button",
    "urgent",
    "cancel",
    "subscription",
    "yesterday",
    "today",
    "shipping",
    "address",
    "delivery",
    "tracking",
    "number",
    "broken",
    "screen",
    "laptop",
    "phone",
    "tablet",
    "warranty",
    "replace",
    "return",
    "label",
    "store",
    "manager",
    "weekend",
    "morning",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def edit(rng: random.Random, text: str, k: int) -> str:
    w = text.split()
    for _ in range(k):
        i = rng.randrange(len(w))
        op = rng.random()
        if op < 0.4:
            w[i] = rng.choice(WORDS) + str(rng.randrange(50))
        elif op < 0.7:
            w.insert(i, rng.choice(WORDS))
        else:
            w.pop(i)
    return " ".join(w)


def test_exact_key_normalizes_case_whitespace_and_unicode() -> None:
    assert exact_key("Hello  World\n") == exact_key("hello world") == exact_key("ＨＥＬＬＯ world")
    assert exact_key("hello world") != exact_key("hello world!")
    assert len(exact_key("x")) == 32


def test_query_returns_verified_matches_best_first() -> None:
    idx = NearIndex(threshold=0.8)
    base = "My laptop screen is broken since yesterday and I need a replacement under warranty please."
    idx.add("orig", base)
    idx.add("close", base.replace("yesterday", "Monday"))
    idx.add("other", "How do I change the shipping address on an order that already left the warehouse?")
    got = idx.query(base)
    assert [k for k, _ in got] == ["orig", "close"]
    assert got[0][1] == 1.0 and 0.8 <= got[1][1] < 1.0
    assert idx.query("Completely unrelated words about cooking pasta with tomatoes and basil.") == []
    # a stricter per-query threshold drops the edited twin
    assert [k for k, _ in idx.query(base, threshold=0.99)] == ["orig"]
    assert len(idx) == 3


def test_scores_are_the_verified_similarity() -> None:
    idx = NearIndex(threshold=0.5)
    a = "the quick brown fox jumps over the lazy dog near the river bank"
    b = "the quick brown fox leaps over the lazy dog near the river bank"
    idx.add(1, a)
    [(key, score)] = idx.query(b)
    assert key == 1 and score == round(similarity(a, b), 4)
    assert 0.9 < score < 1.0


def test_signature_shape_dtype_and_normalization() -> None:
    idx = NearIndex(num_perm=64, ngram=4)
    sig = idx.signature("Hello World")
    assert sig.shape == (64,) and sig.dtype == np.uint32
    assert (sig == idx.signature("  hello   world ")).all()
    assert not (sig == idx.signature("goodbye world")).all()


def test_numba_kernel_equals_numpy_reference() -> None:
    rng = random.Random(3)
    texts = ["", "a", "abcd", "abcde", "日本語のテキストです", "emoji 😀 text", "x" * 3000]
    texts += [sentence(rng, rng.randrange(1, 120)) for _ in range(200)]
    norms = [normalize_text(t) for t in texts]
    for num_perm, ngram in ((128, 5), (64, 3), (7, 1)):
        h = _Hasher(num_perm, ngram)
        fast = h.signatures_normalized(norms, kernel="numba")
        ref = h.signatures_normalized(norms, kernel="numpy")
        assert (fast == ref).all(), (num_perm, ngram)


def test_signatures_are_stable_across_processes() -> None:
    code = (
        "from curate.minhash import signatures; print(signatures(['Stable across runs, please.'])[0][:8]"
        ".tolist())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    assert outs.pop().strip() == str(signatures(["Stable across runs, please."])[0][:8].tolist())


def test_slot_agreement_estimates_jaccard() -> None:
    rng = random.Random(5)
    errs = []
    h = _Hasher(128, 5)
    for _ in range(150):
        a = normalize_text(sentence(rng, 90))
        b = normalize_text(edit(rng, a, rng.randrange(1, 40)))
        sa, sb = {a[i : i + 5] for i in range(len(a) - 4)}, {b[i : i + 5] for i in range(len(b) - 4)}
        jac = len(sa & sb) / len(sa | sb)
        est = float((h.signature_normalized(a) == h.signature_normalized(b)).mean())
        errs.append(est - jac)
    assert abs(float(np.mean(errs))) < 0.02  # unbiased
    assert float(np.std(errs)) < 0.06  # ~ sqrt(J(1-J)/128)


def test_lsh_recall_and_precision_on_known_families() -> None:
    rng = random.Random(11)
    texts, family = [], []
    for f in range(400):
        base = sentence(rng, 95)  # ~600 characters
        texts.append(base)
        family.append(f)
        texts.append(edit(rng, base, rng.randint(1, 12)))
        family.append(f)
    pairs = near_pairs(texts, threshold=0.8)
    true = sum(family[i] == family[j] for i, j, _ in pairs)
    assert true / 400 >= 0.98  # recall
    assert true == len(pairs)  # precision: every verified pair is a real family
    assert all(i < j and 0.8 <= s <= 1.0 for i, j, s in pairs)


def test_near_pairs_agrees_with_brute_force() -> None:
    rng = random.Random(2)
    base = [sentence(rng, 30) for _ in range(30)]
    texts = base + [edit(rng, t, rng.randint(1, 4)) for t in base[:15]] + [base[0].upper()]
    got = {(i, j) for i, j, _ in near_pairs(texts, threshold=0.8)}
    brute = {
        (i, j)
        for i in range(len(texts))
        for j in range(i + 1, len(texts))
        if similarity(texts[i], texts[j]) >= 0.8
    }
    assert got <= brute
    assert len(got) >= 0.95 * len(brute) and (0, len(texts) - 1) in got


def test_near_groups_are_transitive_and_complete() -> None:
    a = "please reset the password on my work account before the meeting tomorrow morning"
    b = a.replace("tomorrow", "today")
    c = b.replace("meeting", "call")
    groups = near_groups(
        [("k1", a), ("k2", "a totally different request about invoices and refunds"), ("k3", b), ("k4", c)],
        threshold=0.8,
    )
    assert groups == {"k1": "k1", "k2": "k2", "k3": "k1", "k4": "k1"}


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
def test_lsh_params_fit_num_perm(threshold: float) -> None:
    bands, rows = lsh_params(threshold, 128)
    assert bands * rows <= 128 and bands >= 1 and rows >= 1


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError, match="threshold"):
        NearIndex(threshold=0)
    with pytest.raises(ValueError, match="exceeds num_perm"):
        NearIndex(num_perm=16, bands=8, rows=4)


def test_batch_and_incremental_indexes_agree_across_level_merges() -> None:
    rng = random.Random(9)
    base = [sentence(rng, 40) for _ in range(700)]  # > 2 pending flushes and level merges
    probes = [edit(rng, t, 2) for t in base[::7]] + ["nothing like the others at all"]
    one = NearIndex(threshold=0.8)
    for i, t in enumerate(base):
        one.add(i, t)
        if i % 97 == 0:  # queries between adds see pending and sorted entries alike
            assert one.query(t)[0] == (i, 1.0)
    many = NearIndex(threshold=0.8)
    many.add_many(enumerate(base))
    expected = [
        [(j, s) for j, s in ((j, round(similarity(p, t), 4)) for j, t in enumerate(base)) if s >= 0.8]
        for p in probes
    ]
    got_one = [one.query(p) for p in probes]
    got_many = many.query_many(probes)
    assert got_one == got_many
    for got, exp in zip(got_one, expected):
        assert set(got) <= set(exp) and len(got) >= len(exp) * 0.95
    assert got_one[-1] == [] and all(got_one[k][0][0] == 7 * k for k in range(len(probes) - 1))


def test_from_items_ignores_boilerplate_for_candidates() -> None:
    rng = random.Random(4)
    skeleton = ' {"intent": "refund_request", "entities": {}, "missing_info": [], "next_step": "Route it."}'
    items = [(i, sentence(rng, 12) + skeleton) for i in range(1200)]
    idx = NearIndex.from_items(items, threshold=0.8)
    assert idx.stop is not None and len(idx) == 1200
    plain = NearIndex(threshold=0.8)
    plain.add_many(items)
    probe = items[5][1].replace(items[5][1].split()[0], "changed", 1)
    assert len(idx.candidates(probe)) < len(plain.candidates(probe)) / 5
    assert idx.query(probe)[0][0] == 5 and plain.query(probe)[0][0] == 5


def test_threaded_batches_give_the_same_signatures(monkeypatch) -> None:
    rng = random.Random(8)
    norms = [normalize_text(sentence(rng, rng.randrange(1, 12))) for _ in range(5000)]
    h = _Hasher(128, 5)
    monkeypatch.setenv("CURATE_THREADS", "1")
    one = h.signatures_normalized(norms)
    monkeypatch.setenv("CURATE_THREADS", "3")
    assert (h.signatures_normalized(norms) == one).all()


def test_pack_ascii_equals_one_join_and_refuses_non_ascii() -> None:
    import numpy as np

    from curate.minhash import pack_ascii

    texts = ["abc", "", "hello world", "x" * 50, "tail"]
    buf, off = pack_ascii(texts, chunk=2)
    assert buf.tobytes() == "".join(texts).encode("ascii")
    assert off.tolist() == [0, 3, 3, 14, 64, 68] and buf.dtype == np.uint8
    assert pack_ascii(["ok", "café"]) is None
    empty_buf, empty_off = pack_ascii([])
    assert empty_buf.size == 0 and empty_off.tolist() == [0]


def test_band_kernels_equal_the_numpy_band_hashes() -> None:
    import numpy as np

    from curate import minhash as near
    from curate import minhash_kernels as kernels

    rng = np.random.default_rng(1)
    sig = rng.integers(0, 2**32, size=(50, 128), dtype=np.uint64).astype(np.uint32)
    bands, rows = near.lsh_params(0.8, 128)
    ref = near._band_hashes(sig, bands, rows)
    comp = np.empty((50, bands), dtype=np.uint64)
    kernels._composite_kernel(sig, bands, rows, comp)
    assert (comp == ((ref << np.uint64(6)) | np.arange(bands, dtype=np.uint64))).all()
    top = np.empty((50, bands), dtype=np.uint32)
    kernels._band_top_kernel(sig, bands, rows, top)
    assert (top == (ref >> np.uint64(32)).astype(np.uint32)).all()


# ---------------------------------------------------------------- the slot-agreement floor (issue 15)


def test_agreement_floor_is_the_binomial_tail_at_the_usual_jaccard() -> None:
    import math

    from curate.minhash import agreement_floor, usual_jaccard

    assert agreement_floor(0.8, 128) == 51 and agreement_floor(0.8, 128, miss=0.001) == 47
    for t, miss in itertools.product((0.5, 0.7, 0.8, 0.9, 0.95), (0.001, 0.01)):
        k, j = agreement_floor(t, 128, miss), usual_jaccard(t)
        below = sum(math.comb(128, i) * j**i * (1 - j) ** (128 - i) for i in range(k))
        assert below <= miss < below + math.comb(128, k) * j**k * (1 - j) ** (128 - k)
    floors = [agreement_floor(t, 128) for t in (0.5, 0.7, 0.8, 0.9, 0.95)]
    assert floors == sorted(floors)


def test_slot_agreement_counts_equal_low_bytes() -> None:
    from curate.minhash import BandSketch, slot_agreement

    rng = random.Random(3)
    texts = [normalize_text(sentence(rng, 40)) for _ in range(30)]
    texts += [normalize_text(edit(rng, t, 3)) for t in texts]
    digest = np.empty((len(texts), 128), dtype=np.uint8)
    BandSketch(0.8).bands32_of(texts, digest=digest)
    sig = _Hasher(128, 5).signatures_normalized(texts)
    assert np.array_equal(digest, (sig & 0xFF).astype(np.uint8))
    a = np.array([rng.randrange(len(texts)) for _ in range(200)])
    b = np.array([rng.randrange(len(texts)) for _ in range(200)])
    assert np.array_equal(slot_agreement(digest, a, b), (digest[a] == digest[b]).sum(axis=1))


@pytest.mark.parametrize("merge_codes", [50, 4_000_000])
def test_floored_candidates_are_the_candidates_over_the_floor(monkeypatch, merge_codes: int) -> None:
    """Filtering as pairs are folded gives the pairs and counts of the unfiltered call, less the pairs under the
    floor (small folds exercise the filter on every fold)."""
    from curate import near
    from curate.minhash import BandSketch, slot_agreement

    rng = random.Random(8)
    base = [normalize_text(sentence(rng, 30)) for _ in range(40)]
    texts = base + [normalize_text(edit(rng, rng.choice(base), rng.randrange(1, 12))) for _ in range(260)]
    digest = np.empty((len(texts), 128), dtype=np.uint8)
    bands = BandSketch(0.8).bands32_of(texts, digest=digest)
    monkeypatch.setattr(near, "_MERGE_CODES", merge_codes)
    full, counts = near.candidate_pairs_counted(bands, small=8, window=2)
    got, got_counts = near.candidate_pairs_counted(bands, small=8, window=2, keep=near.over_floor(digest, 60))
    ok = slot_agreement(digest, full[:, 0], full[:, 1]) >= 60
    assert 0 < ok.sum() < len(ok)
    assert np.array_equal(got, full[ok]) and np.array_equal(got_counts, counts[ok])


def test_the_floor_leaves_cjk_texts_alone() -> None:
    """Chinese near copies differ in single characters: 2 changed of 20 keep Indel 0.9 but few 5-grams; a pair
    with a CJK text is never floored (`over_floor(exempt=)`), and `text_pairs` finds it."""
    from curate.minhash import BandSketch, agreement_floor, slot_agreement
    from curate.near import over_floor, text_pairs
    from curate.relation import has_cjk

    a = "请写一首关于春天和花朵的短诗给我的朋友们"  # 20 characters: the Indel rule; 2 changed: 0.9
    b = "请写一首关于春天和花草的短诗给你的朋友们"
    texts = [normalize_text(a), normalize_text(b)]
    digest = np.empty((2, 128), dtype=np.uint8)
    BandSketch(0.8).bands32_of(texts, digest=digest)
    i, j = np.array([0]), np.array([1])
    floor = agreement_floor(0.8, 128)
    assert slot_agreement(digest, i, j)[0] < floor  # the floor alone would drop it
    assert has_cjk(texts[0]) and not has_cjk("plain ascii") and not has_cjk("café crème")
    assert over_floor(digest, floor, np.array([True, True]))(i, j).all()
    assert [(p, q) for p, q, _ in text_pairs(2, texts.__getitem__, 0.8)] == [(0, 1)]


def test_text_pairs_report_each_part_and_the_same_pairs() -> None:
    """`text_pairs(report=)` hears every text sketched, every band folded and every candidate pair verified, and
    finds the same pairs as without it."""
    from curate.near import text_pairs

    rng = random.Random(5)
    base = [normalize_text(sentence(rng, 30)) for _ in range(40)]
    texts = base + [normalize_text(edit(rng, t, 1)) for t in base[:10]]
    heard: dict[str, list[tuple[int, int]]] = {}
    got = text_pairs(
        len(texts), texts.__getitem__, 0.8, report=lambda s, d, t: heard.setdefault(s, []).append((d, t))
    )
    assert got == text_pairs(len(texts), texts.__getitem__, 0.8)
    assert len(got) >= 10
    assert heard["near:sketch"][-1] == (len(texts), len(texts))
    bands = heard["near:candidates"][-1][1]
    assert [d for d, _ in heard["near:candidates"]] == list(range(1, bands))
    done = [d for d, _ in heard["near:verify"]]
    assert done == sorted(done) and done[-1] == heard["near:verify"][-1][1] >= len(got)


# ---------------------------------------------------------------- short texts: the strict rule's candidates

SHORT_WORDS = [
    "hello",
    "order",
    "refund",
    "please",
    "where",
    "is",
    "my",
    "reset",
    "password",
    "the",
    "résumé",
]
SHORT_WORDS += [
    "日本語",
    "12345678",
    "87654321",
    "a",
    "x-ray",
    "naïve",
    "help!",
    "passwrod",
    "ordre",
    "hallo",
]


def _short_text(rng: random.Random) -> str:
    return normalize_text(" ".join(rng.choice(SHORT_WORDS) for _ in range(rng.randint(1, 9))))


def _short_variant(rng: random.Random, text: str) -> str:
    """A typo (`relation.is_typo`), another word, a dropped or added word, or the same text."""
    from curate.relation import is_typo

    w = text.split()
    op = rng.randrange(5)
    i = rng.randrange(len(w))
    if op == 0 and len(w[i]) >= 4 and w[i].isalpha():
        k = rng.randrange(1, len(w[i]))
        swapped = w[i][: k - 1] + w[i][k] + w[i][k - 1] + w[i][k + 1 :]  # two neighbours swapped
        if is_typo(w[i], swapped):
            w[i] = swapped
    elif op == 1:
        w[i] = rng.choice(SHORT_WORDS)
    elif op == 2 and len(w) > 1:
        w.pop(i)
    elif op == 3:
        w.insert(i, rng.choice(SHORT_WORDS))
    return normalize_text(" ".join(w))


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_short_texts_the_strict_rule_joins_have_one_masked_key(rnd: random.Random) -> None:
    """`near_short.masked_key` is a necessary condition of the strict rule: two short texts `relation.text_score` calls
    similar have equal keys (so `ShortSketches.meet` drops no pair that scores)."""
    from curate.near_short import masked_key
    from curate.relation import is_short, text_score

    a = _short_text(rnd)
    b = _short_variant(rnd, a)
    if (
        is_short(a) and is_short(b) and text_score(a, b, 0.8)
    ):  # (CJK characters count as words: not always short)
        assert masked_key(a) == masked_key(b)


def _skeleton_keys_reference(parts: list[str]) -> list[int]:
    """`near_short.skeleton_keys` as first written: every key's tokens copied and joined (the definition)."""
    from curate.near_short import _h64
    from curate.relation import is_short, skeleton

    sk = [skeleton(p) for p in parts]

    def key(tag: bytes, toks: list[list[str]]) -> int:
        return _h64(tag + "\x1e".join("\x1f".join(t) for t in toks).encode("utf-8", "surrogatepass"))

    keys = [key(b"s", sk)]
    for side, toks in enumerate(sk):
        if is_short(parts[side]):
            for k, tok in enumerate(toks):
                if len(tok) >= 4 and tok.isalpha():
                    masked = [list(t) for t in sk]
                    masked[side][k] = tok[0] + "\x00"
                    keys.append(key(b"m", masked))
    return keys


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from([*SHORT_WORDS, "\ud800abcd", "ÄÖÜß", ""]), max_size=20), max_size=3))
def test_skeleton_keys_equal_the_reference(parts: list[list[str]]) -> None:
    """The keys, made from the whole text's bytes with one token's replaced, are the definition's."""
    from curate.near_short import skeleton_keys
    from curate.relation import is_short

    texts = [" ".join(p) for p in parts]
    ref = _skeleton_keys_reference(texts)
    got = skeleton_keys(texts)
    assert got[: len(ref)] == ref  # (and one key more, all short parts masked, with two short parts or more)
    assert len(got) == len(ref) + (sum(map(is_short, texts)) > 1)


@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False))
def test_two_part_items_the_strict_rule_joins_share_a_skeleton_key(rnd: random.Random) -> None:
    """Prompt and answer both short, each perhaps with a typo: when the strict rule joins both parts, the two items
    share a skeleton key (a typo in each part shares no one-word mask: the all-masked key)."""
    from curate.near_short import skeleton_keys
    from curate.relation import is_short, text_score

    a = [_short_text(rnd), _short_text(rnd)]
    b = [_short_variant(rnd, t) if rnd.random() < 0.8 else t for t in a]
    if all(map(is_short, a + b)) and all(text_score(x, y, 0.8) for x, y in zip(a, b)):
        assert set(skeleton_keys(a)) & set(skeleton_keys(b)), (a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_text_pairs_of_short_texts_equal_brute_force(seed: int) -> None:
    """Short prompts that share most words but an order number (LSH candidates the strict rule rejects) and their
    typo'd copies: `text_pairs` finds exactly the pairs `text_score` joins over all pairs."""
    from curate.near import text_pairs
    from curate.relation import text_score

    rng = random.Random(seed)
    greet = ["hello order", "where is my order", "refund please order", "reset my password order"]
    texts = [normalize_text(f"{rng.choice(greet)} {rng.randrange(10**7, 10**8)}") for _ in range(150)]
    texts += [_short_variant(rng, rng.choice(texts)) for _ in range(100)]
    texts += [_short_text(rng) for _ in range(50)]
    brute = {
        (i, j) for i, j in itertools.combinations(range(len(texts)), 2) if text_score(texts[i], texts[j], 0.8)
    }
    got = {(i, j) for i, j, _ in text_pairs(len(texts), texts.__getitem__, 0.8)}
    assert len(brute) > 50
    assert got == brute


@pytest.mark.parametrize("seed", [0, 1])
def test_leak_pairs_of_short_texts_equal_brute_force(seed: int) -> None:
    """The leakage check's blocking with the masked-key test (`ShortSketches`): short held-out prompts, some
    multi-turn, some typo'd or renumbered copies of training ones, find exactly the brute-force leaks."""
    from curate.steps.leakcheck import leak_pairs

    rng = random.Random(seed)
    greet = ["hello order", "where is my order", "refund please order", "reset my password order"]

    def item() -> tuple[str, ...]:
        first = normalize_text(f"{rng.choice(greet)} {rng.randrange(10**7, 10**8)}")
        return (first,) if rng.random() < 0.7 else (first, _short_text(rng))

    train = [item() for _ in range(120)]
    test = [item() for _ in range(40)]
    test += [tuple(_short_variant(rng, t) for t in rng.choice(train)) for _ in range(40)]
    want = leak_pairs(train, test, 0.8, brute=True)
    assert len(want) >= 10
    assert leak_pairs(train, test, 0.8) == want


def _key_pairs_reference(pos: np.ndarray, key: np.ndarray, local: np.ndarray, max_run: int) -> np.ndarray:
    """`near_short.key_pairs` as first written: every key through the pairing, shared or not."""
    loc = local[pos]
    ok = loc >= 0
    loc, key = loc[ok], key[ok]
    if len(loc) < 2:
        return np.empty((0, 2), dtype=np.int64)
    o = np.lexsort((loc, key))
    loc, key = loc[o], key[o]
    m = len(loc)
    start = np.maximum.accumulate(np.where(np.concatenate(([True], key[1:] != key[:-1])), np.arange(m), 0))
    at = np.arange(m)
    out = []
    for t in range(max_run):
        q = start + t
        ok = q < at
        a, b = loc[q[ok]], loc[at[ok]]
        out.append(np.stack((np.minimum(a, b), np.maximum(a, b)), axis=1))
    got = np.unique(np.concatenate(out), axis=0)
    return got[got[:, 0] != got[:, 1]]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6)), max_size=80),
    st.integers(1, 5),
    st.lists(st.integers(-1, 40), min_size=31, max_size=31),
)
def test_key_pairs_equal_the_reference(items: list[tuple[int, int]], max_run: int, local: list[int]) -> None:
    """Keys held as arrays (`Keyed`) and the keys no two items share set aside first: the same pairs."""
    from curate.near_short import Keyed, key_pairs

    keyed = Keyed()
    for p, h in items:
        keyed.add(p, [h, h * 7 + 1])
    loc = np.array(local, dtype=np.int64)
    assert np.array_equal(key_pairs(keyed, loc, max_run), _key_pairs_reference(*keyed.arrays(), loc, max_run))
