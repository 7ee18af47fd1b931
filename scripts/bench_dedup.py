"""Precision and recall of exact, near, continuation and leak detection on a mixed workload; the leakage
verifier's cost at 200k records (issue #14).

    .venv/bin/python scripts/bench_dedup.py                   # workload + the 200k verifier run
    .venv/bin/python scripts/bench_dedup.py --verifier-records 0   # workload only

The workload: single-turn conversations from the real fixtures (../shared/fixtures/real: LLaMA-Factory Alpaca zh,
identity, v1 SFT, KTO, glaive; Stanford seed tasks; axolotl; data-juicer) as seeds, first thinned so that no two
seeds are related by the definition (`text_score` of their user texts > 0, brute force), then families planted on
them: exact copies (case, spacing), near copies (long English texts: 1-2 word edits; short ones: one typo; Chinese:
1-2 characters changed), paraphrases by word swap (synonyms, neighbours swapped), continuations (two more turns),
same question with another answer (a leak, not a duplicate), and synthetic short look-alikes ("capital of X",
"convert N km": all different requests, plus one typo twin and one case twin per template), and three templated
families (one long seed, two words varied, 40-250 copies: every two are near twins, so one should stay). The
records are
written in three real formats with ids and metadata: ShareGPT JSONL, Alpaca JSONL (`history` for
continuations) and OpenAI chat JSONL, each family spread over the formats at random, and built in one
`curate build` (a copy of tests/data/build-generic: permissive rules).

Measured, against the planted families:
- exact / near: a cluster row is right when both records are of one planted family of that kind (precision);
  recall = within-family removals / (family size - 1) summed over families; by language and family kind;
- continuation: relations.jsonl rows vs planted (prefix, continuation) pairs;
- leak: the verifier (`curate.steps.leakcheck.leak_pairs`) on a split that puts one member of every family in
  held-out and the others in train, vs the planted leak pairs and vs brute force over the definition
  (`leak_score` on every pair that can score); and after the build, brute force finds no held-out/train leak.
The scale run: the verifier alone (`leak_pairs`, 1 in 7 records held out) on the workload's user turns plus
random corpora of the property tests' generator over the seeds' English words, at 2k, 5k, 10k ... up to
`--verifier-records` (200k), each size in a child process with a time cap and an address-space limit, timed
(wall and CPU) against an in-run baseline: dedup's candidate stage on the same texts. The CPUs are shared with
other work: CPU seconds and the ratio are the figures to compare. A size that does not finish stops the run
(with a quadratic extrapolation from the last one that did).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

from test_dedup_properties import (  # the property tests' generator and brute-force helpers
    COUNTRIES,
    VOCAB,
    _Block,
    _edit,
    _noisy_case,
    _swap,
    corpus,
    leaks,
    spec_copy,
)

import curate
from curate.records import normalize_text
from curate.relation import is_short, leak_score, near_score, text_score, view
from curate.steps.base import RunContext
from curate.steps.leakcheck import leak_pairs
from curate.steps.read import read_inputs

T = 0.8
SEED_FILES = [
    "llama-factory/alpaca_zh_demo.json",
    "llama-factory/identity.json",
    "stanford-alpaca/seed_tasks.jsonl",
    "axolotl/alpaca.json",
    "llama-factory/glaive_toolcall_en_demo.json",
    "axolotl/conversation.json",
    "llama-factory/v1_sft_demo.jsonl",
    "data-juicer/demo-dataset-chatml.jsonl",
    "llama-factory/kto_en_demo.json",
    "data-juicer/alpaca-cot.jsonl",
]
FOLLOW_UPS = [
    "Thanks. Can you make it shorter?",
    "Please explain that in more detail.",
    "谢谢，可以再简短一点吗？",
    "Now translate it into French.",
    "Can you give one more example?",
    "再举一个例子。",
]
_CJK = re.compile(r"[\u4e00-\u9fff]")
_ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"


def fixtures_dir() -> Path:
    from conftest import _fixtures_dir

    return _fixtures_dir()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ seeds


def load_seeds(real: Path) -> list[dict[str, str]]:
    """Single-turn (user, assistant) conversations of the fixture files, as curate reads them."""
    ctx = RunContext()
    out = []
    for rec in read_inputs([real / f for f in SEED_FILES], ctx=ctx):
        if rec.kind != "sft":
            continue
        turns = [m for m in rec.conversation() if m.role != "system"]
        if len(turns) != 2 or (turns[0].role, turns[1].role) != ("user", "assistant") or turns[1].tool_calls:
            continue
        u, a = turns[0].content, turns[1].content
        if u.strip() and a.strip():
            out.append(
                {
                    "user": u,
                    "answer": a,
                    "origin": str(rec.source.file).split("real/")[-1],
                    "lang": "zh" if _CJK.search(u) else "en",
                }
            )
    return out


def related_pairs(texts: Sequence[str], t: float = T) -> list[tuple[int, int]]:
    """Every pair (i < j) of normalized texts with text_score > 0 (brute force, blocked by `_Block`)."""
    block = _Block(texts, t)
    out = []
    for j, x in enumerate(texts):
        for i in block(x):
            if i < j and text_score(texts[i], x, t):
                out.append((i, j))
    return out


def independent(seeds: list[dict[str, str]]) -> list[dict[str, str]]:
    """Drop seeds until no two are related by their user texts (so every relation in the workload is planted)."""
    norms = [normalize_text(s["user"]) for s in seeds]
    gone: set[int] = set()
    for i, j in sorted(related_pairs(norms)):
        if i not in gone:
            gone.add(j)
    return [s for k, s in enumerate(seeds) if k not in gone]


# ------------------------------------------------------------------ planted families


def _typo(rng: random.Random, text: str) -> str | None:
    """One slip in a 6+ letter word (two inner letters swapped), or None."""
    words = [(m.start(), m.group()) for m in re.finditer(r"[A-Za-z]{6,}", text)]
    if not words:
        return None
    at, w = rng.choice(words)
    k = rng.randrange(1, len(w) - 2)
    if w[k] == w[k + 1]:
        return None
    w2 = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
    return text[:at] + w2 + text[at + len(w) :]


def _zh_edit(rng: random.Random, text: str, k: int) -> str | None:
    idx = [i for i, ch in enumerate(text) if _CJK.match(ch)]
    if len(idx) < 20:
        return None
    t = list(text)
    for i in rng.sample(idx, k):
        t[i] = rng.choice(_ZH_CHARS.replace(t[i], ""))
    return "".join(t)


def _conv(user: str, answer: str, more: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [("user", user), ("assistant", answer), *more]


def _score(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> float:
    va = view([{"role": r, "content": c} for r, c in a])
    vb = view([{"role": r, "content": c} for r, c in b])
    return near_score(va, vb, T)


def plant(seeds: list[dict[str, str]], rng: random.Random) -> list[dict[str, Any]]:
    """Records {conv, family, kind, lang, origin}; family members share `family`; kind is the family's kind."""
    out: list[dict[str, Any]] = []
    fam = 0
    longs = [s for s in seeds if s["lang"] == "en" and len(s["user"].split()) >= 30]
    templated = rng.sample(longs, min(3, len(longs)))  # these seeds serve only their templated families
    for s in seeds:
        if any(s is x for x in templated):
            continue
        fam += 1
        u, a, lang = s["user"], s["answer"], s["lang"]
        base = _conv(u, a)
        members = [base]
        roll = rng.random()
        long_en = lang == "en" and not is_short(normalize_text(u))
        if roll < 0.3:
            kind = "single"
        elif roll < 0.45:
            kind = "exact"
            if lang == "en":
                members.append(_conv(_noisy_case(rng, u.split()), " " + a.upper() + "  "))
            else:  # Chinese has no case: outer whitespace and doubled spaces only
                members.append(_conv("  " + u.replace(" ", "  ") + "\n", a.replace(" ", "   ") + " "))
        elif roll < 0.68:
            kind = "near"
            for _ in range(rng.randint(1, 2)):
                if long_en:
                    for tries in range(6):
                        v = " ".join(_edit(rng, u.split(), 1 if tries > 2 else rng.randint(1, 2), VOCAB))
                        if _score(base, _conv(v, a)) >= T + 0.05:
                            break
                    else:
                        v = None
                elif lang == "en":
                    v = _typo(rng, u)
                else:
                    v = _zh_edit(rng, u, rng.randint(1, 2))
                if v is not None and v != u:
                    members.append(_conv(v, a))
        elif roll < 0.76 and long_en:
            kind = "swap"
            v = " ".join(_swap(rng, u.split(), rng.randint(1, 2)))
            if v != u and _score(base, _conv(v, a)) >= T + 0.05:
                members.append(_conv(v, a))
        elif roll < 0.88:
            kind = "continuation"
            members.append(
                _conv(
                    u,
                    a,
                    [
                        ("user", rng.choice(FOLLOW_UPS)),
                        ("assistant", " ".join(rng.choice(VOCAB) for _ in range(rng.randint(8, 30)))),
                    ],
                )
            )
        else:
            kind = "leak"  # the same question with another answer: not a duplicate, but one split group
            members.append(_conv(u, " ".join(rng.choice(VOCAB) for _ in range(rng.randint(8, 40)))))
        if len(members) == 1:
            kind = "single"
        expect = {
            "exact": "exact",
            "near": "near",
            "swap": "near",
            "continuation": "continuation",
            "leak": "leak",
        }
        for k, m in enumerate(members):
            out.append(
                {
                    "conv": m,
                    "family": fam,
                    "kind": kind,
                    "lang": lang,
                    "origin": s["origin"],
                    "base": k == 0,
                    "expect": None if k == 0 else expect[kind],
                }
            )
    # templated requests: one long English seed, two words varied per copy (every two copies are near twins)
    for s in templated:
        fam += 1
        words = s["user"].split()
        slots = rng.sample(range(len(words)), 2)
        for _ in range(rng.choice((40, 100, 250))):
            w = list(words)
            for k in slots:
                w[k] = rng.choice(VOCAB)
            out.append(
                {
                    "conv": _conv(" ".join(w), s["answer"]),
                    "family": fam,
                    "kind": "template",
                    "lang": "en",
                    "origin": s["origin"],
                    "base": False,
                    "expect": None,
                }
            )
    # short look-alikes: different requests that look alike (never duplicates), with a typo twin and a case twin
    looks = [
        ("What is the capital of {}?", "The capital of {} is in the atlas entry for {}.", COUNTRIES),
        (
            "Convert {} km to miles.",
            "Multiply {} by 0.621 to get miles ({}).",
            [str(n) for n in range(3, 60, 4)],
        ),
        (
            "Is the {} waterproof?",
            "Check the {} manual, section {} on water resistance.",
            ["Kindle", "Kobo", "Pixel 7", "Pixel 8", "iPhone 14", "iPhone 15", "Galaxy S23", "Fitbit Charge"],
        ),
    ]
    for tmpl, ans, fills in looks:
        picked = rng.sample(list(fills), min(len(fills), 12))
        for x in picked:
            fam += 1
            out.append(
                {
                    "conv": _conv(tmpl.format(x), ans.format(x, x)),
                    "family": fam,
                    "kind": "short",
                    "lang": "en",
                    "origin": "synthetic",
                    "base": True,
                    "expect": None,
                }
            )
        x = picked[0]
        twin_fam = next(r["family"] for r in out if r["conv"][0][1] == tmpl.format(x))
        typo = _typo(rng, tmpl.format(x)) or tmpl.format(x).replace("capital", "captial")
        for conv, kind in (
            (_conv(typo, ans.format(x, x)), "short_typo"),
            (_conv(tmpl.format(x).upper(), ans.format(x, x)), "short_case"),
        ):
            out.append(
                {
                    "conv": conv,
                    "family": twin_fam,
                    "kind": kind,
                    "lang": "en",
                    "origin": "synthetic",
                    "base": False,
                    "expect": "near" if kind == "short_typo" else "exact",
                }
            )
    rng.shuffle(out)
    return out


