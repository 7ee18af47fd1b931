#!/usr/bin/env python
"""One SFT training step of SmolLM2-135M-Instruct on real support-triage rows, several ways, timed in one run.

    .venv/bin/python scripts/bench_train_step.py [--model DIR] [--batch 8] [--steps 2]

Modes (each: one warm-up step, then --steps timed steps of forward + backward + AdamW on the same batch):
  plain        the model's own forward over the padded batch, loss on the assistant tokens (what TRL does)
  shared       curate.train.shared_prefix_loss: the system prompt every row shares runs once per batch
  shared-bf16  the same under torch.autocast(bfloat16)
  shared-2t    the same with 2 torch threads (the others use 1)
Prints seconds per step and the ratio to `plain` measured in the same run, and the loss of each mode (the
shared-prefix loss must equal the plain one). Runs offline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_k] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "out" / "bench-training" / "base"))
    ap.add_argument("--export", default=str(ROOT / "out" / "bench-training" / "curated"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--modes", default="plain,shared,shared-bf16,shared-2t")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.train import read_split, save_plain, shared_prefix_loss, smollm2_gguf

    model_dir = Path(args.model)
    if not (model_dir / "config.json").exists():
        save_plain(smollm2_gguf(), model_dir)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    rows = read_split(Path(args.export) / "sft" / "train.jsonl", "sft").rows[: args.batch]
    ids, labels = [], []
    for r in rows:
        full = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
        prompt = tok.apply_chat_template(
            r["messages"][:-1], tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        ids.append(full)
        labels.append([-100] * len(prompt) + full[len(prompt) :])
    width = max(map(len, ids))
    batch = {
        "input_ids": torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids]),
        "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
        "labels": torch.tensor([x + [-100] * (width - len(x)) for x in labels]),
    }
    print(
        f"batch {len(rows)} rows, {int(batch['attention_mask'].sum())} tokens, padded width {width}, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    results = {}
    for mode in args.modes.split(","):
        torch.set_num_threads(2 if mode.endswith("-2t") else 1)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        times, loss_v = [], None
        for step in range(args.steps + 1):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in mode):
                if mode == "plain":
                    loss = model(**batch).loss
                else:
                    loss = shared_prefix_loss(model, batch)[0]
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step == 0:
                loss_v = float(loss)
            else:
                times.append(time.perf_counter() - t)
        results[mode] = (sum(times) / len(times), loss_v)
        base = results.get("plain", results[mode])[0]
        print(
            f"{mode:12s} {results[mode][0]:7.2f} s/step  x{base / results[mode][0]:.2f} vs plain  "
            f"first loss {loss_v:.5f}  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        del model, opt
    return 0


if __name__ == "__main__":
    sys.exit(main())
