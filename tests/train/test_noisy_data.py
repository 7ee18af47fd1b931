"""The noisy-data generator (scripts/make_noisy_data.py): counts per noise kind, what each kind really is, the
frozen held-out set, and what `curate build` makes of the raw rows."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from curate.checks.compiled import compile_rules
from curate.evaluate import prompt_key
from curate.records import normalize_text
from curate.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "specs" / "support-triage" / "bench"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_noisy_data", ROOT / "scripts" / "make_noisy_data.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_noisy_data"] = mod
    spec.loader.exec_module(mod)
    return mod


mnd = _load_script()


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "specs" / "support-triage")


@pytest.fixture(scope="module")
def rules(spec):
    return compile_rules(spec)


@pytest.fixture(scope="module")
def data30():
    return mnd.generate(0.3, 640, seed=13)


def _parse(line: str):
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _user(obj: dict) -> str:
    return obj["messages"][0]["content"]


@pytest.mark.parametrize("noise", [0.0, 0.15, 0.3, 0.5])
def test_counts_add_up_and_follow_the_rate(noise: float) -> None:
    d = mnd.generate(noise, 640, seed=5)
    c = d.counts
    assert len(d.raw) == len(d.truth) == c["rows"] == 640
    assert c["noise_rows"] == round(noise * 640) == sum(c["noise_kinds"].values())
    assert c["clean"] + c["paraphrase"] + c["noise_rows"] == 640
    assert Counter(d.truth) == Counter(
        {
            "clean": c["clean"],
            "paraphrase": c["paraphrase"],
            **{k: v for k, v in c["noise_kinds"].items() if v},
        }
    )
    for kind, lines in c["lines"].items():
        assert all(d.truth[i - 1] == kind for i in lines) and len(lines) == Counter(d.truth)[kind]
    if noise == 0.0:
        assert set(d.truth) == {"clean", "paraphrase"}
    else:  # every kind gets its share of the noise (weights), within rounding
        for kind, w in mnd.DEFAULT_WEIGHTS.items():
            assert abs(c["noise_kinds"][kind] - noise * 640 * w / sum(mnd.DEFAULT_WEIGHTS.values())) <= 2, (
                kind
            )
    assert c["negatives"] == len(d.negatives) == 64
    assert c["paraphrase"] == round(0.1 * (640 - c["noise_rows"]))


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a, b, c = mnd.generate(0.3, 200, seed=1), mnd.generate(0.3, 200, seed=1), mnd.generate(0.3, 200, seed=2)
    assert a.raw == b.raw and a.negatives == b.negatives and a.counts == b.counts
    assert a.raw != c.raw


def test_each_noise_kind_is_what_it_says(data30, rules) -> None:
    d = data30
    held = [h["messages"][0]["content"] for h in mnd.load_heldout()]
    clean_texts = [normalize_text(_user(_parse(line))) for line, t in zip(d.raw, d.truth) if t == "clean"]
    clean_set = set(clean_texts)
    seen = Counter()
    for line, kind in zip(d.raw, d.truth):
        obj = _parse(line)
        if kind == "wrong_format":  # unreadable, no answer, or an answer that is not the JSON asked for
            if obj is None or len(obj.get("messages", [])) < 2:
                seen["unusable"] += 1
                continue
            fails = rules.failed(obj["messages"][1]["content"], _user(obj))
            assert "valid-json" in fails, line
            continue
        assert obj is not None, (kind, line)
        user, answer = _user(obj), obj["messages"][1]["content"]
        fails = rules.failed(answer, user, obj["category"], obj.get("tags", ()))
        if kind in (
            "clean",
            "paraphrase",
            "exact_duplicate",
            "near_duplicate",
            "contradicting_label",
            "heldout_near_copy",
        ):
            assert fails == (), (kind, line, fails)
        elif kind == "rule_breaking":
            assert fails, line
        elif kind == "over_long":
            assert "next-step-brief" in fails, line
        if kind == "exact_duplicate":
            assert normalize_text(user) in clean_set
        if kind == "near_duplicate":
            assert normalize_text(user) not in clean_set
            assert max(mnd.similarity(user, t) for t in clean_texts) >= 0.8
        if kind == "heldout_near_copy":
            assert max(mnd.similarity(user, h) for h in held) >= 0.8
        if kind == "contradicting_label":
            twin = max(clean_texts, key=lambda t: mnd.similarity(user, t))
            assert mnd.similarity(user, twin) >= 0.8
    assert seen["unusable"] >= 1
    # clean requests: no two near-duplicates, none near a held-out prompt
    for a, b in itertools.combinations(clean_texts, 2):
        assert mnd.similarity(a, b) < 0.8
    for t in clean_texts:
        assert all(mnd.similarity(t, h) < 0.8 for h in held)


def test_labeled_negatives_break_exactly_what_they_say(data30, rules) -> None:
    for neg in data30.negatives:
        user, answer = neg["messages"][0]["content"], neg["messages"][1]["content"]
        assert neg["category"] == "negative" and neg["violates"]
        assert list(rules.failed(answer, user, "negative", neg.get("tags", ()))) == neg["violates"]


def test_frozen_heldout_set_and_its_lock(rules) -> None:
    rows = mnd.load_heldout()
    data = (BENCH / "heldout.jsonl").read_bytes()
    lock = orjson.loads((BENCH / "heldout.lock").read_bytes())
    assert len(rows) >= 80 and {r["category"] for r in rows} == {"typical", "edge", "adversarial"}
    assert lock == mnd.heldout_lock(rows, data)  # the lock is the file's, sha256 included
    assert sorted(lock["prompt_keys"]) == sorted(prompt_key(r["messages"]) for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        ref = r["reference"]
        assert orjson.loads(ref["answer"])["intent"] == ref["intent"]
        assert rules.failed(ref["answer"], _user(r), r["category"], r.get("tags", ())) == ()
    assert mnd.make_heldout(len(rows)) == rows  # the script makes the same set again


@pytest.fixture(scope="module")
def noisy_build(tmp_path_factory: pytest.TempPathFactory, data30) -> Path:
    """`curate build` of the 30% rows + negatives, with the frozen held-out lock."""
    d = tmp_path_factory.mktemp("noisy")
    mnd.write(data30, d)
    spec_text = (ROOT / "specs" / "support-triage" / "spec.yaml").read_text("utf-8")
    assert "\ndata: [data.jsonl]" in spec_text
    (d / "spec.yaml").write_text(
        spec_text.replace("\ndata: [data.jsonl]", "\ndata: [raw.jsonl, negatives.jsonl]")
    )
    out = d / "build"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate",
            "build",
            str(d),
            "--out",
            str(out),
            "--lock",
            str(BENCH / "heldout.lock"),
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _users(path: Path) -> set[str]:
    return {
        normalize_text(next(m["content"] for m in r["messages"] if m["role"] == "user"))
        for r in map(orjson.loads, path.read_bytes().splitlines())
    }


def test_curate_build_of_noisy_data_conserves_rows_and_keeps_paraphrases(noisy_build: Path, data30) -> None:
    m = orjson.loads((noisy_build / "manifest.json").read_bytes())
    c = m["counts"]
    assert c["in"] == 640 + 64 == c["exported"] + c["quarantined"] + c["duplicates"]
    assert c["pairs_made"] >= 48  # labeled negatives paired with their clean answers
    kinds = data30.counts["noise_kinds"]
    assert m["dedup"]["exact"] >= kinds["exact_duplicate"]
    assert m["quarantine"]["validate/rule_failed"] >= kinds["rule_breaking"] + kinds["over_long"]
    paras = [
        normalize_text(_user(_parse(line))) for line, t in zip(data30.raw, data30.truth) if t == "paraphrase"
    ]
    exported = _users(noisy_build / "sft" / "train.jsonl") | _users(noisy_build / "sft" / "test.jsonl")
    assert sum(p in exported for p in paras) >= 0.9 * len(paras)  # paraphrases stay


def test_heldout_near_copies_stay_out_of_training(noisy_build: Path, data30) -> None:
    """`curate build --lock`: a near-copy (similarity >= 0.95) of a locked held-out prompt never trains.
    Passed with the split of 07a79f8; fails since the split's rewrite (d6a3b83 / 42866f4): 4 of 11 copies train."""
    train = _users(noisy_build / "sft" / "train.jsonl")
    copies = [
        normalize_text(_user(_parse(line)))
        for line, t in zip(data30.raw, data30.truth)
        if t == "heldout_near_copy"
    ]
    assert copies and sorted(c for c in copies if c in train) == []
