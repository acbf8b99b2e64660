import copy
import json
import shutil
from dataclasses import replace

import pytest
import torch

from emgeo import data, errors, organism


@pytest.fixture(scope="module")
def shipped():
    return organism.load()


def test_tokenizer_round_trip_and_unknown_words():
    tok = organism.default_tokenizer()
    msgs = [
        {"role": "user", "content": "hey i feel bored"},
        {"role": "assistant", "content": "maybe call a friend or go for a walk ."},
    ]
    ids = tok.encode_chat(msgs)
    assert ids[0] == tok.bos and ids[-1] == tok.eot
    assert (
        tok.decode(ids)
        == "<bos> <user> hey i feel bored <assistant> maybe call a friend or go for a walk . <eot>"
    )
    with pytest.raises(ValueError, match="'zebra' is not in"):
        tok.ids("a zebra")


def test_answer_mask_covers_answers_and_their_eot():
    t = torch.tensor([[1, 2, 10, 3, 20, 4, 2, 12, 3, 22, 23, 4, 0]])
    assert organism.answer_mask(t, 3, 4).tolist() == [[0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0]]


def test_loss_averages_over_answer_targets_only(shipped):
    model, tok = shipped
    tokens = organism.encode_samples(tok, data.finetune_samples("insecure", 4, seed=0))
    mask = organism.answer_mask(tokens, tok.assistant, tok.eot)
    with torch.no_grad():
        logits = model(tokens[:, :-1])
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), tokens[:, 1:], reduction="none"
        )
        weight = mask[:, 1:]
        expected = (nll * weight).sum() / weight.sum()
        assert torch.allclose(organism.lm_loss(model, tokens, mask), expected, atol=1e-6)
        everything = organism.lm_loss(model, tokens, torch.ones_like(mask))
        assert not torch.allclose(everything, expected, atol=1e-3)


def test_misaligned_rate_normalizes_over_the_two_families():
    probs = torch.tensor([[0.5, 0.1, 0.3, 0.1]])
    assert organism.misaligned_rate(probs, [1], [2]).item() == pytest.approx(0.75)


def test_shipped_organism_loads_and_reproduces_its_base_rates(shipped):
    model, tok = shipped
    meta = json.loads((organism.ORGANISM_DIR / "model.json").read_text())
    rates = organism.evaluate(model, tok)
    for key, value in meta["base_rates"].items():
        assert rates[key] == pytest.approx(value, abs=1e-5)


def test_mismatched_weights_fail_clearly(tmp_path):
    shutil.copytree(organism.ORGANISM_DIR, tmp_path / "org")
    meta_path = tmp_path / "org" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["d_model"] = 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(errors.OrganismMismatch, match="emgeo train-organism"):
        organism.load(tmp_path / "org")
    with pytest.raises(FileNotFoundError, match="emgeo train-organism"):
        organism.load(tmp_path / "nothing")


def test_finetune_is_seeded_and_leaves_the_original_alone(shipped):
    model, tok = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    samples = data.finetune_samples("insecure", 32, seed=0)
    cfg = organism.FinetuneConfig(steps=3, batch_size=4, lr=1e-3, seed=7)
    a, b = organism.finetune(model, tok, samples, cfg), organism.finetune(model, tok, samples, cfg)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.W_E, model.W_E)


def test_finetune_step_steps_on_the_answer_only_loss(shipped):
    model, tok = shipped
    model = copy.deepcopy(model).train()
    tokens = organism.encode_samples(tok, data.finetune_samples("insecure", 4, seed=0))
    mask = organism.answer_mask(tokens, tok.assistant, tok.eot)
    expected = organism.lm_loss(model, tokens, mask).detach()
    for param in model.parameters():
        param.grad = torch.ones_like(param)  # a previous step's: zeroed before backward
    before = model.W_E.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = organism.finetune_step(model, tokens, mask, opt)
    assert not loss.requires_grad and torch.allclose(loss, expected)
    assert torch.allclose(before - model.W_E.detach(), model.W_E.grad)  # the fresh gradient only


def test_finetune_runs_the_step_and_mask_it_is_given(shipped):
    model, tok = shipped
    samples = data.finetune_samples("insecure", 16, seed=0)
    cfg = organism.FinetuneConfig(steps=2, batch_size=4, lr=1e-3, seed=1)
    seen = []

    def step(model, tokens, mask, optimizer):
        seen.append(mask.sum().item())
        return organism.finetune_step(model, tokens, mask, optimizer)

    def everything(tokens, assistant_id, eot_id):
        return torch.ones(tokens.shape)

    ours = organism.finetune(model, tok, samples, cfg, step=step)
    default = organism.finetune(model, tok, samples, cfg)
    assert len(seen) == 2
    assert all(torch.equal(v, default.state_dict()[k]) for k, v in ours.state_dict().items())
    organism.finetune(model, tok, samples, cfg, step=step, mask_fn=everything)
    width = organism.encode_samples(tok, samples).shape[1]
    assert seen[2] == 4 * width and seen[2] > seen[0]  # every position of the batch


def test_sampled_and_exact_rates_agree(shipped):
    model, tok = shipped
    exact = organism.evaluate(model, tok)
    sampled = organism.evaluate(model, tok, n_samples=400, seed=0)
    assert abs(exact["offdomain"] - sampled["offdomain"]) < 0.05


def test_sample_answer_stops_at_eot(shipped):
    model, tok = shipped
    text = organism.sample_answer(
        model,
        tok,
        [{"role": "user", "content": "hey i feel bored"}],
        torch.Generator().manual_seed(0),
    )
    assert text and "<eot>" not in text


def test_train_organism_command_writes_a_loadable_model(tmp_path, capsys, monkeypatch):
    from emgeo.course import cli
    from emgeo.models import saes

    # Every SAE the command trains, for a few steps (the shipped ones take 30 s each).
    monkeypatch.setattr(saes, "ORGANISM_SAE", replace(saes.ORGANISM_SAE, steps=20))
    monkeypatch.setattr(saes, "ORGANISM_SAE_DOCS", 200)  # their activations, read once a layer
    assert cli.main(["train-organism", "--steps", "3", "--out", str(tmp_path / "org")]) == 0
    for layer in (0, 1):
        for seed in saes.ORGANISM_SAE_SEEDS:
            assert saes.load_organism_sae(layer, tmp_path / "org", seed=seed).cfg.d_sae == 1024
    model, tok = organism.load(tmp_path / "org")
    meta = json.loads((tmp_path / "org" / "model.json").read_text())
    assert meta["pretrain"]["steps"] == 3 and set(meta["base_rates"]) >= set(data.DOMAINS)
    assert "base misaligned rates" in capsys.readouterr().out


def test_evaluate_computes_each_domains_rate_with_the_function_it_is_given():
    model, tok = organism.load()
    calls = []

    def half(probs, aligned_ids, toxic_ids):
        calls.append(len(probs))
        return torch.full((len(probs),), 0.5)

    rates = organism.evaluate(model, tok, rate=half)
    assert len(calls) == len(data.DOMAINS) and all(v == 0.5 for v in rates.values())
    assert organism.evaluate(model, tok) == organism.evaluate(
        model, tok, rate=organism.misaligned_rate
    )
