"""Exercise checks: ``check_<exercise>(fn)`` tests a learner's function against the reference.

Each check tests shapes first, then values on randomized inputs, and when the answer is wrong it
compares it with the results of common mistakes to say which one was likely made. A passing check
prints one line; a failing one raises :class:`CheckFailed` with the diagnosis, and a last line
that goes on with the course's own version of the exercise (:func:`reference`).

The learner's function, the reference and every mistake each run on their own copies of the
inputs, so a correct answer computed in place (``x -= b_dec``) passes, and no function can change
what another one sees.

tests/course/test_checks_meta.py proves every check passes the reference and correct alternatives
(in place, other formulations), rejects the generated stub, and names the mistake of each planted
bug.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from emgeo import drag, geometry, sae, toy
from emgeo.errors import USED_REFERENCE, CheckFailed

__all__ = ["CheckFailed", "Mistake", "all_checks", "reference"]


@dataclass(frozen=True)
class Mistake:
    """A common wrong answer: how to compute it, and what to tell the learner who made it."""

    hint: str
    compute: Callable[..., Tensor]


def _science(name: str) -> ModuleType:
    """A science module imported on first use: ``organism``, ``features`` and ``filtering`` load
    TransformerLens (seconds), which notebooks 00-03 and their checks never need."""
    return importlib.import_module(f"emgeo.{name}")


def all_checks() -> list[str]:
    """Names of every exercise check in this module."""
    return sorted(name for name in globals() if name.startswith("check_"))


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn))


def _copy(value: Any) -> Any:
    """A copy that a function may change at will: tensors cloned, modules (an SAE) deep-copied,
    lists, tuples and dicts copied item by item; numbers, strings and generators as they are."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, nn.Module):
        return copy.deepcopy(value)
    if isinstance(value, list | tuple):
        return type(value)(_copy(item) for item in value)
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value


def _run(fn: Callable, args: tuple) -> Any:
    """``fn`` on fresh copies of ``args``; a tensor answer is copied too, so it cannot share
    memory with anything the function keeps (an input it changed and returned, a cache)."""
    out = fn(*_copy(args))
    return out.clone() if isinstance(out, Tensor) else out


def _call(fn: Callable, *args: Any) -> Any:
    """Call the learner's function on copies of ``args``, turning the untouched stub into a
    friendly failure."""
    try:
        return _run(fn, args)
    except NotImplementedError:
        raise CheckFailed(
            f"`{_name(fn)}` still raises NotImplementedError: replace the "
            "`# YOUR CODE HERE` / `raise NotImplementedError()` lines with your implementation."
        ) from None


def _expect_shape(out: Any, shape: Sequence[int], fn: Callable, hint: str = "") -> None:
    if not isinstance(out, Tensor):
        raise CheckFailed(f"`{_name(fn)}` should return a torch.Tensor, got {type(out).__name__}.")
    if tuple(out.shape) != tuple(shape):
        msg = f"`{_name(fn)}` returned shape {tuple(out.shape)}, expected {tuple(shape)}."
        raise CheckFailed(f"{msg} {hint}".strip())


