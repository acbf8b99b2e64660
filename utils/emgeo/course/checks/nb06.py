"""Checks of notebook 06, feature geometry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import geometry
from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
    _science,
)


def _sets(gen: torch.Generator, d_sae: int, k: int, k_t: int, n_shared: int):
    perm = torch.randperm(d_sae, generator=gen)
    toxic = perm[:k_t]
    members = torch.cat([toxic[:n_shared], perm[k_t : k_t + k - n_shared]])
    return members, toxic


@_exercise("geometry.proximity_to_set")
def check_proximity_to_set(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W_dec, members, toxic)`` -> per member latent, mean cosine of its decoder direction
    with the toxic latents' directions, leaving itself out."""

    def with_self(W, m, t):
        return geometry.cosine_similarity_matrix(W[m], W[t]).mean(-1)

    def zero_self_full_count(W, m, t):
        sims = geometry.cosine_similarity_matrix(W[m], W[t])
        return sims.masked_fill(m[:, None] == t[None, :], 0.0).mean(-1)

    mistakes = [
        Mistake(
            "A latent in both sets is counted as its own neighbour (cosine 1): leave the pair "
            "(j, j) out of its mean.",
            with_self,
        ),
        Mistake(
            "You zeroed the self-pair but still divided by the full toxic-set size: divide by "
            "the number of pairs left.",
            zero_self_full_count,
        ),
        Mistake(
            "Those are dot products: normalize the decoder rows first (cosine similarity).",
            lambda W, m, t: (
                (W[m] @ W[t].T).masked_fill(m[:, None] == t[None, :], 0.0).sum(-1)
                / (m[:, None] != t[None, :]).sum(-1)
            ),
        ),
        Mistake(
            "That is the nearest toxic latent (max); the statistic is the mean over the set.",
            lambda W, m, t: (
                geometry.cosine_similarity_matrix(W[m], W[t])
                .masked_fill(m[:, None] == t[None, :], -2.0)
                .max(-1)
                .values
            ),
        ),
    ]
    gen = torch.Generator().manual_seed(13)
    for trial in range(n_trials):
        d_sae, d_model = 20 + trial, 6
        W_dec = torch.randn(d_sae, d_model, generator=gen) * (
            1 + torch.rand(d_sae, 1, generator=gen)
        )
        members, toxic = _sets(gen, d_sae, k=5, k_t=4, n_shared=1 + trial % 2)
        args = (W_dec, members, toxic)
        hint = "One value per latent of `members`."
        _expect_match(fn, args, geometry.proximity_to_set, mistakes, (len(members),), hint)
    _passed(fn, f"matches on {n_trials} random decoders with shared latents")


@_exercise("probes.readout_difference")
def check_readout_difference(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W_U, scale, positive, negative)`` -> the residual direction that raises the positive
    tokens' logits over the negative ones, through the final LayerNorm's scale, mean removed."""
    probes = _science("probes")

    def centred(d: Tensor) -> Tensor:
        return d - d.mean()

    mistakes = [
        Mistake(
            "Go through the final LayerNorm: the logits read `scale * normalized residual`, so "
            "the unembedding columns are seen through `scale[:, None] * W_U`.",
            lambda W, g, p, n: centred(W[:, p].mean(1) - W[:, n].mean(1)),
        ),
        Mistake(
            "LayerNorm removes the mean over d_model of whatever reaches it, so that component "
            "of the direction changes no logit: subtract the direction's own mean.",
            lambda W, g, p, n: (g[:, None] * W)[:, p].mean(1) - (g[:, None] * W)[:, n].mean(1),
        ),
        Mistake(
            "That points from the positive tokens to the negative ones: positive minus negative.",
            lambda W, g, p, n: -probes.readout_difference(W, g, p, n),
        ),
        Mistake(
            "Average each family's columns rather than summing them: the families need not be "
            "the same size.",
            lambda W, g, p, n: centred(
                (g[:, None] * W)[:, p].sum(1) - (g[:, None] * W)[:, n].sum(1)
            ),
        ),
    ]
    gen = torch.Generator().manual_seed(15)
    for trial in range(n_trials):
        d_model, d_vocab = 6 + trial, 15 + 2 * trial
        W_U = torch.randn(d_model, d_vocab, generator=gen) + 0.5  # columns with a mean to remove
        scale = 0.5 + torch.rand(d_model, generator=gen)
        order = torch.randperm(d_vocab, generator=gen)
        positive, negative = order[: 3 + trial % 2], order[5:7]
        args = (W_U, scale, positive, negative)
        hint = "One value per residual dimension (d_model)."
        _expect_match(fn, args, probes.readout_difference, mistakes, (d_model,), hint)
    _passed(fn, f"matches on {n_trials} random unembeddings with families of different sizes")
