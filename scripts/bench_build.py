#!/usr/bin/env python3
"""Benchmark `curate build` end to end against in-run baselines; prints ONE JSON line on stdout.

    .venv/bin/python scripts/bench_build.py              # N=200k, 5 workloads x 3 runs, + one 1M openai run for memory
    .venv/bin/python scripts/bench_build.py --n 50000 --runs 1 --memory-n 0             # quick look
    .venv/bin/python scripts/bench_build.py --workloads openai --runs 1 --records 2000000   # the memory slope
    .venv/bin/python scripts/bench_build.py --engine ray --workloads openai --runs 1 --n 20000 --records 200000

Workloads (`--workloads`, seeded, written to a temporary folder; each has known duplicate families: 5% exact
copies, half of them differing only in case or whitespace, and 10% near copies, word edits of a known original):
- `chat` (rounds 1-5): N chat records in our native JSONL (~600 bytes a line) for the support-triage spec, whose
  answers pass every automatic rule, near copies with 1-12 word edits; plus a preference file (5% of N pairs) whose
  chosen and rejected answers are near-duplicates by design and must not be flagged. Its figures are the top level
  of the JSON line, under the same keys as in rounds 1-5.
- `openai` (issue 15): the same kind of records in OpenAI chat format, as real exports have them: a system turn,
  a unique `id` per line (copies included) and a `metadata` object (ticket, channel, locale, created_at ...).
- `templated` (issue 15): form letters: "dear NAME order NUMBER" + 10-14 sentences picked from 200 sentence
  templates whose words all come from 46 words (`SMALL_VOCAB`); near copies with 1-8 word edits from the same
  words. Distinct letters share most character 5-grams yet are far apart as texts (Indel similarity 0.49 +- 0.02,
  max 0.66 over 4.5M pairs), so every candidate pair an LSH finds between two families is a false one.
- `mixed` (issue 15, round 9): one build over three files of different formats, as users bring them:
  `openai.jsonl` (messages), `sharegpt.jsonl` (`conversations` of from/value turns + a `system` field) and
  `alpaca.jsonl` (instruction / input / output + `system`), every line with its own `id` and a `metadata` object;
  the chat workload's records and families (5% exact copies, half in other case/whitespace, 10% near copies with
  1-12 word edits), each record (original or copy) written in a format drawn at random: a family's copies cross
  files and formats (every format makes the same system + user + assistant record of the same content). Its
  families, precision/recall and baselines are over the three files (in that order, `family_files`).
- `short` (round 11): OpenAI format with ids and metadata whose user texts are short (the strict token rule
  judges them): one of 10 requests, 0-4 words, an order number. Thousands share every word but the number, so
  LSH pairs them by the thousand and the strict rule rejects every such pair; near copies carry one typo the rule
  forgives (two neighbouring letters swapped), at most one a base.
- `cjk`, `cjk_close` (round 13, helper-26, not in the default list): OpenAI format with ids and metadata, user texts
  templated Chinese (20 templates of 40 characters, 6-10 or 2-8 of them replaced, an order number).
- `multiturn` (round 13, not in the default list): ShareGPT conversations with a system turn and 2-4 exchanges,
  ids and metadata; besides the exact and near copies (edits in the first user turn), 5% strict-prefix
  conversations (continuations: `kind` b"p"). Each conversation's prefix keys once made a memory slope.
The issue-15 workloads are under "workloads" in the JSON line.

Measured per workload in the same run, on the same files (after one untimed warm-up build on the first 10k
lines, which compiles the numba kernels the first time after an edit of curate/near.py: `warmup_build_s`):
- `build`: `curate.steps.pipeline.build(spec, inputs, out)` in a fresh process per run (read, validate against the
  spec, pair, exact + near dedup, split with leakage check, export JSONL + Parquet + card + manifest): records/s
  over the build call, process wall time, peak RSS of that process; medians over `--runs`. A build past
  `--timeout` seconds or `--max-rss-mb` resident is killed (the machine is shared) and reported under `failed`.
- `datasketch`: a pipeline with datasketch's MinHash (128 permutations, character 5-grams) and MinHashLSH
  (threshold 0.8): parse, exact dedup by sha256 of the normalized text, near dedup by LSH query + insert; on the
  first `--baseline-n` records (it runs at ~1-2k records/s), records/s; `ratio_to_datasketch`. The baselines read
  the family files (`mixed`: all three, each format's turns as one text, `_key_text`).
- `rensa` (issue 15's peer to beat): a plain rensa 0.5 pipeline (see `rensa_pipeline`: batched
  `digest_matrix_from_token_sets`, `RMinHashLSH` at 0.7 with 16 bands, exact dedup by hash, character 5-grams,
  one process, no verification, no export) on every record of the family file: records/s, `ratio_to_rensa`,
  and the precision/recall of its near drops against the families.
- `peak_rss_mb`: the build process's own peak resident memory (VmHWM), against `budget_mb` = 1 KB per record +
  300 MB. `ru_maxrss_mb` is getrusage's figure, which on Linux also holds this script's resident memory at the
  moment it started the build (kept across fork + exec): rounds 1 and 2 quoted that one.
- `build_records_per_cpu_s`: records per CPU second of the build process (less sensitive to a busy machine).
- `workers_cpu_s`, `workers_peak_rss_mb`: CPU seconds of the build's fork workers, and the largest peak resident
  memory of one worker (getrusage of the children; it includes the pages it shares with the build process,
  copy-on-write, from the fork).
- `near`: near-duplicate precision and recall against the known families, from the build's clusters.jsonl; and
  the number of rows linking records of different files (chat: preference pairs flagged, must be 0).
- chat only: `parse_floor` (orjson parsing every line, streaming), `dedup_pipeline` (the datasketch pipeline's job
  done with curate.near, on the same records and on all of them), `dedup_only` (curate's dedup step alone on
  already built records).
- `--engine ray`: every build runs `build(..., engine="ray")` (a local Ray started by the build, `CURATE_RAY_CPUS`
  CPUs; its raylet and workers are other processes, so `peak_rss_mb` is the driver's alone).
- `stages`: when each stage of the first build was first and last heard from (seconds since the build began,
  from `build(progress=...)`); a killed build reports `stages_reached` (start s, CPU s) and its CPU at the kill.
- `load_avg_start` / `load_avg_end`: the machine's load average around the run (other jobs share the cores).
- With `--records M` (alias `--memory-n`, default 1,000,000): one more build at M records of each
  `--memory-workloads` (default openai) for peak RSS, and `slope_bytes_per_record` between N and M.

Targets: issue 7 (chat, 2 cores): >= 25k records/s end to end; >= 15x datasketch; precision >= 0.99, recall >=
0.98. Issue 15 (openai at 200k, medians of 3): >= 25k records/s, >= 15x datasketch, >= 2x rensa; peak RSS <= 1 KB
per record + 300 MB at N and at M; templated (and short, ours) at >= half the openai records/s in the same memory
budget; mixed at >= 0.9x the openai records/s (every format at the OpenAI lane's speed); near precision and
recall >= 0.99.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "support-triage"

INTENTS = [
    "reset_password",
    "update_billing",
    "cancel_account",
    "refund_request",
    "change_plan",
    "report_bug",
    "account_access",
    "update_email",
    "delete_data",
    "other",
]
STEPS = [
    "Route the ticket to the {team} team with order {order} attached.",
    "Point the customer to the {team} page and mention order {order} in the reply.",
    "Forward order {order} to the {team} queue for review today.",
]
TEAMS = ["billing", "accounts", "support", "engineering", "security", "success"]


def _vocab(rng: random.Random, n: int = 30000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(n)]


def _user(rng: random.Random, vocab: list[str], order: str) -> str:
    words = [rng.choice(vocab) for _ in range(rng.randint(44, 56))]
    words.insert(rng.randrange(len(words)), f"order {order}")
    return " ".join(words)


def _answer(rng: random.Random, order: str, intent: str | None = None) -> str:
    step = rng.choice(STEPS).format(team=rng.choice(TEAMS), order=order)
    return orjson.dumps(
        {
            "intent": intent or rng.choice(INTENTS),
            "entities": {"order": order},
            "missing_info": [],
            "next_step": step,
        }
    ).decode()


def _edit(rng: random.Random, vocab: list[str], text: str, k: int) -> str:
    head, _, tail = text.partition("order ")  # keep the order number (an entity) intact
    order_no, _, rest = tail.partition(" ")
    w = (head + rest).split()
    for _ in range(k):
        i = rng.randrange(len(w))
        op = rng.random()
        if op < 0.4:
            w[i] = rng.choice(vocab)
        elif op < 0.7:
            w.insert(i, rng.choice(vocab))
        elif len(w) > 5:
            w.pop(i)
    w.insert(min(len(w), len(head.split())), f"order {order_no}")
    return " ".join(w)


def _chat(user: str, answer: str, category: str = "typical") -> bytes:
    return orjson.dumps(
        {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
            "category": category,
        }
    )


def _openai_messages(user: str, answer: str) -> list[dict[str, str]]:
    """The OpenAI-format turns of the issue-15 workloads: the spec's system prompt, the user text, the answer."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]


