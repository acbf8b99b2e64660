"""Feature geometry: how close feature directions sit to each other."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor


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
