import torch

from emgeo import geometry


def test_cosine_similarity_matrix_matches_torch():
    a, b = torch.randn(4, 6), torch.randn(3, 6)
    expected = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
    assert torch.allclose(geometry.cosine_similarity_matrix(a, b), expected, atol=1e-6)


def test_cosine_similarity_is_scale_invariant_and_zero_safe():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[5.0, 0.0], [0.0, -2.0]])
    sim = geometry.cosine_similarity_matrix(a, b)
    assert torch.allclose(sim, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
