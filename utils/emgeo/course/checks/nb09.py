"""Checks of notebook 09, auditing a dataset."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from emgeo import stats
from emgeo.course.checks.core import Mistake, _call, _exercise, _generator, _name, _passed
from emgeo.errors import CheckFailed


def _auroc_ranked_naively(scores, labels):
    """Ranks by position in sorted order: ties broken, not counted one half."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    for rank, i in enumerate(order, start=1):
        ranks[i] = float(rank)
    pos = [r for r, y in zip(ranks, labels, strict=True) if y]
    n_pos, n_neg = len(pos), len(labels) - len(pos)
    return (sum(pos) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _accuracy_at_median(scores, labels):
    cut = sorted(scores)[len(scores) // 2]
    return sum((s >= cut) == y for s, y in zip(scores, labels, strict=True)) / len(scores)


@_exercise("stats.auroc")
def check_auroc(fn: Callable, n_trials: int = 6) -> None:
    """``fn(scores, labels)`` -> the chance a random positive scores above a random negative,
    ties counting one half (a float)."""
    mistakes = [
        Mistake(
            "That is 1 - AUROC: the positives should be the samples with the *higher* scores "
            "(count pairs where the positive scores above the negative).",
            lambda s, y: 1.0 - stats.auroc(s, y),
        ),
        Mistake(
            "Ties look broken by position instead of counted one half: give tied scores their "
            "average rank, or count a tied pair as 0.5.",
            _auroc_ranked_naively,
        ),
        Mistake(
            "That looks like an accuracy at a threshold, not an area under the ROC curve: "
            "compare every positive with every negative.",
            _accuracy_at_median,
        ),
    ]
    gen = _generator(9)
    for trial in range(n_trials):
        n = 12 + 5 * trial
        labels = [bool(v) for v in (torch.rand(n, generator=gen) < 0.4).tolist()]
        labels[0], labels[1] = True, False  # both classes present
        if trial % 2:  # coarse scores: many ties, as counts and keyword scores have
            scores = [float(v) for v in torch.randint(0, 4, (n,), generator=gen).tolist()]
        else:
            scores = [
                float(v) for v in (torch.randn(n, generator=gen) + torch.tensor(labels) * 0.8)
            ]
        out = _call(fn, scores, labels)
        if hasattr(out, "item"):
            out = out.item()
        if not isinstance(out, int | float):
            raise CheckFailed(f"`{_name(fn)}` should return a number, got {type(out).__name__}.")
        expected = stats.auroc(scores, labels)
        if abs(out - expected) <= 1e-6:
            continue
        for mistake in mistakes:
            if abs(out - mistake.compute(scores, labels)) <= 1e-6:
                raise CheckFailed(f"`{_name(fn)}` gives wrong values. {mistake.hint}")
        raise CheckFailed(
            f"`{_name(fn)}` gives {out:.4f} where the AUROC is {expected:.4f} "
            f"(largest error {abs(out - expected):.3g})."
        )
    _passed(fn, f"matches on {n_trials} random score sets, with and without ties")


# -- how sure an AUROC is -----------------------------------------------------------------------

_INTERVAL_CASES = ((0.5, 100, 200), (0.986, 256, 256), (0.7, 30, 10), (0.99, 5, 7), (0.62, 64, 448))


def _hanley(auc: float, n_pos: int, n_neg: int, z: float = 1.959964, swap: bool = False):
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    if swap:
        q1, q2 = q2, q1
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return var, z * (max(var, 0.0) / (n_pos * n_neg)) ** 0.5


def _interval_mistakes() -> list[tuple[str, Callable]]:
    def clipped(a, low, high):
        return max(0.0, low), min(1.0, high)

    return [
        (
            "Clip the interval to [0, 1]: an AUROC cannot leave it, however few samples.",
            lambda a, p, n: (a - _hanley(a, p, n)[1], a + _hanley(a, p, n)[1]),
        ),
        (
            "The half-width is z times the standard error, the square root of the variance "
            "over n_pos * n_neg: you left out the square root.",
            lambda a, p, n: clipped(a, a - 1.96 * _hanley(a, p, n)[0] / (p * n),
                                    a + 1.96 * _hanley(a, p, n)[0] / (p * n)),
        ),
        (
            "Q1 = A / (2 - A) goes with the positives (n_pos - 1) and Q2 = 2A^2 / (1 + A) with the "
            "negatives (n_neg - 1): yours are swapped.",
            lambda a, p, n: clipped(a, a - _hanley(a, p, n, swap=True)[1],
                                    a + _hanley(a, p, n, swap=True)[1]),
        ),
        (
            "A 95% interval is mean +- 1.96 standard errors (1.645 gives a 90% one).",
            lambda a, p, n: clipped(a, a - _hanley(a, p, n, z=1.645)[1],
                                    a + _hanley(a, p, n, z=1.645)[1]),
        ),
    ]  # fmt: skip


@_exercise("stats.auroc_interval")
def check_auroc_interval(fn: Callable) -> None:
    """``fn(auc, n_pos, n_neg)`` -> the 95% Hanley-McNeil interval ``(low, high)``, in [0, 1]."""
    for auc, n_pos, n_neg in _INTERVAL_CASES:
        out = _call(fn, auc, n_pos, n_neg)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise CheckFailed(f"`{_name(fn)}` should return a pair (low, high), got {out!r}.")
        low, high = (float(v) for v in out)
        want = stats.auroc_interval(auc, n_pos, n_neg)
        if abs(low - want[0]) <= 1e-4 and abs(high - want[1]) <= 1e-4:
            continue
        for hint, compute in _interval_mistakes():
            wrong = compute(auc, n_pos, n_neg)
            if abs(low - wrong[0]) <= 1e-4 and abs(high - wrong[1]) <= 1e-4:
                raise CheckFailed(f"`{_name(fn)}` for AUROC {auc}, {n_pos}+{n_neg}: {hint}")
        raise CheckFailed(
            f"`{_name(fn)}` gives [{low:.4f}, {high:.4f}] for AUROC {auc} with {n_pos} positives "
            f"and {n_neg} negatives; expected [{want[0]:.4f}, {want[1]:.4f}]."
        )
    _passed(fn, f"matches on {len(_INTERVAL_CASES)} AUROCs, from chance to near 1 with few samples")


# -- what a budget removes ----------------------------------------------------------------------


def _caught_mistakes(filtering) -> list[tuple[str, Callable]]:
    def shares(removed, y):
        return removed[y].float().mean().item(), removed[~y].float().mean().item()

    return [
        (
            "The pair is (share of the positives removed, share of the negatives removed): "
            "yours come the other way round.",
            lambda s, y, f: filtering.caught_at_budget(s, y, f)[::-1],
        ),
        (
            "You removed the *lowest* scores: the audit removes its riskiest, highest-scoring "
            "samples.",
            lambda s, y, f: shares(~filtering.keep_mask(-s, f), y),
        ),
        (
            "Those are the shares *kept*: return the share of each class that the budget removes.",
            lambda s, y, f: shares(filtering.keep_mask(s, f), y),
        ),
        (
            "Those are shares of the removed set (precision), not of each class: divide by how "
            "many positives (negatives) there are, not by how many were removed.",
            lambda s, y, f: (
                y[~filtering.keep_mask(s, f)].float().mean().item(),
                (~y[~filtering.keep_mask(s, f)]).float().mean().item(),
            ),
        ),
        (
            "Remove exactly round(fraction * n) samples, the highest first and ties by position: "
            "`filtering.keep_mask` does it (a threshold removes every tied sample).",
            lambda s, y, f: shares(s >= _cutoff(s, f), y),
        ),
    ]


def _cutoff(scores: torch.Tensor, fraction: float) -> float:
    """The score of the last sample a budget removes (a threshold there takes every tie)."""
    return scores.sort(descending=True).values[max(round(fraction * len(scores)) - 1, 0)].item()


_BUDGETS = (0.1, 0.5, 0.8)


def _shares(fn: Callable, scores, labels, fraction: float) -> tuple[float, float]:
    out = _call(fn, scores, labels, fraction)
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise CheckFailed(f"`{_name(fn)}` should return a pair of shares, got {out!r}.")
    return float(out[0]), float(out[1])


def _same_pair(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= 1e-6 and abs(a[1] - b[1]) <= 1e-6


@_exercise("filtering.caught_at_budget")
def check_caught_at_budget(fn: Callable, n_trials: int = 4) -> None:
    """``fn(scores, labels, fraction)`` -> (share of positives removed, share of negatives
    removed) when the ``round(fraction * n)`` highest scores go."""
    filtering = importlib.import_module("emgeo.filtering")
    gen = _generator(37)
    for trial in range(n_trials):
        n = 20 + 7 * trial
        labels = torch.rand(n, generator=gen) < 0.4
        labels[:2] = torch.tensor([True, False])
        scores = torch.randn(n, generator=gen) + labels * 1.0
        if trial % 2:
            scores = scores.round()  # ties, as an audit's coarse scores have
        got = {f: _shares(fn, scores, labels, f) for f in _BUDGETS}
        want = {f: filtering.caught_at_budget(scores, labels, f) for f in _BUDGETS}
        if all(_same_pair(got[f], want[f]) for f in _BUDGETS):
            continue
        for hint, compute in _caught_mistakes(filtering):  # the one that matches at every budget
            wrong = {f: compute(scores.clone(), labels.clone(), f) for f in _BUDGETS}
            if all(_same_pair(got[f], wrong[f]) for f in _BUDGETS):
                raise CheckFailed(f"`{_name(fn)}`: {hint}")
        f = next(f for f in _BUDGETS if not _same_pair(got[f], want[f]))
        raise CheckFailed(
            f"`{_name(fn)}` at budget {f} gives ({got[f][0]:.3f}, {got[f][1]:.3f}); "
            f"expected ({want[f][0]:.3f}, {want[f][1]:.3f})."
        )
    _passed(fn, f"matches on {n_trials} score sets at budgets 0.1, 0.5 and 0.8, with ties")


# -- concept ablation's edit --------------------------------------------------------------------


def _edit_cases(gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(directions, residual stream) pairs: unit and not, far from orthogonal, and one set with
    a direction that is the sum of two others."""
    cases = []
    for k, d_model in ((1, 6), (3, 8), (4, 10)):
        base = torch.randn(1, d_model, generator=gen)
        directions = base + 0.6 * torch.randn(k, d_model, generator=gen)  # far from orthogonal
        directions *= torch.rand(k, 1, generator=gen) * 3 + 0.2  # of any length
        cases.append((directions, torch.randn(2, 5, d_model, generator=gen)))
    dependent = torch.randn(2, 7, generator=gen)
    dependent = torch.cat([dependent, dependent.sum(0, keepdim=True)])
    cases.append((dependent, torch.randn(3, 4, 7, generator=gen)))
    return cases


def _edit_mistakes() -> list[tuple[str, Callable]]:
    def unit(d):
        return d / d.norm(dim=-1, keepdim=True)

    return [
        (
            "That keeps only the component *in* the span: concept ablation removes it, "
            "resid - (its projection).",
            lambda d, x: (x @ torch.linalg.pinv(d)) @ d,
        ),
        (
            "The directions are not orthogonal, so subtracting each one's projection in turn "
            "(x - sum_i <x, u_i> u_i) over-removes: orthonormalize them first (torch.linalg.qr of "
            "directions.T) or use the projector D^T (D D^T)^+ D.",
            lambda d, x: x - (x @ unit(d).T) @ unit(d),
        ),
        (
            "Normalise the directions: x - (x Dᵀ) D with D of any length is not a projection.",
            lambda d, x: x - (x @ d.T) @ d,
        ),
        (
            "Only the first direction was removed: remove the whole span of `directions`.",
            lambda d, x: x - (x @ unit(d[:1]).T) @ unit(d[:1]),
        ),
    ]


@_exercise("mitigations.ablation_edit")
def check_concept_ablation_edit(fn: Callable) -> None:
    """``fn(directions)`` -> an edit ``resid -> resid`` that removes the component of the
    residual stream in the span of ``directions``."""
    mitigations = importlib.import_module("emgeo.mitigations")  # TransformerLens: when checked
    for directions, resid in _edit_cases(_generator(41)):
        edit = _call(fn, directions)
        if not callable(edit):
            raise CheckFailed(
                f"`{_name(fn)}` should return a function of the residual stream, got "
                f"{type(edit).__name__}."
            )
        out = _call(edit, resid)
        if not isinstance(out, torch.Tensor) or out.shape != resid.shape:
            shape = getattr(out, "shape", type(out).__name__)
            raise CheckFailed(
                f"The edit should keep the residual stream's shape {tuple(resid.shape)}, got "
                f"{shape}."
            )
        want = mitigations.ablation_edit(directions)(resid.clone())
        if torch.allclose(out, want, atol=1e-4, rtol=1e-4):
            continue
        for hint, compute in _edit_mistakes():
            if torch.allclose(out, compute(directions, resid.clone()), atol=1e-4, rtol=1e-4):
                raise CheckFailed(f"`{_name(fn)}`'s edit gives wrong values. {hint}")
        dependent = torch.linalg.matrix_rank(directions) < len(directions)
        extra = " (these directions are linearly dependent: keep independent ones)" * dependent
        err = (out - want).abs().max().item()
        raise CheckFailed(
            f"`{_name(fn)}`'s edit gives wrong values{extra} (largest error {err:.3g})."
        )
    _passed(fn, "removes the span of 1 to 4 directions of any length and angle, dependent ones too")
