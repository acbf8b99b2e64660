"""Meta-test cases of notebook 06's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import UNDIAGNOSED, Case
from emgeo import geometry, probes, stats


def _readout_in_place(W_U, scale, positive, negative):
    W_U.mul_(scale[:, None])  # the LayerNorm's scale, in place on the input
    d = W_U[:, positive].mean(1)
    d -= W_U[:, negative].mean(1)
    d -= d.mean()
    return d


def _readout_weights(W_U, scale, positive, negative):
    weights = torch.zeros(W_U.shape[1])  # +1/n_pos on the positive tokens, -1/n_neg on the others
    weights[positive] = 1 / len(positive)
    weights[negative] = -1 / len(negative)
    d = torch.einsum("dv,v->d", W_U, weights) * scale
    return d - d.mean(0, keepdim=True)


def _readout_no_scale(W_U, scale, positive, negative):
    d = W_U[:, positive].mean(1) - W_U[:, negative].mean(1)
    return d - d.mean()


def _readout_uncentred(W_U, scale, positive, negative):
    W = scale[:, None] * W_U
    return W[:, positive].mean(1) - W[:, negative].mean(1)


def _readout_flipped(W_U, scale, positive, negative):
    return probes.readout_difference(W_U, scale, negative, positive)


def _readout_summed(W_U, scale, positive, negative):
    W = scale[:, None] * W_U
    d = W[:, positive].sum(1) - W[:, negative].sum(1)
    return d - d.mean()


def _readout_divided(W_U, scale, positive, negative):
    W = W_U / scale[:, None]
    d = W[:, positive].mean(1) - W[:, negative].mean(1)
    return d - d.mean()


def _prox_in_place(W_dec, members, toxic):
    W_dec /= W_dec.norm(dim=-1, keepdim=True)  # unit rows, in place
    sims = W_dec[members] @ W_dec[toxic].T
    same = members[:, None] == toxic[None, :]
    sims[same] = 0.0
    return sims.sum(-1) / (~same).sum(-1)


def _prox_loop(W_dec, members, toxic):
    means = []
    for j in members.tolist():
        others = [t for t in toxic.tolist() if t != j]
        means.append(F.cosine_similarity(W_dec[j][None], W_dec[others], dim=-1).mean())
    return torch.stack(means)


def _prox_with_self(W, members, toxic):
    return geometry.cosine_similarity_matrix(W[members], W[toxic]).mean(-1)


def _prox_zero_self_full_count(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    return geometry.cosine_similarity_matrix(W[members], W[toxic]).masked_fill(same, 0.0).mean(-1)


def _prox_dot(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    return (W[members] @ W[toxic].T).masked_fill(same, 0.0).sum(-1) / (~same).sum(-1)


def _prox_nearest(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    sims = geometry.cosine_similarity_matrix(W[members], W[toxic])
    return sims.masked_fill(same, -2.0).max(-1).values


def _prox_abs(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    sims = geometry.cosine_similarity_matrix(W[members], W[toxic]).abs()
    return sims.masked_fill(same, 0.0).sum(-1) / (~same).sum(-1)


def _perm_loop(a, b, n_permutations, generator):
    pooled = torch.cat([a, b])
    orders = torch.rand(n_permutations, len(pooled), generator=generator).argsort(-1)
    null = torch.empty(n_permutations)
    for i, order in enumerate(orders):
        row = pooled[order]
        null[i] = row[: len(a)].sum() / len(a) - row[len(a) :].sum() / len(b)
    observed = a.sum() / len(a) - b.sum() / len(b)
    count = int((null >= observed).sum())
    return (count + 1) / (n_permutations + 1), null


def _perm_in_place(a, b, n_permutations, generator):
    observed = a.mean() - b.mean()
    a -= b.mean()  # centred on b's mean in place: the differences do not change
    b -= b.mean()
    pooled = torch.cat([a, b])
    rows = pooled[torch.rand(n_permutations, len(pooled), generator=generator).argsort(-1)]
    null = rows[:, : len(a)].mean(-1) - rows[:, len(a) :].mean(-1)
    return ((null >= observed - 1e-12).sum().item() + 1) / (n_permutations + 1), null


def _perm_with(a, b, n_permutations, generator, *, at=None, flip=False, within=False):
    """The test with one thing changed: where the rows are split, the sign, what is shuffled."""
    if within:
        null = (a.mean() - b.mean()).expand(n_permutations)
        return ((null >= a.mean() - b.mean()).sum().item() + 1) / (n_permutations + 1), null
    pooled = torch.cat([a, b])
    rows = pooled[torch.rand(n_permutations, len(pooled), generator=generator).argsort(-1)]
    split = len(a) if at is None else at
    null = rows[:, :split].mean(-1) - rows[:, split:].mean(-1)
    observed = a.mean() - b.mean()
    if flip:
        null, observed = -null, -observed
    return ((null >= observed).sum().item() + 1) / (n_permutations + 1), null


def _perm_flipped(a, b, n_permutations, generator):
    return _perm_with(a, b, n_permutations, generator, flip=True)


def _perm_split_at_b(a, b, n_permutations, generator):
    return _perm_with(a, b, n_permutations, generator, at=len(b))


def _perm_within_groups(a, b, n_permutations, generator):
    return _perm_with(a, b, n_permutations, generator, within=True)


def _perm_no_plus_one(a, b, n_permutations, generator):
    _, null = stats.permutation_test(a, b, n_permutations, generator)
    return (null >= a.mean() - b.mean()).float().mean().item(), null


def _perm_two_sided(a, b, n_permutations, generator):
    _, null = stats.permutation_test(a, b, n_permutations, generator)
    observed = (a.mean() - b.mean()).abs()
    return ((null.abs() >= observed).sum().item() + 1) / (n_permutations + 1), null


def _perm_other_tail(a, b, n_permutations, generator):
    _, null = stats.permutation_test(a, b, n_permutations, generator)
    return ((null <= a.mean() - b.mean()).sum().item() + 1) / (n_permutations + 1), null


def _perm_randperm(a, b, n_permutations, generator):
    pooled = torch.cat([a, b])
    orders = torch.stack(
        [torch.randperm(len(pooled), generator=generator) for _ in range(n_permutations)]
    )
    rows = pooled[orders]
    null = rows[:, : len(a)].mean(-1) - rows[:, len(a) :].mean(-1)
    return ((null >= a.mean() - b.mean()).sum().item() + 1) / (n_permutations + 1), null


def _perm_p_only(a, b, n_permutations, generator):
    return stats.permutation_test(a, b, n_permutations, generator)[0]


CASES = {
    "check_proximity_to_set": Case(
        geometry.proximity_to_set,
        (_prox_in_place, _prox_loop),
        (
            (_prox_with_self, "counted as its own neighbour"),
            (_prox_zero_self_full_count, "still divided by the full toxic-set size"),
            (_prox_dot, "Those are dot products"),
            (_prox_nearest, "the nearest toxic latent"),
            (_prox_abs, UNDIAGNOSED),
        ),
    ),
    "check_readout_difference": Case(
        probes.readout_difference,
        (_readout_in_place, _readout_weights),
        (
            (_readout_no_scale, "Go through the final LayerNorm"),
            (_readout_uncentred, "subtract the direction's own mean"),
            (_readout_flipped, "positive minus negative"),
            (_readout_summed, "Average each family's columns"),
            (_readout_divided, UNDIAGNOSED),
        ),
    ),
    "check_permutation_test": Case(
        stats.permutation_test,
        (_perm_loop, _perm_in_place),
        (
            (_perm_flipped, "mean(b) - mean(a)"),
            (_perm_split_at_b, "The groups lost their sizes"),
            (_perm_within_groups, "you shuffled within each group"),
            (_perm_no_plus_one, "Add 1 to the count"),
            (_perm_two_sided, "two-sided p-value"),
            (_perm_other_tail, "at most the observed one"),
            (_perm_randperm, "Draw every relabelling at once"),
            (_perm_p_only, "should return a pair"),
        ),
    ),
}
