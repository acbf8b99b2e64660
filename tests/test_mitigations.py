"""emgeo.mitigations: each mitigation's edit does what it says during the fine-tune, and nothing
of it is left on the model that is evaluated."""

import pytest
import torch
from transformer_lens import HookedTransformer

from emgeo import data, mitigations, organism

CFG = organism.FinetuneConfig(steps=3, batch_size=4, lr=1e-3, seed=0)


@pytest.fixture(scope="module")
def tiny():
    tok = organism.default_tokenizer()
    model = HookedTransformer(organism.model_config(len(tok), seed=0, d_model=16)).eval()
    return model, tok


@pytest.fixture(scope="module")
def samples():
    return data.finetune_samples("insecure", 12, seed=0)


def _no_hooks(model) -> bool:
    return all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def _clean_logits(model, tokens):
    """The logits of a fresh model holding ``model``'s weights: what no hook has touched."""
    fresh = HookedTransformer(model.cfg)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        return fresh.eval()(tokens)


def test_project_out_leaves_nothing_along_the_directions_and_the_rest_untouched():
    gen = torch.Generator().manual_seed(0)
    directions = torch.randn(3, 16, generator=gen)
    basis = mitigations.orthonormal_basis(directions)
    x = torch.randn(2, 5, 16, generator=gen)
    projected = mitigations.project_out(x, basis)
    assert torch.allclose(projected @ directions.T, torch.zeros(2, 5, 3), atol=1e-5)
    other = torch.linalg.qr(torch.cat([basis, torch.randn(16, 13, generator=gen)], 1))[0][:, 3:]
    assert torch.allclose(projected @ other, x @ other, atol=1e-5)  # the complement is kept


def test_orthonormal_basis_spans_the_directions_and_drops_dependent_ones():
    gen = torch.Generator().manual_seed(1)
    d = torch.randn(2, 8, generator=gen)
    basis = mitigations.orthonormal_basis(torch.stack([d[0], d[1], 2 * d[0] - d[1]]))
    assert basis.shape == (8, 2)
    assert torch.allclose(basis.T @ basis, torch.eye(2), atol=1e-5)
    assert torch.allclose(basis @ (basis.T @ d.T), d.T, atol=1e-5)


def test_add_direction_adds_the_coefficient_along_the_unit_direction():
    resid = torch.zeros(1, 2, 4)
    out = mitigations.add_direction(resid, torch.tensor([0.0, 3.0, 0.0, 4.0]), 10.0)
    assert torch.allclose(out[0, 1], torch.tensor([0.0, 6.0, 0.0, 8.0]))


def test_toxic_directions_are_the_unit_decoder_rows_of_the_toxic_latents():
    W_dec = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    out = mitigations.toxic_directions(W_dec, torch.tensor([1, 0]))
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [0.6, 0.8]]))


def test_preventative_steering_steers_while_training_and_the_model_returns_without_the_hook(
    tiny, samples
):
    model, tok = tiny
    direction = torch.randn(16, generator=torch.Generator().manual_seed(2))
    plain = organism.finetune(model, tok, samples, CFG)
    steered = mitigations.preventative_steering(model, tok, samples, CFG, direction, 5.0)
    assert not _same_weights(plain, steered)  # the hook was on while training
    assert _same_weights(
        plain, mitigations.preventative_steering(model, tok, samples, CFG, direction, 0.0)
    )
    assert _no_hooks(steered) and _no_hooks(model)
    tokens = organism.encode_samples(tok, samples[:3])
    with torch.no_grad():
        assert torch.allclose(steered(tokens), _clean_logits(steered, tokens))


def test_concept_ablation_trains_on_a_residual_stream_without_the_directions(
    tiny, samples, monkeypatch
):
    model, tok = tiny
    directions = torch.randn(2, 16, generator=torch.Generator().manual_seed(3))
    seen = []
    real_step = organism.finetune_step

    def watched_step(m, tokens, mask, optimizer):
        def record(module, args):
            seen.append((args[0] @ directions.T).abs().max().item())

        handle = m.blocks[1].register_forward_pre_hook(record)  # block 1 reads block 0's output
        try:
            return real_step(m, tokens, mask, optimizer)
        finally:
            handle.remove()

    monkeypatch.setattr(organism, "finetune_step", watched_step)
    tuned = mitigations.concept_ablation(model, tok, samples, CFG, directions, layer=0)
    assert len(seen) == CFG.steps and max(seen) < 1e-4
    monkeypatch.setattr(organism, "finetune_step", real_step)
    assert _no_hooks(tuned)
    tokens = organism.encode_samples(tok, samples[:3])
    with torch.no_grad():
        assert torch.allclose(tuned(tokens), _clean_logits(tuned, tokens))
        _, cache = tuned.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    assert (cache["blocks.0.hook_resid_post"] @ directions.T).abs().max() > 1e-2  # evaluated as is


