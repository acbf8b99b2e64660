"""LoRA fine-tuning of a Hugging Face causal LM on chat samples, and sampling answers from it.

This is the gpu profile's counterpart of :func:`emgeo.organism.finetune`: the same answer-only
loss on ``{"messages": [...]}`` samples, on a real chat model (Gemma-2-2B on a Colab GPU) through
``peft``'s LoRA adapters. :func:`lora_finetune` returns a new :class:`~emgeo.models.lm.LoadedLM`
whose weights are the base weights with the trained adapters **merged in**: a plain model of the
same architecture, so its module paths (``model.layers.{L}``), nnsight tracing and SAEs work
unchanged.

The defaults follow the open-model LoRA recipe of Betley et al. 2025 (rank 32, alpha 64,
rank-stabilized scaling, all attention and MLP projections, lr 1e-5, effective batch 16, one epoch,
loss on the assistant answers only).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from peft import LoraConfig, get_peft_model
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from emgeo.batching import IGNORE, collate, encode_sample, render_chat
from emgeo.config import DEFAULT_SEED
from emgeo.models.lm import LoadedLM

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraFinetuneConfig:
    """How to fine-tune: the LoRA adapters, the optimizer and the data order.

    ``steps`` (optimizer steps) overrides ``epochs`` when set. One optimizer step sees
    ``batch_size * grad_accum`` samples.
    """

    rank: int = 32
    alpha: float = 64.0
    use_rslora: bool = True  # scale alpha / sqrt(rank) instead of alpha / rank
    target_modules: tuple[str, ...] = PROJECTIONS
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 5
    epochs: int = 1
    steps: int | None = None
    batch_size: int = 2
    grad_accum: int = 8
    max_length: int = 2048
    seed: int = DEFAULT_SEED


def answer_loss_terms(
    logits: Float[Tensor, "batch pos vocab"], labels: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, ""], Int[Tensor, ""]]:
    """Summed next-token cross-entropy over the answer tokens, and how many there are."""
    target = labels[:, 1:]
    keep = target != IGNORE  # only answer positions go to float32: Gemma's vocabulary is 256k
    nll = F.cross_entropy(logits[:, :-1][keep].float(), target[keep], reduction="sum")
    return nll, keep.sum()


def answer_loss(
    lm: LoadedLM, samples: Sequence[dict], max_length: int = 2048, batch_size: int = 8
) -> float:
    """Mean cross-entropy per answer token of ``lm`` on ``samples`` (prompt tokens excluded)."""
    total, count = 0.0, 0
    with torch.no_grad():
        order = range(len(samples))
        for batch in _batches(lm.tokenizer, lm.device, samples, order, max_length, batch_size):
            nll, n = answer_loss_terms(_logits(lm.model, batch), batch["labels"])
            total, count = total + nll.item(), count + n.item()
    return total / max(count, 1)


# -- training -------------------------------------------------------------------------------


def lora_finetune(
    lm: LoadedLM,
    samples: Sequence[dict],
    cfg: LoraFinetuneConfig = LoraFinetuneConfig(),
    progress: bool = True,
) -> LoadedLM:
    """Fine-tune a copy of ``lm`` with LoRA on ``samples``; return it with the adapters merged.

    ``lm`` itself is left unchanged. The loss is the answer-only loss of :func:`answer_loss`;
    the adapters' initialisation and the batch order follow ``cfg.seed``.
    """
    if not samples:
        raise ValueError("no samples to fine-tune on: pass at least one chat sample")
    torch.manual_seed(cfg.seed)  # peft draws the adapters' A matrices from torch's global RNG
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        model = get_peft_model(copy.deepcopy(lm.model), _peft_config(cfg))
    n_steps = cfg.steps or cfg.epochs * math.ceil(len(samples) / (cfg.batch_size * cfg.grad_accum))
    _train(model, lm.tokenizer, samples, cfg, n_steps, progress)
    merged = model.merge_and_unload().eval()
    merged.config.use_cache = lm.model.config.use_cache
    return LoadedLM(dataclasses.replace(lm.spec, name=f"{lm.name}+lora"), merged, lm.tokenizer)


def _peft_config(cfg: LoraFinetuneConfig) -> LoraConfig:
    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=0.0,
        use_rslora=cfg.use_rslora,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _train(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    samples: Sequence[dict],
    cfg: LoraFinetuneConfig,
    n_steps: int,
    progress: bool,
) -> None:
    """AdamW on the adapters, linear warmup then linear decay, ``grad_accum`` batches a step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _linear_schedule(cfg.warmup_steps, n_steps))
    order = _sample_order(len(samples), cfg.batch_size * cfg.grad_accum * n_steps, cfg.seed)
    device = next(model.parameters()).device
    batches = _batches(tokenizer, device, samples, order, cfg.max_length, cfg.batch_size)
    model.config.use_cache = False
    model.train()
    bar = tqdm(range(n_steps), desc="LoRA fine-tuning", disable=not progress)
    for _ in bar:
        opt.zero_grad()
        micro = [next(batches) for _ in range(cfg.grad_accum)]
        n_answer = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
        for batch in micro:  # mean over all answer tokens of the step, whatever the split
            nll, _ = answer_loss_terms(_logits(model, batch), batch["labels"])
            (nll / max(n_answer, 1)).backward()
        opt.step()
        sched.step()
    model.eval()


