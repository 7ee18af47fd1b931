"""The dataset card (README.md) of a build folder: YAML header (configs -> files per split), how to load and train
on the export (snippets that run from inside the folder, tested), an example row per kind, then the spec's story
in figures. Everything from the spec or the data is escaped for Markdown and YAML (`md_text`, `_yaml_str`).

    card = dataset_card(spec, manifest, split_info, folder=stage, out_dir=out_dir)
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import orjson

from curate.spec import Spec
from curate.steps.export import TEXT_KINDS, loader_yaml, read_rows, split_file


def _yaml_str(s: str) -> str:
    return orjson.dumps(s).decode()


def _md(s: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(s).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_MD_LINE_START = re.compile(r"^(\s*\d*)([-=>.)])", re.MULTILINE)


def md_text(s: Any) -> str:
    """Spec text (description, a rule's `says`, the version) as literal Markdown prose: HTML escaped (no tags,
    no entities of its own), Markdown punctuation backslash-escaped (no links, images, emphasis, code, headings,
    tables, lists or front-matter breaks), line breaks kept."""
    text = html.escape(str(s), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(
        lambda m: (
            m.group(0) if m.group(1).strip() == "" and m.group(2) in ".)" else m.group(1) + "\\" + m.group(2)
        ),
        text,
    )


def _shown_path(file: str, out_dir: Path | None) -> str:
    """An input's path as the card shows it: relative to the build folder (never an absolute local path)."""
    if not file or file.startswith("<"):
        return file
    fmt = ""
    if not Path(file).exists() and ":" in file:  # an input given as FILE:FORMAT
        file, fmt = file.rsplit(":", 1)
        fmt = ":" + fmt
    base = out_dir.resolve() if out_dir is not None else Path.cwd()
    try:
        return os.path.relpath(Path(file).resolve(), base) + fmt
    except ValueError:  # another drive (Windows)
        return Path(file).name + fmt


def _example_row(folder: Path | None, fmt: str, limit: int = 400) -> str | None:
    """The first train row of `fmt` as indented JSON (long texts cut), or None."""
    path = split_file(folder / fmt, "train") if folder is not None else None
    if path is None:
        return None
    first_row = next((row for _, row in read_rows(path) if isinstance(row, dict)), None)
    if first_row is None:
        return None
    first = orjson.dumps(first_row)

    def cut(v: Any) -> Any:
        if isinstance(v, str):
            return v if len(v) <= limit else v[:limit] + " ..."
        if isinstance(v, list):
            return [cut(x) for x in v]
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return v

    row = orjson.loads(first)
    if isinstance(row, dict) and isinstance(row.get("lineage"), str):  # the card names no local folders
        try:
            lin = orjson.loads(row["lineage"])
            lin["source"] = str(lin.get("source", "")).rsplit("/", 1)[-1]
            row["lineage"] = orjson.dumps(lin).decode()
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return orjson.dumps(cut(row), option=orjson.OPT_INDENT_2).decode()


def card_snippets(formats: list[str], max_length: int) -> dict[str, str]:
    """The Python snippets of the card, by name ("load", "sft", "dpo", "text"); they run from inside the build folder
    (tests/steps/test_card.py runs each one with a tiny local model in place of MODEL)."""
    here = 'str(Path(".").resolve())'  # load_dataset(".") fails in datasets 5: it names the dataset by the folder
    out = {
        "load": "\n".join(
            [
                "from pathlib import Path",
                "",
                "from datasets import load_dataset",
                "",
                f"folder = {here}  # this build folder: run from inside it, or write its path here",
                *[f'{f} = load_dataset(folder, "{f}")' for f in formats],
                *[f'print({f}["train"][0])' for f in formats[:1]],
            ]
        )
    }
    for kind in ("sft", "dpo", "text"):
        if kind not in formats:
            continue
        cls = "SFT" if kind == "text" else kind.upper()  # SFTTrainer trains on {"text"} rows too
        note = (
            "e.g. the SFT model trained above"
            if kind == "dpo"
            else "a folder with config.json (curate never downloads one)"
        )
        out[kind] = "\n".join(
            [
                "from pathlib import Path",
                "",
                "import torch",
                "from datasets import load_dataset",
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                f"from trl import {cls}Config, {cls}Trainer",
                "",
                f'MODEL = "path/to/a/local/model"  # {note}',
                f'{kind} = load_dataset({here}, "{kind}")  # run from this folder, or give its path',
                "gpu = torch.cuda.is_available()",
                f'args = {cls}Config(output_dir="runs/{kind}", max_length={max_length}, num_train_epochs=1, use_cpu=not gpu,',
                " " * len(f"args = {cls}Config(") + "bf16=gpu and torch.cuda.is_bf16_supported())",
                f"trainer = {cls}Trainer(",
                "    model=AutoModelForCausalLM.from_pretrained(MODEL),",
                "    processing_class=AutoTokenizer.from_pretrained(MODEL),",
                "    args=args,",
                f'    train_dataset={kind}["train"],',
                f'    eval_dataset={kind}["test"] if "test" in {kind} else None,',
                ")",
                "trainer.train()",
            ]
        )
    return out


