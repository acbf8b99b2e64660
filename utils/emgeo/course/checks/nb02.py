"""Checks of notebook 02, neighbor-feature drag."""

from __future__ import annotations

from collections.abc import Callable

import torch

from emgeo import drag
from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _passed,
)


@_exercise("drag.predicted_drag")
def check_predicted_drag(fn: Callable) -> None:
    """``fn(W, b, target, x_t, gamma, lr)`` -> the first-order change of every readout."""

    def wrong(**change):
        def compute(W, b, t, x_t, gamma, lr):
            W_t = W[:, t]
            r_t = x_t * (W_t @ W_t) + b[t]
            err = (torch.relu(r_t) - gamma * x_t) * (
                1.0 if change.get("no_mask") else (r_t > 0).float()
            )
            alpha = -(1 if change.get("no_two") else 2) * lr * x_t * err
            alpha = -alpha if change.get("sign") else alpha
            read = W @ W_t if change.get("no_transpose") else W.T @ W_t
            delta = alpha * x_t * read
            delta[t] = 2 * alpha * x_t * (W_t @ W_t) - (0 if change.get("no_bias") else lr * err)
            return delta

        return compute

    mistakes = [
        Mistake(
            "Missing a transpose? The readouts are W^T (W e_t): (feats, d) @ (d,).",
            wrong(no_transpose=True),
        ),
        Mistake(
            "Where the target's readout r_t <= 0 the ReLU is dead and no gradient flows: "
            "multiply by the mask 1[r_t > 0].",
            wrong(no_mask=True),
        ),
        Mistake(
            "Missing a factor 2: r_t = x_t W_t.W_t depends on W_t twice, so "
            "d r_t / d W_t = 2 x_t W_t.",
            wrong(no_two=True),
        ),
        Mistake("Sign error: SGD steps *against* the gradient, dW = -lr dL/dW.", wrong(sign=True)),
        Mistake(
            "The target's own readout also moves through its bias: add -lr dL/dr_t.",
            wrong(no_bias=True),
        ),
    ]
    gen = torch.Generator().manual_seed(4)
    # (d_hidden, n_features); the first is square so that a missing transpose gives values.
    for d, f in [(4, 4), (3, 8), (5, 12)]:
        W = torch.randn(d, f, generator=gen) * 0.7
        b = torch.randn(f, generator=gen) * 0.3
        b[1] = -10.0  # target 1's ReLU is dead on its own input
        for t in (0, 1, f - 1):
            args = (W, b, t, 0.8, 2.5, 1e-2)
            hint = "One predicted change per feature, the target included."
            _expect_match(fn, args, drag.first_order_change, mistakes, (f,), hint)
    _passed(
        fn,
        "agrees with autograd's first-order change (a JVP along the SGD step), "
        "live and dead targets, square and tall W",
    )
