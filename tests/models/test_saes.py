import pytest
import sae_lens
import torch

from emgeo import sae
from emgeo.errors import ModelUnavailableError
from emgeo.models import saes


def test_pretrained_sae_ids_fill_in_the_layer():
    assert saes.PRETRAINED["gpu"].sae_id(5) == "layer_5/width_16k/canonical"
    assert saes.PRETRAINED["gpu"].sae_id(12) == "layer_12/width_16k/canonical"
    assert saes.PRETRAINED["remote"].sae_id(21) == "l21r_8x"
    assert saes.PRETRAINED["remote"].sae_id(12) == "l12r_8x"


def test_pretrained_sae_offline_gives_one_sentence(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore lines")

    monkeypatch.setattr(sae_lens.SAE, "from_pretrained", offline)
    family = saes.PRETRAINED["gpu"]
    with pytest.raises(ModelUnavailableError, match="gemma-scope-2b-pt-res-canonical.*internet"):
        saes.load_pretrained(family.release, family.sae_id(12))


def test_saelens_topk_training_on_small_activations():
    gen = torch.Generator().manual_seed(0)
    directions = torch.randn(16, 8, generator=gen)
    codes = (torch.rand(2_000, 16, generator=gen) < 0.1).float() * torch.rand(
        2_000, 16, generator=gen
    )
    acts = codes @ directions
    cfg = saes.SAETrainingConfig(expansion=4, k=4, steps=150, batch_size=128, lr=3e-3)
    model = saes.train_saelens_topk(acts, cfg)
    stats, frequency = sae.saelens_stats(model, acts)
    assert stats.explained_variance > 0.7 and stats.l0 <= 4 and frequency.shape == (32,)


def test_a_typo_in_a_release_or_sae_id_is_not_called_offline(monkeypatch):
    monkeypatch.setattr(
        sae_lens.SAE, "from_pretrained", lambda *a, **k: pytest.fail("nothing to download")
    )
    with pytest.raises(ValueError, match="no SAE release 'gemma-scope-2b-pt-res-canonicl'") as err:
        saes.load_pretrained("gemma-scope-2b-pt-res-canonicl", "layer_12/width_16k/canonical")
    assert "did you mean gemma-scope-2b-pt-res-canonical" in str(err.value)
    with pytest.raises(ValueError, match="has no sae_id 'l12r_8X'") as err:
        saes.load_pretrained("llama_scope_lxr_8x", "l12r_8X")
    assert "l12r_8x" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("profile", ["gpu", "remote"])
def test_the_course_pretrained_ids_are_in_saelens_directory(profile):
    family = saes.PRETRAINED[profile]
    for layer in (0, 12, 20):
        saes.check_pretrained_id(family.release, family.sae_id(layer))


def test_every_layer_ships_one_sae_per_seed_and_the_seeds_differ():
    assert saes.organism_sae_dir(0).name == "sae_layer0"
    assert saes.organism_sae_dir(1, seed=2).name == "sae_layer1_seed2"
    for layer in (0, 1):
        loaded = [saes.load_organism_sae(layer, seed=s) for s in saes.ORGANISM_SAE_SEEDS]
        assert len({tuple(s.W_dec.shape) for s in loaded}) == 1
        first = loaded[0].W_dec
        assert all(not torch.allclose(first, other.W_dec) for other in loaded[1:])
