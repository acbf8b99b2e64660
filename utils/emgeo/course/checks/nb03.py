"""Checks of notebook 03, sparse autoencoders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from emgeo import sae
from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_match,
    _generator,
    _name,
    _passed,
    _run,
)
from emgeo.errors import CheckFailed


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
    gen = _generator(6)
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
    gen = _generator(7)
    for trial in range(n_trials):
        x, x_hat = (
            torch.randn(6, 4 + trial, generator=gen),
            torch.randn(6, 4 + trial, generator=gen),
        )
        f = torch.rand(6, 9, generator=gen)
        args = (x, x_hat, f, 0.1 * (trial + 1))
        _expect_match(fn, args, sae.sae_loss, mistakes, (), "Return one scalar loss.")
    _passed(fn, f"matches MSE + l1_coeff * L1 on {n_trials} random batches")


# ---------------------------------------------------------------- the training loop

_STEPS, _BATCH, _LR, _L1 = 30, 16, 1e-2, 0.05  # the check's run; the SAE's config says l1 0.5


def _training_problem() -> tuple[sae.ToySAE, Tensor]:
    """A small SAE and sparse activations with an offset (so every parameter matters)."""
    gen = _generator(31)
    directions = torch.nn.functional.normalize(torch.randn(6, 4, generator=gen), dim=-1)
    active = torch.rand(256, 6, generator=gen) < 0.3
    acts = (torch.rand(256, 6, generator=gen) * active) @ directions + 0.5
    return sae.ToySAE(sae.ToySAEConfig(d_in=4, d_sae=8, l1_coeff=0.5), generator=gen), acts


def _train(fn: Callable, seed: int = 3) -> Any:
    """``fn`` trained on copies of the check's problem, with a fresh generator."""
    model, acts = _training_problem()
    generator = _generator(seed)
    return _call(fn, model, acts, _STEPS, _BATCH, _LR, _L1, generator)


def _weights(model: nn.Module) -> Tensor:
    return torch.cat([getattr(model, n).detach().flatten() for n in _PARAMS])


