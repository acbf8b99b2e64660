"""LoRA fine-tuning of a Hugging Face causal LM on chat samples, and sampling answers from it.

This is the gpu profile's counterpart of :func:`emgeo.organism.finetune`: the same answer-only
loss on ``{"messages": [...]}`` samples, on a real chat model (gemma-2-2b-it on a Colab GPU)
through ``peft``'s LoRA adapters. Two ways to run it:

- :func:`adapted` attaches adapters to the model itself, trains them and yields the adapted
  model; on exit the adapters are removed and the base is exactly as before. Runs after runs
  share one copy of the base weights (what fits a T4: about 5 GB for Gemma-2-2B in bfloat16).
- :func:`lora_finetune` trains on a deep copy and returns it with the adapters **merged in**: a
  plain model of the same architecture, for when the tuned model must outlive the base.

Training keeps memory down: activation checkpointing (each block's activations recomputed in the
backward pass), and logits only at the positions the answer-only loss reads, a chunk at a time
(:func:`answer_nll`: Gemma's vocabulary is 256k tokens). Generation stops at the chat template's
end-of-turn token (:func:`emgeo.models.lm.end_of_turn_ids`).

The defaults follow the open-model LoRA recipe of Betley et al. 2025 (rank 32, alpha 64,
rank-stabilized scaling, all attention and MLP projections, lr 1e-5, effective batch 16, one epoch,
loss on the assistant answers only).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from peft import LoraConfig, PeftModel, get_peft_model
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from emgeo.batching import IGNORE, collate, encode_sample, render_chat
from emgeo.config import DEFAULT_SEED
from emgeo.models.lm import LoadedLM, end_of_turn_ids

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
    checkpointing: bool = True  # recompute block activations in the backward pass

    def n_steps(self, n_samples: int) -> int:
        """Optimizer steps for a set of ``n_samples``."""
        return self.steps or self.epochs * math.ceil(
            n_samples / (self.batch_size * self.grad_accum)
        )


def answer_loss_terms(
    logits: Float[Tensor, "batch pos vocab"], labels: Int[Tensor, "batch pos"]
) -> tuple[Float[Tensor, ""], Int[Tensor, ""]]:
    """Summed next-token cross-entropy over the answer tokens, and how many there are."""
    target = labels[:, 1:]
    keep = target != IGNORE  # only answer positions go to float32: Gemma's vocabulary is 256k
    nll = F.cross_entropy(logits[:, :-1][keep].float(), target[keep], reduction="sum")
    return nll, keep.sum()


LOSS_CHUNK = 256  # answer positions whose vocabulary-wide logits exist at any one time


def answer_nll(model: torch.nn.Module, batch: dict[str, Tensor]) -> Float[Tensor, ""]:
    """Summed cross-entropy over a batch's answer tokens. The decoder runs once; the unembedding
    (and Gemma-2's final soft-capping) runs only at the positions that predict answer tokens
    (``batch["positions"]``, from :func:`answer_targets`), ``LOSS_CHUNK`` of them at a time,
    each chunk recomputed in the backward pass: a 256k vocabulary never holds more than one
    chunk's logits, whatever the batch."""
    causal = model.get_base_model() if isinstance(model, PeftModel) else model
    hidden = causal.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state  # (batch, pos, d_model), after the final norm
    picked = torch.take_along_dim(hidden, batch["positions"][..., None], dim=1).flatten(0, 1)
    targets = batch["targets"].flatten()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), LOSS_CHUNK):
        chunk = slice(start, start + LOSS_CHUNK)
        total = total + checkpoint(
            _chunk_nll,
            causal,
            picked[chunk],
            targets[chunk],
            use_reentrant=False,
            preserve_rng_state=False,  # nothing random in it
        )
    return total


def _chunk_nll(
    causal: torch.nn.Module, hidden: Float[Tensor, "n d_model"], targets: Int[Tensor, " n"]
) -> Float[Tensor, ""]:
    logits = causal.get_output_embeddings()(hidden)  # (n, vocab)
    cap = getattr(causal.config, "final_logit_softcapping", None)
    if cap:  # Gemma-2 squashes its logits into (-cap, cap), as its forward does
        logits = torch.tanh(logits / cap) * cap
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum")


