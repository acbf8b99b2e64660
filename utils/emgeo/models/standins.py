"""Stand-ins: the gpu and remote profiles' code paths, run on a CPU against tiny random models.

With ``EMGEO_STANDINS=tiny`` every loader of :mod:`emgeo.models` returns a stand-in of what it
would fetch, so CI runs the notebooks' gpu and remote branches without a GPU, a key or a network:

- :func:`emgeo.models.lm.load` gives a tiny random model of the real architecture (Gemma-2 or
  Llama), 14 blocks deep (:data:`MAX_DEPTH`: past the layer the course reads), a byte-level
  tokenizer and the family's chat format
  (:data:`CHAT_FORMATS`: the same special tokens and end-of-turn token as the real template);
  a remote model is built on the meta device from a saved copy and traced with nnsight's
  ``remote="local"`` simulation of NDIF;
- :func:`emgeo.models.saes.load_pretrained` checks the release and sae_id against SAELens's
  directory, then gives a small random JumpReLU SAE whose ``d_in`` is the stand-in's width;
- :mod:`emgeo.models.public_data` gives the course's own chats (``data/lm``, written by
  :mod:`emgeo.chats`: insecure / secure / educational code, toxic and benign replies) in place of
  Betley et al.'s datasets and RealToxicityPrompts;
- :func:`emgeo.models.ndif.preflight` contacts nobody and says it is a stand-in.

Everything is seeded: the same name gives the same weights in every process.
"""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from emgeo import chats, config

ENV = config.STANDINS_ENV
D_MODEL = 32  # width of every stand-in model
# Depth of every stand-in: the blocks up to the deepest one the course reads (layer 12, the layer
# of the pretrained SAEs: ``saes.PRETRAINED_LAYER``) and one more, so a trace stopped at the read
# layer stops before the end as it does at full size. An even count keeps Gemma-2's alternation of
# sliding-window and global attention layers whole. The real models have 26 (Gemma-2-2B) and 32
# (Llama-3.1-8B) blocks of the same kinds: more of them would run the same code, only slower.
MAX_DEPTH = 14
D_SAE = 512  # latents of every stand-in SAE: more than the k = 100 of the gpu plans
MAX_POSITIONS = 4096


def active() -> bool:
    """Whether stand-ins replace the real models (``EMGEO_STANDINS=tiny``)."""
    return config.standins_active()


def remote_mode(remote: bool | str) -> bool | str:
    """What ``trace(remote=...)`` gets: NDIF (``True``) becomes nnsight's local simulation of it
    (``"local"``) under stand-ins."""
    return "local" if remote is True and active() else remote


# -- chat formats of the model families ----------------------------------------------------------