_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _loop(
    model,
    acts,
    steps,
    batch_size,
    lr,
    l1_coeff,
    generator,
    zero_grad=True,
    renorm_dim: int | None = -1,
    renorm_first=False,
    l1_from_config=False,
    count="samples",
):
    """The training loop with one thing changed, to name a mistake."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    l1 = model.cfg.l1_coeff if l1_from_config else l1_coeff
    for _ in range(steps):
        x = acts[torch.randint(len(acts), (batch_size,), generator=generator)]
        x_hat, f = model(x)
        loss = sae.sae_loss(x, x_hat, f, l1)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        if renorm_first:
            model.normalize_decoder()
        opt.step()
        if renorm_dim is not None and not renorm_first:
            with torch.no_grad():
                model.W_dec /= model.W_dec.norm(dim=renorm_dim, keepdim=True)
        if count == "samples":
            model.fire_count += (f > 0).sum(0)
        elif count == "batches":
            model.fire_count += (f > 0).any(0)
    return model


def _variant(**change: Any) -> Callable:
    return lambda *args: _loop(*args, **change)


def _diagnose(fn: Callable, got: Tensor, mistakes: Sequence[Mistake], outcome: Callable) -> None:
    """Name the first mistake whose trained SAE gives ``got`` (by ``outcome``)."""
    for mistake in mistakes:
        wrong = outcome(_train(mistake.compute))
        if wrong.shape == got.shape and torch.allclose(got, wrong, atol=1e-4, rtol=1e-3):
            raise CheckFailed(f"`{_name(fn)}` trains a different SAE. {mistake.hint}")


def _check_weights(fn: Callable, out: nn.Module, expected: nn.Module) -> None:
    """The learner's trained SAE has the reference's weights, or the likely mistake is named."""
    weight_mistakes = [
        Mistake(
            "Did you forget to renormalise the decoder? After every optimizer step, divide each "
            "row of W_dec by its norm (under torch.no_grad()); otherwise the L1 penalty is dodged "
            "by shrinking f and growing W_dec.",
            _variant(renorm_dim=None),
        ),
        Mistake(
            "You normalised the columns of W_dec: each latent's direction is a *row* "
            "(W_dec is d_sae x d_in), so take the norm over dim=-1.",
            _variant(renorm_dim=0),
        ),
        Mistake(
            "Call optimizer.zero_grad() every step: otherwise .grad accumulates the gradients "
            "of every step so far.",
            _variant(zero_grad=False),
        ),
        Mistake(
            "Renormalise *after* optimizer.step(): renormalising before it leaves the decoder "
            "that the next step sees (and the one you return) off unit norm.",
            _variant(renorm_first=True),
        ),
        Mistake(
            "Use the l1_coeff argument, not the SAE's config (model.cfg.l1_coeff).",
            _variant(l1_from_config=True),
        ),
    ]
    got, want = _weights(out), _weights(expected)
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-3):
        if not torch.equal(got, _weights(_train(fn))):
            raise CheckFailed(
                f"`{_name(fn)}` is not reproducible: two runs with the same seed train different "
                "SAEs. Draw every batch with the generator you are given: "
                "acts[torch.randint(len(acts), (batch_size,), generator=generator)]."
            )
        _diagnose(fn, got, weight_mistakes, _weights)
        err = (got - want).abs().max().item()
        raise CheckFailed(
            f"`{_name(fn)}` trains a different SAE (largest weight error {err:.3g}). One step: "
            "draw acts[torch.randint(len(acts), (batch_size,), generator=generator)], encode, "
            "decode, the SAE loss, zero_grad, backward, Adam step, renormalise the decoder rows."
        )


def _check_fire_count(fn: Callable, out: nn.Module, expected: nn.Module) -> None:
    """The learner's SAE counts the samples each latent fired on, as the reference does."""
    count_mistakes = [
        Mistake(
            "model.fire_count counts samples: add (f > 0).sum(0), the number of samples of the "
            "batch on which each latent fired, not whether it fired in the batch.",
            _variant(count="batches"),
        ),
        Mistake(
            "model.fire_count is still zero: every step, add (f > 0).sum(0) to it, so that the "
            "latents that never fired (dead) are known.",
            _variant(count=None),
        ),
    ]
    counts = out.fire_count.detach().float()
    if counts.shape != expected.fire_count.shape or not torch.allclose(
        counts, expected.fire_count, atol=1.0, rtol=0
    ):
        _diagnose(fn, counts, count_mistakes, lambda m: m.fire_count.detach().float())
        raise CheckFailed(
            f"`{_name(fn)}` trains the right SAE but model.fire_count is off: every step, add "
            "(f > 0).sum(0) of that step's batch (largest error "
            f"{(counts - expected.fire_count).abs().max().item():.3g})."
        )


@_exercise("sae.train_sae")
def check_train_sae_loop(fn: Callable) -> None:
    """``fn(model, acts, steps, batch_size, lr, l1_coeff, generator)`` -> the trained SAE: Adam,
    batches ``acts[torch.randint(len(acts), (batch_size,), generator=generator)]``, the SAE loss,
    decoder rows renormalised after every step, ``fire_count`` += samples each latent fired on."""
    out = _train(fn)
    if not isinstance(out, nn.Module) or not all(hasattr(out, n) for n in _PARAMS):
        raise CheckFailed(
            f"`{_name(fn)}` returned {type(out).__name__}: return the trained SAE (`return model`)."
        )
    expected = _train(sae.train_sae)
    _check_weights(fn, out, expected)
    _check_fire_count(fn, out, expected)
    _passed(fn, f"trains the course's SAE ({_STEPS} Adam steps, unit decoder rows, fire counts)")


# ---------------------------------------------------------------- the held-out evaluation

_FIELDS = ("mse", "explained_variance", "l0", "dead_fraction")