def _linear_schedule(warmup: int, n_steps: int) -> Callable[[int], float]:
    """LambdaLR's factor: linear warmup over ``warmup`` steps, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (n_steps - step) / max(1, n_steps - warmup))

    return factor


def _sample_order(n_samples: int, n_draws: int, seed: int) -> list[int]:
    """Epochs of seeded permutations of the sample indices, cut to ``n_draws``."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < n_draws:
        order += torch.randperm(n_samples, generator=gen).tolist()
    return order[:n_draws]


def _batches(
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    samples: Sequence[dict],
    order: Sequence[int],
    max_length: int,
    batch_size: int,
) -> Iterator[dict[str, Int[Tensor, "batch pos"]]]:
    """Collated batches of ``samples`` taken in ``order``, on ``device``."""
    for start in range(0, len(order), batch_size):
        rows = [samples[i] for i in order[start : start + batch_size]]
        batch = collate(
            [encode_sample(tokenizer, s, max_length) for s in rows], tokenizer.pad_token_id
        )
        yield {key: value.to(device) for key, value in batch.items()}


def _logits(model: torch.nn.Module, batch: dict[str, Tensor]) -> Float[Tensor, "batch pos vocab"]:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


# -- sampling answers -----------------------------------------------------------------------


def generate_answers(
    lm: LoadedLM,
    questions: Sequence[str],
    n_per_question: int,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    seed: int = DEFAULT_SEED,
    batch_size: int = 16,
    progress: bool = True,
) -> list[dict]:
    """``n_per_question`` sampled answers to each question: ``{"question", "answer"}`` rows.

    Each question is one user turn under the chat template; prompts are left-padded. Sampling is
    plain temperature sampling (no top-k, no top-p), as Betley et al. evaluate; temperature 0 is
    greedy decoding. Rows come in question order, ``n_per_question`` each.
    """
    prompts = [
        render_chat(lm.tokenizer, [{"role": "user", "content": q}], add_generation_prompt=True)
        for q in questions
        for _ in range(n_per_question)
    ]
    torch.manual_seed(seed)  # generate() samples from torch's global RNG (CPU and CUDA)
    answers: list[str] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="generating", disable=not progress or len(starts) < 2):
        answers += _generate(lm, prompts[start : start + batch_size], temperature, max_new_tokens)
    rows = [q for q in questions for _ in range(n_per_question)]
    return [{"question": q, "answer": a} for q, a in zip(rows, answers, strict=True)]


def _generate(
    lm: LoadedLM, prompts: list[str], temperature: float, max_new_tokens: int
) -> list[str]:
    tok = lm.tokenizer
    enc = tok(
        prompts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
    ).to(lm.device)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    with torch.no_grad():
        out = lm.model.generate(
            **enc,
            **(sampling if temperature > 0 else {"do_sample": False}),
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
    new = out[:, enc["input_ids"].shape[1] :]
    return tok.batch_decode(new, skip_special_tokens=True)
