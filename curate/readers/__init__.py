"""Importers: the data people have (files of many shapes) -> a stream of curate records.

Two layers, one module each:
- `containers`: a file -> raw units (a JSONL line, a JSON array element, a CSV row, a Parquet/Arrow row), each with
  its line (or row) number, or a `Reject` for a unit that cannot be parsed (bad JSON, bad UTF-8, a Python dict,
  a line broken by a raw newline).
- `shapes` (+ `labelstudio`): one raw object -> records, per format (OpenAI chat, ShareGPT, Alpaca, HH-RLHF ...).

The public entry point is `curate.steps.read.read_inputs` (it counts and quarantines); use that.
"""

from curate.readers.common import Reject

__all__ = ["Reject"]