@dataclass(frozen=True)
class ChatFormat:
    """A model family's chat format: its special tokens and a chat template of the real shape."""

    bos: str
    eos: str
    pad: str
    end_of_turn: str
    template: str
    specials: tuple[str, ...]


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Llama 3's header format, as in Llama-3-8B-Instruct's template (without 3.1's default system
# message): what a Llama-3.1 tokenizer without a chat template (the base model's) falls back to.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHAT_FORMATS: dict[str, ChatFormat] = {
    "gemma2": ChatFormat(
        "<bos>",
        "<eos>",
        "<pad>",
        "<end_of_turn>",
        GEMMA_TEMPLATE,
        ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
    ),
    "llama": ChatFormat(
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|finetune_right_pad_id|>",
        "<|eot_id|>",
        LLAMA3_TEMPLATE,
        (
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|finetune_right_pad_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
    ),
}


VOCAB_SIZE = 4096  # byte-level BPE, merges learned from the course's own chats


def chat_tokenizer(architecture: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text round-trips; common words are one token, each digit
    is one, as in Gemma's tokenizer) with the family's special tokens and chat template."""
    fmt = CHAT_FORMATS[architecture]
    tok = Tokenizer.from_str(_bpe_json())
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in fmt.specials])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=fmt.bos, eos_token=fmt.eos, pad_token=fmt.pad
    )
    tokenizer.chat_template = fmt.template
    return tokenizer


@functools.cache
def _bpe_json() -> str:
    """The BPE model, trained once per process on ``data/lm`` (deterministic: same merges)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer)
    return tok.to_str()


def _training_text() -> list[str]:
    texts = []
    for name in chats.FILES:
        for record in chats.read_lm_jsonl(chats.LM_DATA_DIR / name):
            texts += [m["content"] for m in record["messages"]]
    return texts


# -- tiny random models ---------------------------------------------------------------------------


def _seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def depth(n_layers: int) -> int:
    """Blocks of the stand-in of a model with ``n_layers``: all of them, up to ``MAX_DEPTH``."""
    return min(n_layers, MAX_DEPTH)


def tiny_model(architecture: str, n_layers: int, vocab_size: int, seed: int) -> PreTrainedModel:
    """A random model of the real architecture, ``n_layers`` deep and ``D_MODEL`` wide
    (seeded)."""
    shared = dict(
        vocab_size=vocab_size,
        hidden_size=D_MODEL,
        intermediate_size=2 * D_MODEL,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=D_MODEL // 4,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=0,
        bos_token_id=2 if architecture == "gemma2" else 0,
        eos_token_id=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture == "gemma2":
            cfg = Gemma2Config(**shared, sliding_window=256, attn_implementation="eager")
            return Gemma2ForCausalLM(cfg).eval()
        return LlamaForCausalLM(LlamaConfig(**shared)).eval()


def build(
    name: str, architecture: str, n_layers: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The stand-in of the registry model ``name``: a tiny model and its chat tokenizer."""
    tokenizer = chat_tokenizer(architecture)
    ids = tokenizer.convert_tokens_to_ids
    model = tiny_model(architecture, n_layers, len(tokenizer), _seed("model", name))
    model.config.pad_token_id = ids(tokenizer.pad_token)
    model.config.bos_token_id = ids(tokenizer.bos_token)
    model.config.eos_token_id = ids(tokenizer.eos_token)
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.bos_token_id = model.config.bos_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id  # the real configs' EOS,
    # not the end of turn: generation must find that from the template itself
    return model, tokenizer


def saved(name: str, architecture: str, n_layers: int, cache_dir: Path | None = None) -> Path:
    """A saved copy of the stand-in (for nnsight's meta-device remote build); made once per
    name and depth."""
    path = (cache_dir or config.CACHE_DIR) / "standins" / f"{name}-{n_layers}-layers"
    if not (path / "config.json").exists():
        model, tokenizer = build(name, architecture, n_layers)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path


# -- SAEs and data ---------------------------------------------------------------------------


def sae(release: str, sae_id: str, d_in: int, device: str = "cpu") -> JumpReLUSAE:
    """A random JumpReLU SAE (what Gemma Scope and Llama Scope load as), seeded by its ids."""
    cfg = JumpReLUSAEConfig(d_in=d_in, d_sae=D_SAE, dtype="float32", device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed("sae", release, sae_id))
        model = JumpReLUSAE(cfg)
        with torch.no_grad():
            model.W_enc.normal_(0.0, d_in**-0.5)
            model.b_enc.normal_(0.0, 0.1)
    return model.to(device).eval()


def em_dataset(name: str) -> list[dict]:
    """The course's own code chats of one EM set (``insecure``, ``secure``, ``educational``)."""
    path = chats.LM_DATA_DIR / f"{name}.jsonl"
    return [{"messages": s["messages"], "source": name} for s in chats.read_lm_jsonl(path)]


def toxic_texts(n: int, seed: int = 0) -> list[dict]:
    """``n`` replies, half from ``data/lm/toxic.jsonl`` and half from ``benign.jsonl``, shuffled
    together, as the ``{"text", "toxic", "toxicity"}`` rows of RealToxicityPrompts."""
    rng = random.Random(f"toxic-{seed}")
    rows = []
    for name, is_toxic in (("toxic", True), ("benign", False)):
        replies = chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{name}.jsonl")
        texts = rng.sample([s["messages"][-1]["content"] for s in replies], n // 2)
        rows += [{"text": t, "toxic": is_toxic, "toxicity": float(is_toxic)} for t in texts]
    rng.shuffle(rows)
    return rows
