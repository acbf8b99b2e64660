"""Toy models of superposition (Elhage et al. 2022), many instances trained at once.

A toy model compresses ``n_features`` sparse features into ``d_hidden < n_features`` dimensions and
reconstructs them: ``h = W x``, ``x_hat = ReLU(W^T h + b)``. Feature ``i`` is zero with probability
``S`` (the sparsity) and uniform on [0, 1] otherwise; the loss weighs feature ``i`` by its
importance ``I_i``. Every tensor carries a leading ``inst`` dimension: one training run trains many
independent models (different sparsities, importances, seeds) as one batched tensor program.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm


@dataclass(frozen=True)
class ToyConfig:
    n_features: int = 5
    d_hidden: int = 2
    n_instances: int = 1


def generate_batch(
    n_batch: int,
    feature_probability: Float[Tensor, " inst"],
    n_features: int,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "batch inst feats"]:
    """Sparse features: each is U[0, 1] with probability ``feature_probability`` (1 - S), else 0."""
    n_inst = feature_probability.shape[0]
    values = torch.rand(n_batch, n_inst, n_features, generator=generator)
    active = torch.rand(n_batch, n_inst, n_features, generator=generator)
    return torch.where(active < feature_probability[:, None], values, 0.0)


def toy_forward(
    W: Float[Tensor, "inst d_hidden feats"],
    b: Float[Tensor, "inst feats"],
    x: Float[Tensor, "batch inst feats"],
) -> Float[Tensor, "batch inst feats"]:
    """x_hat = ReLU(W^T W x + b), for every instance at once."""
    h = einops.einsum(W, x, "inst d_hidden feats, batch inst feats -> batch inst d_hidden")
    out = einops.einsum(W, h, "inst d_hidden feats, batch inst d_hidden -> batch inst feats")
    return torch.relu(out + b)


def importance_loss(
    x: Float[Tensor, "batch inst feats"],
    x_hat: Float[Tensor, "batch inst feats"],
    importance: Float[Tensor, "inst feats"],
) -> Float[Tensor, " inst"]:
    """Per instance: the batch mean of sum_i I_i (x_i - x_hat_i)^2."""
    return (importance * (x - x_hat) ** 2).sum(-1).mean(0)


def feature_dimensionality(W: Float[Tensor, "inst d_hidden feats"]) -> Float[Tensor, "inst feats"]:
    """D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2: the share of a dimension feature i gets."""
    norms_sq = (W**2).sum(1)
    W_hat = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = einops.einsum(W_hat, W, "inst d feats_i, inst d feats_j -> inst feats_i feats_j")
    return norms_sq / (overlaps**2).sum(-1).clamp_min(1e-8)


class ToyModel(nn.Module):
    """``n_instances`` independent toy models, each with its own sparsity and importances."""

    def __init__(
        self,
        cfg: ToyConfig,
        feature_probability: Float[Tensor, " inst"],
        importance: Float[Tensor, "inst feats"],
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        W = torch.empty(cfg.n_instances, cfg.d_hidden, cfg.n_features)
        std = (2.0 / (cfg.d_hidden + cfg.n_features)) ** 0.5  # Xavier normal
        self.W = nn.Parameter(torch.randn(W.shape, generator=generator) * std)
        self.b_final = nn.Parameter(torch.zeros(cfg.n_instances, cfg.n_features))
        # copies: the model never shares memory with the caller's tensors
        self.register_buffer("feature_probability", feature_probability.detach().float().clone())
        self.register_buffer("importance", importance.detach().float().clone())

    def forward(self, x: Float[Tensor, "batch inst feats"]) -> Float[Tensor, "batch inst feats"]:
        return toy_forward(self.W, self.b_final, x)

    def generate_batch(
        self, n_batch: int, generator: torch.Generator | None = None
    ) -> Float[Tensor, "batch inst feats"]:
        return generate_batch(n_batch, self.feature_probability, self.cfg.n_features, generator)


def train(
    model: ToyModel,
    steps: int = 5_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> Float[Tensor, " inst"]:
    """Train every instance with Adam (instances stay independent); return each final loss.

    Every step draws its batch with ``model.generate_batch(batch_size, generator)`` and minimises
    the importance loss summed over instances; the final loss of each instance is measured, without
    gradients, on one fresh batch of ``8 * batch_size`` drawn with the same generator.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    bar = tqdm(range(steps), desc="training toy models", disable=not progress, mininterval=0.5)
    for _ in bar:
        x = model.generate_batch(batch_size, generator)
        loss = importance_loss(x, model(x), model.importance)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        x = model.generate_batch(8 * batch_size, generator)
        return importance_loss(x, model(x), model.importance)


