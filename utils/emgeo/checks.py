"""Exercise checks: ``check_<exercise>(fn)`` tests a learner's function against the reference.

Each check tests shapes first, then values on randomized inputs, and when the answer is wrong it
compares it with the results of common mistakes to say which one was likely made. A passing check
prints one line; a failing one raises :class:`CheckFailed` with the diagnosis.

tests/test_checks_meta.py proves every check passes the reference, rejects the generated stub and
rejects planted bugs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from emgeo import geometry

__all__ = ["CheckFailed", "all_checks", "check_cosine_similarity"]


class CheckFailed(AssertionError):
    """A learner's function gave a wrong answer; the message says what is likely wrong."""

    def _render_traceback_(self) -> list[str]:  # IPython: show the diagnosis, not our stack
        return [f"CheckFailed: {self}"]


@dataclass(frozen=True)
class Mistake:
    """A common wrong answer: how to compute it, and what to tell the learner who made it."""

    hint: str
    compute: Callable[..., Tensor]


def all_checks() -> list[str]:
    """Names of every exercise check in this module."""
    return sorted(name for name in globals() if name.startswith("check_"))


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn))


def _call(fn: Callable, *args: Any) -> Any:
    """Call the learner's function, turning the untouched stub into a friendly failure."""
    try:
        return fn(*args)
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
    expected: Tensor,
    fn: Callable,
    mistakes: Sequence[Mistake],
    args: tuple,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    if torch.allclose(out.float(), expected.float(), atol=atol, rtol=rtol):
        return
    for mistake in mistakes:
        wrong = mistake.compute(*args)
        if wrong.shape == out.shape and torch.allclose(
            out.float(), wrong.float(), atol=atol, rtol=rtol
        ):
            raise CheckFailed(f"`{_name(fn)}` gives wrong values. {mistake.hint}")
    err = (out.float() - expected.float()).abs().max().item()
    raise CheckFailed(f"`{_name(fn)}` gives wrong values (largest error {err:.3g}).")


def _passed(fn: Callable, what: str) -> None:
    print(f"✓ {_name(fn)} passes: {what}")


# ---------------------------------------------------------------- 00 orientation


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
        out = _call(fn, a.clone(), b.clone())
        hint = "Rows of the result index `a`, columns index `b`." if trial == 0 else ""
        _expect_shape(out, (n_a, n_b), fn, hint)
        _expect_close(out, geometry.cosine_similarity_matrix(a, b), fn, mistakes, (a, b))
    _passed(fn, f"shapes and values match the reference on {n_trials} random pairs of matrices")
