"""Meta-test cases of notebook 09's check: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import filtering, mitigations, stats


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


# -- the AUROC's interval -----------------------------------------------------------------------


def _interval_formula(auc, n_pos, n_neg):
    import math

    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = math.sqrt(
        (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc))
        / (n_pos * n_neg)
    )
    return max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)


def _interval_scipy(auc, n_pos, n_neg):
    from scipy.stats import norm

    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    se = (var / (n_pos * n_neg)) ** 0.5
    low, high = norm.interval(0.95, loc=auc, scale=se)
    return [float(min(max(low, 0), 1)), float(min(max(high, 0), 1))]


def _interval_unclipped(auc, n_pos, n_neg):
    from emgeo.course.checks.nb09 import _hanley

    half = _hanley(auc, n_pos, n_neg)[1]
    return auc - half, auc + half


def _interval_no_sqrt(auc, n_pos, n_neg):
    from emgeo.course.checks.nb09 import _hanley

    half = 1.96 * _hanley(auc, n_pos, n_neg)[0] / (n_pos * n_neg)
    return max(0.0, auc - half), min(1.0, auc + half)


def _interval_swapped(auc, n_pos, n_neg):
    from emgeo.course.checks.nb09 import _hanley

    half = _hanley(auc, n_pos, n_neg, swap=True)[1]
    return max(0.0, auc - half), min(1.0, auc + half)


def _interval_90(auc, n_pos, n_neg):
    from emgeo.course.checks.nb09 import _hanley

    half = _hanley(auc, n_pos, n_neg, z=1.645)[1]
    return max(0.0, auc - half), min(1.0, auc + half)


def _interval_binomial(auc, n_pos, n_neg):
    se = (auc * (1 - auc) / (n_pos + n_neg)) ** 0.5
    return max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)


def _interval_number(auc, n_pos, n_neg):
    return stats.auroc_interval(auc, n_pos, n_neg)[0]


# -- what a budget removes ----------------------------------------------------------------------


def _caught_loop(scores, labels, fraction):
    n_remove = round(fraction * len(scores))
    ranked = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    removed = set(ranked[:n_remove])
    pos = [i for i in range(len(scores)) if labels[i]]
    neg = [i for i in range(len(scores)) if not labels[i]]
    return (
        sum(i in removed for i in pos) / len(pos),
        sum(i in removed for i in neg) / len(neg),
    )


def _caught_keep_mask(scores, labels, fraction):
    from emgeo import filtering

    kept = filtering.keep_mask(scores, fraction)
    labels = labels.float()
    return [
        float(((~kept).float() * labels).sum() / labels.sum()),
        float(((~kept).float() * (1 - labels)).sum() / (1 - labels).sum()),
    ]


def _caught_lowest(scores, labels, fraction):
    from emgeo import filtering

    return filtering.caught_at_budget(-scores, labels, fraction)


def _caught_kept(scores, labels, fraction):
    from emgeo import filtering

    kept = filtering.keep_mask(scores, fraction)
    return kept[labels].float().mean().item(), kept[~labels].float().mean().item()


def _caught_precision(scores, labels, fraction):
    from emgeo import filtering

    removed = ~filtering.keep_mask(scores, fraction)
    return labels[removed].float().mean().item(), (~labels[removed]).float().mean().item()


def _caught_threshold(scores, labels, fraction):
    from emgeo.course.checks.nb09 import _cutoff

    removed = scores >= _cutoff(scores, fraction)
    return removed[labels].float().mean().item(), removed[~labels].float().mean().item()


def _caught_swapped(scores, labels, fraction):
    from emgeo import filtering

    caught, others = filtering.caught_at_budget(scores, labels, fraction)
    return others, caught


CASES |= {
    "check_auroc_interval": Case(
        stats.auroc_interval,
        (_interval_formula, _interval_scipy),
        (
            (_interval_unclipped, "Clip the interval"),
            (_interval_no_sqrt, "left out the square root"),
            (_interval_swapped, "yours are swapped"),
            (_interval_90, "1.645"),
            (_interval_binomial, "expected ["),
            (_interval_number, "should return a pair"),
        ),
    ),
    "check_caught_at_budget": Case(
        filtering.caught_at_budget,
        (_caught_loop, _caught_keep_mask),
        (
            (_caught_lowest, "the *lowest* scores"),
            (_caught_kept, "the shares *kept*"),
            (_caught_precision, "precision"),
            (_caught_threshold, "a threshold removes every tied"),
            (_caught_swapped, "the other way round"),
        ),
    ),
}


# -- concept ablation's edit --------------------------------------------------------------------


def _edit_pinv(directions):
    projector = torch.linalg.pinv(directions) @ directions  # onto the span, rank-safe
    return lambda resid: resid - resid @ projector


def _edit_svd(directions):
    u, s, vh = torch.linalg.svd(directions, full_matrices=False)
    basis = vh[s > 1e-6 * s.max()]  # an orthonormal basis of the row space

    def edit(resid):
        resid -= (resid @ basis.T) @ basis  # in place on the stream it is given
        return resid

    return edit


def _edit_onto(directions):
    return lambda resid: (resid @ torch.linalg.pinv(directions)) @ directions


def _edit_unit_each(directions):
    unit = directions / directions.norm(dim=-1, keepdim=True)
    return lambda resid: resid - (resid @ unit.T) @ unit


def _edit_raw(directions):
    return lambda resid: resid - (resid @ directions.T) @ directions


def _edit_first_only(directions):
    unit = directions[:1] / directions[:1].norm()
    return lambda resid: resid - (resid @ unit.T) @ unit


def _edit_qr_all(directions):
    q, _ = torch.linalg.qr(directions.T)  # a dependent direction adds an arbitrary column
    return lambda resid: resid - (resid @ q) @ q.T


def _edit_not_callable(directions):
    return torch.linalg.pinv(directions) @ directions


CASES |= {
    "check_concept_ablation_edit": Case(
        mitigations.ablation_edit,
        (_edit_pinv, _edit_svd),
        (
            (_edit_onto, "keeps only the component *in* the span"),
            (_edit_unit_each, "orthonormalize them first"),
            (_edit_raw, "Normalise the directions"),
            (_edit_first_only, "Only the first direction"),
            (_edit_qr_all, "linearly dependent"),
            (_edit_not_callable, "should return a function"),
        ),
    ),
}