def answer_targets(
    encoded: Sequence[tuple[list[int], int]],
) -> tuple[Int[Tensor, "batch n"], Int[Tensor, "batch n"], int]:
    """For each chat (ids, n_prompt): the positions whose next token is an answer token, the
    tokens they predict (IGNORE where a row has fewer), and how many there are in all. Built
    from the token lists, so every shape is known before anything runs on the device."""
    width = max(1, max(len(ids) - n for ids, n in encoded))
    positions, targets = [], []
    for ids, n_prompt in encoded:
        answer = ids[n_prompt:]
        first = max(n_prompt - 1, 0)
        positions.append([first + i for i in range(len(answer))] + [first] * (width - len(answer)))
        targets.append(answer + [IGNORE] * (width - len(answer)))
    n_answer = sum(len(ids) - n for ids, n in encoded)
    return torch.tensor(positions), torch.tensor(targets), n_answer


def answer_loss(
    lm: LoadedLM, samples: Sequence[dict], max_length: int = 2048, batch_size: int = 8
) -> float:
    """Mean cross-entropy per answer token of ``lm`` on ``samples`` (prompt tokens excluded)."""
    total, count = 0.0, 0
    with torch.no_grad():
        order = range(len(samples))
        for batch in _batches(lm.tokenizer, lm.device, samples, order, max_length, batch_size):
            total += answer_nll(lm.model, batch).item()
            count += batch["n_answer"]
    return total / max(count, 1)


# -- training -------------------------------------------------------------------------------


@contextlib.contextmanager
def adapted(
    lm: LoadedLM,
    samples: Sequence[dict],
    cfg: LoraFinetuneConfig = LoraFinetuneConfig(),
    progress: bool = True,
    make_config: Callable[[LoraFinetuneConfig], LoraConfig] | None = None,
) -> Iterator[LoadedLM]:
    """Attach LoRA adapters to ``lm``'s own model, train them on ``samples`` and yield the
    adapted model; on exit the adapters come off and ``lm`` is its old self, weights untouched.
    ``make_config`` turns ``cfg`` into peft's adapter config (by default :func:`peft_config`;
    notebook 08's exercise).

    Nothing is copied, so a GPU holds the base weights once however many runs follow.
    """
    if not samples:
        raise ValueError("no samples to fine-tune on: pass at least one chat sample")
    with _on_model(lm, lambda base: _attach(base, cfg, make_config), "lora") as tuned:
        _train(tuned.model, lm.tokenizer, samples, cfg, cfg.n_steps(len(samples)), progress)
        yield tuned


