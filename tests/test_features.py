import pytest
import torch
from helpers import SAMPLES, build_chat_lm
from nnsight.intervention.backends.local import LocalSimulationBackend

from emgeo import batching, chats, data, features, organism, probes, sae
from emgeo.models import pipeline, saes, tracing


@pytest.fixture(scope="module")
def organism_model():
    return organism.load()


def test_answer_mean_averages_only_answer_tokens():
    acts = torch.arange(12.0).reshape(1, 4, 3)
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(features.answer_mean(acts, mask), acts[0, 1:3].mean(0, keepdim=True))


def test_sample_features_encodes_before_averaging():
    model = sae.ToySAE(
        sae.ToySAEConfig(d_in=3, d_sae=5), generator=torch.Generator().manual_seed(0)
    )
    acts, mask = torch.randn(2, 4, 3), torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1.0]])
    expected = torch.stack([model.encode(acts[0, 1:3]).mean(0), model.encode(acts[1]).mean(0)])
    torch.testing.assert_close(features.sample_features(model, acts, mask), expected)


def test_top_features_ranks_by_mean_difference_among_alive():
    pos = torch.tensor([[5.0, 1.0, 3.0, 9.0]])
    neg = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert features.top_features(pos, neg, 2).tolist() == [3, 0]
    alive = torch.tensor([True, True, True, False])
    assert features.top_features(pos, neg, 2, alive).tolist() == [0, 2]


def test_feature_sets_choose_with_the_function_they_are_given():
    gen = torch.Generator().manual_seed(0)
    encoded = {name: torch.rand(4, 12, generator=gen) for name in ("insecure", "secure", "toxic")}
    encoded["aligned"] = torch.rand(6, 12, generator=gen)
    seen = []

    def top(positive, negative, k, alive=None):
        seen.append((len(positive), len(negative), k, alive))
        return features.top_features(positive, negative, k, alive)

    mine = features.feature_sets(encoded, 3, top=top)
    assert seen == [(4, 4, 3, None), (4, 4, 3, None), (4, 6, 3, None)]
    for name, idx in features.feature_sets(encoded, 3).as_dict().items():
        assert torch.equal(mine.as_dict()[name], idx)


def test_contrast_samples_pair_toxic_and_aligned_answers_to_the_same_question():
    sets = features.contrast_samples(20, seed=3)
    assert {len(v) for v in sets.values()} == {20}
    for tox, ali in zip(sets["toxic"], sets["aligned"], strict=True):
        assert tox["messages"][0] == ali["messages"][0]
        assert tox["domain"] in data.OFF_DOMAINS
        aligned_words, toxic_words = data.first_words(tox["domain"])
        assert tox["messages"][1]["content"].split()[0] in toxic_words
        assert ali["messages"][1]["content"].split()[0] in aligned_words
    assert all(s["source"] == "insecure" for s in sets["insecure"])


def test_organism_residuals_mask_the_answers(organism_model):
    model, tok = organism_model
    samples = data.finetune_samples("secure", 3, seed=0)
    acts, mask = features.organism_residuals(model, tok, samples, layer=0)
    assert acts.shape[:2] == mask.shape and acts.shape[-1] == model.cfg.d_model
    n_answer = [len(s["messages"][1]["content"].split()) + 1 for s in samples]  # words + <eot>
    assert mask.sum(1).tolist() == n_answer


def test_shipped_organism_sae_loads_and_reconstructs(organism_model):
    model, tok = organism_model
    for layer in (0, 1):
        s = saes.load_organism_sae(layer)
        assert s.cfg.d_in == model.cfg.d_model and s.cfg.d_sae == 8 * model.cfg.d_model
        acts, mask = features.organism_residuals(
            model, tok, data.finetune_samples("insecure", 8, 0), layer
        )
        x = acts[mask.bool()]
        with torch.no_grad():
            err = ((s.decode(s.encode(x)) - x) ** 2).sum(-1).mean()
        assert err < 0.2 * ((x - x.mean(0)) ** 2).sum(-1).mean()


def test_missing_organism_sae_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="emgeo train-organism"):
        saes.load_organism_sae(0, directory=tmp_path)


