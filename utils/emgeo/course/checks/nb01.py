"""Checks of notebook 01, toy superposition."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import toy
from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_match,
    _expect_shape,
    _generator,
    _name,
    _passed,
)
from emgeo.errors import CheckFailed


@_exercise("toy.generate_batch")
def check_generate_batch(fn: Callable, n_batch: int = 20_000) -> None:
    """``fn(n_batch, feature_probability, n_features, generator)`` -> (batch, inst, feats)."""
    probability = torch.tensor([1.0, 0.5, 0.1])
    x = _call(fn, n_batch, probability, 4, _generator(0))
    _expect_shape(x, (n_batch, 3, 4), fn, "Dimensions are (batch, instance, feature).")
    if x.min() < 0 or x.max() > 1:
        raise CheckFailed(f"`{_name(fn)}` gives values outside [0, 1]: use torch.rand, not randn.")
    active = (x != 0).float()
    rate = active.mean((0, 2))
    if torch.allclose(rate, 1 - probability, atol=0.02) and not torch.allclose(rate, probability):
        raise CheckFailed(
            "Features are active with probability 1 - feature_probability: a feature is *on* "
            "with probability feature_probability (= 1 - S), so keep it where rand < p."
        )
    if not torch.allclose(rate, probability, atol=0.02):
        raise CheckFailed(
            f"Active fractions per instance are {rate.tolist()}, expected {probability.tolist()}."
        )
    mean_active = x[:, 1][x[:, 1] != 0].mean().item()
    if abs(mean_active - 0.5) > 0.02:
        raise CheckFailed(
            f"Active features average {mean_active:.3f}, expected 0.5: an active feature's value "
            "is uniform on [0, 1], drawn independently of whether it is active."
        )
    co_active = (active[:, 1, 0] * active[:, 1, 1]).mean().item()
    if abs(co_active - 0.25) > 0.02:
        raise CheckFailed(
            "Features of one instance switch on together: draw an independent on/off for every "
            "(batch, instance, feature) entry."
        )
    again = _call(fn, n_batch, probability, 4, _generator(0))
    if not torch.equal(x, again):
        raise CheckFailed(
            "Two calls with identically seeded generators differ: pass `generator=generator` to "
            "every torch.rand call, so runs are reproducible."
        )
    expected = toy.generate_batch(n_batch, probability, 4, _generator(0))
    if not torch.equal(x, expected):
        raise CheckFailed(
            "Right distribution, but another draw order than the course's: draw the values "
            "first, then the on/off numbers, each with one torch.rand(n_batch, n_inst, n_features, "
            "generator=generator), so that your training loop reproduces the course's runs."
        )
    _passed(
        fn,
        "shape, value range, sparsity per instance, uniform values, independence, seeding, order",
    )


def _random_toy(gen: torch.Generator, n_inst: int, d: int, f: int) -> tuple[Tensor, ...]:
    W = torch.randn(n_inst, d, f, generator=gen)
    b = torch.randn(n_inst, f, generator=gen) * 0.5
    x = toy.generate_batch(7, torch.full((n_inst,), 0.6), f, gen)
    return W, b, x


@_exercise("toy.toy_forward")
def check_toy_forward(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W, b, x)`` with W (inst, d_hidden, feats), b (inst, feats), x (batch, inst, feats)."""
    mistakes = [
        Mistake(
            "Did you forget the ReLU?",
            lambda W, b, x: torch.einsum("idf,bid->bif", W, torch.einsum("idf,bif->bid", W, x)) + b,
        ),
        Mistake("Did you forget the bias b?", lambda W, b, x: toy.toy_forward(W, 0 * b, x)),
        Mistake(
            "The ReLU comes after adding the bias: ReLU(W^T W x + b), not ReLU(W^T W x) + b.",
            lambda W, b, x: toy.toy_forward(W, 0 * b, x) + b,
        ),
    ]
    gen = _generator(1)
    for trial in range(n_trials):
        W, b, x = _random_toy(gen, 2 + trial, 2 + trial, 5 + trial)
        hint = "The output has the input's shape (batch, inst, feats)."
        _expect_match(fn, (W, b, x), toy.toy_forward, mistakes, x.shape, hint)
    _passed(fn, f"matches ReLU(W^T W x + b) on {n_trials} random batches of models")


