"""Meta-test cases of notebook 09's check: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import stats


def _auroc_pairs(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _auroc_torch(scores, labels):
    s, y = torch.tensor(scores), torch.tensor(labels)
    diff = s[y][:, None] - s[~y][None, :]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean()  # a 0-d tensor


def _auroc_flipped(scores, labels):
    return _auroc_pairs(scores, [not y for y in labels])


def _auroc_ties_as_wins(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    return sum(p >= n for p in pos for n in neg) / (len(pos) * len(neg))


def _auroc_sorted_ranks(scores, labels):
    from emgeo.course.checks.nb09 import _auroc_ranked_naively

    return _auroc_ranked_naively(scores, labels)


def _auroc_accuracy(scores, labels):
    from emgeo.course.checks.nb09 import _accuracy_at_median

    return _accuracy_at_median(scores, labels)


def _auroc_list(scores, labels):
    return [_auroc_pairs(scores, labels)]


CASES = {
    "check_auroc": Case(
        stats.auroc,
        (_auroc_pairs, _auroc_torch),
        (
            (_auroc_flipped, "1 - AUROC"),
            (_auroc_sorted_ranks, "Ties look broken by position"),
            (_auroc_accuracy, "accuracy at a threshold"),
            (_auroc_ties_as_wins, UNDIAGNOSED),
            (_auroc_list, "should return a number"),
        ),
    ),
}
