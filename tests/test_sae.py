import pytest
import torch

from emgeo import sae


@pytest.fixture
def params():
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(4, 6, generator=gen),
        torch.randn(6, generator=gen),
        torch.randn(4, generator=gen),
    )


def test_encode_subtracts_b_dec_and_applies_relu(params):
    W_enc, b_enc, b_dec = params
    x = torch.randn(3, 4)
    f = sae.encode(x, W_enc, b_enc, b_dec)
    assert (f >= 0).all()
    assert torch.allclose(f, torch.relu((x - b_dec) @ W_enc + b_enc))


def test_topk_keeps_k_latents(params):
    W_enc, b_enc, b_dec = params
    f = sae.topk_encode(torch.randn(5, 4), W_enc, b_enc, b_dec, k=2)
    assert ((f > 0).sum(-1) <= 2).all() and (f >= 0).all()


def test_loss_adds_the_l1_penalty():
    x, x_hat, f = torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 5)
    assert sae.sae_loss(x, x_hat, f, 0.0).item() == pytest.approx(3.0)
    assert sae.sae_loss(x, x_hat, f, 0.1).item() == pytest.approx(3.5)


def test_decoder_stays_unit_norm_during_training():
    model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=6), torch.Generator().manual_seed(0))
    acts = torch.randn(512, 3)
    sae.train_sae(model, acts, steps=20, batch_size=32, progress=False)
    assert torch.allclose(model.W_dec.norm(dim=-1), torch.ones(6), atol=1e-5)


def test_training_counts_the_samples_each_latent_fires_on():
    model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=6), torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.b_enc[0] = -1e3  # never fires
    acts = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    sae.train_sae(model, acts, steps=5, batch_size=8, l1_coeff=0.0, generator=torch.Generator())
    assert model.fire_count[0] == 0 and model.fire_count.max() <= 5 * 8
    assert model.fire_count.sum() > 0
    assert "fire_count" not in model.state_dict()  # a training record, not a weight


def test_l1_coeff_argument_overrides_the_config():
    def trained(l1_coeff):
        model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=6, l1_coeff=0.5), torch.Generator())
        acts = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
        gen = torch.Generator().manual_seed(2)
        return sae.train_sae(model, acts, 10, 8, 1e-2, l1_coeff, gen).W_dec.detach()

    assert torch.equal(trained(None), trained(0.5))
    assert not torch.allclose(trained(0.0), trained(0.5))


def test_clone_is_independent():
    model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=6), torch.Generator().manual_seed(0))
    copy = model.clone()
    with torch.no_grad():
        copy.W_dec.zero_()
    copy.fire_count += 1
    assert model.W_dec.abs().sum() > 0 and model.fire_count.sum() == 0


def test_evaluate_sae_on_a_known_sae():
    """An SAE whose latent 0 copies coordinate 0, latent 1 copies coordinate 1, latent 2 is dead:
    it reconstructs x's first two coordinates and loses the third."""
    model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=3), torch.Generator())
    with torch.no_grad():
        model.W_enc.copy_(torch.eye(3))
        model.W_dec.copy_(torch.eye(3))
        model.b_enc.copy_(torch.tensor([0.0, 0.0, -10.0]))
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, -1.0], [1.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    stats = sae.evaluate_sae(model, x)
    assert stats.mse == pytest.approx(0.5)  # (1 + 1 + 0 + 0) / 4
    variance = ((x - x.mean(0)) ** 2).sum(-1).mean().item()
    assert stats.explained_variance == pytest.approx(1 - 0.5 / variance)
    assert stats.l0 == pytest.approx(1.25)  # 1, 1, 2 and 1 active latents
    assert stats.dead_fraction == pytest.approx(1 / 3)


def test_sae_recovers_toy_features():
    """Sparse, nearly orthogonal ground-truth directions are recovered almost exactly."""
    gen = torch.Generator().manual_seed(0)
    W = torch.linalg.qr(torch.randn(8, 8, generator=gen)).Q[:, :6]  # 6 orthonormal features in 8-D
    acts = sae.toy_activations(W, 8_000, feature_probability=0.1, generator=gen)
    model = sae.ToySAE(sae.ToySAEConfig(d_in=8, d_sae=12, l1_coeff=3e-3), gen)
    sae.train_sae(model, acts, steps=1_500, batch_size=256, lr=1e-2, generator=gen, progress=False)
    assert sae.mean_max_cosine(model.W_dec.detach(), W.T) > 0.95
    stats = sae.evaluate_sae(model, acts)
    assert stats.explained_variance > 0.9 and 0 <= stats.dead_fraction <= 1


def test_mean_max_cosine_of_identical_directions_is_one():
    d = torch.randn(5, 4)
    assert sae.mean_max_cosine(torch.cat([d, torch.randn(3, 4)]), d) == pytest.approx(1.0)


def test_readable_latents_skip_dead_and_dense_ones():
    latents = torch.tensor([[0.0, 5.0, 1.0, 9.0], [0.0, 0.0, 2.0, 9.0], [0.0, 0.0, 0.0, 9.0]])
    frequency = (latents > 0).float().mean(0)  # 0, 1/3, 2/3, 1
    assert sae.readable_latents(latents, frequency, n=5, min_frequency=0.1, max_frequency=0.9) == [
        1,
        2,
    ]


def test_top_contexts_skip_repeated_contexts_and_latents_that_do_not_fire():
    from helpers import build_tokenizer

    tok = build_tokenizer()
    texts = ["the cat sat", "the cat sat", "a big red dog"]  # a text that appears twice
    ids = tok(texts, padding=True, return_tensors="pt")["input_ids"]
    rows, cols = (ids != tok.pad_token_id).nonzero(as_tuple=True)
    data = sae.TokenActivations(
        acts=torch.zeros(len(rows), 4),
        token_ids=ids[rows, cols],
        text_index=rows,
        position=cols,
        input_ids=ids,
        n_sink=0,
    )
    latents = torch.zeros(len(rows), 2)
    sat = [i for i in range(len(rows)) if tok.decode(ids[rows[i], cols[i]]) == "sat"]
    dog = [i for i in range(len(rows)) if tok.decode(ids[rows[i], cols[i]]) == "dog"]
    latents[sat, 0] = torch.tensor([5.0, 4.0])
    latents[dog, 0] = 1.0
    shown = sae.top_contexts(latents, data, tok, 0, n=3, window=2)
    assert len(shown) == 2 and "sat" in shown[0] and "dog" in shown[1]  # the repeat is skipped
    assert shown[0].startswith("   5.0")
    assert sae.top_contexts(latents, data, tok, 1) == []  # never fires: nothing to show
