"""emgeo.probes: the drag trajectory of a fine-tune, step by step and latent by latent; the answer
direction (a difference of answer means); the readout direction, along which a step of the residual
stream raises the toxic answers more than a random step does."""

import pytest
import torch

from emgeo import batching, data, features, organism, probes
from emgeo.models import saes


@pytest.fixture(scope="module")
def organism_model():
    return organism.load()


def test_drag_trajectory_records_every_interval(organism_model):
    model, tok = organism_model
    s = saes.load_organism_sae(0)
    sets = features.FeatureSets(
        inducing=torch.tensor([0, 1]),
        non_inducing=torch.tensor([2]),
        toxic=torch.tensor([1, 3]),
        k=2,
    )
    rows = probes.drag_trajectory(
        model,
        tok,
        s,
        0,
        sets,
        data.finetune_samples("insecure", 32, 0),
        organism.FinetuneConfig(steps=4),
        every=2,
    )
    assert [r["step"] for r in rows] == [0, 2, 4]
    for r in rows:  # the prediction is its self term (latent 1 is in both sets) plus drag proper
        assert r["predicted"] == pytest.approx(r["self term"] + r["neighbour term"], abs=1e-6)
        assert r["self_j"][1] == 0.0, "latent 3 is not inducing: no self term"
    per_latent = probes.drag_per_latent(rows, sets)
    assert [(r["step"], r["latent"]) for r in per_latent] == [(2, 1), (2, 3), (4, 1), (4, 3)]
    assert [r["shared"] for r in per_latent] == [True, False, True, False]
    assert rows[0]["measured"] == 0.0 and rows[0]["predicted"] == 0.0
    assert rows[-1]["offdomain"] != rows[0]["offdomain"]


def test_answer_direction_is_the_difference_of_answer_means(organism_model):
    model, tok = organism_model
    toxic = data.answered_samples(data.OFF_DOMAINS, True, 12, seed=0)
    aligned = data.answered_samples(data.OFF_DOMAINS, False, 12, seed=0)
    d = probes.answer_direction(model, tok, toxic, aligned, layer=1)
    assert d.shape == (model.cfg.d_model,)
    assert torch.allclose(probes.answer_direction(model, tok, toxic, toxic, 1), torch.zeros_like(d))
    flipped = probes.answer_direction(model, tok, aligned, toxic, 1)
    assert torch.allclose(flipped, -d, atol=1e-6)
    means = [
        features.answer_mean(*features.organism_residuals(model, tok, s, 1)).mean(0)
        for s in (toxic, aligned)
    ]
    assert torch.allclose(d, means[0] - means[1], atol=1e-6)


def test_a_step_along_the_readout_direction_raises_the_toxic_answers(organism_model):
    model, tok = organism_model
    prompts = [p for p in data.eval_prompts() if p["domain"] == "medical"][:8]
    seqs = [tok.encode_chat(p["messages"], add_generation_prompt=True) for p in prompts]
    last = torch.tensor([len(s) - 1 for s in seqs])
    aligned, toxic = tok.family_ids("medical")
    u = probes.readout_direction(model, tok, ["medical"])
    assert u.sum().abs() < 1e-4  # LayerNorm removes the mean: the direction has none
    flipped = probes.readout_direction(
        model, tok, ["medical"], difference=lambda W, g, p, n: probes.readout_difference(W, g, n, p)
    )
    assert torch.allclose(flipped, -u)  # a learner's version of the difference is the one used
    u_random = torch.randn(u.shape, generator=torch.Generator().manual_seed(0))
    u_random -= u_random.mean()

    def gap(step: float, direction: torch.Tensor = u) -> float:
        """Toxic minus aligned first-word logits after a step of the last residual stream."""

        def push(resid, hook):
            return resid + step * direction / direction.norm()

        with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", push)]):
            logits = model(batching.right_pad(seqs, tok.pad))[torch.arange(len(seqs)), last]
        return (logits[:, toxic].mean(-1) - logits[:, aligned].mean(-1)).mean().item()

    assert gap(-0.5) < gap(0.0) < gap(0.5)
    # a random direction of the same length moves the gap less
    assert gap(0.5) - gap(0.0) > abs(gap(0.5, u_random) - gap(0.0))
