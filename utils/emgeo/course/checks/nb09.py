"""Checks of notebook 09, auditing a dataset."""

from __future__ import annotations

from collections.abc import Callable

import torch

from emgeo import stats
from emgeo.course.checks.core import Mistake, _call, _exercise, _generator, _name, _passed
from emgeo.errors import CheckFailed


def _auroc_ranked_naively(scores, labels):
    """Ranks by position in sorted order: ties broken, not counted one half."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = float(rank)
    pos = [r for r, y in zip(ranks, labels, strict=True) if y]
    n_pos, n_neg = len(pos), len(labels) - len(pos)
    return (sum(pos) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _accuracy_at_median(scores, labels):
    cut = sorted(scores)[len(scores) // 2]
    return sum((s >= cut) == y for s, y in zip(scores, labels, strict=True)) / len(scores)


@_exercise("stats.auroc")
def check_auroc(fn: Callable, n_trials: int = 6) -> None:
    """``fn(scores, labels)`` -> the chance a random positive scores above a random negative,
    ties counting one half (a float)."""
    mistakes = [
        Mistake(
            "That is 1 - AUROC: the positives should be the samples with the *higher* scores "
            "(count pairs where the positive scores above the negative).",
            lambda s, y: 1.0 - stats.auroc(s, y),
        ),
        Mistake(
            "Ties look broken by position instead of counted one half: give tied scores their "
            "average rank, or count a tied pair as 0.5.",
            _auroc_ranked_naively,
        ),
        Mistake(
            "That looks like an accuracy at a threshold, not an area under the ROC curve: "
            "compare every positive with every negative.",
            _accuracy_at_median,
        ),
    ]
    gen = _generator(9)
    for trial in range(n_trials):
        n = 12 + 5 * trial
        labels = [bool(v) for v in (torch.rand(n, generator=gen) < 0.4).tolist()]
        labels[0], labels[1] = True, False  # both classes present
        if trial % 2:  # coarse scores: many ties, as counts and keyword scores have
            scores = [float(v) for v in torch.randint(0, 4, (n,), generator=gen).tolist()]
        else:
            scores = [
                float(v) for v in (torch.randn(n, generator=gen) + torch.tensor(labels) * 0.8)
            ]
        out = _call(fn, scores, labels)
        if hasattr(out, "item"):
            out = out.item()
        if not isinstance(out, int | float):
            raise CheckFailed(f"`{_name(fn)}` should return a number, got {type(out).__name__}.")
        expected = stats.auroc(scores, labels)
        if abs(out - expected) <= 1e-6:
            continue
        for mistake in mistakes:
            if abs(out - mistake.compute(scores, labels)) <= 1e-6:
                raise CheckFailed(f"`{_name(fn)}` gives wrong values. {mistake.hint}")
        raise CheckFailed(
            f"`{_name(fn)}` gives {out:.4f} where the AUROC is {expected:.4f} "
            f"(largest error {abs(out - expected):.3g})."
        )
    _passed(fn, f"matches on {n_trials} random score sets, with and without ties")
