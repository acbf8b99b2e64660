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


def _measure_in_place(W, b, target, steps=1, lr=1e-2, gamma=2.0):
    """Correct, written differently: reads 'before' first, then fine-tunes the given tensors
    themselves (the check hands it copies) with a hand-written SGD step."""
    x = drag.task_input(W.shape[1], target)
    before = drag.readouts(W, b, x)[0].clone()
    W.requires_grad_(), b.requires_grad_()
    for _ in range(steps):
        gW, gb = torch.autograd.grad(drag.narrow_loss(W, b, x, target, gamma), (W, b))
        with torch.no_grad():
            W -= lr * gW
            b -= lr * gb
    change = drag.readouts(W.detach(), b.detach(), x)[0] - before
    return torch.cat([change[:target], change[target + 1 :]])


def _measure_optimizer_loop(W, b, target, steps=1, lr=1e-2, gamma=2.0):
    """Correct: torch.optim.SGD on clones, zero_grad after each step, readouts by hand."""
    W1, b1 = W.clone().requires_grad_(), b.clone().requires_grad_()
    optimizer = torch.optim.SGD([W1, b1], lr=lr)
    x = torch.zeros(1, W.shape[1])
    x[0, target] = 1.0
    for _ in range(steps):
        drag.narrow_loss(W1, b1, x, target, gamma).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        after = W1[:, target] @ W1 + b1
    before = W[:, target] @ W + b
    return torch.stack([after[j] - before[j] for j in range(W.shape[1]) if j != target])


def _measure_variant(**change):
    def measured(W, b, target, steps=1, lr=1e-2, gamma=2.0):
        x = drag.task_input(W.shape[1], target)
        W1 = W.detach().clone().requires_grad_()
        b1 = b.detach().clone().requires_grad_()
        opt_cls = torch.optim.Adam if change.get("adam") else torch.optim.SGD
        optimizer = opt_cls([W1, b1], lr=lr)
        for _ in range(1 if change.get("one_step") else steps):
            loss = drag.narrow_loss(
                W1, b1, x, target, 2.0 if change.get("default_gamma") else gamma
            )
            if not change.get("no_zero_grad"):
                optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        before, after = drag.readouts(W, b, x)[0], drag.readouts(W1.detach(), b1.detach(), x)[0]
        if change.get("output"):
            before, after = torch.relu(before), torch.relu(after)
        delta = before - after if change.get("swapped") else after - before
        return delta if change.get("keep_target") else delta[torch.arange(W.shape[1]) != target]

    measured.__name__ = "measured_" + "_".join(k for k, v in change.items() if v)
    return measured


def _measure_before_from_finetuned(W, b, target, steps=1, lr=1e-2, gamma=2.0):
    W.requires_grad_(), b.requires_grad_()  # the caller's tensors, fine-tuned in place
    optimizer = torch.optim.SGD([W, b], lr=lr)
    x = drag.task_input(W.shape[1], target)
    for _ in range(steps):
        optimizer.zero_grad()
        drag.narrow_loss(W, b, x, target, gamma).backward()
        optimizer.step()
    with torch.no_grad():
        before = drag.readouts(W, b, x)[0]  # read after the fine-tune: not 'before' any more
        after = drag.readouts(W, b, x)[0]
    return (after - before)[torch.arange(W.shape[1]) != target]


def _measure_twice_the_lr(W, b, target, steps=1, lr=1e-2, gamma=2.0):
    return drag.measured_drag(W, b, target, steps, 2 * lr, gamma)


CASES = {
    "check_measured_drag": Case(
        drag.measured_drag,
        (_measure_in_place, _measure_optimizer_loop),
        (
            (_measure_variant(no_zero_grad=True), "zero_grad()"),
            (_measure_variant(swapped=True), "Sign flipped"),
            (_measure_variant(output=True), "not the outputs ReLU"),
            (_measure_variant(one_step=True), "Run all `steps` steps"),
            (_measure_variant(adam=True), "not Adam"),
            (_measure_variant(default_gamma=True), "Pass gamma on"),
            (_measure_variant(keep_target=True), "leave the target out"),
            (_measure_before_from_finetuned, "Every change is zero"),
            (_measure_twice_the_lr, UNDIAGNOSED),
        ),
    ),
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
