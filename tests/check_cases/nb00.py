"""Meta-test cases of notebook 00's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import UNDIAGNOSED, Case
from emgeo import geometry


def _cos_in_place(a, b):
    a /= a.norm(dim=-1, keepdim=True)
    b /= b.norm(dim=-1, keepdim=True)
    return a @ b.T


def _cos_einsum(a, b):
    return torch.einsum("id,jd->ij", F.normalize(a, dim=-1), F.normalize(b, dim=-1))


def _cos_broadcast(a, b):
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)


def _cos_unnormalized(a, b):
    return a @ b.T


def _cos_only_a(a, b):
    return F.normalize(a, dim=-1) @ b.T


def _cos_only_b(a, b):
    return a @ F.normalize(b, dim=-1).T


def _cos_wrong_dim(a, b):
    return (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T


def _cos_transposed(a, b):
    return geometry.cosine_similarity_matrix(b, a)


def _cos_numpy(a, b):
    return geometry.cosine_similarity_matrix(a, b).numpy()


def _cos_abs(a, b):
    return geometry.cosine_similarity_matrix(a, b).abs()


CASES = {
    "check_cosine_similarity": Case(
        geometry.cosine_similarity_matrix,
        (_cos_in_place, _cos_einsum, _cos_broadcast),
        (
            (_cos_unnormalized, "plain dot product"),
            (_cos_only_a, "Only `a` seems normalized"),
            (_cos_only_b, "Only `b` seems normalized"),
            (_cos_wrong_dim, "wrong dimension"),
            (_cos_transposed, "Rows of the result index `a`"),
            (_cos_numpy, "should return a torch.Tensor"),
            (_cos_abs, UNDIAGNOSED),
        ),
    ),
}