@_exercise("toy.importance_loss")
def check_importance_loss(fn: Callable, n_trials: int = 4) -> None:
    """``fn(x, x_hat, importance)`` -> one loss per instance."""
    mistakes = [
        Mistake(
            "Weigh each feature's squared error by its importance I_i.",
            lambda x, xh, imp: ((x - xh) ** 2).sum(-1).mean(0),
        ),
        Mistake(
            "Sum the weighted errors over features (then average over the batch), not mean.",
            lambda x, xh, imp: (imp * (x - xh) ** 2).mean(-1).mean(0),
        ),
        Mistake(
            "Average over the batch, don't sum over it.",
            lambda x, xh, imp: (imp * (x - xh) ** 2).sum(-1).sum(0),
        ),
        Mistake(
            "Square the error: (x_i - x_hat_i)^2, not its absolute value.",
            lambda x, xh, imp: (imp * (x - xh).abs()).sum(-1).mean(0),
        ),
    ]
    gen = _generator(2)
    for trial in range(n_trials):
        n_inst, f = 2 + trial, 3 + 2 * trial
        x = torch.rand(6 + trial, n_inst, f, generator=gen)
        x_hat = torch.rand(6 + trial, n_inst, f, generator=gen)
        imp = torch.rand(n_inst, f, generator=gen) + 0.1
        hint = "Return one loss per instance: reduce batch and features."
        _expect_match(fn, (x, x_hat, imp), toy.importance_loss, mistakes, (n_inst,), hint)
    _passed(fn, f"matches the importance-weighted loss on {n_trials} random batches")


@_exercise("toy.feature_dimensionality")
def check_feature_dimensionality(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W)`` with W (inst, d_hidden, feats) -> D (inst, feats)."""

    def unnormalized(W):
        overlaps = torch.einsum("idf,idg->ifg", W, W)
        return (W**2).sum(1) / (overlaps**2).sum(-1)

    def overlaps_not_squared(W):
        W_hat = W / W.norm(dim=1, keepdim=True)
        return (W**2).sum(1) / torch.einsum("idf,idg->ifg", W_hat, W).abs().sum(-1)

    mistakes = [
        Mistake(
            "Use the unit vector W_hat_i = W_i / ||W_i|| in the denominator's dot products.",
            unnormalized,
        ),
        Mistake("Square each overlap (W_hat_i . W_j) before summing over j.", overlaps_not_squared),
        Mistake(
            "The numerator is the squared norm ||W_i||^2, not the norm.",
            lambda W: toy.feature_dimensionality(W) / W.norm(dim=1),
        ),
    ]
    gen = _generator(3)
    for trial in range(n_trials):
        W = torch.randn(2 + trial, 2 + trial, 5 + 2 * trial, generator=gen)
        shape = (W.shape[0], W.shape[2])
        hint = "One value per (instance, feature)."
        _expect_match(fn, (W,), toy.feature_dimensionality, mistakes, shape, hint)
    pentagon = torch.stack([torch.arange(5) * 2 * torch.pi / 5] * 2)
    pentagon = torch.stack([pentagon[0].cos(), pentagon[1].sin()])[None]
    if not torch.allclose(_call(fn, pentagon), torch.full((1, 5), 0.4), atol=1e-4):
        raise CheckFailed("A pentagon's five features should each get D = 2/5.")
    _passed(fn, f"matches the reference on {n_trials} random models, and D = 2/5 for a pentagon")


# ---------------------------------------------------------------- the training loop

_TRAIN_CFG = toy.ToyConfig(n_features=5, d_hidden=2, n_instances=3)
_TRAIN_STEPS, _TRAIN_BATCH, _TRAIN_LR = 60, 64, 1e-2


def _fresh_training(seed: int) -> tuple:
    """A new tiny ToyModel and the generator that initialised it: ``train``'s arguments."""
    generator = _generator(seed)
    probability = torch.tensor([0.3, 0.1, 0.05])
    importance = torch.stack([r ** torch.arange(5.0) for r in (0.9, 0.7, 1.0)])
    model = toy.ToyModel(_TRAIN_CFG, probability, importance, generator)
    return (model, _TRAIN_STEPS, _TRAIN_BATCH, _TRAIN_LR, generator, False)


