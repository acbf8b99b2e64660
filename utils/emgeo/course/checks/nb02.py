"""Checks of notebook 02, neighbor-feature drag."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import drag
from emgeo.course.checks.core import (
    Mistake,
    _exercise,
    _expect_match,
    _generator,
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
    gen = _generator(4)
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


def _measure_variant(**change: bool) -> Callable:
    """:func:`drag.measured_drag` with one mistake in it."""

    def measured(W, b, target, steps, lr, gamma):
        x = drag.task_input(W.shape[1], target)
        W1 = W.detach().clone().requires_grad_()
        b1 = b.detach().clone().requires_grad_()
        opt_cls = torch.optim.Adam if change.get("adam") else torch.optim.SGD
        optimizer = opt_cls([W1, b1], lr=lr)
        for _ in range(1 if change.get("one_step") else steps):
            g = 2.0 if change.get("default_gamma") else gamma
            loss = drag.narrow_loss(W1, b1, x, target, g)
            if not change.get("no_zero_grad"):
                optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        before, after = drag.readouts(W, b, x)[0], drag.readouts(W1.detach(), b1.detach(), x)[0]
        if change.get("output"):
            before, after = torch.relu(before), torch.relu(after)
        delta = before - after if change.get("swapped") else after - before
        return delta[torch.arange(W.shape[1]) != target]

    return measured


def _no_change(W: Tensor, b: Tensor, target: int, *_) -> Tensor:
    return torch.zeros(W.shape[1] - 1)


@_exercise("drag.measured_drag")
def check_measured_drag(fn: Callable) -> None:
    """``fn(W, b, target, steps, lr, gamma)`` -> each non-target readout's change on the task
    input after ``steps`` SGD steps on a copy of (W, b)."""
    mistakes = [
        Mistake(
            "Did you forget optimizer.zero_grad()? Without it each step adds every earlier "
            "step's gradient again.",
            _measure_variant(no_zero_grad=True),
        ),
        Mistake(
            "Sign flipped: the change is after minus before, "
            "readouts(W1, b1, x) - readouts(W, b, x).",
            _measure_variant(swapped=True),
        ),
        Mistake(
            "Measure the readouts r_j (before the ReLU), not the outputs ReLU(r_j).",
            _measure_variant(output=True),
        ),
        Mistake("Run all `steps` steps, not one.", _measure_variant(one_step=True)),
        Mistake("Use plain SGD (torch.optim.SGD), not Adam.", _measure_variant(adam=True)),
        Mistake(
            "Pass gamma on to the loss: drag.narrow_loss(W1, b1, x, target, gamma).",
            _measure_variant(default_gamma=True),
        ),
        Mistake(
            "Every change is zero: were 'before' and 'after' read from the same tensors? "
            "Fine-tune copies (W.detach().clone().requires_grad_()) and read 'before' from the "
            "caller's untouched W and b.",
            _no_change,
        ),
    ]
    gen = _generator(5)
    for d, f, steps in [(3, 8, 3), (5, 12, 5), (4, 6, 1)]:
        W = torch.randn(d, f, generator=gen) * 0.6
        b = torch.randn(f, generator=gen) * 0.1
        for t in (0, f - 1):
            b[t] = 0.05  # a live target: r_t = ||W_t||^2 + b_t > 0
            args = (W, b, t, steps, 0.05, 2.5)
            hint = "One change per feature other than the target: leave the target out."
            _expect_match(fn, args, drag.measured_drag, mistakes, (f - 1,), hint)
    _passed(fn, "matches the course's narrow fine-tune and readout change on 6 models and targets")