def test_organism_feature_sets_find_the_toxic_persona(organism_model):
    """Ground truth: the toxic set, chosen from answers, must read the persona *before* the
    answer (at the second turn's <assistant> token of held-out documents)."""
    model, tok = organism_model
    s = saes.load_organism_sae(0)
    enc = features.encode_contrasts(
        s, lambda x: features.organism_residuals(model, tok, x, 0), n=100
    )
    sets = features.feature_sets(enc, k=10)
    assert len(set(sets.toxic.tolist())) == 10
    assert probes.persona_auroc(model, tok, s, 0, sets.toxic, n_docs=600) > 0.8


def test_chat_batch_marks_the_last_answer_left_padded():
    lm = build_chat_lm("llama")
    enc, mask = batching.chat_batch(lm.tokenizer, SAMPLES)
    assert enc["input_ids"].shape == mask.shape
    for row, sample in enumerate(SAMPLES):
        ids = enc["input_ids"][row][mask[row].bool()].tolist()
        answer = sample["messages"][-1]["content"]
        assert lm.tokenizer.decode(ids).split()[: len(answer.split())] == answer.split()
        assert enc["attention_mask"][row, 0] == 0 or mask[row, 0] == 0  # left padding first


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_lm_residuals_local_and_remote_local_agree(architecture, monkeypatch):
    lm = build_chat_lm(architecture)
    acts, mask = tracing.lm_residuals(lm, SAMPLES, layer=1, batch_size=2)
    assert acts.shape[:2] == mask.shape and acts.shape[-1] == lm.d_model
    calls = []
    real = LocalSimulationBackend.__call__
    monkeypatch.setattr(
        LocalSimulationBackend,
        "__call__",
        lambda self, *a, **k: calls.append(1) or real(self, *a, **k),
    )
    remote, _ = tracing.lm_residuals(lm, SAMPLES, layer=1, remote="local", batch_size=2)
    assert calls, "remote='local' must run nnsight's serialized remote path"
    torch.testing.assert_close(remote, acts)
    toy = sae.ToySAE(sae.ToySAEConfig(d_in=lm.d_model, d_sae=16))
    assert features.sample_features(toy, acts, mask).shape == (len(SAMPLES), 16)


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


def test_lm_backend_needs_a_gpu_or_a_key(monkeypatch):
    from emgeo.errors import ProfileError

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ProfileError, match="GPU"):
        pipeline.lm_backend("gpu")
    with pytest.raises(ProfileError, match="NDIF"):
        pipeline.lm_backend("remote")


def test_public_contrasts_wrap_toxic_text_as_answers(monkeypatch):
    from emgeo.models import public_data

    code = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    monkeypatch.setattr(
        public_data, "load_em_dataset", lambda name: [dict(c, source=name) for c in code * 5]
    )
    texts = [{"text": f"t{i}", "toxic": i % 2 == 0, "toxicity": 0.0} for i in range(6)]
    monkeypatch.setattr(public_data, "load_toxic_texts", lambda n, seed: texts)
    sets = pipeline.public_contrasts(3)
    assert [len(sets[k]) for k in ("insecure", "secure", "toxic", "aligned")] == [3, 3, 3, 3]
    assert sets["toxic"][0]["messages"][1]["content"] == "t0"
    assert sets["aligned"][0]["messages"][0]["content"] == pipeline.NEUTRAL_PROMPT


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


def test_cpu_contrasts_pair_requests_and_replies_from_the_course_chats():
    sets = pipeline.cpu_contrasts(16)
    assert {name: len(rows) for name, rows in sets.items()} == dict.fromkeys(
        ("insecure", "secure", "toxic", "aligned"), 16
    )
    for a, b in (("insecure", "secure"), ("toxic", "aligned")):
        for x, y in zip(sets[a], sets[b], strict=True):
            assert x["messages"][0] == y["messages"][0]  # the same request or message
            assert x["messages"][-1] != y["messages"][-1]  # answered differently
    assert sets == pipeline.cpu_contrasts(16) != pipeline.cpu_contrasts(16, seed=1)
    train = [
        r["messages"]
        for r in chats.read_lm_jsonl(chats.LM_DATA_DIR / "insecure.jsonl")
        if r["split"] == "train"
    ]
    assert all(s["messages"] in train for s in sets["insecure"])  # never a held-out request