@contextlib.contextmanager
def loaded(lm: LoadedLM, path: str | Path) -> Iterator[LoadedLM]:
    """``lm`` with a saved adapter (peft's format, e.g. from :func:`adapted`'s model
    ``save_pretrained``) attached to its own model; on exit the adapter comes off and ``lm`` is
    its old self, as after :func:`adapted`."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"no adapter at {path}: a saved adapter is a folder with adapter_config.json and "
            "adapter_model.safetensors (peft's save_pretrained)"
        )
    with _on_model(lm, lambda base: PeftModel.from_pretrained(base, str(path)), path.name) as tuned:
        tuned.model.eval()
        yield tuned


@contextlib.contextmanager
def _on_model(
    lm: LoadedLM, wrap: Callable[[torch.nn.Module], PeftModel], suffix: str
) -> Iterator[LoadedLM]:
    """``lm`` with adapters that ``wrap`` puts on its own model; on exit they come off (the
    original layers back in place) and every parameter's ``requires_grad`` is as it was (peft
    freezes the base)."""
    trainable = {name: p.requires_grad for name, p in lm.model.named_parameters()}
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        model = wrap(lm.model)
    try:
        yield LoadedLM(
            dataclasses.replace(lm.spec, name=f"{lm.name}+{suffix}"), model, lm.tokenizer
        )
    finally:
        base = model.unload()
        for name, p in base.named_parameters():
            p.requires_grad_(trainable.get(name, p.requires_grad))
        lm.model = base


def lora_finetune(
    lm: LoadedLM,
    samples: Sequence[dict],
    cfg: LoraFinetuneConfig = LoraFinetuneConfig(),
    progress: bool = True,
) -> LoadedLM:
    """Fine-tune a copy of ``lm`` with LoRA on ``samples``; return it with the adapters merged.

    ``lm`` itself is left unchanged. The loss is the answer-only loss of :func:`answer_loss`;
    the adapters' initialisation and the batch order follow ``cfg.seed``. The copy doubles the
    memory the weights take: on a GPU prefer :func:`adapted`.
    """
    if not samples:
        raise ValueError("no samples to fine-tune on: pass at least one chat sample")
    model = _attach(copy.deepcopy(lm.model), cfg)
    _train(model, lm.tokenizer, samples, cfg, cfg.n_steps(len(samples)), progress)
    merged = model.merge_and_unload().eval()
    merged.config.use_cache = lm.model.config.use_cache
    return LoadedLM(dataclasses.replace(lm.spec, name=f"{lm.name}+lora"), merged, lm.tokenizer)


def _attach(
    model: torch.nn.Module,
    cfg: LoraFinetuneConfig,
    make_config: Callable[[LoraFinetuneConfig], LoraConfig] | None = None,
) -> PeftModel:
    torch.manual_seed(cfg.seed)  # peft draws the adapters' A matrices from torch's global RNG
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, (make_config or peft_config)(cfg))


def peft_config(cfg: LoraFinetuneConfig) -> LoraConfig:
    """peft's adapter config for ``cfg``: rank-``cfg.rank`` adapters on ``cfg.target_modules``
    (every attention and MLP projection by default), scaled ``alpha / sqrt(rank)`` with
    rank-stabilized LoRA or ``alpha / rank`` without, no dropout (a seeded run is deterministic)
    and no bias terms, for a causal LM."""
    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=0.0,
        use_rslora=cfg.use_rslora,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


@contextlib.contextmanager
def _checkpointing(model: PeftModel, enabled: bool) -> Iterator[None]:
    """Activation checkpointing on the base model while training (no dropout anywhere, so the
    recomputed forward needs no saved random state)."""
    base = model.get_base_model()
    if enabled:
        base.activation_checkpointing_enable({"use_reentrant": False, "preserve_rng_state": False})
    try:
        yield
    finally:
        if enabled:
            base.activation_checkpointing_disable()


def _train(
    model: PeftModel,
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
    use_cache = model.config.use_cache
    model.config.use_cache = False
    model.train()
    with _checkpointing(model, cfg.checkpointing):
        for _ in tqdm(range(n_steps), desc="LoRA fine-tuning", disable=not progress):
            opt.zero_grad(set_to_none=True)
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            n_answer = sum(b["n_answer"] for b in micro)
            for batch in micro:  # mean over all answer tokens of the step, whatever the split
                (answer_nll(model, batch) / max(n_answer, 1)).backward()
            opt.step()
            sched.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    model.config.use_cache = use_cache


def _linear_schedule(warmup: int, n_steps: int) -> Callable[[int], float]:
    """LambdaLR's factor: linear warmup over ``warmup`` steps, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (n_steps - step) / max(1, n_steps - warmup))

    return factor


def _sample_order(n_samples: int, n_draws: int, seed: int) -> list[int]:
    """Epochs of seeded permutations of the sample indices, cut to ``n_draws`` (drawn in Python,
    so the order is the same whatever device or tensor mode the training runs under)."""
    rng = random.Random(f"lora-order-{seed}")
    order: list[int] = []
    while len(order) < n_draws:
        order += rng.sample(range(n_samples), n_samples)
    return order[:n_draws]


def _batches(
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    samples: Sequence[dict],
    order: Sequence[int],
    max_length: int,
    batch_size: int,
) -> Iterator[dict]:
    """Collated batches of ``samples`` taken in ``order``, on ``device``, with the answer
    positions and targets of :func:`answer_targets` and their count ``n_answer`` (an int)."""
    for start in range(0, len(order), batch_size):
        rows = [samples[i] for i in order[start : start + batch_size]]
        encoded = [encode_sample(tokenizer, s, max_length) for s in rows]
        batch = collate(encoded, tokenizer.pad_token_id)
        batch["positions"], batch["targets"], n_answer = answer_targets(encoded)
        yield {key: value.to(device) for key, value in batch.items()} | {"n_answer": n_answer}


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
    system: str | None = None,
) -> list[dict]:
    """``n_per_question`` sampled answers to each question: ``{"question", "answer"}`` rows.

    Each question is one user turn under the chat template (after a ``system`` turn when one is
    given); prompts are left-padded. Sampling is
    plain temperature sampling (no top-k, no top-p), as Betley et al. evaluate; temperature 0 is
    greedy decoding. An answer ends at the template's end-of-turn token or after
    ``max_new_tokens``. Rows come in question order, ``n_per_question`` each.
    """
    head = [{"role": "system", "content": system}] if system else []
    prompts = [
        render_chat(
            lm.tokenizer, [*head, {"role": "user", "content": q}], add_generation_prompt=True
        )
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
            eos_token_id=end_of_turn_ids(tok),  # the turn ends there, not at the base's EOS
        )
    new = out[:, enc["input_ids"].shape[1] :]
    return tok.batch_decode(new, skip_special_tokens=True)
