"""curate build end to end: conservation, quarantine reasons, manifest, card, CLI, real fixtures, a rebuild with more
data, and real TRL SFT/DPO training on the exported folders."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.errors import ExportError, InputError
from curate.spec import load_spec
from curate.steps.export import file_hashes
from curate.steps.pipeline import build

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "build"
GENERIC = REPO / "tests" / "data" / "build-generic"

BAD_REASONS = {
    "read/bad_json": 1,
    "read/python_literal": 1,
    "read/bad_encoding": 1,
    "read/empty_turn": 1,
    "read/missing_chosen": 1,
    "validate/rule_failed": 1,
    "validate/no_assistant_turn": 1,
    "validate/chosen_equals_rejected": 1,
    "validate/too_long": 1,
    "validate/negative_passes_rules": 1,
}
MANIFEST_KEYS = {
    "tool",
    "created",
    "spec",
    "inputs",
    "counts",
    "conservation",
    "quarantine",
    "dedup",
    "leakage",
    "coverage",
    "lengths",
    "files",
}


# made-up words for generated test texts (shared by the tests below)
WORDS = [
    "amber",
    "basalt",
    "cedar",
    "delta",
    "fennel",
    "gravel",
    "harp",
    "indigo",
    "jade",
    "kiwi",
    "loom",
    "mango",
    "nickel",
    "opal",
    "prism",
    "quill",
    "rustic",
    "sable",
    "tango",
    "umbra",
    "vortex",
    "wharf",
    "xenon",
    "yodel",
    "zinc",
]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "out"
    res = build(DATA, [DATA / "data.jsonl", DATA / "bad.jsonl"], out)
    return out, res


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_conservation_and_every_reason(mini):
    out, res = mini
    m = res.manifest
    assert set(m) >= MANIFEST_KEYS
    by_file = {Path(i["file"]).name: i for i in m["inputs"]}
    assert by_file["bad.jsonl"] == {
        **by_file["bad.jsonl"],
        "in": 10,
        "exported": 0,
        "quarantined": 10,
        "duplicates": 0,
    }
    assert by_file["data.jsonl"] == {
        **by_file["data.jsonl"],
        "in": 47,
        "quarantined": 0,
        "duplicates": 2,
        "exported": 45,
    }
    for i in m["inputs"]:
        assert i["in"] == i["exported"] + i["quarantined"] + i["duplicates"]
        assert len(i["sha256"]) == 64 and i["format"] == "native"
    assert m["conservation"] == {"ok": True, "in": 57, "exported": 45, "quarantined": 10, "duplicates": 2}
    assert m["quarantine"] == BAD_REASONS
    # every quarantine row names file:line and keeps the original
    rows = _jsonl(out / "quarantine" / "read.jsonl") + _jsonl(out / "quarantine" / "validate.jsonl")
    assert len(rows) == 10
    assert sorted(r["source"]["line"] for r in rows) == list(range(1, 11))
    assert all(r["source"]["file"].endswith("bad.jsonl") and r["original"] for r in rows)
    # exported rows: SFT, DPO pairs (3 made from negatives + 1 given) and the one unpaired negative
    c = m["counts"]
    sft_rows = _jsonl(out / "sft" / "train.jsonl") + _jsonl(out / "sft" / "test.jsonl")
    dpo_rows = _jsonl(out / "dpo" / "train.jsonl") + _jsonl(out / "dpo" / "test.jsonl")
    negatives = _jsonl(out / "negatives.jsonl")
    assert (len(sft_rows), len(dpo_rows), len(negatives)) == (
        c["sft"]["train"] + c["sft"]["test"],
        c["dpo"]["train"] + c["dpo"]["test"],
        1,
    )
    assert len(sft_rows) + len(dpo_rows) + len(negatives) == c["exported"] == 45
    assert c["pairs_made"] == 3 and len(dpo_rows) == 4
    assert len({r["id"] for r in sft_rows + dpo_rows}) == len(sft_rows) + len(dpo_rows)
    # dedup: the known exact and near duplicates, explained
    clusters = _jsonl(out / "clusters.jsonl")
    assert [(c["method"], c["dropped_source"].rsplit(":", 1)[1]) for c in clusters] == [
        ("exact", "1"),
        ("near", "47"),
    ]
    # (lines 1 and 46 are exact twins: the one with the smaller content hash of the raw record is kept, whatever
    # the order: docs/contracts.md, "What a duplicate is")
    assert m["dedup"] == {
        "exact": 1,
        "near": 1,
        "semantic": 0,
        "threshold": 0.8,
        "continuations": 0,
        "drop_prefixes": False,
    }


def test_exports_are_trl_shaped_and_loadable(mini):
    from datasets import load_dataset

    out, res = mini
    spec = load_spec(DATA)
    sft = load_dataset(str(out / "sft"))
    assert set(sft) == {"train", "test"} and sft["train"].num_rows == res.counts["sft"]["train"]
    first = sft["train"][0]["messages"]
    assert first[0] == {
        "role": "system",
        "content": spec.system_prompt.strip(),
        **{k: None for k in first[0] if k not in ("role", "content")},
    }
    assert first[-1]["role"] == "assistant"
    dpo = load_dataset(str(out), "dpo")  # through the dataset card's configs
    row = dpo["train"][0]
    assert row["prompt"][0]["role"] == "system" and row["chosen"][0]["role"] == "assistant"
    assert row["chosen"] != row["rejected"]
    assert load_dataset(str(out), "sft")["train"].num_rows == sft["train"].num_rows
    # the manifest's file hashes are the files
    assert file_hashes(out) == res.manifest["files"]
    assert {
        "sft/train.jsonl",
        "sft/data/train-00000-of-00001.parquet",
        "dpo/test.jsonl",
        "README.md",
        "heldout.lock",
        "clusters.jsonl",
        "negatives.jsonl",
        "quarantine/read.jsonl",
    } <= set(res.manifest["files"])
    # lengths per exported row: in lengths.parquet, their summary in the manifest
    from curate.steps.lengths_file import read_lengths

    lengths = res.manifest["lengths"]
    per_row = read_lengths(out, lengths)
    assert len(per_row["sft"]["train"]) == res.counts["sft"]["train"] == lengths["sft"]["train"]["rows"]
    assert (
        lengths["estimated"] is True
        and lengths["file"] == "lengths.parquet"
        and "lengths.parquet" in res.manifest["files"]
    )
    assert all(0 < n <= 400 for n in per_row["sft"]["train"] + per_row["dpo"]["train"])
    # zero leakage, and the lock holds exactly the held-out ids
    assert res.manifest["leakage"]["exact"] == res.manifest["leakage"]["near"] == 0
    lock = json.loads((out / "heldout.lock").read_text())
    test_ids = {r["id"] for r in _jsonl(out / "sft" / "test.jsonl") + _jsonl(out / "dpo" / "test.jsonl")}
    assert set(lock["ids"]) == test_ids and lock["spec"] == "mini-build"


def test_dataset_card(mini):
    out, res = mini
    card = (out / "README.md").read_text()
    assert card.startswith('---\npretty_name: "mini-build v1"')
    for text in (
        "config_name: sft",
        "path: sft/data/train-*.parquet",
        "config_name: dpo",
        "## Rules",
        "`no-action-claims`",
        "## Coverage",
        "## Deduplication and leakage",
        "validate/too_long",
        "exact duplicates removed: 1; near duplicates removed: 1",
        "## Lineage",
    ):
        assert text in card, text
    assert "| all | 57 | 45 | 10 | 2 |" in card
    cov = res.manifest["coverage"]
    assert {(c["category"], c["rule"]) for c in cov["cells"]} >= {
        ("typical", "valid-json"),
        ("negative", "brief"),
    }


def test_cli_build_json_and_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["build", str(DATA), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # exactly one JSON document on stdout
    assert (
        doc["out"] == "out/mini-build/v1"
        and (tmp_path / "out" / "mini-build" / "v1" / "manifest.json").is_file()
    )
    assert doc["conservation"]["ok"] and doc["counts"]["in"] == 47
    r = CliRunner().invoke(
        main, ["build", str(DATA), "--sft-format", "prompt-completion", "--max-tokens", "54"]
    )
    assert r.exit_code == 0, r.output
    assert "wrote out/mini-build/v1 (default folder for this spec version)" in r.stderr
    assert r.stdout.startswith("mini-build@1: 47 in = ")
    assert "quarantined validate/too_long:" in r.stdout
    row = _jsonl(tmp_path / "out" / "mini-build" / "v1" / "sft" / "train.jsonl")[0]
    assert (
        set(row) == {"prompt", "completion", "id", "lineage"} and row["completion"][0]["role"] == "assistant"
    )


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    r = CliRunner().invoke(main, ["build", str(DATA), "--out", str(tmp_path / "notes")])
    assert r.exit_code == 1
    assert r.stderr.strip().count("\n") == 0 and "is not a curate build folder" in r.stderr
    r = CliRunner().invoke(
        main, ["build", str(DATA), "--input", str(DATA / "spec.yaml"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and r.stderr.startswith("error: ")
    # a build where nothing survives is written (nothing is lost) but says so
    (tmp_path / "bad.jsonl").write_text("garbage\n{bad\n")
    r = CliRunner().invoke(
        main, ["build", str(DATA), "--input", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "b")]
    )
    assert (
        r.exit_code == 0
        and "warning: sft/train is empty" in r.stderr
        and "warning: dpo/train is empty" in r.stderr
    )
    assert "quarantined read/bad_json: 2" in r.stdout


def test_conservation_mismatch_is_an_error(tmp_path, monkeypatch):
    import curate.steps.pipeline as pl

    out = tmp_path / "o"
    build(DATA, [DATA / "data.jsonl"], out)
    before = file_hashes(out)
    real = pl.dedup

    def lossy(records, **kw):
        kept, clusters = real(records, **kw)
        return kept[1:], clusters  # one record vanishes without a trace

    monkeypatch.setattr(pl, "dedup", lossy)
    with pytest.raises(ExportError, match=r"conservation does not hold.*data.jsonl: in 47 != exported 44"):
        build(DATA, [DATA / "data.jsonl"], out)
    assert file_hashes(out) == before  # nothing was written


def test_rebuild_with_more_data_keeps_heldout(tmp_path):
    out = tmp_path / "o"
    first = build(DATA, [DATA / "data.jsonl"], out)
    test1 = {r["id"] for r in _jsonl(out / "sft" / "test.jsonl") + _jsonl(out / "dpo" / "test.jsonl")}
    train1 = {r["id"] for r in _jsonl(out / "sft" / "train.jsonl") + _jsonl(out / "dpo" / "train.jsonl")}
    # more data: new records, and a paraphrase of a held-out prompt and of a training prompt
    import random

    rng = random.Random(5)
    words = WORDS
    extra = []
    for i in range(30):
        q = " ".join(rng.choice(words) for _ in range(8))
        a = " ".join(rng.choice(words) for _ in range(7))
        extra.append(
            {
                "messages": [
                    {"role": "user", "content": f"{q}?"},
                    {"role": "assistant", "content": json.dumps({"answer": f"{a}."})},
                ],
                "category": "typical",
            }
        )
    test_rows = _jsonl(out / "sft" / "test.jsonl")
    train_rows = _jsonl(out / "sft" / "train.jsonl")
    for rows, answer in (
        (test_rows, "A held-out paraphrase gets this rather different reply."),
        (train_rows, "A training paraphrase gets this rather different reply."),
    ):
        user = next(m["content"] for m in rows[0]["messages"] if m["role"] == "user")
        extra.append(
            {
                "messages": [
                    {"role": "user", "content": user.rstrip("?") + "!"},
                    {"role": "assistant", "content": json.dumps({"answer": answer})},
                ],
                "category": "typical",
            }
        )
    more = tmp_path / "more.jsonl"
    more.write_text("\n".join(json.dumps(x) for x in extra) + "\n")
    second = build(DATA, [DATA / "data.jsonl", more], out)
    test2 = {r["id"] for r in _jsonl(out / "sft" / "test.jsonl") + _jsonl(out / "dpo" / "test.jsonl")}
    train2 = {r["id"] for r in _jsonl(out / "sft" / "train.jsonl") + _jsonl(out / "dpo" / "train.jsonl")}
    assert test1 <= test2 and train1 <= train2
    assert second.manifest["split"]["locked_from_previous"] == len(test1)
    assert second.manifest["leakage"]["exact"] == second.manifest["leakage"]["near"] == 0
    assert second.counts["in"] == first.counts["in"] + 32 and second.manifest["conservation"]["ok"]
    sides = {}
    for split in ("train", "test"):
        for r in _jsonl(out / "sft" / f"{split}.jsonl"):
            sides[json.loads(r["messages"][-1]["content"])["answer"]] = split
    assert (
        second.counts["duplicates"] == first.counts["duplicates"]
    )  # the paraphrases are not removed as twins
    assert sides["A held-out paraphrase gets this rather different reply."] == "test"
    assert sides["A training paraphrase gets this rather different reply."] == "train"


def test_build_real_fixtures(real_fixtures, tmp_path):
    from datasets import load_dataset

    lf = real_fixtures / "llama-factory"
    inputs = [
        lf / "alpaca_zh_demo.json",
        lf / "dpo_zh_demo.json",
        lf / "glaive_toolcall_en_demo.json",
        lf / "kto_en_demo.json",
        lf / "v1_sft_demo.jsonl",
        lf / "v1_dpo_demo.jsonl",
        lf / "identity.json",
        real_fixtures / "data-juicer" / "demo-dataset-chatml.jsonl",
        real_fixtures / "axolotl" / "conversation.missingturns.json",
        real_fixtures / "data-juicer" / "demo-dataset-annotation-human-preference.jsonl",
        real_fixtures / "label-studio" / "test_export_json_min__chat_data.json",
    ]
    res = build(GENERIC, inputs, tmp_path / "o")
    m = res.manifest
    by = {Path(i["file"]).name: i for i in m["inputs"]}
    assert len(by) == len(inputs)
    for i in m["inputs"]:
        assert i["in"] == i["exported"] + i["quarantined"] + i["duplicates"] and i["in"] > 0, i
    # the known exact duplicates of the LLaMA-Factory demos are found
    assert by["alpaca_zh_demo.json"]["duplicates"] >= 1 and by["dpo_zh_demo.json"]["duplicates"] >= 1
    assert m["leakage"]["exact"] == m["leakage"]["near"] == 0
    assert m["counts"]["dpo"]["train"] > 200 and m["counts"]["sft"]["train"] > 1000
    # tool calls survive as JSON strings, with the tools column
    rows = _jsonl(tmp_path / "o" / "sft" / "train.jsonl") + _jsonl(tmp_path / "o" / "sft" / "test.jsonl")
    tool_rows = [r for r in rows if r.get("tools")]
    assert tool_rows and all(isinstance(r["tools"], str) for r in tool_rows)
    calls = [tc for r in tool_rows for msg in r["messages"] for tc in msg.get("tool_calls") or ()]
    assert calls and all(isinstance(tc["function"]["arguments"], str) for tc in calls)
    ds = load_dataset(str(tmp_path / "o" / "sft"))
    assert ds["train"].num_rows == m["counts"]["sft"]["train"]


def test_coverage_command(mini, tmp_path):
    out, res = mini
    r = CliRunner().invoke(main, ["coverage", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["cells"] == res.manifest["coverage"]["cells"]
    assert {(c["category"], c["rule"]) for c in doc["under_target"]} == {
        (c["category"], c["rule"]) for c in doc["cells"] if c["count"] < c["target"]
    }
    r = CliRunner().invoke(main, ["coverage", str(DATA)])
    assert r.exit_code == 0 and "typical" in r.stdout
    under = [c for c in doc["under_target"]]
    for c in under:
        assert (
            f"under target: {c['category']} x {c['rule']}"
            in CliRunner().invoke(main, ["coverage", str(out)]).stdout
        )


def test_python_api_is_short(tmp_path):
    import curate

    spec = curate.load_spec(DATA)
    assert not curate.lint(spec)
    result = curate.build(spec, out=tmp_path / "x")
    assert result.out_dir == tmp_path / "x" and result.counts["in"] == 47
    assert result.manifest["conservation"]["ok"] and result.summary()["out"] == str(tmp_path / "x")


# ---------------------------------------------------------------- the export is training-ready


@pytest.mark.train
def test_trl_trains_on_the_export(mini, tmp_path):
    """A real SFTTrainer and DPOTrainer run a few steps on the exported folders, as they are."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from tests.tinymodel import build_tiny_model

    out, _ = mini
    spec = load_spec(DATA)
    model_dir = build_tiny_model(tmp_path / "tiny", extra_corpus=[spec.system_prompt])
    r = CliRunner().invoke(
        main, ["lint-export", str(out), "--tokenizer", str(model_dir), "--max-length", "512", "--json"]
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"], r.output
    common = {
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "activation_checkpointing": False,
        "per_device_train_batch_size": 2,
        "max_steps": 3,
        "learning_rate": 1e-3,
    }
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    sft = load_dataset(str(out / "sft"))
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
        processing_class=tok,
        args=SFTConfig(output_dir=str(tmp_path / "sft"), max_length=512, assistant_only_loss=True, **common),
        train_dataset=sft["train"],
        eval_dataset=sft["test"],
    )
    res = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(res.training_loss) and res.training_loss > 0
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    dpo = load_dataset(str(out / "dpo"))
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
        processing_class=tok,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=512, **common),
        train_dataset=dpo["train"],
    )
    res = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(res.training_loss)
    logged = Counter(k for h in trainer.state.log_history for k in h)
    assert logged["rewards/chosen"] == 3  # DPO really computed preference rewards each step


