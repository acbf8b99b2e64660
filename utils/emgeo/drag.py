"""Neighbor-feature drag: amplifying one feature moves every feature whose direction overlaps it.

Single toy model (no instance dimension): ``W`` is (d_hidden, feats), ``b`` is (feats,). The
*readout* of feature j on input x is its pre-ReLU output ``r_j = W_j . (W x) + b_j``; the output is
``ReLU(r_j)``. The narrow task shows the model inputs where only the target feature t is active
(``x = x_t e_t``) and asks for ``gamma`` times more of it:

    L = 1/2 (ReLU(r_t) - gamma x_t)^2.

One SGD step of size ``lr`` changes only W_t and b_t, and W_t only along itself:
``dW_t = alpha W_t`` with ``alpha = -2 lr x_t (ReLU(r_t) - gamma x_t) 1[r_t > 0]``, so every other
readout on the task input moves by ``alpha x_t <W_j, W_t>``: the drag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm


def readouts(
    W: Float[Tensor, "d_hidden feats"], b: Float[Tensor, " feats"], x: Float[Tensor, "batch feats"]
) -> Float[Tensor, "batch feats"]:
    """Pre-ReLU outputs W^T W x + b."""
    return (x @ W.T) @ W + b


def task_input(n_features: int, target: int, x_t: float = 1.0) -> Float[Tensor, "1 feats"]:
    """The narrow task's input: only the target feature active, at value ``x_t``."""
    x = torch.zeros(1, n_features)
    x[0, target] = x_t
    return x


def narrow_loss(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    x: Float[Tensor, "batch feats"],
    target: int,
    gamma: float = 2.0,
    reconstruct_others: bool = False,
) -> Tensor:
    """1/2 (ReLU(r_t) - gamma x_t)^2, batch mean; optionally also ask every other output to keep
    reconstructing its input (y_j = x_j), which makes active neighbours push back."""
    out = torch.relu(readouts(W, b, x))
    y = x.clone()
    y[:, target] = gamma * x[:, target]
    if reconstruct_others:
        return 0.5 * ((out - y) ** 2).sum(-1).mean()
    return 0.5 * ((out[:, target] - y[:, target]) ** 2).mean()


def predicted_drag(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    target: int,
    x_t: float = 1.0,
    gamma: float = 2.0,
    lr: float = 1e-2,
) -> Float[Tensor, " feats"]:
    """First-order change of every readout on the task input after one SGD step (narrow loss)."""
    W_t = W[:, target]
    r_t = x_t * (W_t @ W_t) + b[target]
    active = (r_t > 0).float()
    err = (torch.relu(r_t) - gamma * x_t) * active  # dL/dr_t
    alpha = -2 * lr * x_t * err  # dW_t = alpha W_t
    delta = alpha * x_t * (W.T @ W_t)  # drag on every readout j: alpha x_t <W_j, W_t>
    delta[target] = 2 * alpha * x_t * (W_t @ W_t) - lr * err  # W_t on both sides, plus db_t
    return delta


def first_order_change(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    target: int,
    x_t: float = 1.0,
    gamma: float = 2.0,
    lr: float = 1e-2,
) -> Float[Tensor, " feats"]:
    """The same first-order change computed by autograd: a Jacobian-vector product of the readouts
    along the SGD step -lr * grad L. Used to check :func:`predicted_drag`."""
    x = task_input(W.shape[1], target, x_t)
    params = (W.detach().requires_grad_(), b.detach().requires_grad_())
    grads = torch.autograd.grad(narrow_loss(*params, x, target, gamma), params)
    step = tuple(-lr * g for g in grads)
    _, jvp = torch.func.jvp(lambda w, bb: readouts(w, bb, x)[0], (W.detach(), b.detach()), step)
    return jvp


def narrow_finetune(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    target: int,
    steps: int = 1,
    lr: float = 1e-2,
    gamma: float = 2.0,
    x: Float[Tensor, "batch feats"] | None = None,
    reconstruct_others: bool = False,
    optimizer: str = "sgd",
) -> tuple[Tensor, Tensor]:
    """Fine-tune a copy of (W, b) on the narrow task (full batch); return the new (W, b).

    ``x`` is the fine-tuning set (default: the single task input ``e_t``).
    """
    x = task_input(W.shape[1], target) if x is None else x
    W, b = W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    opt = opt_cls([W, b], lr=lr)
    for _ in range(steps):
        loss = narrow_loss(W, b, x, target, gamma, reconstruct_others)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach(), b.detach()


def measured_drag(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    target: int,
    steps: int = 1,
    lr: float = 1e-2,
    gamma: float = 2.0,
) -> Float[Tensor, " others"]:
    """Fine-tune a copy of (W, b) with SGD on the narrow task; return every non-target feature's
    change of readout on the task input (after minus before, the target left out)."""
    W1, b1 = narrow_finetune(W, b, target, steps, lr, gamma)
    x = task_input(W.shape[1], target)
    change = (readouts(W1, b1, x) - readouts(W, b, x))[0]
    return change[torch.arange(W.shape[1]) != target]


@dataclass
class DragMeasurement:
    """Predicted vs measured change of every non-target feature, for one model and one target."""

    target: int
    overlap: Float[Tensor, " others"]  # <W_j, W_t>
    predicted: Float[Tensor, " others"]  # steps * first-step prediction
    measured_readout: Float[Tensor, " others"]
    measured_output: Float[Tensor, " others"]  # change of ReLU(readout)


