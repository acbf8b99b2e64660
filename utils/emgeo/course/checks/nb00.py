"""Checks of notebook 00, orientation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import geometry
from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _generator,
    _passed,
)


@_exercise("geometry.cosine_similarity_matrix")
def check_cosine_similarity(fn: Callable[[Tensor, Tensor], Tensor], n_trials: int = 5) -> None:
    """``fn(a, b)``: cosine similarity of every row of ``a`` (n_a, d) with every row of ``b``."""
    mistakes = [
        Mistake(
            "It looks like the plain dot product a @ b.T: divide each row by its norm first.",
            lambda a, b: a @ b.T,
        ),
        Mistake(
            "Only `a` seems normalized: normalize the rows of `b` too.",
            lambda a, b: (a / a.norm(dim=-1, keepdim=True)) @ b.T,
        ),
        Mistake(
            "Only `b` seems normalized: normalize the rows of `a` too.",
            lambda a, b: a @ (b / b.norm(dim=-1, keepdim=True)).T,
        ),
        Mistake(
            "The norms look taken over the wrong dimension: normalize each row (dim=-1), "
            "not each column.",
            lambda a, b: (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T,
        ),
    ]
    gen = _generator(1234)
    for trial in range(n_trials):
        n_a, n_b, d = 3 + trial, 5 + 2 * trial, 4 + 3 * trial
        a = torch.randn(n_a, d, generator=gen) * torch.rand(n_a, 1, generator=gen).add(0.5)
        b = torch.randn(n_b, d, generator=gen) * 3.0
        hint = "Rows of the result index `a`, columns index `b`." if trial == 0 else ""
        _expect_match(fn, (a, b), geometry.cosine_similarity_matrix, mistakes, (n_a, n_b), hint)
    _passed(fn, f"shapes and values match the reference on {n_trials} random pairs of matrices")
