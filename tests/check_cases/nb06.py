"""Meta-test cases of notebook 06's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import UNDIAGNOSED, Case
from emgeo import geometry, probes


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
}
