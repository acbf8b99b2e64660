"""The course's statistics: confidence intervals over seeds, AUROC, correlation, permutation
tests and effect sizes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
from jaxtyping import Float
from scipy import stats as _stats
from torch import Tensor


def rounded(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` decimals, with -0.0 shown as 0.0: the precision a notebook prints
    and records a number at, so that a stored output reproduces on other CPUs and thread counts."""
    return round(float(x), digits) + 0.0


def rounded_all(values: Mapping[str, float | int], digits: int) -> dict[str, float | int]:
    """Every number of ``values`` (a :func:`mean_ci` result, say) :func:`rounded`, counts kept
    as they are: how a notebook records an interval."""
    return {k: v if isinstance(v, int) else rounded(v, digits) for k, v in values.items()}


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and Student-t confidence interval over independent runs (e.g. seeds)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci_low": float("nan"), "ci_high": float("nan"), "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def t_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """The Student-t interval of :func:`mean_ci` as ``(low, high)``: seaborn's ``errorbar=``
    takes it, so a figure shows the same interval as the table beside it (seaborn's own
    ``("ci", 95)`` is a bootstrap interval, narrower over a handful of seeds). ``values`` may be
    any iterable of numbers (seaborn passes a pandas Series). One value: no spread,
    ``(value, value)``."""
    ci = mean_ci([float(v) for v in values], confidence)
    if ci["n"] < 2:
        return ci["mean"], ci["mean"]
    return ci["ci_low"], ci["ci_high"]


def sign_test(differences: Sequence[float]) -> dict[str, int | float]:
    """How many ``differences`` are positive, of the non-zero ones, and the exact two-sided
    binomial p-value of that count when each sign is a fair coin (zeros are dropped)."""
    signs = [d > 0 for d in differences if d != 0]
    n, k = len(signs), sum(signs)
    p = _stats.binomtest(k, n, 0.5).pvalue if n else 1.0
    return {"n_positive": k, "n": n, "p_value": float(p)}


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative
    (ties count one half), by the Mann-Whitney rank formula."""
    ranks = _stats.rankdata(list(scores))
    pos = [r for r, y in zip(ranks, labels, strict=True) if y]
    n_pos, n_neg = len(pos), len(ranks) - len(pos)
    if not n_pos or not n_neg:
        raise ValueError("auroc needs at least one positive and one negative label")
    return (sum(pos) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_interval(
    auc: float, n_pos: int, n_neg: int, confidence: float = 0.95
) -> tuple[float, float]:
    """An approximate confidence interval of an AUROC from ``n_pos`` positives and ``n_neg``
    negatives (Hanley & McNeil 1982): the normal interval with standard error
    ``sqrt((A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)) / (n_pos n_neg))``,
    ``Q1 = A / (2-A)``, ``Q2 = 2A^2 / (1+A)``, clipped to [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    half = _stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(max(var, 0.0) / (n_pos * n_neg))
    return max(0.0, float(auc - half)), min(1.0, float(auc + half))


def pearson_r(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two flat tensors."""
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


class PermutationResult(NamedTuple):
    """A permutation test's p-value and its null distribution; unpacks as ``p, null``."""

    p_value: float
    null: Tensor  # (n_permutations,): the statistic under each relabelling

    def clone(self) -> PermutationResult:
        """A copy whose null distribution shares no memory with this one (as ``Tensor.clone``)."""
        return PermutationResult(self.p_value, self.null.clone())


def permutation_test(
    a: Float[Tensor, " n_a"],
    b: Float[Tensor, " n_b"],
    n_permutations: int = 10_000,
    generator: torch.Generator | None = None,
) -> PermutationResult:
    """One-sided test that ``a`` has a larger mean than ``b``: the fraction of random relabellings
    of the pooled values whose mean difference is at least the observed one (with the +1 that
    keeps p above 0), and the null distribution of differences.

    The relabellings are drawn all at once: row ``i`` of
    ``torch.rand(n_permutations, n_a + n_b, generator=generator).argsort(-1)`` orders the pooled
    values ``cat([a, b])``, and its first ``n_a`` are the relabelled ``a``. ``generator`` defaults
    to one seeded with 0.
    """
    pooled, n_a = torch.cat([a, b]), len(a)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    perms = torch.argsort(torch.rand(n_permutations, len(pooled), generator=gen), dim=-1)
    shuffled = pooled[perms]
    null = shuffled[:, :n_a].mean(-1) - shuffled[:, n_a:].mean(-1)
    observed = a.mean() - b.mean()
    p = ((null >= observed).sum().item() + 1) / (n_permutations + 1)
    return PermutationResult(p, null)


def cohens_d(a: Float[Tensor, " n_a"], b: Float[Tensor, " n_b"]) -> float:
    """Standardized mean difference with the pooled standard deviation."""
    n_a, n_b = len(a), len(b)
    pooled = ((n_a - 1) * a.var() + (n_b - 1) * b.var()) / (n_a + n_b - 2)
    return ((a.mean() - b.mean()) / pooled.sqrt()).item()


def rank_correlation(
    x: Sequence[float], y: Sequence[float], n_permutations: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Spearman's rank correlation of ``x`` and ``y`` and its one-sided permutation p-value (the
    fraction of random pairings with a correlation at least as large, with the +1 that keeps p
    above 0): is ``y`` larger where ``x`` is?"""
    if len(x) != len(y) or len(x) < 3:
        raise ValueError("rank_correlation needs two sequences of the same length, at least 3")
    rx = torch.tensor(_stats.rankdata(list(x)), dtype=torch.float64)
    ry = torch.tensor(_stats.rankdata(list(y)), dtype=torch.float64)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    rho = (rx @ ry / (rx.norm() * ry.norm())).item()
    gen = torch.Generator().manual_seed(seed)
    perms = torch.argsort(torch.rand(n_permutations, len(ry), generator=gen), dim=-1)
    null = (ry[perms] @ rx) / (rx.norm() * ry.norm())
    p = ((null >= rho - 1e-12).sum().item() + 1) / (n_permutations + 1)
    return {"rho": rho, "p_value": p, "n": len(x)}
