"""Checks of notebook 06, feature geometry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import geometry
from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_close,
    _expect_match,
    _expect_shape,
    _generator,
    _name,
    _passed,
    _science,
)
from emgeo.errors import CheckFailed


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
    gen = _generator(13)
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
    gen = _generator(15)
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


# ---------------------------------------------------------------- the permutation test


def _permutation_reference(a: Tensor, b: Tensor, n: int, seed: int) -> tuple[float, Tensor]:
    return _science("stats").permutation_test(a, b, n, _generator(seed))


def _shuffled(a: Tensor, b: Tensor, n: int, seed: int) -> Tensor:
    """The pooled values in the order of each relabelling, drawn as the contract says."""
    pooled = torch.cat([a, b])
    gen = _generator(seed)
    return pooled[torch.rand(n, len(pooled), generator=gen).argsort(-1)]


def _null_split_at(a: Tensor, b: Tensor, n: int, seed: int, at: int) -> Tensor:
    rows = _shuffled(a, b, n, seed)
    return rows[:, :at].mean(-1) - rows[:, at:].mean(-1)


def _p_values(null: Tensor, observed: Tensor, n: int) -> dict[str, float]:
    """The p-values of common mistakes, from the correct null distribution."""
    return {
        "Add 1 to the count and to the number of relabellings, (count + 1) / (n + 1): the "
        "observed labelling is one of the possible ones, and p can never be 0.": (
            (null >= observed).sum().item() / n
        ),
        "That is a two-sided p-value (|null| >= |observed|): the hypothesis has a direction, "
        "so count the relabellings with a difference at least as large as the observed one.": (
            ((null.abs() >= observed.abs()).sum().item() + 1) / (n + 1)
        ),
        "That counts the relabellings with a difference at most the observed one: the one-sided "
        "test counts those at least as large (null >= observed).": (
            ((null <= observed).sum().item() + 1) / (n + 1)
        ),
    }


@_exercise("stats.permutation_test")
def check_permutation_test(fn: Callable) -> None:
    """``fn(a, b, n_permutations, generator)`` -> (one-sided p-value that mean(a) > mean(b), the
    null distribution of mean differences), drawn as the docstring's contract says."""
    null_mistakes = [
        Mistake(
            "That null is mean(b) - mean(a) under relabelling: the statistic is "
            "mean(relabelled a) - mean(relabelled b).",
            lambda a, b, n, seed: -_permutation_reference(a, b, n, seed)[1],
        ),
        Mistake(
            "The groups lost their sizes: in each shuffled row the first len(a) values are the "
            "relabelled a and the other len(b) the relabelled b.",
            lambda a, b, n, seed: _null_split_at(a, b, n, seed, len(b)),
        ),
        Mistake(
            "Every relabelling gives the observed difference: you shuffled within each group. "
            "Pool a and b, shuffle the pool, then split it into groups of the original sizes.",
            lambda a, b, n, seed: (a.mean() - b.mean()).expand(n),
        ),
    ]
    gen = _generator(18)
    n = 2_000
    for trial, shift in enumerate((0.4, 0.0, 1.5)):
        a = torch.randn(9 + trial, generator=gen) + shift
        b = torch.randn(12, generator=gen)
        out = _call(fn, a, b, n, _generator(trial))
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise CheckFailed(f"`{_name(fn)}` should return a pair: (p_value, null).")
        p, null = out
        hint = "The null distribution holds one mean difference per relabelling."
        _expect_shape(null, (n,), fn, hint)
        try:
            _expect_close(null, fn, (a, b, n, trial), _null_reference, null_mistakes, atol=1e-5)
        except CheckFailed as failure:
            if "largest error" not in str(failure):
                raise
            raise CheckFailed(
                f"{failure} Draw every relabelling at once, as the docstring says: "
                "`torch.rand(n_permutations, len(a) + len(b), generator=generator).argsort(-1)`; "
                "row i orders the pooled values `torch.cat([a, b])`."
            ) from None
        expected, _ = _permutation_reference(a, b, n, trial)
        if abs(float(p) - expected) > 1e-6:
            for hint, wrong in _p_values(null, a.mean() - b.mean(), n).items():
                if abs(float(p) - wrong) < 1e-6:
                    raise CheckFailed(f"`{_name(fn)}` gives a wrong p-value. {hint}")
            raise CheckFailed(
                f"`{_name(fn)}` gives p = {float(p):.5f}, expected {expected:.5f}: the fraction "
                "(count + 1) / (n_permutations + 1) of relabellings with a mean difference at "
                "least the observed one."
            )
    _passed(fn, "p-values and null distributions match on 3 pairs of samples")


def _null_reference(a: Tensor, b: Tensor, n: int, seed: int) -> Tensor:
    return _permutation_reference(a, b, n, seed)[1]
