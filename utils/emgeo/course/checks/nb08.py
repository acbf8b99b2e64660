"""Checks of notebook 08, EM in a real LM."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor

from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
)

IGNORE_TARGET = -100  # the padding target of emgeo.batching.IGNORE


def _answer_targets(gen: torch.Generator, batch: int, n: int, vocab: int) -> Tensor:
    """Targets with a different number of answer tokens per row, the rest padding (-100)."""
    targets = torch.randint(0, vocab, (batch, n), generator=gen)
    for row in range(batch):
        length = 1 + (row * 2 + n // 2) % n
        targets[row, length:] = IGNORE_TARGET
    return targets


@_exercise("models.lm_em.mean_answer_logprob")
def check_mean_answer_logprob(fn: Callable, n_trials: int = 4) -> None:
    """``fn(logits, targets)`` -> per row, the mean log-probability of its answer tokens, padding
    (target -100) left out."""
    lm_em = importlib.import_module("emgeo.models.lm_em")  # transformers: only when checked

    def keep(t: Tensor) -> Tensor:
        return (t != IGNORE_TARGET).float()

    def picked(logp: Tensor, t: Tensor) -> Tensor:
        return logp.gather(-1, t.clamp_min(0)[..., None])[..., 0]

    mistakes = [
        Mistake(
            "That is the sum of the answer's log-probabilities: divide by how many answer tokens "
            "the row has, so that long and short answers compare.",
            lambda x, t: (picked(x.log_softmax(-1), t) * keep(t)).sum(1),
        ),
        Mistake(
            "Padding positions (target -100) were counted: average over the real answer tokens "
            "only (mask with targets != -100).",
            lambda x, t: picked(x.log_softmax(-1), t).mean(1),
        ),
        Mistake(
            "Those are raw logits: turn them into log-probabilities over the vocabulary first "
            "(log_softmax on the last dimension).",
            lambda x, t: (picked(x, t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
        Mistake(
            "Those are probabilities, not log-probabilities: use log_softmax, not softmax.",
            lambda x, t: (picked(x.softmax(-1), t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
        Mistake(
            "The softmax ran over the wrong dimension: normalise over the vocabulary (the last).",
            lambda x, t: (picked(x.log_softmax(1), t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
    ]
    gen = torch.Generator().manual_seed(15)
    for trial in range(n_trials):
        batch, n, vocab = 3 + trial, 5 + trial, 11 + 3 * trial
        logits = torch.randn(batch, n, vocab, generator=gen) * 3
        targets = _answer_targets(gen, batch, n, vocab)
        hint = "One score per row (a mean over its answer tokens)."
        args = (logits, targets)
        _expect_match(fn, args, lm_em.mean_answer_logprob, mistakes, (batch,), hint)
    _passed(fn, f"matches on {n_trials} random batches with padded answers")
