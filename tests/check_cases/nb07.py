"""Meta-test cases of notebook 07's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import filtering


def _scores_in_place(latents, proximity):
    latents /= latents.sum(-1, keepdim=True).clamp_min(1e-8)  # weights summing to 1, in place
    return latents @ proximity


def _scores_weighted_sum(latents, proximity):
    return (latents * proximity).sum(-1) / latents.sum(-1)


def _scores_unnormalized(latents, proximity):
    return latents @ proximity


def _scores_unweighted(latents, proximity):
    active = (latents > 0).float()
    return (active @ proximity) / active.sum(-1).clamp_min(1)


def _scores_per_latent(latents, proximity):
    return (latents @ proximity) / latents.shape[-1]


def _scores_max(latents, proximity):
    return torch.where(latents > 0, proximity, -2.0).max(-1).values


CASES = {
    "check_geometric_scores": Case(
        filtering.geometric_scores,
        (_scores_in_place, _scores_weighted_sum),
        (
            (_scores_unnormalized, "otherwise a sample scores high"),
            (_scores_unweighted, "the unweighted mean proximity"),
            (_scores_per_latent, "divided by the number of latents"),
            (_scores_max, UNDIAGNOSED),
        ),
    ),
}