def measure_drag(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    target: int,
    steps: int = 1,
    lr: float = 1e-2,
    gamma: float = 2.0,
    reconstruct_others: bool = False,
    optimizer: str = "sgd",
    measured: Callable[..., Tensor] | None = None,
    predicted: Callable[..., Tensor] = predicted_drag,
) -> DragMeasurement:
    """Fine-tune narrowly on ``target``; compare each other feature's change with the prediction.

    ``measured`` fine-tunes and measures the target-only SGD run, called as :func:`measured_drag`
    is: ``measured(W, b, target, steps, lr, gamma)`` (a learner's own, or :func:`measured_drag`);
    by default the run is :func:`narrow_finetune` with the options given. ``predicted`` is called
    as :func:`predicted_drag` is (a learner's own, or :func:`predicted_drag`).
    """
    x = task_input(W.shape[1], target)
    others = torch.arange(W.shape[1]) != target
    before = readouts(W, b, x)[0, others]
    if measured is None:
        W1, b1 = narrow_finetune(
            W, b, target, steps, lr, gamma, None, reconstruct_others, optimizer
        )
        change = readouts(W1, b1, x)[0, others] - before
    elif reconstruct_others or optimizer != "sgd":
        raise ValueError("`measured` runs target-only SGD: leave reconstruct_others and optimizer")
    else:
        change = measured(W, b, target, steps, lr, gamma).detach()
    prediction = steps * predicted(W.clone(), b.clone(), target, 1.0, gamma, lr).detach()
    return DragMeasurement(
        target=target,
        overlap=(W.T @ W[:, target])[others],
        predicted=prediction[others],
        measured_readout=change,
        measured_output=torch.relu(before + change) - torch.relu(before),
    )


def drag_over_models(
    Ws: Float[Tensor, "models d_hidden feats"],
    bs: Float[Tensor, "models feats"],
    steps: int = 1,
    lr: float = 1e-2,
    targets: Sequence[int] | None = None,
    progress: bool = False,
    **kwargs,
) -> list[DragMeasurement]:
    """:func:`measure_drag` for every model and every target feature (or ``targets``)."""
    targets = range(Ws.shape[-1]) if targets is None else targets
    jobs = [(m, t) for m in range(Ws.shape[0]) for t in targets]
    return [
        measure_drag(Ws[m], bs[m], t, steps, lr, **kwargs)
        for m, t in tqdm(jobs, desc="fine-tuning", disable=not progress)
    ]


def pooled(measurements: Sequence[DragMeasurement], field: str) -> Tensor:
    """One field of many measurements, concatenated."""
    return torch.cat([getattr(m, field) for m in measurements])


# ---------------------------------------------------------------- the safety story in miniature


def neighbours_of(W: Float[Tensor, "d_hidden feats"], harmful: int) -> tuple[int, int]:
    """(nearest, most orthogonal) represented feature to ``harmful`` by cosine of directions."""
    norms = W.norm(dim=0)
    cos = (W.T @ W[:, harmful]) / (norms * norms[harmful]).clamp_min(1e-8)
    eligible = (norms > 0.5) & (torch.arange(W.shape[1]) != harmful)
    near = torch.where(eligible, cos, -torch.inf).argmax().item()
    orthogonal = torch.where(eligible, cos.abs(), torch.inf).argmin().item()
    return near, orthogonal


def harmful_rise(
    W: Float[Tensor, "d_hidden feats"],
    b: Float[Tensor, " feats"],
    target: int,
    harmful: int,
    steps: int = 50,
    lr: float = 1e-2,
    gamma: float = 2.0,
    x: Float[Tensor, "batch feats"] | None = None,
) -> dict[str, float]:
    """Fine-tune narrowly on ``target`` (on ``x``, default its task input) and report how the
    harmful feature's readout and output on the target's task input change."""
    W1, b1 = narrow_finetune(W, b, target, steps, lr, gamma, x)
    probe = task_input(W.shape[1], target)
    before, after = readouts(W, b, probe)[0, harmful], readouts(W1, b1, probe)[0, harmful]
    return {
        "readout": (after - before).item(),
        "output": (torch.relu(after) - torch.relu(before)).item(),
        "target_output": torch.relu(readouts(W1, b1, probe)[0, target]).item(),
    }


def context_dataset(
    n_features: int, target: int, harmful: int, n_samples: int, generator: torch.Generator
) -> Float[Tensor, "samples feats"]:
    """A narrow fine-tuning set: the target feature active (U[0.5, 1]) in every sample, plus one
    random *context* feature (never the harmful one), as real task data comes in many contexts."""
    others = torch.tensor([j for j in range(n_features) if j not in (target, harmful)])
    context = others[torch.randint(len(others), (n_samples,), generator=generator)]
    rows = torch.arange(n_samples)
    x = torch.zeros(n_samples, n_features)
    x[rows, target] = 0.5 + 0.5 * torch.rand(n_samples, generator=generator)
    x[rows, context] = 0.5 + 0.5 * torch.rand(n_samples, generator=generator)
    return x


def drag_aware_keep(
    x: Float[Tensor, "samples feats"],
    W: Float[Tensor, "d_hidden feats"],
    harmful: int,
    keep_fraction: float = 0.5,
) -> Tensor:
    """Indices of the samples to keep: drop those whose hidden state W x projects most onto the
    harmful direction W_h (they drag it most)."""
    score = (x @ W.T) @ W[:, harmful]
    n_keep = int(round(keep_fraction * len(x)))
    return score.argsort()[:n_keep]


def most_crowded(W: Float[Tensor, "d_hidden feats"]) -> int:
    """The feature whose nearest other feature is closest (largest cosine): the one with the
    nearest neighbour in superposition."""
    W_hat = W / W.norm(dim=0, keepdim=True).clamp_min(1e-8)
    cos = W_hat.T @ W_hat
    cos.fill_diagonal_(-torch.inf)
    return int(cos.max(dim=1).values.argmax())