# ------------------------------------------------------------------ writing the three formats


def write_formats(recs: list[dict[str, Any]], folder: Path, rng: random.Random) -> dict[tuple[str, int], int]:
    """ShareGPT, Alpaca and OpenAI chat JSONL files; returns {(file, line): record index}."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {
        "sharegpt": folder / "sharegpt.jsonl",
        "alpaca": folder / "alpaca.jsonl",
        "openai": folder / "openai.jsonl",
    }
    lines: dict[str, list[str]] = {k: [] for k in names}
    where = {}
    for k, r in enumerate(recs):
        fmt = rng.choice(list(names))
        conv = r["conv"]
        meta = {"origin": r["origin"], "lang": r["lang"], "batch": rng.randint(1, 9)}
        rid = f"{fmt}-{len(lines[fmt]) + 1:05d}"
        if fmt == "sharegpt":
            row = {
                "id": rid,
                "conversations": [{"from": "human" if ro == "user" else "gpt", "value": c} for ro, c in conv],
                "meta": meta,
            }
        elif fmt == "openai":
            row = {"id": rid, "messages": [{"role": ro, "content": c} for ro, c in conv], "metadata": meta}
        else:
            pairs = [(conv[i][1], conv[i + 1][1]) for i in range(0, len(conv), 2)]
            row = {"id": rid, "instruction": pairs[-1][0], "input": "", "output": pairs[-1][1], "meta": meta}
            if len(pairs) > 1:
                row["history"] = [list(p) for p in pairs[:-1]]
        lines[fmt].append(json.dumps(row, ensure_ascii=False))
        where[(str(names[fmt]), len(lines[fmt]))] = k
    for fmt, path in names.items():
        path.write_text("\n".join(lines[fmt]) + "\n", encoding="utf-8")
    return where


# ------------------------------------------------------------------ measuring


def pr(tp: int, fp: int, fn: int) -> tuple[str, str]:
    p = f"{tp / (tp + fp):.4f}" if tp + fp else "-"
    r = f"{tp / (tp + fn):.4f}" if tp + fn else "-"
    return p, r


def planted_pairs(recs: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """(base index, copy index, expected relation) of every planted pair."""
    base = {r["family"]: k for k, r in enumerate(recs) if r["base"]}
    return [(base[r["family"]], k, r["expect"]) for k, r in enumerate(recs) if r["expect"]]


def measure_dedup(
    recs: list[dict[str, Any]], out: Path, where: dict[tuple[str, int], int]
) -> list[tuple[Any, ...]]:
    """Rows: (detection, lang, family kind, planted pairs, merged, precision, recall). A planted duplicate pair is
    merged when a cluster row drops one of the two in favour of a record of the same family (a greedy chain may
    keep a copy and drop the base); precision counts the rows whose two records are of one duplicate family."""

    def idx(src: str) -> int:
        f, line = src.rsplit(":", 1)
        return where[(f, int(line))]

    rows = [json.loads(x) for x in (out / "clusters.jsonl").read_text(encoding="utf-8").splitlines()]
    rels_path = out / "relations.jsonl"
    rels = (
        [json.loads(x) for x in rels_path.read_text(encoding="utf-8").splitlines()]
        if rels_path.exists()
        else []
    )
    pairs = planted_pairs(recs)
    dup_fams = {recs[j]["family"] for _, j, e in pairs if e in ("exact", "near")}
    dup_fams |= {r["family"] for r in recs if r["kind"] == "template"}
    merged = {
        idx(r["dropped_source"])
        for r in rows
        if recs[idx(r["kept_source"])]["family"] == recs[idx(r["dropped_source"])]["family"]
    }
    table = []
    for method in ("exact", "near"):
        mine = [(idx(r["kept_source"]), idx(r["dropped_source"])) for r in rows if r["method"] == method]
        good = [
            (k, d)
            for k, d in mine
            if recs[k]["family"] == recs[d]["family"] and recs[k]["family"] in dup_fams
        ]
        for k, d in [m for m in mine if m not in good][:5]:
            log(
                f"  {method} row outside a duplicate family ({recs[k]['kind']} / {recs[d]['kind']}): "
                f"{recs[k]['conv'][0][1][:70]!r} ~ {recs[d]['conv'][0][1][:70]!r}"
            )
        mp = [(i, j, recs[j]["kind"], recs[j]["lang"]) for i, j, e in pairs if e == method]
        hit = [(i in merged or j in merged) for i, j, _, _ in mp]
        for i, j, _, _ in [m for m, h in zip(mp, hit) if not h][:3]:
            log(
                f"  {method} pair not merged ({recs[j]['kind']}/{recs[j]['lang']}): {recs[i]['conv'][0][1][:70]!r} ~ "
                f"{recs[j]['conv'][0][1][:70]!r}"
            )
        for kind, lang in sorted({(m[2], m[3]) for m in mp}):
            sel = [h for m, h in zip(mp, hit) if (m[2], m[3]) == (kind, lang)]
            table.append((method, lang, kind, len(sel), sum(sel), "", f"{sum(sel) / len(sel):.4f}"))
        p, rc = pr(sum(hit), len(mine) - len(good), len(hit) - sum(hit))
        p = f"{len(good) / len(mine):.4f}" if mine else "-"
        table.append((method, "all", "all", len(mp), sum(hit), p, rc))
    dropped = {idx(r["dropped_source"]) for r in rows}
    for f in sorted({r["family"] for r in recs if r["kind"] == "template"}):
        ks = [k for k, r in enumerate(recs) if r["family"] == f]
        texts = {recs[k]["conv"][0][1] for k in ks}
        left = len({recs[k]["conv"][0][1] for k in ks if k not in dropped})
        table.append(
            (
                "near (templated family)",
                "en",
                f"template x{len(ks)} ({len(texts)} distinct)",
                len(texts) - 1,
                len(texts) - left,
                "",
                f"{(len(texts) - left) / max(1, len(texts) - 1):.4f} ({left} kept)",
            )
        )
    planted = {(i, j) for i, j, e in pairs if e == "continuation"}
    found = {(idx(r["a_source"]), idx(r["b_source"])) for r in rels if r.get("relation") == "continuation"}
    tp = len(found & planted)
    p, rc = pr(tp, len(found - planted), len(planted - found))
    table.append(("continuation", "all", "continuation", len(planted), tp, p, rc))
    lost = sum(
        1
        for i, j in planted
        if i in merged or j in merged or any(idx(r["dropped_source"]) in (i, j) for r in rows)
    )
    if lost:
        log(f"  continuation pairs where one side was removed as a duplicate: {lost}")
    return table


def measure_verifier(recs: list[dict[str, Any]], rng: random.Random) -> tuple[list[tuple[Any, ...]], float]:
    """The verifier on a split with one member of each family held out; vs planted leaks and vs brute force."""
    users = [tuple(normalize_text(c) for ro, c in r["conv"][:-1] if ro == "user") for r in recs]
    fam_members: dict[int, list[int]] = defaultdict(list)
    for k, r in enumerate(recs):
        fam_members[r["family"]].append(k)
    test_idx, train_idx = [], []
    for ks in fam_members.values():
        if len(ks) > 1:
            test_idx.append(ks[0])
            train_idx += ks[1:]
        elif rng.random() < 0.15:
            test_idx.append(ks[0])
        else:
            train_idx.append(ks[0])
    tr = [users[k] for k in train_idx]
    te = [users[k] for k in test_idx]
    tr_pos, te_pos = set(train_idx), set(test_idx)
    t0 = time.perf_counter()
    got = {(train_idx[i], test_idx[j]) for i, j, _ in leak_pairs(tr, te, T)}
    dt = time.perf_counter() - t0
    # brute force over the definition (each pair that can score, `_Block` as in the tests)
    whole = _Block([" ".join(u) for u in tr], T)
    firsts = _Block([u[0] for u in tr], T)
    truth_def = set()
    for j, h in enumerate(te):
        for i in whole(" ".join(h)) | firsts(h[0]):
            if leak_score(tr[i], h, T):
                truth_def.add((train_idx[i], test_idx[j]))
    planted = {}
    for i, j, e in planted_pairs(recs):
        for x, y in ((i, j), (j, i)):
            if x in tr_pos and y in te_pos:
                planted[(x, y)] = e
    table = []
    p, r = pr(len(got & truth_def), len(got - truth_def), len(truth_def - got))
    table.append(
        (
            "verifier vs definition (brute force): the build's check",
            "all",
            len(truth_def),
            len(got & truth_def),
            p,
            r,
        )
    )
    loose = {(train_idx[i], test_idx[j]) for i, j, _ in leak_pairs(tr, te, T, loose=True)}
    p, r = pr(len(loose & truth_def), len(loose - truth_def), len(truth_def - loose))
    table.append(
        (
            "verifier vs definition (brute force): curate leakage (loose=True)",
            "all",
            len(truth_def),
            len(loose & truth_def),
            p,
            r,
        )
    )
    for e in ("exact", "near", "continuation", "leak"):
        for lang in ("en", "zh"):
            sel = [pq for pq, ee in planted.items() if ee == e and recs[pq[0]]["lang"] == lang]
            if sel:
                hit = sum(pq in got for pq in sel)
                table.append(
                    (f"verifier vs planted {e} pairs", lang, len(sel), hit, "", f"{hit / len(sel):.4f}")
                )
    extra = got - set(planted)
    same_fam = sum(recs[i]["family"] == recs[j]["family"] for i, j in extra)
    if extra:
        log(
            f"  reported leaks that are not planted pairs: {len(extra)} ({same_fam} within one family), e.g. "
            f"{[(recs[i]['conv'][0][1][:50], recs[j]['conv'][0][1][:50]) for i, j in sorted(extra)[:3]]}"
        )
    return table, dt


# ------------------------------------------------------------------ the verifier at scale


def scale_items(n: int, seed: int) -> list[tuple[str, ...]]:
    """n records' normalized user turns: the planted workload of the real seeds, then random corpora of the property
    tests' generator over the seeds' English words (a broad vocabulary, so unrelated texts share few 3-grams)."""
    rng = random.Random(seed)
    seeds = independent(load_seeds(fixtures_dir()))
    words = sorted(
        {
            w
            for s in seeds
            if s["lang"] == "en"
            for w in re.findall(r"[a-z]{2,}", (s["user"] + " " + s["answer"]).lower())
        }
    )
    convs = [r["conv"] for r in plant(seeds, rng)]
    from test_dedup_properties import view_of

    items = [tuple(normalize_text(c) for ro, c in conv[:-1] if ro == "user") for conv in convs]
    while len(items) < n:
        items += [view_of(d).user_turns for d, _, _ in corpus(rng.randrange(2**32), 200, vocab=words)]
    return items[:n]


def scale_child(n: int, seed: int) -> dict[str, Any]:
    """One timed run (in a child process): the verifier on an 86/14 split of n records, and the baseline."""
    items = scale_items(n, seed)
    te = items[::7]
    tr = [x for k, x in enumerate(items) if k % 7]
    from curate.minhash import BandSketch
    from curate.near_index import candidate_pairs

    t0, c0 = time.perf_counter(), time.process_time()
    found = leak_pairs(tr, te, T)
    verify_s, verify_cpu = time.perf_counter() - t0, time.process_time() - c0
    # baseline: dedup's candidate stage on the same texts (normalize, MinHash bands at 0.8, bucket pairs)
    t0, c0 = time.perf_counter(), time.process_time()
    texts = [normalize_text(" ".join(x)) for x in items]
    cand = candidate_pairs(BandSketch(T).bands32_of(texts))
    base_s, base_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "n": n,
        "train": len(tr),
        "test": len(te),
        "verify_s": verify_s,
        "verify_cpu": verify_cpu,
        "leaks": len(found),
        "baseline_s": base_s,
        "baseline_cpu": base_cpu,
        "baseline_pairs": len(cand),
    }


def verifier_at_scale(sizes: Sequence[int], seed: int, cap_s: int, mem_gb: float) -> list[dict[str, Any]]:
    """`scale_child` for each size in a child process (at most cap_s seconds and mem_gb of address space each);
    stops at the first size that does not finish."""
    import resource
    import subprocess

    def limit() -> None:
        b = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (b, b))

    out = []
    for n in sizes:
        log(f"verifier at {n:,} records (cap {cap_s} s, {mem_gb} GB)")
        t0 = time.perf_counter()
        try:
            got = subprocess.run(
                [sys.executable, __file__, "--scale-child", str(n), "--seed", str(seed)],
                check=False,
                capture_output=True,
                text=True,
                timeout=cap_s,
                preexec_fn=limit,
            )
        except subprocess.TimeoutExpired:
            out.append({"n": n, "failed": f"did not finish in {cap_s} s"})
            break
        if got.returncode != 0:
            tail = (got.stderr.strip().splitlines() or ["?"])[-1][:160]
            out.append(
                {"n": n, "failed": f"exit {got.returncode} after {time.perf_counter() - t0:.0f} s: {tail}"}
            )
            break
        out.append(json.loads(got.stdout.strip().splitlines()[-1]))
    return out


def run_workload(tmp: Path, rng: random.Random) -> None:
    """Build the mixed workload and print its precision / recall tables."""
    seeds_all = load_seeds(fixtures_dir())
    seeds = independent(seeds_all)
    log(
        f"seeds: {len(seeds_all)} single-turn conversations read, {len(seeds)} unrelated kept "
        f"({Counter(s['lang'] for s in seeds)})"
    )
    recs = plant(seeds, rng)
    where = write_formats(recs, tmp / "workload", rng)
    spec = spec_copy(tmp, generic=True)
    files = sorted({Path(f) for f, _ in where})
    t0 = time.perf_counter()
    res = curate.build(spec, files, tmp / "out")
    build_s = time.perf_counter() - t0
    c = res.counts
    lost = c["in"] - c["exported"] - c["quarantined"] - c["duplicates"]
    log(f"workload build: {build_s:.1f} s, {c}")
    table = measure_dedup(recs, tmp / "out", where)
    vtable, v_s = measure_verifier(recs, rng)
    brute = leaks(tmp / "out")

    kinds = Counter(r["kind"] for r in recs)
    print(
        f"## Mixed workload: {len(recs)} records in 3 formats ({', '.join(f.name for f in files)}), "
        f"{len(seeds)} real seeds ({Counter(s['lang'] for s in seeds)}), families {dict(kinds)}"
    )
    print(
        f"build {build_s:.1f} s; in {c['in']}, exported {c['exported']}, quarantined {c['quarantined']}, "
        f"duplicates {c['duplicates']}, unaccounted {lost}; manifest leakage {res.manifest.get('leakage')}"
    )
    print()
    print("| detection | lang | planted kind | planted pairs | merged | precision | recall |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print()
    print(
        "| leak check (held-out = one member per family) | lang | true pairs | found | precision | recall |"
    )
    print("|---|---|---|---|---|---|")
    for row in vtable:
        print("| " + " | ".join(str(x) for x in row) + " |")
    print(
        f"\nverifier on {len(recs)} records: {v_s:.2f} s; after the build, brute force finds "
        f"{len(brute)} held-out/train pairs at the leakage threshold"
    )


def run_scale(args: argparse.Namespace) -> None:
    """The verifier by size (see the module doc) and its table."""
    sizes = [int(x) for x in args.sizes.split(",") if x.strip() and int(x) < args.verifier_records]
    runs = verifier_at_scale([*sizes, args.verifier_records], args.seed, args.cap, args.mem_gb)
    print()
    print(
        "## The verifier (`leakcheck.leak_pairs`) by size: 1 in 7 records held out; baseline = dedup's "
        "candidate stage (normalize, MinHash bands at 0.8, bucket pairs) on the same texts, same run. "
        "Shared CPU (2 cores, other work running): seconds vary with the load, ratios less."
    )
    print(
        "| records | train x held-out | verifier wall s | verifier CPU s | leaks found | baseline CPU s "
        "| verifier / baseline (CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        if "failed" in r:
            print(f"| {r['n']:,} | | {r['failed']} | | | | |")
        else:
            print(
                f"| {r['n']:,} | {r['train']:,} x {r['test']:,} | {r['verify_s']:.1f} | "
                f"{r['verify_cpu']:.1f} | {r['leaks']:,} | {r['baseline_cpu']:.2f} | "
                f"{r['verify_cpu'] / max(r['baseline_cpu'], 1e-9):.0f} |"
            )
    done = [r for r in runs if "failed" not in r]
    if done and done[-1]["n"] < args.verifier_records:
        last = done[-1]
        est = last["verify_cpu"] * (args.verifier_records / last["n"]) ** 2
        print(
            f"\nnot finished at {args.verifier_records:,}; quadratic extrapolation from {last['n']:,}: "
            f"~{est:,.0f} CPU s"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument(
        "--verifier-records", type=int, default=200_000, help="the scale run's largest size (0: none)"
    )
    ap.add_argument("--cap", type=int, default=600, help="seconds one scale step may take (default 600)")
    ap.add_argument(
        "--mem-gb", type=float, default=4.0, help="address space of one scale step (default 4 GB)"
    )
    ap.add_argument(
        "--sizes",
        default="2000,5000,10000,20000,50000,100000",
        help="smaller sizes of the scale run, before --verifier-records (comma-separated; '' for none)",
    )
    ap.add_argument("--no-workload", action="store_true", help="only the scale run")
    ap.add_argument("--scale-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--keep", type=Path, default=None, help="keep the workload and outputs in this folder")
    args = ap.parse_args(argv)
    if args.scale_child:
        print(json.dumps(scale_child(args.scale_child, args.seed)))
        return 0
    with tempfile.TemporaryDirectory(prefix="curate-bench-dedup-") as tmp_s:
        tmp = args.keep or Path(tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        if not args.no_workload:
            run_workload(tmp, random.Random(args.seed))
        if args.verifier_records:
            run_scale(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
