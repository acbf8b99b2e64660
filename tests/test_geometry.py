import pytest
import torch

from emgeo import geometry, stats


def test_cosine_similarity_matrix_matches_torch():
    a, b = torch.randn(4, 6), torch.randn(3, 6)
    expected = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1)
    assert torch.allclose(geometry.cosine_similarity_matrix(a, b), expected, atol=1e-6)


def test_cosine_similarity_is_scale_invariant_and_zero_safe():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[5.0, 0.0], [0.0, -2.0]])
    sim = geometry.cosine_similarity_matrix(a, b)
    assert torch.allclose(sim, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_proximity_to_set_leaves_out_shared_latents():
    W = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    members, toxic = torch.tensor([0, 1]), torch.tensor([1, 2])
    out = geometry.proximity_to_set(W, members, toxic)
    s = 2**-0.5
    torch.testing.assert_close(out, torch.tensor([(s + 0.0) / 2, s]))  # latent 1: only vs 2


def test_permutation_test_detects_a_shift_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, generator=gen) + 1.0, torch.randn(30, generator=gen)
    p, null = stats.permutation_test(a, b, n_permutations=2_000)
    assert p < 0.01 and null.shape == (2_000,)
    p_same, _ = stats.permutation_test(b[:15], b[15:], n_permutations=2_000)
    assert p_same > 0.05
    p_reverse, _ = stats.permutation_test(b, a, n_permutations=2_000)
    assert p_reverse > 0.9


def test_permutation_test_draws_from_its_generator_and_counts_the_observed_labelling():
    a, b = torch.tensor([3.0, 4.0, 5.0]), torch.tensor([0.0, 1.0, 2.0])
    first = stats.permutation_test(a, b, 500, torch.Generator().manual_seed(3))
    again = stats.permutation_test(a, b, 500, torch.Generator().manual_seed(3))
    assert first.p_value == again.p_value and torch.equal(first.null, again.null)
    p, null = first  # unpacks as (p, null)
    # only the observed split (1 of 20) reaches mean(a) - mean(b) = 3: p = (hits + 1) / 501
    assert p == ((null >= 3.0 - 1e-6).sum().item() + 1) / 501 and p >= 1 / 501
    assert first.clone().null is not first.null
    default, _ = stats.permutation_test(a, b, 500)
    assert default == stats.permutation_test(a, b, 500, torch.Generator().manual_seed(0))[0]


def test_compare_sets_uses_the_functions_it_is_given():
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(60, 8, generator=gen)
    sets = (torch.arange(0, 5), torch.arange(5, 10), torch.arange(10, 15), torch.arange(15, 60))
    calls = {"proximity": 0, "permutation": 0}

    def proximity(W_dec, members, toxic):
        calls["proximity"] += 1
        return geometry.proximity_to_set(W_dec, members, toxic)

    def permutation(a, b, n_permutations, generator):
        calls["permutation"] += 1
        return stats.permutation_test(a, b, n_permutations, generator)

    mine = geometry.compare_sets(
        W, *sets, n_permutations=200, proximity=proximity, permutation=permutation
    )
    reference = geometry.compare_sets(W, *sets, n_permutations=200)
    assert calls == {"proximity": 2 + 1_000, "permutation": 1}
    assert mine["p_value"] == reference["p_value"]
    torch.testing.assert_close(mine["random_means"], reference["random_means"])


def test_cohens_d_of_unit_shift():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 2.0])
    assert abs(stats.cohens_d(a, b) - 1.0) < 1e-6


def test_random_set_proximity_is_near_zero_for_random_directions():
    W = torch.randn(400, 64, generator=torch.Generator().manual_seed(1))
    null = geometry.random_set_proximity(
        W, torch.arange(10), k=10, candidates=torch.arange(10, 400)
    )
    assert null.shape == (1_000,) and abs(null.mean()) < 0.01


def test_compare_sets_finds_a_planted_neighbourhood():
    gen = torch.Generator().manual_seed(2)
    toxic_dir = torch.randn(32, generator=gen)
    W = torch.randn(200, 32, generator=gen)
    W[:10] += 3 * toxic_dir  # toxic latents
    W[10:20] += 1.5 * toxic_dir  # "inducing" latents lean towards them
    out = geometry.compare_sets(
        W,
        torch.arange(10, 20),
        torch.arange(20, 30),
        torch.arange(10),
        torch.arange(10, 200),
        n_permutations=2_000,
    )
    assert out["p_value"] < 0.01 and out["effect_size"] > 1 and out["random_percentile"] > 0.95
    null = geometry.compare_sets(
        W,
        torch.arange(30, 40),
        torch.arange(20, 30),
        torch.arange(10),
        torch.arange(10, 200),
        n_permutations=2_000,
    )
    assert null["p_value"] > 0.01


def test_outside_keeps_order_and_drops_members_of_the_other_set():
    got = geometry.outside(torch.tensor([7, 3, 9, 1]), torch.tensor([9, 4, 7]))
    assert got.tolist() == [3, 1]


def clustered_decoder(seed: int = 3) -> torch.Tensor:
    """Latents 0-9 toxic and tightly clustered; every other latent random."""
    gen = torch.Generator().manual_seed(seed)
    toxic_dir = torch.randn(32, generator=gen)
    W = torch.randn(200, 32, generator=gen)
    W[:10] += 5 * toxic_dir
    return W


def test_compare_sets_outside_toxic_removes_the_confound_of_shared_membership():
    W = clustered_decoder()
    inducing = torch.cat([torch.arange(5), torch.arange(40, 45)])  # 5 toxic latents, 5 random
    args = (inducing, torch.arange(20, 30), torch.arange(10), torch.arange(10, 200))
    confounded = geometry.compare_sets(W, *args, n_permutations=2_000)
    assert confounded["p_value"] < 0.05, "shared toxic latents make the inducing set look close"
    clean = geometry.compare_sets(W, *args, n_permutations=2_000, outside_toxic=True)
    assert (clean["n_inducing"], clean["n_non_inducing"], clean["n_shared"]) == (5, 10, 5)
    assert clean["p_value"] > 0.05, "the 5 random latents are not near the toxic set"
    assert clean["proximity"]["inducing"].shape == (5,)
    assert clean["random_means"].shape == (1_000,)


def test_compare_sets_outside_toxic_still_finds_neighbours_outside_the_set():
    W = clustered_decoder()
    W[40:50] += 1.5 * (W[:10].mean(0) - W[10:].mean(0)) / 3  # neighbours, not members
    inducing = torch.cat([torch.arange(5), torch.arange(40, 50)])
    out = geometry.compare_sets(
        W,
        inducing,
        torch.arange(20, 30),
        torch.arange(10),
        torch.arange(10, 200),
        2_000,
        outside_toxic=True,
    )
    assert out["n_inducing"] == 10 and out["p_value"] < 0.01 and out["random_percentile"] > 0.95


def test_compare_sets_outside_toxic_says_when_too_few_latents_are_left():
    W = clustered_decoder()
    with pytest.raises(ValueError, match="at least 2"):
        geometry.compare_sets(
            W,
            torch.arange(9),
            torch.arange(20, 30),
            torch.arange(10),
            torch.arange(200),
            outside_toxic=True,
        )