def dataset_card(
    spec: Spec,
    manifest: dict[str, Any],
    split_info: dict[str, dict[str, dict[str, Any]]] | None = None,
    *,
    folder: Path | None = None,
    out_dir: Path | None = None,
) -> str:
    """README.md for the build folder: YAML header (configs -> files per split), how to load and train on it
    (snippets that run from inside the folder), an example row per kind, then the spec's story in figures.

    `folder`: where the exports are being written (the example rows are read from there); `out_dir`: the build
    folder the card will live in (input paths are shown relative to it; default: relative to the current folder).
    """
    counts = manifest["counts"]
    formats = [
        f for f in ("sft", "dpo", *TEXT_KINDS) if f in manifest.get("exported_formats", ["sft", "dpo"])
    ]
    license_ = getattr(spec.export, "license", None) or getattr(spec, "license", None) or "unknown"
    lines = [
        "---",
        "pretty_name: " + _yaml_str(f"{spec.name} v{spec.version}"),
        "license: " + _yaml_str(license_),
        "tags:",
        "- curate",
        "- trl",
        *[f"- {f}" for f in formats],
        "task_categories:",
        "- text-generation",
    ]
    mapped = [f for f in formats if any(i["num_examples"] for i in (split_info or {}).get(f, {}).values())]
    # the kinds a reader can load: with split sizes, those in the configs; without, those with rows
    loadable = (
        mapped
        if split_info is not None
        else [f for f in formats if counts.get(f, {}).get("train") or counts.get(f, {}).get("test")]
    )
    configs: list[str] = []
    infos: list[str] = []
    for i, fmt in enumerate(mapped):
        part = loader_yaml(fmt, f"{fmt}/data", split_info[fmt], f"{spec.name}-{fmt}", default=(i == 0))
        cut = part.index("dataset_info:")
        configs += part[1:cut]
        infos += part[cut + 1 :]
    if configs:
        lines += ["configs:", *configs, "dataset_info:", *infos]
    lines += ["---", "", f"# {md_text(spec.name)} v{md_text(spec.version)}", ""]
    if spec.description:
        lines += [md_text(spec.description.strip()), ""]
    lines += [
        "Built by `curate` from the behavior spec " + f"`{spec.ref}` (sha256 `{spec.digest[:16]}`).",
        "",
    ]
    if license_ == "unknown":
        lines += ["License: not stated (the data's license is its owner's to set).", ""]
    empty = [f for f in formats if f not in loadable]
    snippets = card_snippets(loadable, spec.export.max_tokens)
    lines += ["## Load it", ""]
    if loadable:
        lines += [
            "Each kind is a config of this folder (and a dataset folder of its own: `"
            + "/`, `".join(loadable)
            + "/`):",
            "",
            "```python",
            snippets["load"],
            "```",
            "",
        ]
        with_jsonl = [f for f in loadable if getattr(spec.export, "jsonl", True)]
        lines += [
            "The rows are in Parquet, what the configs load: "
            + ", ".join(f"`{f}/data/*.parquet`" for f in loadable)
            + " (compressed: the system prompt every row repeats costs next to nothing). "
            + (
                ", ".join(f"`{f}/train.jsonl` and `{f}/test.jsonl`" for f in with_jsonl)
                + " hold the same rows as JSON lines, for tools that read JSONL."
                if with_jsonl
                else "This build wrote no JSONL copies (spec `export.jsonl: false` or `--no-jsonl`)."
            ),
            "",
        ]
    for f in empty:
        lines += [f"There are no {f.upper()} rows in this build: `{f}/` is empty and has no config.", ""]
    for f in loadable:
        ex = _example_row(folder, f)
        if ex is not None:
            lines += [f"An example {f} row (train split, long texts cut):", "", "```json", ex, "```", ""]
    if "prompts" in loadable:
        lines += [
            (
                "`prompts/` holds unlabeled prompts (TRL's prompt-only rows): label them (`curate label push` "
                "with `--kind write`), or generate answers from them (e.g. TRL's GRPOTrainer or OnlineDPOTrainer)."
            ),
            "",
        ]
    if any(f in snippets for f in loadable):
        lines += [
            "## Train on it with TRL",
            "",
            (
                "`curate train sft|dpo . --model MODEL` (from this folder) does this with early stopping and "
                "assistant-only loss; the plain TRL version (loss on every token; pass "
                "`assistant_only_loss=True` when the model's chat template has generation markers):"
            ),
            "",
        ]
        for f in loadable:
            if f in snippets:
                lines += ["```python", snippets[f], "```", ""]
    lines += [
        "## Counts",
        "",
        "| | in | exported | quarantined | duplicates |",
        "|---|---:|---:|---:|---:|",
        f"| all | {counts['in']} | {counts['exported']} | {counts['quarantined']} | {counts['duplicates']} |",
    ]
    for inp in manifest.get("inputs", []):
        lines.append(
            f"| `{_md(_shown_path(inp['file'], out_dir))}` ({_md(inp.get('format', ''))}) | {inp['in']} | "
            f"{inp['exported']} | "
            f"{inp['quarantined']} | {inp['duplicates']} |"
        )
    lines += ["", "| format | train | test |", "|---|---:|---:|"]
    for fmt in formats:
        lines.append(f"| {fmt} | {counts[fmt]['train']} | {counts[fmt]['test']} |")
    if counts.get("negatives"):
        lines += [
            "",
            (
                f"{counts['negatives']} negative examples had no passing answer to their prompt and are in "
                "`negatives.jsonl` (material for `curate expand` or labeling)."
            ),
        ]
    if manifest.get("system_prompt_added"):
        lines += ["", "The spec's system prompt is prepended to every conversation that has none."]
    lines += ["", "## Rules", "", "| rule | category | check | says |", "|---|---|---|---|"]
    for r in spec.rules:
        kind = "human" if r.check == "human" else r.check.kind
        lines.append(f"| `{r.id}` | {r.category} | {kind} | {md_text(' '.join(r.says.split()))} |")
    from curate.versioning import card_rule_sets

    lines += card_rule_sets(manifest)
    cov = manifest.get("coverage") or {}
    if cov.get("categories"):
        lines += [
            "",
            "## Case categories",
            "",
            "| category | records | share | min share | ok |",
            "|---|---:|---:|---:|---|",
        ]
        for c in cov["categories"]:
            lines.append(
                f"| {_md(c['name'])} | {c['count']} | {c['share']:.1%} | {c['min_share']:.0%} | "
                f"{'yes' if c['ok'] else 'NO'} |"
            )
    if cov.get("cells"):
        rules = list(dict.fromkeys(c["rule"] for c in cov["cells"]))
        cats = list(dict.fromkeys(c["category"] for c in cov["cells"]))
        cell = {(c["category"], c["rule"]): c for c in cov["cells"]}
        lines += [
            "",
            "## Coverage (records per case category x rule; target in brackets, * = under target)",
            "",
            "| category | " + " | ".join(f"`{r}`" for r in rules) + " |",
            "|---|" + "---:|" * len(rules),
        ]
        for cat in cats:
            vals = []
            for r in rules:
                c = cell.get((cat, r))
                vals.append("" if c is None else f"{c['count']} ({c['target']}){'' if c['ok'] else ' *'}")
            lines.append(f"| {_md(cat)} | " + " | ".join(vals) + " |")
    dd, lk = manifest.get("dedup", {}), manifest.get("leakage", {})
    lines += [
        "",
        "## Deduplication and leakage",
        "",
        (
            f"- exact duplicates removed: {dd.get('exact', 0)}; near duplicates removed: {dd.get('near', 0)} "
            f"(threshold {dd.get('threshold')}); semantic: {dd.get('semantic', 0)}. Every removal is a row in "
            "`clusters.jsonl`."
        ),
        (
            f"- leakage between train and test: exact {lk.get('exact', 0)}, near {lk.get('near', 0)}. The test "
            "split is frozen in `heldout.lock`: later builds keep it."
        ),
    ]
    q = manifest.get("quarantine") or {}
    if q:
        lines += ["", "## Quarantine", "", "| step/reason | records |", "|---|---:|"]
        lines += [f"| {_md(k)} | {v} |" for k, v in sorted(q.items())]
        lines += [
            "",
            "Each quarantined record is in `quarantine/<step>.jsonl` with its source and original text.",
        ]
    lin = manifest.get("lineage") or {}
    if lin:
        lines += ["", "## Lineage", ""]
        for key, vals in lin.items():
            if vals:
                lines.append(f"- {key}: " + ", ".join(f"{_md(k)} ({v})" for k, v in vals.items()))
    lines.append("")
    return "\n".join(lines)


__all__ = ["card_snippets", "dataset_card", "md_text"]
