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