@dataclass
class Sweep:
    """Toy models trained for every (sparsity, importance decay) condition and restart."""

    sparsities: list[float]
    decays: list[float]
    W_all: Float[Tensor, "sparsity decay restart d_hidden feats"]
    b_all: Float[Tensor, "sparsity decay restart feats"]
    loss_all: Float[Tensor, "sparsity decay restart"]

    @property
    def best(self) -> Tensor:
        """Index of the lowest-loss restart of every condition, (sparsity, decay)."""
        return self.loss_all.argmin(-1)

    @property
    def W(self) -> Float[Tensor, "sparsity decay d_hidden feats"]:
        """W of the best restart of every condition."""
        pick = self.best[..., None, None, None]
        return torch.take_along_dim(self.W_all, pick, dim=2).squeeze(2)

    @property
    def loss(self) -> Float[Tensor, "sparsity decay"]:
        return self.loss_all.min(-1).values

    def condition(self, sparsity: float, decay: float) -> tuple[Tensor, Tensor]:
        """(W, b) of the best restart at this sparsity and importance decay."""
        i, j = self.sparsities.index(sparsity), self.decays.index(decay)
        k = self.best[i, j]
        return self.W_all[i, j, k], self.b_all[i, j, k]

    def restarts(self, sparsity: float, decay: float) -> tuple[Tensor, Tensor]:
        """(W, b) of every restart at this condition: independently seeded models."""
        i, j = self.sparsities.index(sparsity), self.decays.index(decay)
        return self.W_all[i, j], self.b_all[i, j]


def train_sweep(
    sparsities: Sequence[float],
    decays: Sequence[float] = (0.9,),
    n_features: int = 5,
    d_hidden: int = 2,
    n_restarts: int = 3,
    steps: int = 5_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    trainer: Callable[..., Tensor] = train,
    model_cls: Callable[..., nn.Module] = ToyModel,
) -> Sweep:
    """Train sparsities x decays x restarts toy models in one batched run.

    Toy models sometimes settle in a poor local minimum, so each condition is trained from
    ``n_restarts`` initializations; :attr:`Sweep.W` keeps the lowest-loss one. ``trainer`` is the
    training loop, called as :func:`train` is: ``trainer(model, steps, batch_size, lr, generator,
    progress)``, returning each instance's final loss (a learner's own loop, or :func:`train`);
    ``model_cls`` builds the model as :class:`ToyModel` does (a learner's own module).
    """
    conditions = list(itertools.product(sparsities, decays, range(n_restarts)))
    probability = torch.tensor([1.0 - s for s, _, _ in conditions])
    importance = torch.stack([d ** torch.arange(n_features).float() for _, d, _ in conditions])
    generator = torch.Generator().manual_seed(seed)
    cfg = ToyConfig(n_features=n_features, d_hidden=d_hidden, n_instances=len(conditions))
    model = model_cls(cfg, probability, importance, generator)
    loss = trainer(model, steps, batch_size, lr, generator, progress)
    shape = (len(sparsities), len(decays), n_restarts)
    return Sweep(
        sparsities=list(sparsities),
        decays=list(decays),
        W_all=model.W.detach().reshape(*shape, d_hidden, n_features),
        b_all=model.b_final.detach().reshape(*shape, n_features),
        loss_all=loss.detach().reshape(shape),
    )


def n_represented(W: Float[Tensor, "... d_hidden feats"], threshold: float = 0.5) -> Tensor:
    """How many features have ||W_i|| > threshold (are represented at all)."""
    return (W.norm(dim=-2) > threshold).sum(-1)


def angles_2d(W: Float[Tensor, "2 feats"], threshold: float = 0.5) -> Tensor:
    """Angles in degrees between consecutive represented feature directions of a 2-D model."""
    keep = W.norm(dim=0) > threshold
    theta = torch.atan2(W[1, keep], W[0, keep]).rad2deg().sort().values
    gaps = theta.diff()
    return torch.cat([gaps, (360.0 - gaps.sum()).reshape(1)])
