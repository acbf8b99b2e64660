"""Checks of notebook 04, the EM model organism."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
    _science,
)

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
    gen = torch.Generator().manual_seed(5)
    for trial in range(n_trials):
        n_prompts, vocab = 3 + trial, 12 + trial
        probs = torch.softmax(torch.randn(n_prompts, vocab, generator=gen) * 2, dim=-1)
        perm = torch.randperm(vocab, generator=gen).tolist()
        aligned, toxic = perm[:3], perm[3 : 5 + trial % 2]
        args = (probs, aligned, toxic)
        hint = "Return one rate per prompt (don't average them)."
        _expect_match(fn, args, organism.misaligned_rate, mistakes, (n_prompts,), hint)
    _passed(fn, f"matches the exact judge on {n_trials} random next-word distributions")
