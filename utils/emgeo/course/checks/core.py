"""The machinery every exercise check shares: copies, calls, comparisons, the diagnosis of
named mistakes, and the registry of the course's own version of each exercise."""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from emgeo.errors import USED_REFERENCE, CheckFailed


@dataclass(frozen=True)
class Mistake:
    """A common wrong answer: how to compute it, and what to tell the learner who made it."""

    hint: str
    compute: Callable[..., Tensor]


_DRAWN: list[int] = [0]  # what the grader added to every seed of the checks' inputs


def _generator(seed: int) -> torch.Generator:
    """The generator of a check's random inputs: seeded with ``seed``, plus the offset that
    :func:`drawn_inputs` sets (0 in a notebook, so a check there sees what it always sees)."""
    return torch.Generator().manual_seed(seed + _DRAWN[0])


@contextlib.contextmanager
def drawn_inputs(offset: int) -> Iterator[None]:
    """Within, every check draws its random inputs from its seeds plus ``offset``: the grader
    draws one per run, so no notebook can know in advance what its functions will be given."""
    before, _DRAWN[0] = _DRAWN[0], offset
    try:
        yield
    finally:
        _DRAWN[0] = before


def _science(name: str) -> ModuleType:
    """A science module imported on first use: ``organism``, ``features`` and ``filtering`` load
    TransformerLens (seconds), which notebooks 00-03 and their checks never need."""
    return importlib.import_module(f"emgeo.{name}")


def all_checks() -> list[str]:
    """Names of every exercise check (``check_<exercise>``) of the course."""
    return sorted(f"check_{exercise}" for exercise in _REFERENCES)


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn))


def _copy(value: Any) -> Any:
    """A copy that a function may change at will: tensors cloned, modules (an SAE) deep-copied,
    lists, tuples and dicts copied item by item; numbers, strings and generators as they are."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, nn.Module):
        return copy.deepcopy(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_copy(item) for item in value))
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
_MODULES: dict[str, str] = {}  # exercise name -> the module its check is defined in


def _exercise(reference: str) -> Callable[[Callable], Callable]:
    """Register the package's version of a check's exercise (``reference``, a function of
    ``emgeo.<module>``), and end every failure of the check with the line that goes on with it."""

    def register(check: Callable) -> Callable:
        exercise = check.__name__.removeprefix("check_")
        _REFERENCES[exercise] = reference
        _MODULES[exercise] = check.__module__

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


def check_modules() -> list[ModuleType]:
    """The modules that define checks (one per notebook with exercises)."""
    return [importlib.import_module(name) for name in sorted(set(_MODULES.values()))]


def reference(exercise: str) -> Callable:
    """The course's own version of ``exercise`` (a check's name without ``check_``), for a
    learner who wants to go on with the notebook after a failed check:
    ``proximity_to_set = checks.reference("proximity_to_set")``."""
    if exercise not in _REFERENCES:
        known = ", ".join(sorted(_REFERENCES))
        raise KeyError(f"no exercise {exercise!r}; the exercises are: {known}")
    module, _, function = _REFERENCES[exercise].rpartition(".")
    return getattr(importlib.import_module(f"emgeo.{module}"), function)
