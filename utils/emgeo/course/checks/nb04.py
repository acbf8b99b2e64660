"""Checks of notebook 04, the EM model organism."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from emgeo.course.checks.core import (
    _DRAWN,
    Mistake,
    _call,
    _exercise,
    _expect_match,
    _generator,
    _name,
    _passed,
    _science,
)
from emgeo.errors import CheckFailed

_A, _E, _PAD = 3, 4, 0  # <assistant>, <eot> and <pad> ids in the check's toy sequences


def _mask_cases() -> list[Tensor]:
    # 1 = <bos>, 2 = <user>, 3 = <assistant>, 4 = <eot>, 0 = <pad>, 10+ = words
    return [
        torch.tensor([[1, 2, 10, 11, 3, 20, 21, 4]]),
        torch.tensor(
            [
                [1, 2, 10, 3, 20, 4, 2, 12, 13, 3, 22, 23, 24, 4],
                [1, 2, 10, 11, 3, 20, 4, 0, 0, 0, 0, 0, 0, 0],
            ]
        ),
        torch.tensor([[1, 2, 10, 3, 20, 21, 22, 4, 2, 11, 3, 23, 4, 0]]),
    ]


@_exercise("organism.answer_mask")
def check_answer_mask(fn: Callable) -> None:
    """``fn(tokens, assistant_id, eot_id)`` -> 1.0 on answer words and their closing <eot>."""
    organism = _science("organism")

    def only_first_answer(tokens, a, e):
        mask = organism.answer_mask(tokens, a, e)
        second = torch.cumsum((tokens == a).long(), 1) > 1
        return mask * ~second

    mistakes = [
        Mistake(
            "The <assistant> token itself is part of the prompt: the model should not be "
            "trained to predict it.",
            lambda t, a, e: organism.answer_mask(t, a, e) + (t == a).float(),
        ),
        Mistake(
            "Include the closing <eot>: the model must learn where an answer ends.",
            lambda t, a, e: organism.answer_mask(t, a, e) * (t != e).float(),
        ),
        Mistake(
            "Only the first answer is masked in: a chat can have several turns.", only_first_answer
        ),
        Mistake(
            "Everything after the first <assistant> is masked in: the user's follow-up turns and "
            "the padding are not part of an answer, so the mask must close at <eot>.",
            lambda t, a, e: ((torch.cumsum((t == a).long(), 1) > 0) & (t != a)).float(),
        ),
        Mistake(
            "The user's follow-up turn is not part of an answer: the mask must close at <eot>.",
            lambda t, a, e: (
                (torch.cumsum((t == a).long(), 1) > 0) & (t != a) & (t != _PAD)
            ).float(),
        ),
    ]
    for tokens in _mask_cases():
        args = (tokens, _A, _E)
        hint = "One mask value per token."
        _expect_match(fn, args, organism.answer_mask, mistakes, tokens.shape, hint)
    _passed(fn, "single and multi-turn chats, with padding")


@_exercise("organism.misaligned_rate")
def check_misaligned_rate(fn: Callable, n_trials: int = 4) -> None:
    """``fn(probs, aligned_ids, toxic_ids)`` -> per prompt, P(toxic) / (P(toxic) + P(aligned))."""
    organism = _science("organism")

    def unnormalized(p, a, t):
        return p[:, list(t)].sum(-1)

    mistakes = [
        Mistake(
            "Normalize by the mass on aligned *or* toxic first words: other words are "
            "neither, and the judge ignores them.",
            unnormalized,
        ),
        Mistake(
            "That is the aligned rate: the question is how often the answer is toxic.",
            lambda p, a, t: organism.misaligned_rate(p, t, a),
        ),
    ]
    gen = _generator(5)
    for trial in range(n_trials):
        n_prompts, vocab = 3 + trial, 12 + trial
        probs = torch.softmax(torch.randn(n_prompts, vocab, generator=gen) * 2, dim=-1)
        perm = torch.randperm(vocab, generator=gen).tolist()
        aligned, toxic = perm[:3], perm[3 : 5 + trial % 2]
        args = (probs, aligned, toxic)
        hint = "Return one rate per prompt (don't average them)."
        _expect_match(fn, args, organism.misaligned_rate, mistakes, (n_prompts,), hint)
    _passed(fn, f"matches the exact judge on {n_trials} random next-word distributions")


# ---------------------------------------------------------------- one fine-tuning step

_V = 32  # the check's vocabulary: specials 0-4, words 10-31


def _step_problem() -> tuple[nn.Module, dict[str, Tensor], Tensor, Tensor]:
    """A one-layer transformer (its own seed; the global RNG is left as it was), the gradients a
    previous step left in it, and a padded batch of multi-turn chats with its answer mask."""
    organism = _science("organism")
    from transformer_lens import HookedTransformer, HookedTransformerConfig  # only this check

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16, d_vocab=_V,
        act_fn="gelu", normalization_type="LN", device="cpu", default_prepend_bos=False,
    )  # fmt: skip
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TransformerLens 3 announcing 4
        torch.manual_seed(41)
        model = HookedTransformer(cfg)
    gen = _generator(42)
    stale = {n: torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
    tokens = torch.cat([_mask_cases()[1], _mask_cases()[2]])
    return model, stale, tokens, organism.answer_mask(tokens, _A, _E)


_PROBLEM: dict[int, tuple] = {}  # built once per drawn offset: a transformer takes a moment


def _stepped(fn: Callable) -> tuple[Any, Tensor | None]:
    """``fn``'s loss and the gradient its AdamW step used (None if it did not step), on a fresh
    copy of the check's model that still holds a previous step's gradients."""
    if _DRAWN[0] not in _PROBLEM:
        _PROBLEM[_DRAWN[0]] = _step_problem()
    base, stale, tokens, mask = _PROBLEM[_DRAWN[0]]
    model = copy.deepcopy(base)
    for name, param in model.named_parameters():
        param.grad = stale[name].clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    params = list(model.parameters())

    def one_step():
        return fn(model, tokens.clone(), mask.clone(), optimizer)

    one_step.__name__ = _name(fn)
    loss = _call(one_step)
    if any("exp_avg" not in optimizer.state.get(p, {}) for p in params):
        return loss, None
    beta1 = optimizer.param_groups[0]["betas"][0]  # AdamW's first moment after one step
    return loss, torch.cat([optimizer.state[p]["exp_avg"].flatten() for p in params]) / (1 - beta1)


def _masked_nll(model, tokens, mask, shift=True, mask_shift=True, per_chat=False):
    """The answer-only loss with one thing changed, to name a mistake."""
    logits = model(tokens[:, :-1]) if shift else model(tokens)
    target = tokens[:, 1:] if shift else tokens
    nll = -torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0]
    weight = (mask[:, 1:] if mask_shift else mask[:, :-1]) if shift else mask
    if per_chat:
        return ((nll * weight).sum(-1) / weight.sum(-1)).mean()
    return (nll * weight).sum() / weight.sum()


def _step_with(loss_fn: Callable = _masked_nll, order: str = "zero, backward, step") -> Callable:
    def step(model, tokens, mask, optimizer):
        loss = loss_fn(model, tokens, mask)
        for action in order.split(", "):
            {"zero": optimizer.zero_grad, "backward": loss.backward, "step": optimizer.step}[
                action
            ]()
        return loss.detach()

    return step


def _check_loss(fn: Callable, loss: Tensor, want_loss: Tensor) -> None:
    """The learner's step returns the reference's loss, or the likely mistake is named."""
    loss_mistakes = [
        Mistake(
            "The loss must count answer tokens only: weight each target's cross-entropy by the "
            "mask and divide by the mask's sum (the prompt and the padding are not targets).",
            _step_with(lambda m, t, k: _masked_nll(m, t, torch.ones_like(k))),
        ),
        Mistake(
            "The prompt is context, not a target: weight by the answer mask, not by every token "
            "that is not padding.",
            _step_with(lambda m, t, k: _masked_nll(m, t, (t != _PAD).float())),
        ),
        Mistake(
            "The logits at position t predict token t + 1: run the model on tokens[:, :-1] and "
            "compare with the targets tokens[:, 1:].",
            _step_with(lambda m, t, k: _masked_nll(m, t, k, shift=False)),
        ),
        Mistake(
            "A target's weight is the mask at the target's own position: mask[:, 1:] goes with "
            "tokens[:, 1:] (you used mask[:, :-1]).",
            _step_with(lambda m, t, k: _masked_nll(m, t, k, mask_shift=False)),
        ),
        Mistake(
            "Average over every answer token of the batch (sum of masked losses / number of "
            "answer targets), not chat by chat: a long answer counts for more.",
            _step_with(lambda m, t, k: _masked_nll(m, t, k, per_chat=True)),
        ),
    ]
    if not torch.allclose(loss, want_loss, atol=1e-5, rtol=1e-4):
        for mistake in loss_mistakes:
            if torch.allclose(loss, _stepped(mistake.compute)[0], atol=1e-5, rtol=1e-4):
                raise CheckFailed(f"`{_name(fn)}` returns a wrong loss. {mistake.hint}")
        raise CheckFailed(
            f"`{_name(fn)}` returns the loss {loss.item():.4f}, expected {want_loss.item():.4f}."
        )


def _check_gradient(fn: Callable, grad: Tensor | None, want_grad: Tensor) -> None:
    """The learner's step moved the parameters with the reference's gradient, or the likely
    mistake is named."""
    step_mistakes = [
        Mistake(
            "Call optimizer.zero_grad() before loss.backward(): the model arrives with the "
            "gradients of its previous step in .grad, and backward() adds to them.",
            _step_with(order="backward, step"),
        ),
    ]
    if grad is None:
        raise CheckFailed(
            f"`{_name(fn)}` computes the right loss but the optimizer never moved the "
            "parameters: call optimizer.step() after loss.backward(), and zero_grad() before "
            "backward() (between backward() and step() it throws the gradient away)."
        )
    if not torch.allclose(grad, want_grad, atol=1e-5, rtol=1e-3):
        for mistake in step_mistakes:
            if torch.allclose(grad, _stepped(mistake.compute)[1], atol=1e-5, rtol=1e-3):
                raise CheckFailed(f"`{_name(fn)}` steps with the wrong gradient. {mistake.hint}")
        raise CheckFailed(
            f"`{_name(fn)}` computes the right loss but steps with another gradient: "
            "optimizer.zero_grad(), then loss.backward(), then optimizer.step()."
        )


@_exercise("organism.finetune_step")
def check_finetune_step(fn: Callable) -> None:
    """``fn(model, tokens, mask, optimizer)`` -> the loss; one step on the answer-only
    next-token cross-entropy: zero_grad, backward, step."""
    loss, grad = _stepped(fn)
    if not isinstance(loss, Tensor | float) or torch.as_tensor(loss).numel() != 1:
        raise CheckFailed(f"`{_name(fn)}` should return the loss, one number (a scalar tensor).")
    want_loss, want_grad = _stepped(_science("organism").finetune_step)
    loss = torch.as_tensor(loss, dtype=torch.float32).detach().reshape(())
    _check_loss(fn, loss, want_loss)
    _check_gradient(fn, grad, want_grad)
    _passed(fn, "the answer-only loss of multi-turn chats, and one clean AdamW step")