def _train_variant(**change: bool) -> Callable:
    """:func:`toy.train` with one mistake in it."""

    def train(model, steps, batch_size, lr, generator=None, progress=False):
        params = list(model.parameters())
        if change.get("sgd"):
            optimizer = torch.optim.SGD(params, lr=lr)
        else:
            optimizer = (
                torch.optim.Adam(params)
                if change.get("default_lr")
                else torch.optim.Adam(params, lr=lr)
            )
        weight = torch.ones_like(model.importance) if change.get("no_importance") else None
        for _ in range(steps):
            x = model.generate_batch(batch_size, generator)
            loss = toy.importance_loss(x, model(x), model.importance if weight is None else weight)
            if not change.get("no_zero_grad"):
                optimizer.zero_grad()
            loss.sum().backward()
            optimizer.step()
        if change.get("last_batch"):
            return loss.detach()
        with torch.no_grad():
            x = model.generate_batch(8 * batch_size, generator)
            return toy.importance_loss(x, model(x), model.importance)

    return train


def _final_losses(fn: Callable, seed: int) -> Tensor:
    out = _call(fn, *_fresh_training(seed))
    _expect_shape(out, (_TRAIN_CFG.n_instances,), fn, "Return one final loss per instance.")
    return out.detach()


@_exercise("toy.train")
def check_train_toy(fn: Callable, seeds: tuple[int, ...] = (0, 1)) -> None:
    """``fn(model, steps, batch_size, lr, generator, progress)`` trains ``model`` in place and
    returns each instance's final loss; a fresh tiny model and generator for every run."""
    mistakes = [
        Mistake(
            "Did you forget optimizer.zero_grad()? Gradients add up across steps without it.",
            _train_variant(no_zero_grad=True),
        ),
        Mistake(
            "Weigh the loss by the model's importances: importance_loss(x, x_hat, "
            "model.importance).",
            _train_variant(no_importance=True),
        ),
        Mistake("Use Adam (torch.optim.Adam), not SGD.", _train_variant(sgd=True)),
        Mistake(
            "Pass the learning rate on: torch.optim.Adam(model.parameters(), lr=lr).",
            _train_variant(default_lr=True),
        ),
        Mistake(
            "Return the loss on a fresh batch of 8 * batch_size drawn after training (with the "
            "same generator, under torch.no_grad()), not the last training batch's loss.",
            _train_variant(last_batch=True),
        ),
    ]
    for seed in seeds:
        out = _final_losses(fn, seed)
        if not torch.equal(out, _final_losses(fn, seed)):
            raise CheckFailed(
                f"Two runs of `{_name(fn)}` from identically seeded generators differ: draw every "
                "batch with generate_batch(..., generator=generator)."
            )
        expected = toy.train(*_fresh_training(seed)).detach()
        if torch.allclose(out, expected, atol=1e-4, rtol=1e-3):
            continue
        for mistake in mistakes:
            wrong = mistake.compute(*_fresh_training(seed))
            if torch.allclose(out, wrong.detach(), atol=1e-4, rtol=1e-3):
                raise CheckFailed(f"`{_name(fn)}` gives wrong final losses. {mistake.hint}")
        err = (out - expected).abs().max().item()
        raise CheckFailed(
            f"`{_name(fn)}` gives wrong final losses (largest error {err:.3g}). Each step: draw "
            "a batch with generate_batch(batch_size, model.feature_probability, "
            "model.cfg.n_features, generator=generator), then forward, the importance loss summed "
            "over instances, zero_grad, backward, step."
        )
    _passed(
        fn,
        f"final losses match the course's loop on {len(seeds)} seeded runs of 3 toy models "
        f"({_TRAIN_STEPS} Adam steps each), and runs are reproducible",
    )


