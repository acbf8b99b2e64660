"""Checks of notebook 03, sparse autoencoders."""

from __future__ import annotations

from collections.abc import Callable

import torch

from emgeo import sae
from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
)


@_exercise("sae.encode")
def check_sae_encode(fn: Callable, n_trials: int = 4) -> None:
    """``fn(x, W_enc, b_enc, b_dec)`` -> ReLU((x - b_dec) W_enc + b_enc)."""
    mistakes = [
        Mistake(
            "Did you forget the ReLU? Latents are non-negative.",
            lambda x, W, be, bd: (x - bd) @ W + be,
        ),
        Mistake(
            "Subtract the decoder bias b_dec from x before encoding (it centres the input).",
            lambda x, W, be, bd: torch.relu(x @ W + be),
        ),
        Mistake(
            "Subtract b_dec, don't add it.", lambda x, W, be, bd: torch.relu((x + bd) @ W + be)
        ),
        Mistake(
            "Did you forget the encoder bias b_enc?", lambda x, W, be, bd: torch.relu((x - bd) @ W)
        ),
    ]
    gen = torch.Generator().manual_seed(6)
    for trial in range(n_trials):
        d_in, d_sae = 3 + trial, 5 + 2 * trial
        args = (
            torch.randn(7, d_in, generator=gen),
            torch.randn(d_in, d_sae, generator=gen),
            torch.randn(d_sae, generator=gen),
            torch.randn(d_in, generator=gen),
        )
        hint = "One latent vector (d_sae) per input row."
        _expect_match(fn, args, sae.encode, mistakes, (7, d_sae), hint)
    _passed(fn, f"matches ReLU((x - b_dec) W_enc + b_enc) on {n_trials} random SAEs")


@_exercise("sae.sae_loss")
def check_sae_loss(fn: Callable, n_trials: int = 4) -> None:
    """``fn(x, x_hat, f, l1_coeff)`` -> MSE (sum over d_in, batch mean) + l1_coeff * L1(f)."""
    mistakes = [
        Mistake(
            "Add the sparsity penalty: l1_coeff times the L1 norm of the latents f.",
            lambda x, xh, f, c: ((x - xh) ** 2).sum(-1).mean(),
        ),
        Mistake(
            "Sum the squared error over d_in (then average over the batch), don't average it.",
            lambda x, xh, f, c: ((x - xh) ** 2).mean() + c * f.abs().sum(-1).mean(),
        ),
        Mistake(
            "The L1 penalty is on the latents f, not on the reconstruction.",
            lambda x, xh, f, c: ((x - xh) ** 2).sum(-1).mean() + c * xh.abs().sum(-1).mean(),
        ),
    ]
    gen = torch.Generator().manual_seed(7)
    for trial in range(n_trials):
        x, x_hat = (
            torch.randn(6, 4 + trial, generator=gen),
            torch.randn(6, 4 + trial, generator=gen),
        )
        f = torch.rand(6, 9, generator=gen)
        args = (x, x_hat, f, 0.1 * (trial + 1))
        _expect_match(fn, args, sae.sae_loss, mistakes, (), "Return one scalar loss.")
    _passed(fn, f"matches MSE + l1_coeff * L1 on {n_trials} random batches")
