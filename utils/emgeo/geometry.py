"""Feature geometry: how close feature directions sit to each other."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from emgeo import stats


def cosine_similarity_matrix(
    a: Float[Tensor, "n_a d_model"], b: Float[Tensor, "n_b d_model"], eps: float = 1e-8
) -> Float[Tensor, "n_a n_b"]:
    """Cosine similarity between every row of ``a`` and every row of ``b``.

    Rows are feature directions (an SAE's decoder rows, a toy model's columns of W); a zero row
    has similarity 0 with everything.
    """
    a_hat = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    b_hat = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    return a_hat @ b_hat.T


def proximity_to_set(
    W_dec: Float[Tensor, "d_sae d_model"], members: Int[Tensor, " k"], toxic: Int[Tensor, " k_t"]
) -> Float[Tensor, " k"]:
    """For each latent in ``members``: the mean cosine of its decoder direction with the toxic
    latents' directions, leaving out itself (a latent in both sets is not its own neighbour)."""
    members, toxic = members.to(W_dec.device), toxic.to(W_dec.device)
    sims = cosine_similarity_matrix(W_dec[members], W_dec[toxic])
    same = members[:, None] == toxic[None, :]
    return sims.masked_fill(same, 0.0).sum(-1) / (~same).sum(-1).clamp_min(1)


def random_set_proximity(
    W_dec: Float[Tensor, "d_sae d_model"],
    toxic: Int[Tensor, " k_t"],
    k: int,
    candidates: Int[Tensor, " n"],
    n_sets: int = 1_000,
    seed: int = 0,
    proximity: Callable[..., Tensor] = proximity_to_set,
) -> Float[Tensor, " n_sets"]:
    """Mean proximity to the toxic set of ``n_sets`` random sets of ``k`` latents drawn from
    ``candidates`` (e.g. the alive latents): the chance level of a feature set's proximity,
    measured by ``proximity`` (a function like :func:`proximity_to_set`)."""
    gen = torch.Generator().manual_seed(seed)
    candidates = candidates.cpu()  # drawn on the CPU with ``gen``; each set goes to W_dec's device
    out = torch.empty(n_sets, device=W_dec.device)
    for i in range(n_sets):
        members = candidates[torch.randperm(len(candidates), generator=gen)[:k]]
        out[i] = proximity(W_dec, members, toxic).mean()
    return out.cpu()


def outside(members: Int[Tensor, " k"], toxic: Int[Tensor, " k_t"]) -> Int[Tensor, " m"]:
    """The latents of ``members`` that are not in ``toxic``, in their order."""
    return members[~torch.isin(members, toxic.to(members.device))]


def compare_sets(
    W_dec: Float[Tensor, "d_sae d_model"],
    inducing: Int[Tensor, " k_i"],
    non_inducing: Int[Tensor, " k_n"],
    toxic: Int[Tensor, " k_t"],
    candidates: Int[Tensor, " n"],
    n_permutations: int = 10_000,
    seed: int = 0,
    outside_toxic: bool = False,
    proximity: Callable[..., Tensor] = proximity_to_set,
    permutation: Callable[..., tuple[float, Tensor]] = stats.permutation_test,
) -> dict:
    """The paper's comparison: per-latent proximity to the toxic set of the inducing and the
    non-inducing latents; a one-sided permutation test (inducing closer), Cohen's d, and where
    the inducing set's mean falls among random sets of the same size from ``candidates``.

    ``outside_toxic`` removes the confound of shared membership: only the inducing and
    non-inducing latents that are **not** toxic latents are compared, and the random sets are
    drawn outside the toxic set too (a toxic latent among the inducing ones is close to the toxic
    set by being in it; this asks whether the others lie near it). The result then also holds
    ``n_inducing`` and ``n_non_inducing`` (the latents left) and ``n_shared`` (inducing latents
    that are toxic ones).

    ``proximity`` (like :func:`proximity_to_set`) and ``permutation`` (like
    :func:`emgeo.stats.permutation_test`, given a generator seeded with ``seed``) compute the
    statistics: a learner's own versions can be passed in.
    """
    counts = {}
    if outside_toxic:
        n_given = len(inducing)
        inducing, non_inducing = outside(inducing, toxic), outside(non_inducing, toxic)
        candidates = outside(candidates, toxic)
        if len(inducing) < 2 or len(non_inducing) < 2:
            raise ValueError(
                f"{len(inducing)} inducing and {len(non_inducing)} non-inducing latents lie "
                "outside the toxic set: a comparison needs at least 2 of each (choose a larger k)"
            )
        counts = {"n_inducing": len(inducing), "n_non_inducing": len(non_inducing)}
        counts["n_shared"] = n_given - len(inducing)
    W = W_dec.detach().float()
    near = {"inducing": proximity(W, inducing, toxic).cpu()}  # statistics on the CPU
    near["non-inducing"] = proximity(W, non_inducing, toxic).cpu()
    gen = torch.Generator().manual_seed(seed)
    p, null = permutation(near["inducing"], near["non-inducing"], n_permutations, gen)
    random_means = random_set_proximity(
        W, toxic, len(inducing), candidates, seed=seed, proximity=proximity
    )
    return {
        "proximity": near,
        "p_value": p,
        "effect_size": stats.cohens_d(near["inducing"], near["non-inducing"]),
        "difference": (near["inducing"].mean() - near["non-inducing"].mean()).item(),
        "null": null,
        "random_means": random_means,
        "random_percentile": (random_means < near["inducing"].mean()).float().mean().item(),
        **counts,
    }
