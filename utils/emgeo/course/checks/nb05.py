"""Checks of notebook 05, feature identification."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import sae
from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
    _science,
)


def _answer_masks(gen: torch.Generator, batch: int, pos: int) -> Tensor:
    """Random answer masks: a prompt, then an answer of at least one token, then padding."""
    mask = torch.zeros(batch, pos)
    for row in range(batch):
        start = int(torch.randint(1, pos - 1, (1,), generator=gen))
        end = int(torch.randint(start + 1, pos + 1, (1,), generator=gen))
        mask[row, start:end] = 1.0
    return mask


@_exercise("features.answer_mean")
def check_answer_mean(fn: Callable, n_trials: int = 4) -> None:
    """``fn(acts, mask)`` -> per row, the mean of ``acts`` over the positions where mask is 1."""
    features = _science("features")
    mistakes = [
        Mistake(
            "That is the mean over every position: average over the answer tokens only "
            "(multiply by the mask, then divide by the number of answer tokens).",
            lambda a, m: a.mean(1),
        ),
        Mistake(
            "That is the sum over answer tokens: divide by how many answer tokens the row has.",
            lambda a, m: (a * m[..., None]).sum(1),
        ),
        Mistake(
            "You zeroed the prompt but divided by the full length: divide by mask.sum(1).",
            lambda a, m: (a * m[..., None]).mean(1),
        ),
        Mistake(
            "That is one mean over all rows' answer tokens: keep one vector per sample.",
            lambda a, m: (a[m.bool()].mean(0)).expand(a.shape[0], -1),
        ),
    ]
    gen = torch.Generator().manual_seed(11)
    for trial in range(n_trials):
        batch, pos, d = 3 + trial, 6 + trial, 4 + trial
        acts = torch.randn(batch, pos, d, generator=gen)
        mask = _answer_masks(gen, batch, pos)
        hint = "One d-vector per sample (mean over its positions)."
        _expect_match(fn, (acts, mask), features.answer_mean, mistakes, (batch, d), hint)
    _passed(fn, f"masked means match on {n_trials} random batches")


def _small_sae(gen: torch.Generator, d_in: int, d_sae: int) -> sae.ToySAE:
    model = sae.ToySAE(sae.ToySAEConfig(d_in=d_in, d_sae=d_sae), generator=gen)
    with torch.no_grad():
        model.b_enc.normal_(generator=gen)
        model.b_dec.normal_(generator=gen)
    return model


@_exercise("features.sample_features")
def check_sample_features(fn: Callable, n_trials: int = 3) -> None:
    """``fn(sae, acts, mask)`` -> per row, the SAE latents averaged over the answer tokens."""
    features = _science("features")
    mistakes = [
        Mistake(
            "You averaged the activations, then encoded the average: the encoder is nonlinear, "
            "so encode every token first, then average the latents over the answer tokens.",
            lambda s, a, m: s.encode(features.answer_mean(a, m)),
        ),
        Mistake(
            "That averages over every position, prompt and padding included: use the mask.",
            lambda s, a, m: s.encode(a).mean(1),
        ),
        Mistake(
            "That is the sum over answer tokens: divide by their number.",
            lambda s, a, m: (s.encode(a) * m[..., None]).sum(1),
        ),
    ]
    gen = torch.Generator().manual_seed(12)
    for trial in range(n_trials):
        batch, pos, d_in, d_sae = 3 + trial, 7, 4 + trial, 9 + trial
        model = _small_sae(gen, d_in, d_sae)
        acts = torch.randn(batch, pos, d_in, generator=gen)
        mask = _answer_masks(gen, batch, pos)
        args = (model, acts, mask)
        hint = (
            "One d_sae vector of latents per sample: encode the activations with the SAE, "
            "then average the latents."
        )
        with torch.no_grad():
            _expect_match(fn, args, features.sample_features, mistakes, (batch, d_sae), hint)
    _passed(fn, f"matches encode-then-average on {n_trials} random SAEs")
