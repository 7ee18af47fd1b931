"""The parts of `curate.evaluate`, one concern per module (import the public names from `curate.evaluate`):

- `prompts`: the held-out prompts (an export's test splits, or a frozen held-out file);
- `generation`: greedy batched generation with a local model;
- `general`: general-ability regressions (MT-bench / Vicuna questions);
- `scoring`: the spec's rules over the responses, failure categories, bootstrap intervals;
- `compare`: two eval reports side by side.
"""