def test_progress_and_field_mapping(tmp_path):
    """The progress callback hears every step; --map renames odd columns; --format forces a reader."""
    odd = tmp_path / "odd.jsonl"
    import random

    rng = random.Random(9)
    words = WORDS[:15]

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    odd.write_text(
        "\n".join(
            json.dumps({"question": text(8) + "?", "reply": json.dumps({"answer": text(6)})})
            for _ in range(12)
        )
        + "\n"
    )
    seen: dict[str, tuple[int, int | None]] = {}
    res = build(
        DATA,
        [odd],
        tmp_path / "o",
        mapping={"prompt": "question", "completion": "reply"},
        progress=lambda step, done, total: seen.__setitem__(step, (done, total)),
    )
    assert {"read", "validate", "split", "export"} <= set(seen)
    assert seen["validate"] == (12, 12) and seen["export"] == (1, 1)
    # the split's near pairs say where they are (a long silence there was mislabeled as the stage before)
    assert seen["split:near:sketch"] == (12, 12)
    assert (
        seen["split:near:candidates"][1] >= 2
        and seen["split:near:candidates"][0] == seen["split:near:candidates"][1] - 1
    )
    assert res.counts["in"] == res.counts["exported"] == 12
    assert res.manifest["inputs"][0]["format"] == "prompt_completion"
    r = CliRunner().invoke(
        main,
        [
            "build",
            str(DATA),
            "-i",
            str(odd),
            "--out",
            str(tmp_path / "p"),
            "--map",
            "prompt=question",
            "--map",
            "completion=reply",
            "--format",
            "prompt_completion",
            "--json",
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"]["exported"] == 12 and r.stderr == ""
    r = CliRunner().invoke(
        main, ["build", str(DATA), "-i", str(odd), "--out", str(tmp_path / "q"), "--map", "prompt"]
    )
    assert r.exit_code == 1 and "expected OURS=THEIRS" in r.stderr


def test_new_spec_version_keeps_the_heldout_of_the_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = build(DATA, [DATA / "data.jsonl"])
    v1 = tmp_path / "out" / "mini-build" / "v1"
    assert first.out_dir == Path("out/mini-build/v1") and first.manifest["split"]["lock_from"] is None
    spec2 = load_spec(DATA).model_copy(update={"version": 2})
    second = build(spec2, [DATA / "data.jsonl"])
    assert second.out_dir == Path("out/mini-build/v2")
    assert second.manifest["split"]["lock_from"] == "out/mini-build/v1/heldout.lock"
    ids1 = set(json.loads((v1 / "heldout.lock").read_text())["ids"])
    ids2 = set(json.loads((tmp_path / "out/mini-build/v2/heldout.lock").read_text())["ids"])
    assert ids1 and ids1 <= ids2
    # an explicit lock wins; a missing one is an error
    with pytest.raises(InputError, match="no such held-out lock"):
        build(spec2, [DATA / "data.jsonl"], lock=tmp_path / "nope.lock")


@pytest.mark.parametrize("formats", [["sft"], ["dpo"]])
def test_one_format_only(tmp_path, formats):
    from datasets import load_dataset

    spec = load_spec(DATA)
    spec = spec.model_copy(update={"export": spec.export.model_copy(update={"formats": formats})})
    res = build(spec, [DATA / "data.jsonl"], tmp_path / "o")
    m = res.manifest
    assert m["conservation"]["ok"] and m["export"]["formats"] == formats
    other = {"sft": "dpo", "dpo": "sft"}[formats[0]]
    assert (
        not (tmp_path / "o" / other).exists()
        and f"config_name: {other}" not in (tmp_path / "o" / "README.md").read_text()
    )
    assert (
        load_dataset(str(tmp_path / "o"), formats[0])["train"].num_rows
        == m["counts"][formats[0]]["train"]
        > 0
    )
    if formats == ["sft"]:  # pairs are exported as SFT (prompt + chosen)
        assert m["counts"]["sft"]["train"] + m["counts"]["sft"]["test"] == 44 and m["quarantine"] == {}
    else:  # SFT records cannot become DPO rows: quarantined with a reason, never dropped silently
        assert m["quarantine"]["export/format_not_exported"] == m["counts"]["quarantined"] > 0


def test_every_example_spec_builds(example_specs, tmp_path):
    """`curate build SPEC --json` on each example spec: one JSON document, conservation, no leakage, loadable."""
    from datasets import load_dataset

    assert example_specs
    for spec_dir in example_specs:
        out = tmp_path / spec_dir.name
        r = CliRunner().invoke(main, ["build", str(spec_dir), "--out", str(out), "--json"])
        assert r.exit_code == 0, (spec_dir, r.output)
        doc = json.loads(r.stdout)
        assert doc["conservation"]["ok"] and doc["counts"]["in"] > 0
        assert doc["leakage"]["exact"] == doc["leakage"]["near"] == 0
        assert doc["counts"]["sft"]["train"] > 0 and doc["counts"]["dpo"]["train"] > 0
        assert load_dataset(str(out), "dpo")["train"].num_rows == doc["counts"]["dpo"]["train"]
        assert (out / "report.html").is_file() and (out / "README.md").is_file()


def test_card_license_from_the_spec(tmp_path):
    doc = load_spec(DATA)
    assert doc.export.license is None
    with_license = doc.model_copy(update={"export": doc.export.model_copy(update={"license": "cc-by-4.0"})})
    build(with_license, [DATA / "data.jsonl"], tmp_path / "o")
    assert 'license: "cc-by-4.0"' in (tmp_path / "o" / "README.md").read_text()
    build(doc, [DATA / "data.jsonl"], tmp_path / "u")
    assert 'license: "unknown"' in (tmp_path / "u" / "README.md").read_text()