def _eval_problem(gen: torch.Generator, trial: int) -> tuple[sae.ToySAE, Tensor]:
    """A random SAE with three dead latents, and activations far from the origin."""
    d_in, d_sae = 4 + trial, 10 + 2 * trial
    model = sae.ToySAE(sae.ToySAEConfig(d_in=d_in, d_sae=d_sae), generator=gen)
    with torch.no_grad():
        model.W_enc.copy_(torch.randn(d_in, d_sae, generator=gen))
        model.b_enc.copy_(torch.randn(d_sae, generator=gen) - 0.5)
        model.b_enc[:3] = -100.0  # never fire
        model.b_dec.copy_(torch.randn(d_in, generator=gen))
    return model, torch.randn(40, d_in, generator=gen) + 2.0


def _stats_with(**change: Callable) -> Callable:
    """The reference evaluation with some statistics computed another (wrong) way."""

    @torch.no_grad()
    def evaluate(model, x):
        x_hat, f = model(x)
        right = sae.evaluate_sae(model, x)
        values = {k: change[k](x, x_hat, f) if k in change else getattr(right, k) for k in _FIELDS}
        return sae.SAEStats(**{k: float(v) for k, v in values.items()})

    return evaluate


def _mse(x, x_hat):
    return ((x - x_hat) ** 2).sum(-1).mean()


@_exercise("sae.evaluate_sae")
def check_evaluate_sae(fn: Callable, n_trials: int = 3) -> None:
    """``fn(model, x)`` -> ``sae.SAEStats``: MSE, explained variance, mean L0 and dead fraction."""
    mistakes = [
        Mistake(
            "Explained variance compares the error with the variance of x around its mean: "
            "centre x (x - x.mean(0)) before squaring.",
            _stats_with(
                explained_variance=lambda x, xh, f: 1 - _mse(x, xh) / (x**2).sum(-1).mean()
            ),
        ),
        Mistake(
            "L0 is per sample: count the active latents of each row, then average over the rows "
            "(you gave the total over the batch).",
            _stats_with(l0=lambda x, xh, f: (f > 0).sum()),
        ),
        Mistake(
            "L0 is per sample: count the active latents of each row, then average over the rows "
            "(you counted the latents active anywhere in the batch).",
            _stats_with(l0=lambda x, xh, f: (f > 0).any(0).sum()),
        ),
        Mistake(
            "L0 counts active latents (a sum over d_sae) per sample: you averaged over the "
            "latents too.",
            _stats_with(l0=lambda x, xh, f: (f > 0).float().mean()),
        ),
        Mistake(
            "A dead latent fires on no sample at all: ((f > 0).sum(0) == 0), then the share of "
            "latents that are dead (you gave the share of zero entries of f).",
            _stats_with(dead_fraction=lambda x, xh, f: (f == 0).float().mean()),
        ),
        Mistake(
            "dead_fraction is a fraction of d_sae, not a count of latents.",
            _stats_with(dead_fraction=lambda x, xh, f: ((f > 0).sum(0) == 0).sum()),
        ),
        Mistake(
            "mse sums the squared error over d_in, then averages over samples.",
            _stats_with(mse=lambda x, xh, f: ((x - xh) ** 2).mean()),
        ),
    ]
    gen = _generator(8)
    for trial in range(n_trials):
        args = _eval_problem(gen, trial)
        out = _call(fn, *args)
        if not all(hasattr(out, k) for k in _FIELDS):
            raise CheckFailed(
                f"`{_name(fn)}` returned {type(out).__name__}: return "
                "sae.SAEStats(mse=..., explained_variance=..., l0=..., dead_fraction=...)."
            )
        expected = _call(sae.evaluate_sae, *args)
        for field in _FIELDS:
            value, want = float(getattr(out, field)), getattr(expected, field)
            if abs(value - want) <= 1e-5 + 1e-4 * abs(want):
                continue
            for mistake in mistakes:
                wrong = getattr(_run(mistake.compute, args), field)
                if abs(value - wrong) <= 1e-5 + 1e-4 * abs(wrong) and wrong != want:
                    raise CheckFailed(f"`{_name(fn)}` gives a wrong {field}. {mistake.hint}")
            raise CheckFailed(f"`{_name(fn)}` gives {field} {value:.4g}, expected {want:.4g}.")
    _passed(fn, f"MSE, explained variance, L0 and dead fraction of {n_trials} random SAEs")