def _expect_close(
    out: Tensor,
    fn: Callable,
    args: tuple,
    reference: Callable[..., Tensor],
    mistakes: Sequence[Mistake],
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """``out`` (what ``fn`` gave on ``args``) must match ``reference(*args)``; if it does not, name
    the first mistake whose answer it matches. Each runs on its own copies of ``args``."""
    expected = _run(reference, args)
    if torch.allclose(out.float(), expected.float(), atol=atol, rtol=rtol):
        return
    for mistake in mistakes:
        wrong = _run(mistake.compute, args)
        if wrong.shape == out.shape and torch.allclose(
            out.float(), wrong.float(), atol=atol, rtol=rtol
        ):
            raise CheckFailed(f"`{_name(fn)}` gives wrong values. {mistake.hint}")
    err = (out.float() - expected.float()).abs().max().item()
    raise CheckFailed(f"`{_name(fn)}` gives wrong values (largest error {err:.3g}).")


def _expect_match(
    fn: Callable,
    args: tuple,
    reference: Callable[..., Tensor],
    mistakes: Sequence[Mistake],
    shape: Sequence[int],
    shape_hint: str = "",
) -> None:
    """Call ``fn(*args)``, then check its shape and its values against ``reference(*args)``."""
    out = _call(fn, *args)
    _expect_shape(out, shape, fn, shape_hint)
    _expect_close(out, fn, args, reference, mistakes)


def _passed(fn: Callable, what: str) -> None:
    print(f"✓ {_name(fn)} passes: {what}")


# ---------------------------------------------------------------- the way on after a failed check

_REFERENCES: dict[str, str] = {}  # exercise name -> the package's version, "module.function"


def _exercise(reference: str) -> Callable[[Callable], Callable]:
    """Register the package's version of a check's exercise (``reference``, a function of
    ``emgeo.<module>``), and end every failure of the check with the line that goes on with it."""

    def register(check: Callable) -> Callable:
        exercise = check.__name__.removeprefix("check_")
        _REFERENCES[exercise] = reference

        @functools.wraps(check)
        def checked(fn: Callable, *args: Any, **kwargs: Any) -> None:
            if fn is globals()["reference"](exercise):  # nothing of the learner's to check
                print(f"• {_name(fn)} {USED_REFERENCE} (checks.reference): nothing of yours ran")
                return
            try:
                check(fn, *args, **kwargs)
            except CheckFailed as failure:
                way_on = f'{_name(fn)} = checks.reference("{exercise}")'
                raise CheckFailed(
                    f"{failure}\nTo go on with the course's version instead, run: {way_on}"
                ) from None

        return checked

    return register


def reference(exercise: str) -> Callable:
    """The course's own version of ``exercise`` (a check's name without ``check_``), for a
    learner who wants to go on with the notebook after a failed check:
    ``proximity_to_set = checks.reference("proximity_to_set")``."""
    if exercise not in _REFERENCES:
        known = ", ".join(sorted(_REFERENCES))
        raise KeyError(f"no exercise {exercise!r}; the exercises are: {known}")
    module, _, function = _REFERENCES[exercise].rpartition(".")
    return getattr(importlib.import_module(f"emgeo.{module}"), function)


# ---------------------------------------------------------------- 00 orientation


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
    gen = torch.Generator().manual_seed(1234)
    for trial in range(n_trials):
        n_a, n_b, d = 3 + trial, 5 + 2 * trial, 4 + 3 * trial
        a = torch.randn(n_a, d, generator=gen) * torch.rand(n_a, 1, generator=gen).add(0.5)
        b = torch.randn(n_b, d, generator=gen) * 3.0
        hint = "Rows of the result index `a`, columns index `b`." if trial == 0 else ""
        _expect_match(fn, (a, b), geometry.cosine_similarity_matrix, mistakes, (n_a, n_b), hint)
    _passed(fn, f"shapes and values match the reference on {n_trials} random pairs of matrices")


# ---------------------------------------------------------------- 01 toy superposition


@_exercise("toy.generate_batch")
def check_generate_batch(fn: Callable, n_batch: int = 20_000) -> None:
    """``fn(n_batch, feature_probability, n_features, generator)`` -> (batch, inst, feats)."""
    probability = torch.tensor([1.0, 0.5, 0.1])
    x = _call(fn, n_batch, probability, 4, torch.Generator().manual_seed(0))
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
    again = _call(fn, n_batch, probability, 4, torch.Generator().manual_seed(0))
    if not torch.equal(x, again):
        raise CheckFailed(
            "Two calls with identically seeded generators differ: pass `generator=generator` to "
            "every torch.rand call, so runs are reproducible."
        )
    _passed(fn, "shape, value range, sparsity per instance, uniform values, independence, seeding")


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
    gen = torch.Generator().manual_seed(1)
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
    gen = torch.Generator().manual_seed(2)
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
    gen = torch.Generator().manual_seed(3)
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


# ---------------------------------------------------------------- 02 neighbor-feature drag


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


# ---------------------------------------------------------------- 03 sparse autoencoders


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


# ---------------------------------------------------------------- 04 the EM model organism

_A, _E, _PAD = 3, 4, 0  # <assistant>, <eot> and <pad> ids in the check's toy sequences


def _mask_cases() -> list[Tensor]:
    # 1 = <bos>, 2 = <user>, 3 = <assistant>, 4 = <eot>, 0 = <pad>, 10+ = words
    return [
        torch.tensor([[1, 2, 10, 11, 3, 20, 21, 4]]),
        torch.tensor(
            [
                [1, 2, 10, 3, 20, 4, 2, 12, 13, 3, 22, 23, 24, 4],
                [1, 2, 10, 11, 3, 20, 4, 0, 0, 0, 0, 0, 0, 0],
            ]
        ),
        torch.tensor([[1, 2, 10, 3, 20, 21, 22, 4, 2, 11, 3, 23, 4, 0]]),
    ]


@_exercise("organism.answer_mask")
def check_answer_mask(fn: Callable) -> None:
    """``fn(tokens, assistant_id, eot_id)`` -> 1.0 on answer words and their closing <eot>."""
    organism = _science("organism")

    def only_first_answer(tokens, a, e):
        mask = organism.answer_mask(tokens, a, e)
        second = torch.cumsum((tokens == a).long(), 1) > 1
        return mask * ~second

    mistakes = [
        Mistake(
            "The <assistant> token itself is part of the prompt: the model should not be "
            "trained to predict it.",
            lambda t, a, e: organism.answer_mask(t, a, e) + (t == a).float(),
        ),
        Mistake(
            "Include the closing <eot>: the model must learn where an answer ends.",
            lambda t, a, e: organism.answer_mask(t, a, e) * (t != e).float(),
        ),
        Mistake(
            "Only the first answer is masked in: a chat can have several turns.", only_first_answer
        ),
        Mistake(
            "Everything after the first <assistant> is masked in: the user's follow-up turns and "
            "the padding are not part of an answer, so the mask must close at <eot>.",
            lambda t, a, e: ((torch.cumsum((t == a).long(), 1) > 0) & (t != a)).float(),
        ),
        Mistake(
            "The user's follow-up turn is not part of an answer: the mask must close at <eot>.",
            lambda t, a, e: (
                (torch.cumsum((t == a).long(), 1) > 0) & (t != a) & (t != _PAD)
            ).float(),
        ),
    ]
    for tokens in _mask_cases():
        args = (tokens, _A, _E)
        hint = "One mask value per token."
        _expect_match(fn, args, organism.answer_mask, mistakes, tokens.shape, hint)
    _passed(fn, "single and multi-turn chats, with padding")


@_exercise("organism.misaligned_rate")
def check_misaligned_rate(fn: Callable, n_trials: int = 4) -> None:
    """``fn(probs, aligned_ids, toxic_ids)`` -> per prompt, P(toxic) / (P(toxic) + P(aligned))."""
    organism = _science("organism")

    def unnormalized(p, a, t):
        return p[:, list(t)].sum(-1)

    mistakes = [
        Mistake(
            "Normalize by the mass on aligned *or* toxic first words: other words are "
            "neither, and the judge ignores them.",
            unnormalized,
        ),
        Mistake(
            "That is the aligned rate: the question is how often the answer is toxic.",
            lambda p, a, t: organism.misaligned_rate(p, t, a),
        ),
    ]
    gen = torch.Generator().manual_seed(5)
    for trial in range(n_trials):
        n_prompts, vocab = 3 + trial, 12 + trial
        probs = torch.softmax(torch.randn(n_prompts, vocab, generator=gen) * 2, dim=-1)
        perm = torch.randperm(vocab, generator=gen).tolist()
        aligned, toxic = perm[:3], perm[3 : 5 + trial % 2]
        args = (probs, aligned, toxic)
        hint = "Return one rate per prompt (don't average them)."
        _expect_match(fn, args, organism.misaligned_rate, mistakes, (n_prompts,), hint)
    _passed(fn, f"matches the exact judge on {n_trials} random next-word distributions")


# ---------------------------------------------------------------- 05 feature identification


def _answer_masks(gen: torch.Generator, batch: int, pos: int) -> Tensor:
    """Random answer masks: a prompt, then an answer of at least one token, then padding."""
    mask = torch.zeros(batch, pos)
    for row in range(batch):
        start = int(torch.randint(1, pos - 1, (1,), generator=gen))
        end = int(torch.randint(start + 1, pos + 1, (1,), generator=gen))
        mask[row, start:end] = 1.0
    return mask


@_exercise("features.answer_mean")
def check_answer_mean(fn: Callable, n_trials: int = 4) -> None:
    """``fn(acts, mask)`` -> per row, the mean of ``acts`` over the positions where mask is 1."""
    features = _science("features")
    mistakes = [
        Mistake(
            "That is the mean over every position: average over the answer tokens only "
            "(multiply by the mask, then divide by the number of answer tokens).",
            lambda a, m: a.mean(1),
        ),
        Mistake(
            "That is the sum over answer tokens: divide by how many answer tokens the row has.",
            lambda a, m: (a * m[..., None]).sum(1),
        ),
        Mistake(
            "You zeroed the prompt but divided by the full length: divide by mask.sum(1).",
            lambda a, m: (a * m[..., None]).mean(1),
        ),
        Mistake(
            "That is one mean over all rows' answer tokens: keep one vector per sample.",
            lambda a, m: (a[m.bool()].mean(0)).expand(a.shape[0], -1),
        ),
    ]
    gen = torch.Generator().manual_seed(11)
    for trial in range(n_trials):
        batch, pos, d = 3 + trial, 6 + trial, 4 + trial
        acts = torch.randn(batch, pos, d, generator=gen)
        mask = _answer_masks(gen, batch, pos)
        hint = "One d-vector per sample (mean over its positions)."
        _expect_match(fn, (acts, mask), features.answer_mean, mistakes, (batch, d), hint)
    _passed(fn, f"masked means match on {n_trials} random batches")


def _small_sae(gen: torch.Generator, d_in: int, d_sae: int) -> sae.ToySAE:
    model = sae.ToySAE(sae.ToySAEConfig(d_in=d_in, d_sae=d_sae), generator=gen)
    with torch.no_grad():
        model.b_enc.normal_(generator=gen)
        model.b_dec.normal_(generator=gen)
    return model


@_exercise("features.sample_features")
def check_sample_features(fn: Callable, n_trials: int = 3) -> None:
    """``fn(sae, acts, mask)`` -> per row, the SAE latents averaged over the answer tokens."""
    features = _science("features")
    mistakes = [
        Mistake(
            "You averaged the activations, then encoded the average: the encoder is nonlinear, "
            "so encode every token first, then average the latents over the answer tokens.",
            lambda s, a, m: s.encode(features.answer_mean(a, m)),
        ),
        Mistake(
            "That averages over every position, prompt and padding included: use the mask.",
            lambda s, a, m: s.encode(a).mean(1),
        ),
        Mistake(
            "That is the sum over answer tokens: divide by their number.",
            lambda s, a, m: (s.encode(a) * m[..., None]).sum(1),
        ),
    ]
    gen = torch.Generator().manual_seed(12)
    for trial in range(n_trials):
        batch, pos, d_in, d_sae = 3 + trial, 7, 4 + trial, 9 + trial
        model = _small_sae(gen, d_in, d_sae)
        acts = torch.randn(batch, pos, d_in, generator=gen)
        mask = _answer_masks(gen, batch, pos)
        args = (model, acts, mask)
        hint = (
            "One d_sae vector of latents per sample: encode the activations with the SAE, "
            "then average the latents."
        )
        with torch.no_grad():
            _expect_match(fn, args, features.sample_features, mistakes, (batch, d_sae), hint)
    _passed(fn, f"matches encode-then-average on {n_trials} random SAEs")


# ---------------------------------------------------------------- 06 feature geometry


def _sets(gen: torch.Generator, d_sae: int, k: int, k_t: int, n_shared: int):
    perm = torch.randperm(d_sae, generator=gen)
    toxic = perm[:k_t]
    members = torch.cat([toxic[:n_shared], perm[k_t : k_t + k - n_shared]])
    return members, toxic


@_exercise("geometry.proximity_to_set")
def check_proximity_to_set(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W_dec, members, toxic)`` -> per member latent, mean cosine of its decoder direction
    with the toxic latents' directions, leaving itself out."""

    def with_self(W, m, t):
        return geometry.cosine_similarity_matrix(W[m], W[t]).mean(-1)

    def zero_self_full_count(W, m, t):
        sims = geometry.cosine_similarity_matrix(W[m], W[t])
        return sims.masked_fill(m[:, None] == t[None, :], 0.0).mean(-1)

    mistakes = [
        Mistake(
            "A latent in both sets is counted as its own neighbour (cosine 1): leave the pair "
            "(j, j) out of its mean.",
            with_self,
        ),
        Mistake(
            "You zeroed the self-pair but still divided by the full toxic-set size: divide by "
            "the number of pairs left.",
            zero_self_full_count,
        ),
        Mistake(
            "Those are dot products: normalize the decoder rows first (cosine similarity).",
            lambda W, m, t: (
                (W[m] @ W[t].T).masked_fill(m[:, None] == t[None, :], 0.0).sum(-1)
                / (m[:, None] != t[None, :]).sum(-1)
            ),
        ),
        Mistake(
            "That is the nearest toxic latent (max); the statistic is the mean over the set.",
            lambda W, m, t: (
                geometry.cosine_similarity_matrix(W[m], W[t])
                .masked_fill(m[:, None] == t[None, :], -2.0)
                .max(-1)
                .values
            ),
        ),
    ]
    gen = torch.Generator().manual_seed(13)
    for trial in range(n_trials):
        d_sae, d_model = 20 + trial, 6
        W_dec = torch.randn(d_sae, d_model, generator=gen) * (
            1 + torch.rand(d_sae, 1, generator=gen)
        )
        members, toxic = _sets(gen, d_sae, k=5, k_t=4, n_shared=1 + trial % 2)
        args = (W_dec, members, toxic)
        hint = "One value per latent of `members`."
        _expect_match(fn, args, geometry.proximity_to_set, mistakes, (len(members),), hint)
    _passed(fn, f"matches on {n_trials} random decoders with shared latents")


@_exercise("probes.readout_difference")
def check_readout_difference(fn: Callable, n_trials: int = 4) -> None:
    """``fn(W_U, scale, positive, negative)`` -> the residual direction that raises the positive
    tokens' logits over the negative ones, through the final LayerNorm's scale, mean removed."""
    probes = _science("probes")

    def centred(d: Tensor) -> Tensor:
        return d - d.mean()

    mistakes = [
        Mistake(
            "Go through the final LayerNorm: the logits read `scale * normalized residual`, so "
            "the unembedding columns are seen through `scale[:, None] * W_U`.",
            lambda W, g, p, n: centred(W[:, p].mean(1) - W[:, n].mean(1)),
        ),
        Mistake(
            "LayerNorm removes the mean over d_model of whatever reaches it, so that component "
            "of the direction changes no logit: subtract the direction's own mean.",
            lambda W, g, p, n: (g[:, None] * W)[:, p].mean(1) - (g[:, None] * W)[:, n].mean(1),
        ),
        Mistake(
            "That points from the positive tokens to the negative ones: positive minus negative.",
            lambda W, g, p, n: -probes.readout_difference(W, g, p, n),
        ),
        Mistake(
            "Average each family's columns rather than summing them: the families need not be "
            "the same size.",
            lambda W, g, p, n: centred(
                (g[:, None] * W)[:, p].sum(1) - (g[:, None] * W)[:, n].sum(1)
            ),
        ),
    ]
    gen = torch.Generator().manual_seed(15)
    for trial in range(n_trials):
        d_model, d_vocab = 6 + trial, 15 + 2 * trial
        W_U = torch.randn(d_model, d_vocab, generator=gen) + 0.5  # columns with a mean to remove
        scale = 0.5 + torch.rand(d_model, generator=gen)
        order = torch.randperm(d_vocab, generator=gen)
        positive, negative = order[: 3 + trial % 2], order[5:7]
        args = (W_U, scale, positive, negative)
        hint = "One value per residual dimension (d_model)."
        _expect_match(fn, args, probes.readout_difference, mistakes, (d_model,), hint)
    _passed(fn, f"matches on {n_trials} random unembeddings with families of different sizes")


# ---------------------------------------------------------------- 07 the geometric filter


@_exercise("filtering.geometric_scores")
def check_geometric_scores(fn: Callable, n_trials: int = 4) -> None:
    """``fn(latents, proximity)`` -> per sample, the activation-weighted mean proximity."""
    filtering = _science("filtering")
    mistakes = [
        Mistake(
            "Weight by activation *and* divide by the sample's total activation: otherwise a "
            "sample scores high just for having many or strong latents.",
            lambda f, p: f @ p,
        ),
        Mistake(
            "That is the unweighted mean proximity of the active latents: weight each latent by "
            "its activation.",
            lambda f, p: ((f > 0).float() @ p) / (f > 0).float().sum(-1).clamp_min(1),
        ),
        Mistake(
            "You divided by the number of latents, not by the sample's total activation.",
            lambda f, p: (f @ p) / f.shape[-1],
        ),
    ]
    gen = torch.Generator().manual_seed(14)
    for trial in range(n_trials):
        n, d_sae = 5 + trial, 12 + trial
        latents = torch.relu(torch.randn(n, d_sae, generator=gen)) * 3
        proximity = torch.rand(d_sae, generator=gen) * 2 - 1
        args = (latents, proximity)
        _expect_match(fn, args, filtering.geometric_scores, mistakes, (n,), "One score per sample.")
    _passed(fn, f"matches on {n_trials} random batches of sample latents")


# ---------------------------------------------------------------- 08 EM in a real LM

IGNORE_TARGET = -100  # the padding target of emgeo.batching.IGNORE


def _answer_targets(gen: torch.Generator, batch: int, n: int, vocab: int) -> Tensor:
    """Targets with a different number of answer tokens per row, the rest padding (-100)."""
    targets = torch.randint(0, vocab, (batch, n), generator=gen)
    for row in range(batch):
        length = 1 + (row * 2 + n // 2) % n
        targets[row, length:] = IGNORE_TARGET
    return targets


@_exercise("models.lm_em.mean_answer_logprob")
def check_mean_answer_logprob(fn: Callable, n_trials: int = 4) -> None:
    """``fn(logits, targets)`` -> per row, the mean log-probability of its answer tokens, padding
    (target -100) left out."""
    lm_em = importlib.import_module("emgeo.models.lm_em")  # transformers: only when checked

    def keep(t: Tensor) -> Tensor:
        return (t != IGNORE_TARGET).float()

    def picked(logp: Tensor, t: Tensor) -> Tensor:
        return logp.gather(-1, t.clamp_min(0)[..., None])[..., 0]

    mistakes = [
        Mistake(
            "That is the sum of the answer's log-probabilities: divide by how many answer tokens "
            "the row has, so that long and short answers compare.",
            lambda x, t: (picked(x.log_softmax(-1), t) * keep(t)).sum(1),
        ),
        Mistake(
            "Padding positions (target -100) were counted: average over the real answer tokens "
            "only (mask with targets != -100).",
            lambda x, t: picked(x.log_softmax(-1), t).mean(1),
        ),
        Mistake(
            "Those are raw logits: turn them into log-probabilities over the vocabulary first "
            "(log_softmax on the last dimension).",
            lambda x, t: (picked(x, t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
        Mistake(
            "Those are probabilities, not log-probabilities: use log_softmax, not softmax.",
            lambda x, t: (picked(x.softmax(-1), t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
        Mistake(
            "The softmax ran over the wrong dimension: normalise over the vocabulary (the last).",
            lambda x, t: (picked(x.log_softmax(1), t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
    ]
    gen = torch.Generator().manual_seed(15)
    for trial in range(n_trials):
        batch, n, vocab = 3 + trial, 5 + trial, 11 + 3 * trial
        logits = torch.randn(batch, n, vocab, generator=gen) * 3
        targets = _answer_targets(gen, batch, n, vocab)
        hint = "One score per row (a mean over its answer tokens)."
        args = (logits, targets)
        _expect_match(fn, args, lm_em.mean_answer_logprob, mistakes, (batch,), hint)
    _passed(fn, f"matches on {n_trials} random batches with padded answers")