def _toy_inputs(seed: int, n_inst: int, d_hidden: int, n_features: int):
    gen = _generator(seed)
    cfg = toy.ToyConfig(n_features=n_features, d_hidden=d_hidden, n_instances=n_inst)
    probability = torch.rand(n_inst, generator=gen)
    importance = torch.rand(n_inst, n_features, generator=gen)
    return cfg, probability, importance


@_exercise("toy.ToyModel")
def check_toy_model(cls: Callable, n_trials: int = 3) -> None:
    """``cls(cfg, feature_probability, importance, generator)``: parameters ``W`` (inst,
    d_hidden, feats), Xavier-normal from ``generator``, and ``b_final`` (inst, feats), zeros;
    buffers ``feature_probability`` and ``importance``; ``forward(x)`` = ReLU(W^T W x + b)."""
    for trial in range(n_trials):
        n_inst, d_hidden, n_features = 2 + trial, 2 + trial, 5 + trial
        cfg, probability, importance = _toy_inputs(trial, n_inst, d_hidden, n_features)
        model = _call(cls, cfg, probability, importance, _generator(trial))
        if not isinstance(model, torch.nn.Module):
            raise CheckFailed(f"`{_name(cls)}(...)` should build an nn.Module.")
        params = dict(model.named_parameters())
        if set(params) != {"W", "b_final"}:
            raise CheckFailed(
                f"The model's parameters are {sorted(params)}: it needs exactly `W` and `b_final` "
                "as nn.Parameter (buffers are not parameters)."
            )
        buffers = dict(model.named_buffers())
        if not {"feature_probability", "importance"} <= set(buffers):
            raise CheckFailed(
                "Register `feature_probability` and `importance` with `self.register_buffer`: "
                "they move with the model and the training loop reads them from it."
            )
        _expect_shape(
            params["W"], (n_inst, d_hidden, n_features), cls, "W is (inst, d_hidden, feats)."
        )
        _expect_shape(params["b_final"], (n_inst, n_features), cls, "b_final is (inst, feats).")
        expected = toy.ToyModel(cfg, probability, importance, _generator(trial))
        W, W_ref = params["W"].detach(), expected.W.detach()
        if not torch.allclose(W, W_ref, atol=1e-6):
            std = (2.0 / (d_hidden + n_features)) ** 0.5
            if (
                torch.allclose(W * std / W.std(), W_ref, atol=0.05 * std)
                or abs(W.std() / W_ref.std() - 1) > 0.3
            ):
                raise CheckFailed(
                    "W's scale is off: Xavier normal has std sqrt(2 / (d_hidden + n_features)); "
                    "draw torch.randn(shape, generator=generator) and multiply by it."
                )
            raise CheckFailed(
                "W is not the draw the course expects: one torch.randn((inst, d_hidden, feats), "
                "generator=generator) times the Xavier std, and nothing else drawn before it."
            )
        if not torch.equal(params["b_final"].detach(), torch.zeros(n_inst, n_features)):
            raise CheckFailed("b_final starts at zeros.")
        if not torch.equal(buffers["importance"], importance.float()):
            raise CheckFailed("The `importance` buffer should hold the importances it was given.")
        x = toy.generate_batch(16, probability, n_features, _generator(9))
        with torch.no_grad():
            out = model(x.clone())
            _expect_shape(out, x.shape, cls, "forward returns (batch, inst, feats).")
            if not torch.allclose(out, expected(x), atol=1e-5):
                raise CheckFailed(
                    "forward(x) should be ReLU(W^T W x + b_final): call your toy_forward with "
                    "self.W and self.b_final."
                )
    _passed(cls, f"parameters, buffers, initialisation and forward match on {n_trials} configs")
