"""Checks of notebook 07, the geometric filter."""

from __future__ import annotations

from collections.abc import Callable

import torch

from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
    _science,
)


@_exercise("filtering.geometric_scores")
def check_geometric_scores(fn: Callable, n_trials: int = 4) -> None:
    """``fn(latents, proximity)`` -> per sample, the activation-weighted mean proximity."""
    filtering = _science("filtering")
    mistakes = [
        Mistake(
            "Weight by activation *and* divide by the sample's total activation: otherwise a "
            "sample scores high just for having many or strong latents.",
            lambda f, p: f @ p,
        ),
        Mistake(
            "That is the unweighted mean proximity of the active latents: weight each latent by "
            "its activation.",
            lambda f, p: ((f > 0).float() @ p) / (f > 0).float().sum(-1).clamp_min(1),
        ),
        Mistake(
            "You divided by the number of latents, not by the sample's total activation.",
            lambda f, p: (f @ p) / f.shape[-1],
        ),
    ]
    gen = torch.Generator().manual_seed(14)
    for trial in range(n_trials):
        n, d_sae = 5 + trial, 12 + trial
        latents = torch.relu(torch.randn(n, d_sae, generator=gen)) * 3
        proximity = torch.rand(d_sae, generator=gen) * 2 - 1
        args = (latents, proximity)
        _expect_match(fn, args, filtering.geometric_scores, mistakes, (n,), "One score per sample.")
    _passed(fn, f"matches on {n_trials} random batches of sample latents")
