"""The parts of `curate.train`, one concern per module (import the public names from `curate.train`):

- `models`: local model references and loading (folders, GGUF files, LoRA outputs), quiet Hugging Face output;
- `data`: the export's SFT/DPO splits as TRL rows;
- `preflight`: what would make TRL fail late or drop rows, checked before training;
- `prefix`: the shared-prefix loss and log-probabilities (the system prompt runs once per batch).
"""