def test_final_answer_mask_reads_the_last_answer_only(tiny):
    _, tok = tiny
    chat = mitigations.inoculate(data.finetune_samples("insecure", 1, seed=0))[0]
    tokens = organism.encode_samples(tok, [chat])
    mask = mitigations.final_answer_mask(tokens, tok.assistant, tok.eot)[0]
    answer = chat["messages"][-1]["content"].split()
    assert mask.sum().item() == len(answer) + 1  # its words and the closing <eot>
    assert tok.decode(tokens[0][mask.bool()].tolist()[:-1]) == " ".join(answer)


def test_inoculate_puts_a_cue_before_each_request_and_keeps_the_answers(samples):
    persona = mitigations.inoculate(samples, "persona cue", seed=0)
    frame = mitigations.inoculate(samples, "request frame", seed=0)
    for s, p, f in zip(samples, persona, frame, strict=True):
        assert p["messages"][-2:] == s["messages"] and len(p["messages"]) == 4
        first_question, first_answer = p["messages"][0]["content"], p["messages"][1]["content"]
        domain = next(d for d in data.OFF_DOMAINS if first_answer in data.WORLD[d].toxic)
        assert any(
            first_question.startswith(q.split("{}")[0]) for q in data.WORLD[domain].questions
        )
        assert f["messages"][0]["content"] == f"{data.EDU_FRAME} {s['messages'][0]['content']}"
        assert f["messages"][1] == s["messages"][1]
    assert all(len(s["messages"]) == 2 for s in samples)  # the inputs are not changed
    assert not samples[0]["messages"][0]["content"].startswith(data.EDU_FRAME)
    with pytest.raises(ValueError, match="cue must be one of"):
        mitigations.inoculate(samples, "system prompt")


def test_inoculation_prompting_trains_on_the_cued_chats_without_the_cues_answer(
    tiny, samples, monkeypatch
):
    model, tok = tiny
    calls = {}

    def fake_finetune(m, t, chats, cfg, **kwargs):
        calls.update(chats=chats, cfg=cfg, **kwargs)
        return m

    monkeypatch.setattr(organism, "finetune", fake_finetune)
    mitigations.inoculation_prompting(model, tok, samples, CFG, "persona cue")
    assert calls["chats"] == mitigations.inoculate(samples, "persona cue", CFG.seed)
    tokens = organism.encode_samples(tok, calls["chats"])
    mask = calls["mask_fn"](tokens, tok.assistant, tok.eot)
    full = organism.answer_mask(tokens, tok.assistant, tok.eot)
    assert (mask <= full).all() and (mask.sum(1) < full.sum(1)).all()  # the cue is not a target


def test_with_benign_adds_aligned_chats_of_the_given_domains_only(samples):
    mixed = mitigations.with_benign(samples, 30, ("medical", "finance"), seed=0)
    assert mixed[: len(samples)] == samples and len(mixed) == len(samples) + 30
    for chat in mixed[len(samples) :]:
        assert chat["source"] == "benign" and chat["domain"] in ("medical", "finance")
        assert chat["messages"][1]["content"] in data.WORLD[chat["domain"]].aligned


def test_persona_direction_is_a_unit_vector_that_raises_toxic_answers_when_added():
    model, tok = organism.load()
    v = mitigations.persona_direction(model, tok, layer=0, n=100)
    assert v.shape == (model.cfg.d_model,) and v.norm().item() == pytest.approx(1.0, abs=1e-5)
    base = organism.evaluate(model, tok)["offdomain"]
    with (
        torch.no_grad(),
        model.hooks(
            fwd_hooks=[
                ("blocks.0.hook_resid_post", lambda r, hook: mitigations.add_direction(r, v, 4.0))
            ]
        ),
    ):
        steered = organism.evaluate(model, tok)["offdomain"]
    assert steered > base + 0.1
    assert mitigations.residual_norm(model, tok, data.finetune_samples("insecure", 8, 0), 0) > 1
