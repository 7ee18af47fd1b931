"""General-ability regressions: a sample of the MT-bench and Vicuna-bench questions (shipped in curate/assets/)
must get non-empty, non-refusing, non-degenerate answers.
"""

from __future__ import annotations

import importlib.resources
import re
from collections import Counter
from typing import Any

import orjson

from curate.checks.semantic_checks import REFUSAL_PHRASES
from curate.checks.text_checks import phrase_regex

# ---------------------------------------------------------------- general-ability regressions


def general_questions(n: int) -> list[dict[str, Any]]:
    """`n` MT-bench and Vicuna-bench questions (first turns), spread evenly over both files and their categories."""
    if n <= 0:
        return []
    root = importlib.resources.files("curate") / "assets"
    per_file: list[list[dict[str, Any]]] = []
    for name in ("mt_bench_question.jsonl", "vicuna_bench_question.jsonl"):
        rows = [orjson.loads(line) for line in (root / name).read_bytes().splitlines() if line.strip()]
        per_file.append(
            [
                {
                    "id": f"{name.split('_')[0]}-{r['question_id']}",
                    "category": r.get("category", ""),
                    "question": r["turns"][0],
                }
                for r in rows
            ]
        )
    out = []
    for k, rows in enumerate(per_file):
        want = n // 2 + (n % 2 if k == 0 else 0)
        want = min(want, len(rows))
        out += [rows[int(i * len(rows) / want)] for i in range(want)] if want else []
    return out


_REFUSAL = phrase_regex(tuple(REFUSAL_PHRASES))


def general_problem(text: str) -> str | None:
    """None for an acceptable general answer, else `empty`, `refusal` or `degenerate`."""
    t = text.strip()
    if len(t) < 2:
        return "empty"
    if _REFUSAL.search(t):
        return "refusal"
    if re.search(r"(.)\1{24,}", t):
        return "degenerate"
    words = t.split()
    if len(words) >= 24:
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(grams)) / len(grams) < 0.5:
            return "degenerate"
    lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
    if len(lines) >= 6 and Counter(lines).most_common(1)[0][1] >= 4:
        return "degenerate"
    return None


def score_general(questions: list[dict[str, Any]], answers: list[str]) -> dict[str, Any]:
    problems: Counter[str] = Counter()
    failures = []
    for q, a in zip(questions, answers):
        p = general_problem(a)
        if p:
            problems[p] += 1
            failures.append({"id": q["id"], "question": q["question"], "answer": a[:400], "problem": p})
    n = len(questions)
    bad = {f["id"] for f in failures}
    return {
        "questions": n,
        "ok": n - sum(problems.values()),
        "rate": (n - sum(problems.values())) / n if n else None,
        "problems": dict(problems),
        "failures": failures,
        "per_question": [q["id"] not in bad for q in questions],
    }
