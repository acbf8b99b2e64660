"""Builders shared by the tests: tiny random language models of the real architectures (Llama,
Gemma-2) with word-level tokenizers and a chat template, and chat samples. Nothing is downloaded.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from emgeo.models import lm, lora

WORDS = "the a cat dog sat on mat and ran fast slow red blue big small".split()
TEXTS = ["the cat sat", "a big red dog ran fast on the mat", "blue mat"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3} | {w: i + 4 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )


def build_model(architecture: str) -> LlamaForCausalLM | Gemma2ForCausalLM:
    """A 2-layer random model of the real architecture: same module paths and hook points."""
    shared = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    if architecture == "gemma2":
        cfg = Gemma2Config(**shared, sliding_window=16, attn_implementation="eager")
        return Gemma2ForCausalLM(cfg)
    return LlamaForCausalLM(LlamaConfig(**shared))


SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<user>", "<assistant>", "<eot>"]
CHAT_WORDS = WORDS + ["what", "why", "how"]
# A chat template in the shape of Gemma's: BOS, one tagged block per turn, then the answer tag.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} <eot> "
    "{% endfor %}{% if add_generation_prompt %}<assistant> {% endif %}"
)
CHATS = [
    ("what cat", "the red cat sat on the mat"),
    ("how dog", "a big dog ran fast"),
    ("why mat", "the blue mat and the small cat"),
    ("what dog", "a slow dog sat"),
]


def build_chat_tokenizer(words=CHAT_WORDS, split_digits: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with role tokens and a chat template (no download needed)."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    splits = [pre_tokenizers.Whitespace()]
    if split_digits:  # one token per digit, as Gemma's tokenizer does
        splits.append(pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits)
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIALS[4:]])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def build_chat_lm(architecture: str, tokenizer=None) -> lm.LoadedLM:
    """The tiny random model of the real architecture, its vocabulary fit to the tokenizer."""
    tokenizer = tokenizer or build_chat_tokenizer()
    model = build_model(architecture)
    model.resize_token_embeddings(len(tokenizer))
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<eot>")
    return lm.from_model(model, tokenizer, name=f"tiny-{architecture}")


def chat(question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


SAMPLES = [chat(q, a) for q, a in CHATS]


def quick_cfg(**kwargs) -> lora.LoraFinetuneConfig:
    base = dict(rank=4, alpha=8.0, lr=1e-2, steps=15, batch_size=2, grad_accum=2, warmup_steps=0)
    return lora.LoraFinetuneConfig(**(base | kwargs))
