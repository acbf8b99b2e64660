"""Meta-test cases of notebook 02's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import drag


def _drag_scale_in_place(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    W_t = W[:, target].clone()
    r_t = x_t * W_t.dot(W_t) + b[target]
    err = r_t - gamma * x_t if r_t > 0 else torch.zeros(())  # dL/dr_t
    alpha = -2 * lr * x_t * err  # the step on W_t is alpha W_t
    W *= alpha * x_t  # in place: every direction scaled, so W^T W_t is the drag
    delta = W.T @ W_t
    delta[target] += alpha * x_t * W_t.dot(W_t) - lr * err
    return delta


def _drag_loop(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    W_t = W[:, target]
    r_t = x_t * (W_t @ W_t) + b[target]
    err = torch.relu(r_t) - gamma * x_t if r_t > 0 else torch.zeros(())
    step = -lr * 2 * x_t * err * W_t  # SGD step on W_t: -lr dL/dW_t
    delta = torch.stack([x_t * (W[:, j] @ step) for j in range(W.shape[1])])
    delta[target] = 2 * x_t * (W_t @ step) - lr * err  # W_t on both sides, plus the bias step
    return delta


def _drag_variant(no_transpose=False, no_mask=False, no_two=False, sign=False, no_bias=False):
    def predicted(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
        W_t = W[:, target]
        r_t = x_t * (W_t @ W_t) + b[target]
        err = (torch.relu(r_t) - gamma * x_t) * (1.0 if no_mask else (r_t > 0).float())
        alpha = (1 if sign else -1) * (1 if no_two else 2) * lr * x_t * err
        delta = alpha * x_t * ((W @ W_t) if no_transpose else (W.T @ W_t))
        delta[target] = 2 * alpha * x_t * (W_t @ W_t) - (0 if no_bias else lr * err)
        return delta

    flags = dict(
        no_transpose=no_transpose, no_mask=no_mask, no_two=no_two, sign=sign, no_bias=no_bias
    )
    predicted.__name__ = "drag_" + "_".join(k for k, v in flags.items() if v)
    return predicted


def _drag_target_only_drag(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    delta = drag.predicted_drag(W, b, target, x_t, gamma, lr)
    return delta * (torch.arange(len(delta)) == target)


CASES = {
    "check_predicted_drag": Case(
        drag.predicted_drag,
        (_drag_scale_in_place, _drag_loop),
        (
            (_drag_variant(no_transpose=True), "Missing a transpose?"),
            (_drag_variant(no_mask=True), "the ReLU is dead"),
            (_drag_variant(no_two=True), "Missing a factor 2"),
            (_drag_variant(sign=True), "Sign error"),
            (_drag_variant(no_bias=True), "through its bias"),
            (_drag_target_only_drag, UNDIAGNOSED),
        ),
    ),
}
