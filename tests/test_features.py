import pytest
import torch
from helpers import SAMPLES, build_chat_lm

from emgeo import batching, chats, data, features, organism, probes, sae
from emgeo.models import pipeline, saes


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
