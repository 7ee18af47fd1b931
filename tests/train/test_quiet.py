"""-q silences train and eval: no progress bar (the GGUF loader's own tqdm bar included) and no transformers
warning on stderr; library code never prints."""

from __future__ import annotations

import logging
from pathlib import Path

from click.testing import CliRunner

from curate.cli import main
from curate.train import quiet_hf


def test_quiet_hf_silences_the_gguf_bar_and_transformers_warnings(capsys) -> None:
    import transformers
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    with quiet_hf():
        for _ in gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
        transformers.utils.logging.get_logger("transformers.modeling_utils").warning("missing keys: lm_head")
    err = capsys.readouterr().err
    assert "de-quantizing" not in err and "missing keys" not in err
    assert transformers.utils.logging.get_verbosity() != logging.ERROR  # restored after the block
    for _ in gguf_utils.tqdm(range(2), desc="after"):
        pass
    assert "after" in capsys.readouterr().err  # the bar is back outside the block


def test_train_and_eval_quiet_print_nothing_on_stderr(
    tiny_model: Path, export_dir: Path, spec_dir: Path, tmp_path: Path
) -> None:
    r = CliRunner().invoke(
        main,
        [
            "train",
            "sft",
            str(export_dir),
            "--model",
            str(tiny_model),
            "--out",
            str(tmp_path / "m"),
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            "--max-length",
            "2048",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "" and r.stdout.startswith("sft: 1 steps")
    r = CliRunner().invoke(
        main,
        [
            "eval",
            str(spec_dir),
            "--model",
            str(tmp_path / "m"),
            "--build-dir",
            str(export_dir),
            "--max-new-tokens",
            "2",
            "--general",
            "0",
            "--limit",
            "1",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "" and "overall (all rules pass)" in r.stdout