def make_workload(folder: Path, n: int, seed: int = 7) -> dict:
    """Write chat.jsonl (n lines) and pairs.jsonl (n/20 lines); return the ground truth."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    cats = ["typical"] * 6 + ["edge"] * 2 + ["adversarial"]
    lines: list[bytes] = []
    family: list[int] = []  # per line: the base line (0-based) it derives from, or itself
    kind: list[str] = []
    bases: list[tuple[str, str, str]] = []
    for i in range(n_base):
        order = f"{rng.randrange(10**7, 10**8)}"
        user, ans = _user(rng, vocab, order), _answer(rng, order)
        cat = rng.choice(cats)
        bases.append((user, ans, cat))
        lines.append(_chat(user, ans, cat))
        family.append(i)
        kind.append("base")
    extra: list[tuple[bytes, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        user, ans, cat = bases[b]
        if rng.random() < 0.5:
            user = rng.choice([user.upper(), "  " + user.replace(" ", "  ") + " ", user.title()])
        extra.append((_chat(user, ans, cat), b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        user, ans, cat = bases[b]
        extra.append((_chat(_edit(rng, vocab, user, rng.randint(1, 12)), ans, cat), b, "near"))
    # scatter the copies after their originals: insert each at a random later position
    rng.shuffle(extra)
    out_lines: list[bytes] = []
    out_family: list[int] = []
    out_kind: list[str] = []
    pending = sorted(((rng.randint(b + 1, n_base), line, b, k) for line, b, k in extra), key=lambda t: t[0])
    p = 0
    for i in range(n_base + 1):
        while p < len(pending) and pending[p][0] == i:
            _, line, b, k = pending[p]
            out_lines.append(line)
            out_family.append(b)
            out_kind.append(k)
            p += 1
        if i < n_base:
            out_lines.append(lines[i])
            out_family.append(family[i])
            out_kind.append(kind[i])
    (folder / "chat.jsonl").write_bytes(b"\n".join(out_lines) + b"\n")
    n_pairs = n // 20
    pairs = []
    for _ in range(n_pairs):
        order = f"{rng.randrange(10**7, 10**8)}"
        user = _user(rng, vocab, order)
        good = _answer(rng, order, "reset_password")
        bad = good.replace('"next_step":"', '"next_step":"I have reset the password. ')
        pairs.append(
            orjson.dumps(
                {
                    "prompt": [{"role": "user", "content": user}],
                    "chosen": [{"role": "assistant", "content": good}],
                    "rejected": [{"role": "assistant", "content": bad}],
                    "category": "adversarial",
                    "violates": ["no-action-claims"],
                }
            )
        )
    (folder / "pairs.jsonl").write_bytes(b"\n".join(pairs) + b"\n")
    return {"family": out_family, "kind": out_kind, "n_chat": len(out_lines), "n_pairs": n_pairs}


def _scatter(
    rng: random.Random, n_base: int, base_line, extra: list[tuple[Any, int, str]], path: Path, render
) -> tuple[array, bytearray]:
    """Write the base records with each copy in `extra` ((content, base index, kind)) inserted at a random later
    position; `base_line(i)` / `render(content, line_no)` make the lines. Returns (family, kind) per line:
    family = the base it derives from (0-based), kind b"b" base, b"e" exact copy, b"n" near copy, b"p" a
    conversation that is a strict prefix of its base (a continuation, not a duplicate)."""
    rng.shuffle(extra)
    pending = sorted(
        ((rng.randint(b + 1, n_base), content, b, k) for content, b, k in extra), key=lambda t: t[0]
    )
    family = array("i")
    kind = bytearray()
    p = 0
    with open(path, "wb") as fh:
        for i in range(n_base + 1):
            while p < len(pending) and pending[p][0] == i:
                _, content, b, k = pending[p]
                fh.write(render(content, len(family)) + b"\n")
                family.append(b)
                kind += {"exact": b"e", "prefix": b"p"}.get(k, b"n")
                p += 1
            if i < n_base:
                fh.write(base_line(i, len(family)) + b"\n")
                family.append(i)
                kind += b"b"
    return family, kind


def _one_file(family: array, kind: bytearray, name: str) -> dict:
    """The ground truth of a workload written as one file (`_scatter`'s family and kind arrays)."""
    return {"family": family, "kind": kind, "n_in": len(family), "files": [name], "family_file": name}


SYSTEM = (
    "You are the triage step of Acme's customer support system. Reply with ONLY a JSON object with the keys "
    "intent, entities, missing_info and next_step."
)
CHANNELS = ["email", "chat", "web-form", "phone-transcript", "app"]


def make_openai_workload(folder: Path, n: int, seed: int = 11) -> dict:
    """Write openai.jsonl: n records in OpenAI chat format (system + user + assistant) with a unique `id` and a
    `metadata` object per line (as real exports have them); same families as the chat workload (5% exact copies,
    half of them in other case/whitespace, 10% near copies with 1-12 word edits), every copy with its own id."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    bases: list[tuple[str, str]] = []
    for _ in range(n_base):
        order = f"{rng.randrange(10**7, 10**8)}"
        bases.append((_user(rng, vocab, order), _answer(rng, order)))
    extra: list[tuple[Any, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        user, ans = bases[b]
        if rng.random() < 0.5:
            user = rng.choice([user.upper(), "  " + user.replace(" ", "  ") + " ", user.title()])
        extra.append(((user, ans), b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        user, ans = bases[b]
        extra.append(((_edit(rng, vocab, user, rng.randint(1, 12)), ans), b, "near"))

    def render(content: tuple[str, str], line_no: int) -> bytes:
        user, ans = content
        return orjson.dumps(
            {
                "id": f"conv_{line_no:09d}_{rng.randrange(16**6):06x}",
                "messages": _openai_messages(user, ans),
                "metadata": {
                    "ticket": 100000 + line_no,
                    "channel": rng.choice(CHANNELS),
                    "locale": "en-US",
                    "created_at": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                    f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
                    "agent_version": rng.choice(["v3.1", "v3.2"]),
                },
            }
        )

    family, kind = _scatter(
        rng, n_base, lambda i, line_no: render(bases[i], line_no), extra, folder / "openai.jsonl", render
    )
    return _one_file(family, kind, "openai.jsonl")


MIXED_FILES = ("openai.jsonl", "sharegpt.jsonl", "alpaca.jsonl")


SHORT_ASKS = [
    "where is my order",
    "refund please",
    "cancel order",
    "help with order",
    "order never arrived",
    "wrong item in order",
    "change address for order",
    "track order",
    "invoice for order",
    "damaged package order",
]


def _typo(rng: random.Random, text: str) -> str:
    """One slip the strict rule forgives (`relation.is_typo`): two neighbouring letters of a 5+-letter word swapped,
    the first letter kept; not in a filler word the rule leaves out ("please": its typo would be a word of its own,
    a known gap of the rule); the text itself when it has no such word."""
    from curate.relation import FILLER

    w = text.split()
    at = [
        (i, k)
        for i, x in enumerate(w)
        if len(x) >= 5 and x.isalpha() and x.lower() not in FILLER
        for k in range(2, len(x))
        if x[k - 1] != x[k]
    ]
    if not at:
        return text
    i, k = rng.choice(at)
    x = w[i]
    w[i] = x[: k - 1] + x[k] + x[k - 1] + x[k + 1 :]
    return " ".join(w)


def make_short_workload(folder: Path, n: int, seed: int = 19) -> dict:
    """Write short.jsonl: n records in OpenAI chat format with ids and metadata whose user texts are short (under
    the strict rule's 16 words): one of 10 requests ("where is my order"), 0-4 words of a 300-word vocabulary and
    an order number. Thousands share all words but the number (not duplicates: the strict rule compares every
    token). Families: 5% exact copies (half in other case/whitespace) and 10% near copies with one typo the strict
    rule forgives (two neighbouring letters swapped), the answer kept, at most one a base: two typo copies of one
    text differ in two words, which the strict rule does not join, so the greedy keep order would split a family of
    two (the recall measured is then the candidates', not the family structure's)."""
    rng = random.Random(seed)
    vocab = [w for w in _vocab(rng, 300)]
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    bases: list[tuple[str, str]] = []
    for _ in range(n_base):
        order = f"{rng.randrange(10**7, 10**8)}"
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 4))]
        user = " ".join([rng.choice(SHORT_ASKS), *words, order])
        bases.append((user, _answer(rng, order)))
    extra: list[tuple[Any, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        user, ans = bases[b]
        if rng.random() < 0.5:
            user = rng.choice([user.upper(), "  " + user.replace(" ", "  ") + " ", user.title()])
        extra.append(((user, ans), b, "exact"))
    for b in rng.sample(range(n_base), min(n_near, n_base)):
        user, ans = bases[b]
        typo = _typo(rng, user)
        extra.append(((typo, ans), b, "near" if typo != user else "exact"))

    def render(content: tuple[str, str], line_no: int) -> bytes:
        user, ans = content
        return orjson.dumps(
            {
                "id": f"sms_{line_no:09d}",
                "messages": _openai_messages(user, ans),
                "metadata": {"channel": rng.choice(CHANNELS), "ticket": 500000 + line_no},
            }
        )

    family, kind = _scatter(
        rng, n_base, lambda i, line_no: render(bases[i], line_no), extra, folder / "short.jsonl", render
    )
    return _one_file(family, kind, "short.jsonl")


def make_mixed_workload(folder: Path, n: int, seed: int = 17) -> dict:
    """Write openai.jsonl, sharegpt.jsonl and alpaca.jsonl: n records in all (the openai workload's records and
    families), each written in a format drawn at random, with its own `id` and a `metadata` object: copies cross
    files and formats. The family / kind arrays run over the three files in MIXED_FILES order."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    bases: list[tuple[str, str]] = []
    for _ in range(n_base):
        order = f"{rng.randrange(10**7, 10**8)}"
        bases.append((_user(rng, vocab, order), _answer(rng, order)))
    extra: list[tuple[Any, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        user, ans = bases[b]
        if rng.random() < 0.5:
            user = rng.choice([user.upper(), "  " + user.replace(" ", "  ") + " ", user.title()])
        extra.append(((user, ans), b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        user, ans = bases[b]
        extra.append(((_edit(rng, vocab, user, rng.randint(1, 12)), ans), b, "near"))
    rng.shuffle(extra)
    pending = sorted(
        ((rng.randint(b + 1, n_base), content, b, k) for content, b, k in extra), key=lambda t: t[0]
    )
    buf: dict[str, list[bytes]] = {f: [] for f in MIXED_FILES}  # lines not yet written (appended in chunks)
    for f in MIXED_FILES:
        (folder / f).write_bytes(b"")
    family = {f: array("i") for f in MIXED_FILES}
    kind = {f: bytearray() for f in MIXED_FILES}

    def meta(line_no: int) -> dict:
        return {
            "ticket": 100000 + line_no,
            "channel": rng.choice(CHANNELS),
            "locale": "en-US",
            "created_at": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        }

    def write(content: tuple[str, str], b: int, k: bytes) -> None:
        user, ans = content
        f = rng.choice(MIXED_FILES)
        no = len(family[f])
        rid = f"{f[:2]}_{no:09d}_{rng.randrange(16**6):06x}"
        if f == "openai.jsonl":
            obj: dict[str, Any] = {
                "id": rid,
                "messages": _openai_messages(user, ans),
            }
        elif f == "sharegpt.jsonl":
            obj = {
                "id": rid,
                "system": SYSTEM,
                "conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": ans}],
            }
        else:
            obj = {"id": rid, "system": SYSTEM, "instruction": user, "input": "", "output": ans}
        obj["metadata"] = meta(no)
        buf[f].append(orjson.dumps(obj) + b"\n")
        family[f].append(b)
        kind[f] += k
        if len(buf[f]) >= 8192:
            flush(f)

    def flush(f: str) -> None:
        with open(folder / f, "ab") as fh:
            fh.writelines(buf[f])
        buf[f].clear()

    p = 0
    for i in range(n_base + 1):
        while p < len(pending) and pending[p][0] == i:
            _, content, b, k = pending[p]
            write(content, b, b"e" if k == "exact" else b"n")
            p += 1
        if i < n_base:
            write(bases[i], i, b"b")
    for f in MIXED_FILES:
        flush(f)
    return {
        "family": array("i", [x for f in MIXED_FILES for x in family[f]]),
        "kind": bytearray(b"".join(kind[f] for f in MIXED_FILES)),
        "n_in": sum(len(family[f]) for f in MIXED_FILES),
        "files": list(MIXED_FILES),
        "family_files": list(MIXED_FILES),
        "family_counts": {f: len(family[f]) for f in MIXED_FILES},
    }


# A few dozen words: every text of the templated workload is made of them (plus a name and an order number)
SMALL_VOCAB = [
    "your",
    "order",
    "has",
    "been",
    "shipped",
    "and",
    "will",
    "arrive",
    "soon",
    "please",
    "contact",
    "us",
    "if",
    "you",
    "have",
    "any",
    "questions",
    "about",
    "the",
    "refund",
    "we",
    "are",
    "sorry",
    "for",
    "delay",
    "thank",
    "being",
    "valued",
    "customer",
    "account",
    "team",
    "support",
    "today",
    "our",
    "request",
    "was",
    "received",
    "review",
    "it",
    "within",
    "two",
    "days",
    "reply",
    "to",
    "this",
    "message",
]
NAMES = [
    "alex",
    "sam",
    "maria",
    "li",
    "omar",
    "jana",
    "kofi",
    "ines",
    "raj",
    "eva",
    "tom",
    "aiko",
    "noor",
    "ben",
]


def make_templated_workload(folder: Path, n: int, seed: int = 13) -> dict:
    """Write templated.jsonl: n chat records (native JSONL) whose user text is a form letter: "dear NAME order
    NUMBER" and 10-14 sentences picked from 200 fixed sentence templates, every word from the 46 of SMALL_VOCAB.

    Distinct letters share most of their character 5-grams (the small vocabulary) but are far apart as texts: on
    3,000 letters (4.5M pairs) the Indel similarity is 49 +- 2 (%), at most 66, well under a 0.8 threshold. The
    families are those of the chat workload: 5% exact copies (half in other case/whitespace) and 10% near copies,
    1-8 word edits from the same vocabulary (similarity ~0.9-0.99), the name and number kept."""
    rng = random.Random(seed)
    templates = [" ".join(rng.choice(SMALL_VOCAB) for _ in range(rng.randint(5, 11))) for _ in range(200)]
    cats = ["typical"] * 6 + ["edge"] * 2 + ["adversarial"]
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    bases: list[tuple[str, str, str]] = []
    for _ in range(n_base):
        order = f"{rng.randrange(10**7, 10**8)}"
        user = f"dear {rng.choice(NAMES)} order {order} " + " ".join(
            rng.sample(templates, rng.randint(10, 14))
        )
        bases.append((user, _answer(rng, order), rng.choice(cats)))

    def edit(text: str, k: int) -> str:
        w = text.split()
        head, body = w[:4], w[4:]  # "dear NAME order NUMBER" stays
        for _ in range(k):
            i = rng.randrange(len(body))
            op = rng.random()
            if op < 0.4:
                body[i] = rng.choice(SMALL_VOCAB)
            elif op < 0.7:
                body.insert(i, rng.choice(SMALL_VOCAB))
            else:
                body.pop(i)
        return " ".join(head + body)

    extra: list[tuple[Any, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        user, ans, cat = bases[b]
        if rng.random() < 0.5:
            user = rng.choice([user.upper(), "  " + user.replace(" ", "  ") + " ", user.title()])
        extra.append(((user, ans, cat), b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        user, ans, cat = bases[b]
        extra.append(((edit(user, rng.randint(1, 8)), ans, cat), b, "near"))
    family, kind = _scatter(
        rng,
        n_base,
        lambda i, _: _chat(*bases[i]),
        extra,
        folder / "templated.jsonl",
        lambda content, _: _chat(*content),
    )
    return _one_file(family, kind, "templated.jsonl")


# The cjk workload's characters: 3,000 Han characters drawn once (seeded) with Zipf-like weights (a few recur
# often, as in real text), hiragana and katakana for the Japanese templates
def _cjk_pools(rng: random.Random) -> tuple[list[str], list[float], list[str]]:
    han = [chr(c) for c in rng.sample(range(0x4E00, 0x9FA6), 3000)]
    weights = list(itertools.accumulate(1 / (r + 1) ** 0.9 for r in range(len(han))))  # (cumulative)
    kana = [chr(c) for c in [*range(0x3041, 0x3094), *range(0x30A1, 0x30F4)]]
    return han, weights, kana


def make_cjk_workload(folder: Path, n: int, seed: int = 29, changes: tuple[int, int] = (6, 10)) -> dict:
    """Write cjk.jsonl: n records in OpenAI chat format with ids and metadata whose user texts are templated Chinese
    and Japanese (round 13): one of 20 templates of 40 characters (15 of Han characters, 5 of kana and Han, two
    commas each), 6-10 of its characters replaced at random, then "订单号" / "注文番号" and an order number; the
    answers (the spec's JSON) likewise: one of 10 templates of 30 Han characters, 2-5 replaced, with the order
    number, as next_step. A template's texts share most characters, so the LSH bands meet its members by the
    thousand (10k-member families at 200k records); they are no near twins of each other (Indel similarity 0.63 +-
    0.04 on sampled pairs of one template, none at 0.8 of 35,400). Families: 5% exact copies (half with the order
    number in full-width digits and spaces around the text: NFKC and whitespace make them equal), 10% near copies of 1-4
    single-character edits (substitution, insertion, deletion) of the user text outside its order number, the
    answer kept (Indel similarity ~0.9-0.99)."""
    rng = random.Random(seed)
    han, weights, kana = _cjk_pools(rng)
    # (the families are the planted copies only where bases are no near twins: `changes` (6, 10))

    def char(jp: bool) -> str:
        return rng.choice(kana) if jp and rng.random() < 0.5 else rng.choices(han, cum_weights=weights)[0]

    def template(jp: bool, size: int) -> str:
        chars = [char(jp) for _ in range(size)]
        for at in rng.sample(range(5, size - 2), 2):
            chars[at] = "、" if jp else "，"
        return "".join(chars)

    def replaced(text: str, k: int, jp: bool) -> str:
        chars = list(text)
        for at in rng.sample(range(len(chars)), k):
            chars[at] = char(jp)
        return "".join(chars)

    users = [template(i >= 15, 40) for i in range(20)]
    answers = [template(False, 30) for _ in range(10)]
    n_exact, n_near = n * 5 // 100, n * 10 // 100
    n_base = n - n_exact - n_near
    bases: list[tuple[str, str, str, bool]] = []  # (body, order, answer, japanese)
    for _ in range(n_base):
        t = rng.randrange(len(users))
        order = f"{rng.randrange(10**7, 10**8)}"
        step = replaced(rng.choice(answers), rng.randint(2, 5), False) + f"，订单{order}。"
        answer = orjson.dumps(
            {
                "intent": rng.choice(INTENTS),
                "entities": {"order": order},
                "missing_info": [],
                "next_step": step,
            }
        ).decode()
        bases.append((replaced(users[t], rng.randint(*changes), t >= 15), order, answer, t >= 15))

    def user_of(body: str, order: str, jp: bool) -> str:
        return body + ("。注文番号" if jp else "。订单号") + order

    extra: list[tuple[Any, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        body, order, answer, jp = bases[b]
        user = user_of(body, order, jp)
        if rng.random() < 0.5:  # full-width digits, spaces around: the same normalized text
            user = "  " + user_of(body, order.translate({c: c + 0xFEE0 for c in range(0x30, 0x3A)}), jp) + " "
        extra.append(((user, answer), b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        body, order, answer, jp = bases[b]
        chars = list(body)
        for _ in range(rng.randint(1, 4)):
            at, op = rng.randrange(len(chars)), rng.random()
            if op < 0.4:
                chars[at] = char(jp)
            elif op < 0.7:
                chars.insert(at, char(jp))
            else:
                chars.pop(at)
        near = "".join(chars)
        extra.append(((user_of(near, order, jp), answer), b, "near" if near != body else "exact"))

    def render(content: tuple[str, str], line_no: int) -> bytes:
        user, answer = content
        return orjson.dumps(
            {
                "id": f"cjk_{line_no:09d}_{rng.randrange(16**6):06x}",
                "messages": _openai_messages(user, answer),
                "metadata": {"channel": rng.choice(CHANNELS), "locale": "zh-CN", "ticket": 700000 + line_no},
            }
        )

    family, kind = _scatter(
        rng,
        n_base,
        lambda i, line_no: render((user_of(*bases[i][:2], bases[i][3]), bases[i][2]), line_no),
        extra,
        folder / "cjk.jsonl",
        render,
    )
    return _one_file(family, kind, "cjk.jsonl")


def make_cjk_close_workload(folder: Path, n: int, seed: int = 29) -> dict:
    """The cjk workload with 2-8 characters of a template replaced (round 12's scratch generator, which found the
    CJK cliff): within a template the user texts are at Indel 0.72 +- 0.05 and ~6% of their pairs are near twins
    by the contract (the split joins whole families), ~1.7e-4 of the pairs near in prompt and answer too (dedup
    drops bases as twins of other bases: its precision against the planted families says little here)."""
    return make_cjk_workload(folder, n, seed, changes=(2, 8))


def make_multiturn_workload(folder: Path, n: int, seed: int = 31) -> dict:
    """Write sharegpt.jsonl: n multi-turn conversations in ShareGPT format (system, then 2-4 exchanges: a long first
    user turn, short follow-ups, a JSON answer each) with an `id` and a `metadata` object per line; 5% exact
    copies, 10% near copies (1-6 word edits in the first user turn), 5% conversations that are a strict prefix of
    another (its first 1-3 exchanges: a continuation, which the split keeps with it and dedup reports in
    relations.jsonl). Round 13 found a memory slope here off the other workloads (each conversation's prefix
    keys were held as Python tuples from the read to dedup: 198k conversations peaked at 704 MB)."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    n_exact, n_near, n_pre = n * 5 // 100, n * 10 // 100, n * 5 // 100
    n_base = n - n_exact - n_near - n_pre
    bases: list[list[tuple[str, str]]] = []
    for _ in range(n_base):
        turns = []
        for t in range(rng.randint(2, 4)):
            order = f"{rng.randrange(10**7, 10**8)}"
            user = (
                _user(rng, vocab, order)
                if t == 0
                else f"{' '.join(rng.sample(vocab, rng.randint(6, 20)))} {order}"
            )
            turns.append((user, _answer(rng, order)))
        bases.append(turns)
    extra: list[tuple[Any, int, str]] = []
    for _ in range(n_exact):
        b = rng.randrange(n_base)
        extra.append((bases[b], b, "exact"))
    for _ in range(n_near):
        b = rng.randrange(n_base)
        first = (_edit(rng, vocab, bases[b][0][0], rng.randint(1, 6)), bases[b][0][1])
        extra.append(([first, *bases[b][1:]], b, "near"))
    for _ in range(n_pre):
        b = rng.randrange(n_base)
        extra.append((bases[b][: rng.randint(1, len(bases[b]) - 1)], b, "prefix"))

    def render(turns: list[tuple[str, str]], line_no: int) -> bytes:
        conv = [{"from": "system", "value": SYSTEM}]
        for user, answer in turns:
            conv += [{"from": "human", "value": user}, {"from": "gpt", "value": answer}]
        return orjson.dumps(
            {
                "id": f"mt_{line_no:09d}_{rng.randrange(16**6):06x}",
                "conversations": conv,
                "metadata": {"ticket": 100000 + line_no, "channel": rng.choice(CHANNELS)},
            }
        )

    family, kind = _scatter(
        rng, n_base, lambda i, line_no: render(bases[i], line_no), extra, folder / "sharegpt.jsonl", render
    )
    return _one_file(family, kind, "sharegpt.jsonl")


def make_chat_workload(folder: Path, n: int, seed: int = 7) -> dict:
    """The rounds 1-5 workload (make_workload) in the shape the other workloads return."""
    t = make_workload(folder, n, seed)
    return {
        "family": t["family"],
        "kind": bytes(ord(k[0]) for k in t["kind"]),  # b(ase), e(xact), n(ear)
        "n_in": t["n_chat"] + t["n_pairs"],
        "files": ["chat.jsonl", "pairs.jsonl"],
        "family_file": "chat.jsonl",
    }


WORKLOADS = {
    "chat": make_chat_workload,
    "openai": make_openai_workload,
    "templated": make_templated_workload,
    "mixed": make_mixed_workload,
    "short": make_short_workload,
    "cjk": make_cjk_workload,  # (round 13; these two are not in the default --workloads)
    "cjk_close": make_cjk_close_workload,
    "multiturn": make_multiturn_workload,  # (round 13, not in the default --workloads either)
}


def family_files(truth: dict) -> list[str]:
    """The files the family / kind arrays run over, in order."""
    return truth.get("family_files") or [truth["family_file"]]


def _lines(paths: list[Path]):
    """The lines of the files, one after the other."""
    for path in paths:
        with open(path, "rb") as fh:
            yield from fh


# ---------------------------------------------------------------- one build in a fresh process

_CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
from curate.steps.pipeline import build
t1 = time.perf_counter()
c1 = time.process_time()
stages = {}

def progress(stage, done, total=None):  # when each stage is first and last heard from (s since the build began)
    now = time.perf_counter() - t1
    if stage not in stages:
        stages[stage] = [round(now, 2), round(now, 2)]
        sys.stderr.write(f"STAGE {stage} {now:.2f} {time.process_time() - c1:.2f}\n")
        sys.stderr.flush()
    stages[stage][1] = round(now, 2)

res = build(sys.argv[1], sys.argv[2:-1], sys.argv[-1], progress=progress,
            engine=os.environ.get("CURATE_BENCH_ENGINE", "local"))
t2 = time.perf_counter()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # this process's own peak: ru_maxrss also holds the parent's RSS at fork (Linux keeps it across exec)
    with open("/proc/self/status") as fh:
        hwm = next(int(x.split()[1]) / 1024 for x in fh if x.startswith("VmHWM:"))
except (OSError, StopIteration):
    hwm = maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the compact read's fork pool (one build: its workers)
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "build_cpu_s": time.process_time() - c1,
                  "workers_cpu_s": kids.ru_utime + kids.ru_stime, "workers_peak_rss_mb": kids.ru_maxrss / 1024,
                  "counts": res.manifest["counts"],
                  "conservation": res.manifest["conservation"], "dedup": res.manifest["dedup"],
                  "peak_rss_mb": hwm, "ru_maxrss_mb": maxrss, "stages": stages}))
"""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its own, not its children's)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(x.split()[1]) for x in fh if x.startswith(key)), 0)
    except OSError:
        return 0


def run_build(
    inputs: list[Path], out: Path, env: dict[str, str], *, timeout: float = 0, max_rss_mb: float = 0
) -> dict:
    """One build in a fresh process. With `timeout` (s) or `max_rss_mb` the build is killed past them (the machine
    is shared) and the result says so: {"failed": why, "wall_s", "peak_rss_mb": the highest VmHWM seen}."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(SPEC), *map(str, inputs), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    why: list[str] = []
    hwm = [0]
    cpu = [0.0]

    def watch() -> None:
        while proc.poll() is None:
            hwm[0] = max(hwm[0], _status_kb(proc.pid, "VmHWM:"))
            cpu[0] = max(cpu[0], _cpu_s(proc.pid))
            if max_rss_mb and _status_kb(proc.pid, "VmRSS:") > max_rss_mb * 1024:
                why.append(f"killed above {max_rss_mb:.0f} MB resident (--max-rss-mb)")
                proc.kill()
            elif timeout and time.perf_counter() - start > timeout:
                why.append(f"killed after {timeout:.0f} s (--timeout)")
                proc.kill()
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    wall = time.perf_counter() - start
    if why:  # how far it got: the stages it reported (s since the build began, its CPU s then), its CPU at the kill
        reached = [
            line.split()[1:]
            for line in stderr.decode(errors="replace").splitlines()
            if line.startswith("STAGE ")
        ]
        return {
            "failed": why[0],
            "wall_s": round(wall, 1),
            "peak_rss_mb": round(hwm[0] / 1024, 1),
            "cpu_s": round(cpu[0], 1),
            "stages_reached": {x[0]: [float(x[1]), float(x[2])] for x in reached},
        }
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    doc = json.loads(stdout.decode().strip().splitlines()[-1])
    doc["wall_s"] = wall
    return doc


# ---------------------------------------------------------------- baselines


def parse_floor(path: Path) -> float:
    n = 0
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            orjson.loads(line)
            n += 1
    return n / (time.perf_counter() - t)


_ROLE = {"human": "user", "gpt": "assistant"}


def _key_text(obj: dict) -> str:
    """The turns but the system turn as one text: OpenAI messages, ShareGPT conversations or an Alpaca record."""
    if "messages" in obj:
        turns = [(m["role"], m["content"]) for m in obj["messages"]]
    elif "conversations" in obj:
        turns = [(_ROLE.get(t["from"], t["from"]), t["value"]) for t in obj["conversations"]]
    else:
        user = obj["instruction"] + ("\n\n" + obj["input"] if obj.get("input") else "")
        turns = [("user", user), ("assistant", obj["output"])]
    return "\n".join(f"{role}: {content}" for role, content in turns if role != "system")


def datasketch_pipeline(paths: list[Path], limit: int) -> float:
    import hashlib

    from datasketch import MinHash, MinHashLSH

    from curate.records import normalize_text

    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    seen: set[bytes] = set()
    n = 0
    t = time.perf_counter()
    for line in _lines(paths):
        if n >= limit:
            break
        obj = orjson.loads(line)
        text = normalize_text(_key_text(obj))
        n += 1
        key = hashlib.sha256(text.encode()).digest()
        if key in seen:
            continue
        seen.add(key)
        m = MinHash(num_perm=128)
        m.update_batch([text[i : i + 5].encode() for i in range(max(1, len(text) - 4))])
        if lsh.query(m):
            continue
        lsh.insert(str(n), m)
    return n / (time.perf_counter() - t)


def curate_dedup_pipeline(path: Path, limit: int) -> float:
    """The datasketch pipeline's job done with curate.near: parse, exact dedup, near dedup (records/s)."""
    import hashlib

    from curate.near_index import near_pairs
    from curate.records import normalize_text

    near_pairs(["warm up the compiled kernel", "warm up the compiled kernels"])
    t = time.perf_counter()
    seen: set[bytes] = set()
    texts = []
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if n >= limit:
                break
            n += 1
            text = normalize_text(_key_text(orjson.loads(line)))
            key = hashlib.sha256(text.encode()).digest()
            if key not in seen:
                seen.add(key)
                texts.append(text)
    dropped = {j for _, j, _ in near_pairs(texts, normalized=True)}
    assert len(dropped) < len(texts)
    return n / (time.perf_counter() - t)


def dedup_only(path: Path, limit: int) -> dict:
    from curate.records import record_from_native
    from curate.steps.dedup import dedup

    recs = []
    with open(path, "rb") as fh:
        for line in fh:
            if len(recs) >= limit:
                break
            recs.append(record_from_native(orjson.loads(line)))
    t = time.perf_counter()
    _, rows = dedup(recs)
    dt = time.perf_counter() - t
    return {"n": len(recs), "records_per_s": round(len(recs) / dt), "removed": len(rows)}


def rensa_pipeline(paths: list[Path], limit: int, truth: dict | None = None, batch: int = 8192) -> dict:
    """The peer to beat (issue 15): a plain pipeline a user could glue together from rensa today. Parse, exact dedup
    by sha256 of the normalized text, character 5-grams, R-MinHash digests in batches
    (`RMinHash.digest_matrix_from_token_sets`, 128 permutations), `RMinHashLSH(threshold=0.7, num_bands=16)`; one
    process, no verification, no export. A batch is inserted and flagged in one call
    (`insert_matrix_and_query_duplicate_flags`: a row sharing a band with any other row); a flagged row is dropped
    when its candidates (`query_all`) hold an earlier row, which it names as its anchor (every row is indexed, so
    a copy may be anchored on a dropped copy). Returns records/s and, with `truth`, the near precision/recall of
    the anchors against the known families."""
    import hashlib

    from rensa import RMinHash, RMinHashLSH

    from curate.records import normalize_text

    lsh = RMinHashLSH(threshold=0.7, num_perm=128, num_bands=16)
    seen: set[bytes] = set()
    anchors: list[tuple[int, int]] = []  # (dropped line, anchor line), near only
    exact = 0
    lines: list[int] = []  # the line of each indexed row (its key)
    texts: list[str] = []

    def flush() -> None:
        toks = [[t[i : i + 5] for i in range(max(1, len(t) - 4))] for t in texts]
        start = len(lines) - len(texts)
        mat = RMinHash.digest_matrix_from_token_sets(toks, num_perm=128, seed=42)
        flags = lsh.insert_matrix_and_query_duplicate_flags(mat, start_key=start)
        hit = [i for i, f in enumerate(flags) if f]
        if hit:
            cands = lsh.query_all(RMinHash.from_token_sets([toks[i] for i in hit], num_perm=128, seed=42))
            for i, cand in zip(hit, cands):
                first = min(cand, default=start + i)
                if first < start + i:
                    anchors.append((lines[start + i], lines[first]))
        texts.clear()

    n = 0
    t = time.perf_counter()
    for line in _lines(paths):
        if n >= limit:
            break
        text = normalize_text(_key_text(orjson.loads(line)))
        n += 1
        key = hashlib.sha256(text.encode()).digest()
        if key in seen:
            exact += 1
            continue
        seen.add(key)
        lines.append(n - 1)
        texts.append(text)
        if len(texts) >= batch:
            flush()
    if texts:
        flush()
    out: dict[str, Any] = {
        "n": n,
        "records_per_s": round(n / (time.perf_counter() - t)),
        "exact": exact,
        "near": len(anchors),
    }
    if truth is not None:
        family, kind = truth["family"], truth["kind"]
        tp = sum(1 for d, k in anchors if family[d] == family[k])
        found = {x for d, k in anchors if family[d] == family[k] for x in (d, k) if kind[x] == ord("n")}
        n_near = sum(1 for x in range(n) if kind[x] == ord("n"))
        out["precision"] = round(tp / max(1, len(anchors)), 5)
        out["recall"] = round(len(found) / max(1, n_near), 5)
    return out


def near_quality(out: Path, truth: dict) -> dict:
    """Precision/recall of near-duplicate removal against the known families (the family files only; a row that
    links a record of another file, e.g. two sides of a preference pair, counts in `pairs_flagged`)."""
    family, kind = truth["family"], truth["kind"]
    offset: dict[str, int] = {}  # a family file's first line's place in family / kind
    at = 0
    counts = truth.get("family_counts") or {truth["family_file"]: len(family)}
    for f in family_files(truth):
        offset[f] = at
        at += counts[f]

    def place(source: str) -> int | None:
        f, _, line = source.rpartition(":")
        base = offset.get(Path(f).name)
        return None if base is None else base + int(line) - 1

    tp = fp = 0
    removed_near_variants = set()
    flagged_pairs = 0
    for line in (out / "clusters.jsonl").read_bytes().splitlines():
        row = orjson.loads(line)
        k, d = place(row["kept_source"]), place(row["dropped_source"])
        if k is None or d is None:
            flagged_pairs += 1
            continue
        same = family[k] == family[d]
        if row["method"] == "near":
            tp += same
            fp += not same
        if same:  # a near variant is found when a row links it to its own family, on either side
            for x in (k, d):
                if kind[x] == ord("n"):
                    removed_near_variants.add(x)
    n_near = kind.count(b"n")
    return {
        "precision": round(tp / max(1, tp + fp), 5),
        "recall": round(len(removed_near_variants) / max(1, n_near), 5),
        "near_rows": tp + fp,
        "near_variants": n_near,
        "pairs_flagged": flagged_pairs,
    }


def _budget_mb(n: int) -> float:
    return n / 1024 + 300  # the memory target: 1 KB per record + 300 MB


def bench_workload(
    name: str, tmp: Path, args: argparse.Namespace, env: dict[str, str], warm: list[float]
) -> dict:
    """Generate one workload, build it `--runs` times, run both baselines on its family file; the workload's
    figures (builds that were killed are reported with `failed`, not timed)."""
    folder = tmp / name
    folder.mkdir()
    t = time.perf_counter()
    truth = WORKLOADS[name](folder, args.n)
    gen_s = time.perf_counter() - t
    inputs = [folder / f for f in truth["files"]]
    n_in, n_fam = truth["n_in"], len(truth["family"])
    fams = [folder / f for f in family_files(truth)]
    fam = fams[0]
    if (
        not warm
    ):  # one untimed build on the first 10k lines: compiles the numba kernels the first time after an
        # edit of curate/near.py, so the timed runs measure the steady state
        w = tmp / "warm.jsonl"
        with open(fam, "rb") as src, open(w, "wb") as dst:
            dst.writelines(line for _, line in zip(range(10_000), src))
        warm.append(run_build([w], tmp / "outwarm", env)["wall_s"])
        shutil.rmtree(tmp / "outwarm", ignore_errors=True)
    runs = [
        run_build(inputs, tmp / f"out-{name}{r}", env, timeout=args.timeout, max_rss_mb=args.max_rss_mb)
        for r in range(args.runs)
    ]
    ok = [x for x in runs if "failed" not in x]
    ds_n = min(args.baseline_n, n_fam)
    ds_rate = datasketch_pipeline(fams, ds_n)
    rensa = rensa_pipeline(fams, n_fam, truth)
    res: dict[str, Any] = {
        "n": n_in,
        "runs": args.runs,
        "workload_s": round(gen_s, 1),
        "datasketch_records_per_s": round(ds_rate),
        "datasketch_n": ds_n,
        "rensa_records_per_s": rensa["records_per_s"],
        "rensa": rensa,
        "budget_mb": round(_budget_mb(n_in), 1),
    }
    failed = [x for x in runs if "failed" in x]
    if failed:
        res["failed"] = failed
    if ok:
        rate = statistics.median(n_in / x["build_s"] for x in ok)
        res.update(
            {
                "build_records_per_s": round(rate),
                "process_records_per_s": round(statistics.median(n_in / x["wall_s"] for x in ok)),
                "build_s": [round(x["build_s"], 2) for x in ok],
                "import_s": round(ok[0]["import_s"], 2),
                "build_cpu_s": [round(x["build_cpu_s"], 2) for x in ok],
                "build_records_per_cpu_s": round(statistics.median(n_in / x["build_cpu_s"] for x in ok)),
                "workers_cpu_s": [round(x.get("workers_cpu_s", 0.0), 2) for x in ok],
                "workers_peak_rss_mb": round(max(x.get("workers_peak_rss_mb", 0.0) for x in ok), 1),
                "peak_rss_mb": round(max(x["peak_rss_mb"] for x in ok), 1),
                "ru_maxrss_mb": round(max(x["ru_maxrss_mb"] for x in ok), 1),
                "ratio_to_datasketch": round(rate / ds_rate, 2),
                "ratio_to_rensa": round(rate / rensa["records_per_s"], 2),
                "near": near_quality(
                    tmp / f"out-{name}0"
                    if "failed" not in runs[0]
                    else tmp / f"out-{name}{runs.index(ok[0])}",
                    truth,
                ),
                "counts": ok[0]["counts"],
                "dedup": ok[0]["dedup"],
                "stages": ok[0].get("stages"),
                "conservation_ok": all(x["conservation"]["ok"] for x in ok),
            }
        )
    if name == "chat":  # the rounds 1-5 figures, on the chat file
        res["parse_floor_records_per_s"] = round(statistics.median(parse_floor(fam) for _ in range(3)))
        res["dedup_pipeline_records_per_s"] = {
            "same_n_as_datasketch": round(curate_dedup_pipeline(fam, ds_n)),
            "all": round(curate_dedup_pipeline(fam, n_fam)),
        }
        res["dedup_pipeline_ratio_to_datasketch"] = round(
            res["dedup_pipeline_records_per_s"]["same_n_as_datasketch"] / ds_rate, 1
        )
        res["dedup_only"] = dedup_only(fam, min(args.n, n_fam))
        if ok:
            res["ratio_to_parse_floor"] = round(
                res["build_records_per_s"] / res["parse_floor_records_per_s"], 4
            )
    for r in range(args.runs):
        shutil.rmtree(tmp / f"out-{name}{r}", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return res


def memory_run(
    name: str, m: int, tmp: Path, args: argparse.Namespace, env: dict[str, str], at_n: dict | None
) -> dict:
    """One build of workload `name` at m records for the memory slope (peak RSS against 1 KB/record + 300 MB)."""
    folder = tmp / f"big-{name}"
    folder.mkdir()
    truth = WORKLOADS[name](folder, m, seed=8)
    m_in = truth["n_in"]
    inputs = [folder / f for f in truth["files"]]
    del truth
    run = run_build(inputs, tmp / f"outbig-{name}", env, timeout=args.timeout, max_rss_mb=args.max_rss_mb)
    shutil.rmtree(tmp / f"outbig-{name}", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    out: dict[str, Any] = {
        "n": m_in,
        "budget_mb": round(_budget_mb(m_in), 1),
        "peak_rss_mb": run["peak_rss_mb"],
    }
    if "failed" in run:
        out["failed"] = run["failed"]
        out["wall_s"] = run["wall_s"]
        return out
    out.update(
        {
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
            "ru_maxrss_mb": round(run["ru_maxrss_mb"], 1),
            "build_s": round(run["build_s"], 1),
            "build_records_per_s": round(m_in / run["build_s"]),
            "conservation_ok": run["conservation"]["ok"],
        }
    )
    if at_n and "peak_rss_mb" in at_n and "failed" not in at_n and m_in != at_n["n"]:
        # bytes per extra record between the two sizes: the slope the 1 KB/record budget is about
        out["slope_bytes_per_record"] = round(
            (run["peak_rss_mb"] - at_n["peak_rss_mb"]) * 2**20 / (m_in - at_n["n"])
        )
    return out


def _targets(name: str, w: dict, others: dict[str, dict]) -> dict[str, bool]:
    if "build_records_per_s" not in w:
        return {f"{name}:built": False}
    q = w["near"]
    if name == "chat":  # issue 7's targets, as in rounds 1-5
        return {
            "records_per_s>=25000": w["build_records_per_s"] >= 25000,
            "x_datasketch>=15": w["ratio_to_datasketch"] >= 15,
            "dedup_pipeline_x_datasketch>=15": w["dedup_pipeline_ratio_to_datasketch"] >= 15,
            "precision>=0.99": q["precision"] >= 0.99,
            "recall>=0.98": q["recall"] >= 0.98,
            "pairs_flagged==0": q["pairs_flagged"] == 0,
        }
    out = {
        f"{name}:rss<=1KB/record+300MB": w["peak_rss_mb"] <= w["budget_mb"],
        f"{name}:precision>=0.99": q["precision"] >= 0.99,
        f"{name}:recall>=0.99": q["recall"] >= 0.99,
    }
    if name == "openai":  # issue 15's targets
        out.update(
            {
                "openai:records_per_s>=25000": w["build_records_per_s"] >= 25000,
                "openai:x_datasketch>=15": w["ratio_to_datasketch"] >= 15,
                "openai:x_rensa>=2": w["ratio_to_rensa"] >= 2,
            }
        )
    if name == "mixed" and "build_records_per_s" in others.get(
        "openai", {}
    ):  # every format at the OpenAI speed
        out["mixed:records_per_s>=0.9*openai"] = (
            w["build_records_per_s"] >= 0.9 * others["openai"]["build_records_per_s"]
        )
    if name in ("templated", "short") and "build_records_per_s" in others.get("openai", {}):
        # (templated: issue 15's; short prompts: ours, the same bar for text the strict rule judges)
        out[f"{name}:records_per_s>=openai/2"] = (
            w["build_records_per_s"] >= others["openai"]["build_records_per_s"] / 2
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--workloads",
        default="chat,openai,templated,mixed,short",
        help=f"comma-separated, of: {', '.join(WORKLOADS)}",
    )
    ap.add_argument(
        "--records",
        "--memory-n",
        dest="memory_n",
        type=int,
        default=1_000_000,
        help="one more build at this many records per --memory-workloads for peak RSS and the memory "
        "slope (e.g. --records 2000000); 0: skip",
    )
    ap.add_argument("--memory-workloads", default="openai", help="the workloads of the --records run")
    ap.add_argument("--baseline-n", type=int, default=20_000, help="records the datasketch baseline runs on")
    ap.add_argument(
        "--timeout", type=float, default=1800, help="kill a build after this many seconds (0: never)"
    )
    ap.add_argument(
        "--max-rss-mb",
        type=float,
        default=8000,
        help="kill a build above this resident memory (the machine is shared; 0: never)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--engine", choices=("local", "ray"), default="local", help="the builds' engine")
    args = ap.parse_args()
    names = [x.strip() for x in args.workloads.split(",") if x.strip()]
    mem_names = [x.strip() for x in args.memory_workloads.split(",") if x.strip()] if args.memory_n else []
    bad = [x for x in names + mem_names if x not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "PYTHONPATH": str(REPO),
        "CURATE_BENCH_ENGINE": args.engine,
    }
    load_start = os.getloadavg()
    warm: list[float] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        got = {name: bench_workload(name, tmp, args, env, warm) for name in names}
        memory = {name: memory_run(name, args.memory_n, tmp, args, env, got.get(name)) for name in mem_names}
    result: dict[str, Any] = {
        "n": args.n,
        "runs": args.runs,
        "engine": args.engine,
        "cores": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "warmup_build_s": round(warm[0], 2) if warm else None,
    }
    if "chat" in got:  # the rounds 1-5 keys at the top level
        result.update({k: v for k, v in got["chat"].items() if k not in ("n", "runs")})
        result["n"] = got["chat"]["n"]
    result["workloads"] = {k: v for k, v in got.items() if k != "chat"}  # chat's figures are the top level
    if memory:
        result["memory"] = memory
    targets: dict[str, bool] = {}
    for name, w in got.items():
        targets.update(_targets(name, w, got))
    for name, mrun in memory.items():
        targets[f"{name}:rss<=1KB/record+300MB@{mrun['n']}"] = (
            "failed" not in mrun and mrun["peak_rss_mb"] <= mrun["budget_mb"]
        )
    result["targets"] = targets
    print(json.dumps(result))


if __name__ == "__main__":
    main()
