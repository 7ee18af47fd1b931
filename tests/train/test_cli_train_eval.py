"""`curate train` and `curate eval` through click: exit codes, one JSON document, one-line errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from curate.cli import main

GOOD = '{"intent": "other", "entities": {}, "missing_info": [], "next_step": "Route to the support team."}'


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_train_sft_json_then_eval_and_compare(
    tiny_model: Path, export_dir: Path, spec_dir: Path, tmp_path: Path
) -> None:
    code, out, err = _run(
        "train",
        "sft",
        str(export_dir),
        "--model",
        str(tiny_model),
        "--out",
        str(tmp_path / "m"),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--max-length",
        "2048",
        "--json",
    )
    assert code == 0, err
    doc = orjson.loads(out)  # exactly one JSON document, no trainer logs on stdout
    assert doc["kind"] == "sft" and doc["global_step"] == 2 and "log_history" not in doc
    assert doc["shared_prefix_batches"] >= 2  # on by default: the rows share the system prompt
    code, out, err = _run(
        "train",
        "sft",
        str(export_dir),
        "--model",
        str(tiny_model),
        "--out",
        str(tmp_path / "m2"),
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--max-length",
        "2048",
        "--no-shared-prefix",
        "--no-group-by-length",
        "--json",
    )
    assert code == 0, err
    cfg = orjson.loads((tmp_path / "m2" / "curate_train_config.json").read_bytes())
    assert orjson.loads(out)["shared_prefix_batches"] == 0
    assert (
        cfg["options"]["shared_prefix"] is False
        and cfg["trainer_args"]["train_sampling_strategy"] == "random"
    )

    code, out, err = _run(
        "eval",
        str(spec_dir),
        "--model",
        str(tmp_path / "m"),
        "--build-dir",
        str(export_dir),
        "--max-new-tokens",
        "4",
        "--general",
        "0",
        "--limit",
        "3",
        "--json",
        "--json-out",
        str(tmp_path / "a.json"),
        "--to-label",
        str(tmp_path / "fail.jsonl"),
    )
    assert code == 0, err
    rep = orjson.loads(out)
    assert rep["responses"] == 3 and rep["kind"] == "curate-eval"
    assert orjson.loads((tmp_path / "a.json").read_bytes())["items"] == rep["items"]
    assert len((tmp_path / "fail.jsonl").read_bytes().splitlines()) == 3  # a random model fails every one

    # the model's failures on training prompts, as labeled negatives for the next build's pairs
    code, out, err = _run(
        "eval",
        str(spec_dir),
        "--model",
        str(tmp_path / "m"),
        "--prompts",
        str(export_dir / "sft" / "train.jsonl"),
        "--max-new-tokens",
        "4",
        "--general",
        "0",
        "--limit",
        "3",
        "--negatives-out",
        str(tmp_path / "neg.jsonl"),
        "--json",
    )
    assert code == 0, err
    mined = [orjson.loads(x) for x in (tmp_path / "neg.jsonl").read_bytes().splitlines()]
    train_users = [
        orjson.loads(x)["messages"][-2]["content"]
        for x in (export_dir / "sft" / "train.jsonl").read_bytes().splitlines()[:3]
    ]
    assert [m["messages"][-2]["content"] for m in mined] == train_users  # a random model fails every one
    assert all(m["violates"] and "heldout" not in m["tags"] and "eval-failure" in m["tags"] for m in mined)

    outputs = tmp_path / "out.jsonl"
    outputs.write_bytes(
        b"".join(orjson.dumps({"id": i["id"], "response": GOOD}) + b"\n" for i in rep["items"])
    )
    code, out, err = _run(
        "eval",
        str(spec_dir),
        "--outputs",
        str(outputs),
        "--build-dir",
        str(export_dir),
        "--json-out",
        str(tmp_path / "b.json"),
    )
    assert code == 0, err
    assert "valid JSON: 100.0%" in out and "overall (all rules pass): 100.0%" in out

    code, out, err = _run("eval", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")
    assert code == 0, err
    cmp = orjson.loads(out)
    assert cmp["headline"]["valid_json"] == {"a": 0.0, "b": 1.0, "delta": 1.0} and cmp["n_fixed"] == 3
    code, out, _ = _run("eval", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert code == 0 and "valid-json" in out and "+100.0" in out


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["train", "sft", "{export}", "--model", "{tmp}/missing", "--out", "{tmp}/o"],
            1,
            "error: model path {tmp}/missing does not exist; curate loads local models only",
        ),
        (["train", "dpo", "{export}", "--out", "{tmp}/o"], 1, "give exactly one of --model and --from"),
        (["eval", "{spec}"], 1, "give exactly one of --model and --outputs"),
        (["eval"], 1, "give SPEC (or --compare A B)"),
        (
            ["eval", "--compare", "{spec}/spec.yaml", "{spec}/spec.yaml"],
            1,
            "error: {spec}/spec.yaml is not JSON",
        ),
    ],
)
def test_cli_errors(
    args: list[str], code: int, message: str, export_dir: Path, spec_dir: Path, tmp_path: Path
) -> None:
    fill = {"export": str(export_dir), "tmp": str(tmp_path), "spec": str(spec_dir)}
    got, out, err = _run(*[a.format(**fill) for a in args])
    assert got == code and message.format(**fill) in err
    if code == 1:
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1] and out == ""


def test_help_has_examples() -> None:
    for cmd in (["train", "sft"], ["train", "dpo"], ["eval"]):
        code, out, _ = _run(*cmd, "--help")
        assert code == 0 and "Example:" in out
