"""Fixtures for the training and evaluation tests: a tiny local model and a small export folder.

Everything is local: the hub is switched off before transformers or datasets are imported.
"""

from __future__ import annotations

import os

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_k] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import orjson
import pytest

from curate.records import read_jsonl
from curate.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = ROOT / "specs" / "support-triage"


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def make_export(
    out: Path, *, n_sft_train: int = 16, n_sft_test: int = 4, n_dpo_train: int = 8, n_dpo_test: int = 2
) -> Path:
    """A small export folder in the `curate build` layout, from the example spec's own data."""
    spec = load_spec(SPEC_DIR)
    system = {"role": "system", "content": spec.system_prompt}
    sft, dpo = [], []
    for line, obj in read_jsonl(SPEC_DIR / "data.jsonl"):
        if not isinstance(obj, dict) or obj.get("category") == "negative" or obj.get("violates"):
            continue
        meta = {"id": f"l{line}", "category": obj.get("category", "typical"), "tags": obj.get("tags", [])}
        if "chosen" in obj:
            dpo.append(
                {
                    "prompt": [system, *obj["prompt"]],
                    "chosen": obj["chosen"],
                    "rejected": obj["rejected"],
                    **meta,
                }
            )
        elif "messages" in obj:
            sft.append({"messages": [system, *obj["messages"]], **meta})
    while len(dpo) < n_dpo_train + n_dpo_test:  # make pairs from SFT rows: chosen = gold, rejected = prose
        r = sft[len(dpo)]
        dpo.append(
            {
                "prompt": r["messages"][:-1],
                "chosen": r["messages"][-1:],
                "rejected": [{"role": "assistant", "content": "I have reset your password."}],
                "id": r["id"] + "p",
                "category": r["category"],
                "tags": r["tags"],
            }
        )
    _write(out / "sft" / "train.jsonl", sft[:n_sft_train])
    _write(out / "sft" / "test.jsonl", sft[n_sft_train : n_sft_train + n_sft_test])
    _write(out / "dpo" / "train.jsonl", dpo[:n_dpo_train])
    _write(out / "dpo" / "test.jsonl", dpo[n_dpo_train : n_dpo_train + n_dpo_test])
    manifest = {
        "tool": {"name": "curate", "version": "0.1.0"},
        "spec": {"name": spec.name, "version": spec.version, "ref": spec.ref},
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tinymodel import build_tiny_model

    spec = load_spec(SPEC_DIR)
    corpus = [spec.system_prompt] + [
        line for line in (SPEC_DIR / "data.jsonl").read_text("utf-8").splitlines()
    ]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", extra_corpus=corpus, vocab_size=3000)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_export(tmp_path_factory.mktemp("export") / "support-triage" / "v1")


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    return SPEC_DIR
