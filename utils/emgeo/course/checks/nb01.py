"""Checks of notebook 01, toy superposition."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import toy
from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_match,
    _expect_shape,
    _name,
    _passed,
)
from emgeo.errors import CheckFailed


@_exercise("toy.generate_batch")
def check_generate_batch(fn: Callable, n_batch: int = 20_000) -> None:
    """``fn(n_batch, feature_probability, n_features, generator)`` -> (batch, inst, feats)."""
    probability = torch.tensor([1.0, 0.5, 0.1])
    x = _call(fn, n_batch, probability, 4, torch.Generator().manual_seed(0))
    _expect_shape(x, (n_batch, 3, 4), fn, "Dimensions are (batch, instance, feature).")
    if x.min() < 0 or x.max() > 1:
        raise CheckFailed(f"`{_name(fn)}` gives values outside [0, 1]: use torch.rand, not randn.")
    active = (x != 0).float()
    rate = active.mean((0, 2))
    if torch.allclose(rate, 1 - probability, atol=0.02) and not torch.allclose(rate, probability):
        raise CheckFailed(
            "Features are active with probability 1 - feature_probability: a feature is *on* "
            "with probability feature_probability (= 1 - S), so keep it where rand < p."
        )
    if not torch.allclose(rate, probability, atol=0.02):
        raise CheckFailed(
            f"Active fractions per instance are {rate.tolist()}, expected {probability.tolist()}."
        )
    mean_active = x[:, 1][x[:, 1] != 0].mean().item()
    if abs(mean_active - 0.5) > 0.02:
        raise CheckFailed(
            f"Active features average {mean_active:.3f}, expected 0.5: an active feature's value "
            "is uniform on [0, 1], drawn independently of whether it is active."
        )
    co_active = (active[:, 1, 0] * active[:, 1, 1]).mean().item()
    if abs(co_active - 0.25) > 0.02:
        raise CheckFailed(
            "Features of one instance switch on together: draw an independent on/off for every "
            "(batch, instance, feature) entry."
        )
    again = _call(fn, n_batch, probability, 4, torch.Generator().manual_seed(0))
    if not torch.equal(x, again):
        raise CheckFailed(
            "Two calls with identically seeded generators differ: pass `generator=generator` to "
            "every torch.rand call, so runs are reproducible."
        )
    _passed(fn, "shape, value range, sparsity per instance, uniform values, independence, seeding")


def _random_toy(gen: torch.Generator, n_inst: int, d: int, f: int) -> tuple[Tensor, ...]:
    W = torch.randn(n_inst, d, f, generator=gen)
    b = torch.randn(n_inst, f, generator=gen) * 0.5
    x = toy.generate_batch(7, torch.full((n_inst,), 0.6), f, gen)
    return W, b, x


@_exercise("toy.toy_forward")
def check_toy_forward(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W, b, x)`` with W (inst, d_hidden, feats), b (inst, feats), x (batch, inst, feats)."""
    mistakes = [
        Mistake(
            "Did you forget the ReLU?",
            lambda W, b, x: torch.einsum("idf,bid->bif", W, torch.einsum("idf,bif->bid", W, x)) + b,
        ),
        Mistake("Did you forget the bias b?", lambda W, b, x: toy.toy_forward(W, 0 * b, x)),
        Mistake(
            "The ReLU comes after adding the bias: ReLU(W^T W x + b), not ReLU(W^T W x) + b.",
            lambda W, b, x: toy.toy_forward(W, 0 * b, x) + b,
        ),
    ]
    gen = torch.Generator().manual_seed(1)
    for trial in range(n_trials):
        W, b, x = _random_toy(gen, 2 + trial, 2 + trial, 5 + trial)
        hint = "The output has the input's shape (batch, inst, feats)."
        _expect_match(fn, (W, b, x), toy.toy_forward, mistakes, x.shape, hint)
    _passed(fn, f"matches ReLU(W^T W x + b) on {n_trials} random batches of models")


@_exercise("toy.importance_loss")
def check_importance_loss(fn: Callable, n_trials: int = 4) -> None:
    """``fn(x, x_hat, importance)`` -> one loss per instance."""
    mistakes = [
        Mistake(
            "Weigh each feature's squared error by its importance I_i.",
            lambda x, xh, imp: ((x - xh) ** 2).sum(-1).mean(0),
        ),
        Mistake(
            "Sum the weighted errors over features (then average over the batch), not mean.",
            lambda x, xh, imp: (imp * (x - xh) ** 2).mean(-1).mean(0),
        ),
        Mistake(
            "Average over the batch, don't sum over it.",
            lambda x, xh, imp: (imp * (x - xh) ** 2).sum(-1).sum(0),
        ),
        Mistake(
            "Square the error: (x_i - x_hat_i)^2, not its absolute value.",
            lambda x, xh, imp: (imp * (x - xh).abs()).sum(-1).mean(0),
        ),
    ]
    gen = torch.Generator().manual_seed(2)
    for trial in range(n_trials):
        n_inst, f = 2 + trial, 3 + 2 * trial
        x = torch.rand(6 + trial, n_inst, f, generator=gen)
        x_hat = torch.rand(6 + trial, n_inst, f, generator=gen)
        imp = torch.rand(n_inst, f, generator=gen) + 0.1
        hint = "Return one loss per instance: reduce batch and features."
        _expect_match(fn, (x, x_hat, imp), toy.importance_loss, mistakes, (n_inst,), hint)
    _passed(fn, f"matches the importance-weighted loss on {n_trials} random batches")


@_exercise("toy.feature_dimensionality")
def check_feature_dimensionality(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W)`` with W (inst, d_hidden, feats) -> D (inst, feats)."""

    def unnormalized(W):
        overlaps = torch.einsum("idf,idg->ifg", W, W)
        return (W**2).sum(1) / (overlaps**2).sum(-1)

    def overlaps_not_squared(W):
        W_hat = W / W.norm(dim=1, keepdim=True)
        return (W**2).sum(1) / torch.einsum("idf,idg->ifg", W_hat, W).abs().sum(-1)

    mistakes = [
        Mistake(
            "Use the unit vector W_hat_i = W_i / ||W_i|| in the denominator's dot products.",
            unnormalized,
        ),
        Mistake("Square each overlap (W_hat_i . W_j) before summing over j.", overlaps_not_squared),
        Mistake(
            "The numerator is the squared norm ||W_i||^2, not the norm.",
            lambda W: toy.feature_dimensionality(W) / W.norm(dim=1),
        ),
    ]
    gen = torch.Generator().manual_seed(3)
    for trial in range(n_trials):
        W = torch.randn(2 + trial, 2 + trial, 5 + 2 * trial, generator=gen)
        shape = (W.shape[0], W.shape[2])
        hint = "One value per (instance, feature)."
        _expect_match(fn, (W,), toy.feature_dimensionality, mistakes, shape, hint)
    pentagon = torch.stack([torch.arange(5) * 2 * torch.pi / 5] * 2)
    pentagon = torch.stack([pentagon[0].cos(), pentagon[1].sin()])[None]
    if not torch.allclose(_call(fn, pentagon), torch.full((1, 5), 0.4), atol=1e-4):
        raise CheckFailed("A pentagon's five features should each get D = 2/5.")
    _passed(fn, f"matches the reference on {n_trials} random models, and D = 2/5 for a pentagon")
