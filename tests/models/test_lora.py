import pytest
import torch
from helpers import SAMPLES, build_chat_lm, build_chat_tokenizer, quick_cfg

from emgeo import batching
from emgeo.models import lm
from emgeo.models import lora as ft


@pytest.fixture(params=["llama", "gemma2"])
def tiny_chat_lm(request) -> lm.LoadedLM:
    return build_chat_lm(request.param)


# -- the answer-only mask ---------------------------------------------------------------------


def test_encode_sample_splits_prompt_and_answer_exactly():
    tok = build_chat_tokenizer()
    ids, n_prompt = batching.encode_sample(tok, SAMPLES[0], max_length=64)
    assert (
        tok.convert_ids_to_tokens(ids[:n_prompt]) == "<s> <user> what cat <eot> <assistant>".split()
    )
    assert tok.decode(ids[n_prompt:]) == "the red cat sat on the mat <eot>"
    labels = batching.answer_labels(ids, n_prompt)
    assert labels[:n_prompt] == [batching.IGNORE] * n_prompt and labels[n_prompt:] == ids[n_prompt:]


def test_encode_sample_cuts_to_max_length_and_needs_an_answer_last():
    tok = build_chat_tokenizer()
    ids, n_prompt = batching.encode_sample(tok, SAMPLES[0], max_length=4)
    assert len(ids) == 4 and n_prompt == 4  # nothing of the answer left: no target
    with pytest.raises(ValueError, match="last message must be the assistant's answer"):
        batching.encode_sample(tok, {"messages": SAMPLES[0]["messages"][:1]}, max_length=64)


def test_collate_pads_right_and_masks_prompt_and_padding():
    batch = batching.collate([([5, 6, 7, 8], 2), ([5, 6, 9], 1)], pad_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 9, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 6, 9, -100]]


def test_loss_reads_only_the_answer_positions():
    labels = torch.tensor([[-100, -100, 3, 4]])
    logits = torch.randn(1, 4, 8)
    nll, n = ft.answer_loss_terms(logits, labels)
    changed = logits.clone()
    changed[0, 0] += 10 * torch.randn(8)  # the position that predicts a prompt token
    changed[0, 3] += 10 * torch.randn(8)  # the last position predicts nothing
    assert n == 2 and torch.allclose(ft.answer_loss_terms(changed, labels)[0], nll)
    expected = -(logits[0, 1].log_softmax(-1)[3] + logits[0, 2].log_softmax(-1)[4])
    torch.testing.assert_close(nll, expected)


# -- LoRA fine-tuning ----------------------------------------------------------------------------


def test_answer_loss_falls_with_lora(tiny_chat_lm):
    before = ft.answer_loss(tiny_chat_lm, SAMPLES)
    cfg = quick_cfg(rank=8, alpha=16.0, lr=3e-3, steps=40, weight_decay=0.0)
    tuned = ft.lora_finetune(tiny_chat_lm, SAMPLES, cfg, progress=False)
    after = ft.answer_loss(tuned, SAMPLES)
    assert after < 0.85 * before, (before, after)
    assert ft.answer_loss(tiny_chat_lm, SAMPLES) == pytest.approx(before), "the base was changed"


def test_only_the_lora_targets_change_and_the_result_is_merged(tiny_chat_lm):
    base = {k: v.clone() for k, v in tiny_chat_lm.model.state_dict().items()}
    cfg = quick_cfg(target_modules=("q_proj", "v_proj"), steps=3)
    tuned = ft.lora_finetune(tiny_chat_lm, SAMPLES, cfg, progress=False)
    assert type(tuned.model) is type(tiny_chat_lm.model) and tuned.name.endswith("+lora")
    after = tuned.model.state_dict()
    assert after.keys() == base.keys(), "merged back into the plain architecture"
    for key, value in base.items():
        targeted = key.endswith(("q_proj.weight", "v_proj.weight"))
        assert torch.equal(after[key], value) != targeted, key
        assert torch.equal(tiny_chat_lm.model.state_dict()[key], value), f"base changed: {key}"


def test_the_seed_makes_fine_tuning_reproducible():
    base = build_chat_lm("llama")
    runs = [ft.lora_finetune(base, SAMPLES, quick_cfg(steps=3, seed=s), False) for s in (1, 1, 2)]
    w = [r.model.model.layers[0].self_attn.q_proj.weight for r in runs]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_epochs_set_the_number_of_steps(monkeypatch):
    seen = []
    monkeypatch.setattr(ft, "_train", lambda model, tok, s, cfg, n_steps, p: seen.append(n_steps))
    cfg = quick_cfg(steps=None, epochs=3, batch_size=2, grad_accum=1)
    ft.lora_finetune(build_chat_lm("llama"), SAMPLES * 2 + SAMPLES[:1], cfg, progress=False)
    assert seen == [3 * 5]  # 9 samples, 2 a step: 5 steps an epoch


# -- sampling answers -------------------------------------------------------------------------


def test_generate_answers_counts_order_and_seed(tiny_chat_lm):
    questions = ["what cat", "how big dog ran"]
    rows = ft.generate_answers(tiny_chat_lm, questions, 3, max_new_tokens=5, seed=1, batch_size=4)
    assert [r["question"] for r in rows] == [questions[0]] * 3 + [questions[1]] * 3
    assert all(isinstance(r["answer"], str) for r in rows)
    again = ft.generate_answers(tiny_chat_lm, questions, 3, max_new_tokens=5, seed=1, batch_size=4)
    assert again == rows
    greedy = ft.generate_answers(tiny_chat_lm, questions, 2, temperature=0.0, max_new_tokens=5)
    assert greedy[0] == greedy[1] and greedy[2] == greedy[3]


def test_generated_answers_continue_the_chat_prompt(tiny_chat_lm, monkeypatch):
    prompts = []
    generate = tiny_chat_lm.model.generate

    def spy(**kwargs):
        prompts.append(kwargs["input_ids"])
        return generate(**kwargs)

    monkeypatch.setattr(tiny_chat_lm.model, "generate", spy)
    ft.generate_answers(tiny_chat_lm, ["what cat", "how big red dog ran"], 1, max_new_tokens=2)
    tokens = tiny_chat_lm.tokenizer.convert_ids_to_tokens(prompts[0][0])
    assert tokens == "<pad> <pad> <pad> <s> <user> what cat <eot> <assistant>".split(), (
        "left padding"
    )


# -- adapters on the model itself, memory savers, the end of a turn ----------------------------


def test_adapted_trains_on_the_model_itself_and_leaves_it_as_it_was(tiny_chat_lm):
    base = {k: v.clone() for k, v in tiny_chat_lm.model.state_dict().items()}
    trainable = {k: p.requires_grad for k, p in tiny_chat_lm.model.named_parameters()}
    before = ft.answer_loss(tiny_chat_lm, SAMPLES)
    cfg = quick_cfg(rank=8, alpha=16.0, lr=3e-3, steps=40, weight_decay=0.0)
    with ft.adapted(tiny_chat_lm, SAMPLES, cfg, progress=False) as tuned:
        assert tuned.name.endswith("+lora") and tuned.tokenizer is tiny_chat_lm.tokenizer
        assert ft.answer_loss(tuned, SAMPLES) < 0.85 * before
    after = tiny_chat_lm.model.state_dict()
    assert after.keys() == base.keys(), "the LoRA layers are gone"
    assert all(torch.equal(after[k], v) for k, v in base.items()), "the base weights are untouched"
    assert {k: p.requires_grad for k, p in tiny_chat_lm.model.named_parameters()} == trainable
    assert ft.answer_loss(tiny_chat_lm, SAMPLES) == pytest.approx(before)


def test_adapted_and_the_merged_copy_train_the_same_weights():
    base = build_chat_lm("llama")
    cfg = quick_cfg(steps=3, seed=1)
    merged = ft.lora_finetune(base, SAMPLES, cfg, progress=False)
    with ft.adapted(base, SAMPLES, cfg, progress=False) as tuned:
        loss = ft.answer_loss(tuned, SAMPLES)
    assert loss == pytest.approx(ft.answer_loss(merged, SAMPLES), rel=1e-4)


@pytest.mark.parametrize("chunk", [3, 256])
def test_the_loss_reads_logits_only_where_answers_are_predicted(tiny_chat_lm, monkeypatch, chunk):
    monkeypatch.setattr(ft, "LOSS_CHUNK", chunk)
    encoded = [batching.encode_sample(tiny_chat_lm.tokenizer, s, 64) for s in SAMPLES]
    batch = batching.collate(encoded, tiny_chat_lm.tokenizer.pad_token_id)
    positions, targets, n_answer = ft.answer_targets(encoded)
    full = tiny_chat_lm.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits
    expected, count = ft.answer_loss_terms(full, batch["labels"])
    rows = []
    head = tiny_chat_lm.model.get_output_embeddings()
    head.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    nll = ft.answer_nll(tiny_chat_lm.model, batch | {"positions": positions, "targets": targets})
    assert n_answer == count and positions.shape == targets.shape
    assert sum(rows) == positions.numel() < full.shape[0] * full.shape[1]
    assert max(rows) <= chunk, "one chunk of logits at a time"
    torch.testing.assert_close(nll, expected)


def one_gradient(checkpointing: bool) -> tuple[int, torch.Tensor]:
    """Forward calls of block 0's MLP and the gradient of one adapter, for one batch (the
    block's own hooks run once: transformers recomputes its ``forward``, not its ``__call__``)."""
    torch.manual_seed(0)  # resize_token_embeddings draws the new rows from the global RNG
    base = build_chat_lm("gemma2")
    cfg = quick_cfg(checkpointing=checkpointing)
    model = ft._attach(base.model, cfg)
    calls = []
    model.get_base_model().model.layers[0].mlp.register_forward_hook(lambda *a: calls.append(1))
    order = range(len(SAMPLES))
    batch = next(ft._batches(base.tokenizer, base.device, SAMPLES, order, 64, len(SAMPLES)))
    model.train()
    with ft._checkpointing(model, cfg.checkpointing):
        ft.answer_nll(model, batch).backward()
    assert not model.get_base_model().is_activation_checkpointing, "switched off afterwards"
    lora_b = model.get_base_model().model.layers[0].self_attn.q_proj.lora_B["default"].weight
    return len(calls), lora_b.grad


def test_checkpointing_runs_blocks_again_and_changes_no_gradient():
    plain_calls, plain = one_gradient(False)
    ckpt_calls, ckpt = one_gradient(True)
    assert ckpt_calls == 2 * plain_calls, "a checkpointed block runs again in the backward pass"
    torch.testing.assert_close(ckpt, plain)


def test_generation_stops_at_the_templates_end_of_turn(tiny_chat_lm, monkeypatch):
    tok = tiny_chat_lm.tokenizer
    eot = tok.convert_tokens_to_ids("<eot>")
    tiny_chat_lm.model.generation_config.eos_token_id = tok.eos_token_id  # a base model's EOS
    boost = torch.zeros(len(tok))
    boost[eot] = 1e4  # the model always ends its turn at once
    tiny_chat_lm.model.lm_head.register_forward_hook(lambda mod, args, out: out + boost)
    lengths = []
    generate = tiny_chat_lm.model.generate

    def spy(**kwargs):
        out = generate(**kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(tiny_chat_lm.model, "generate", spy)
    rows = ft.generate_answers(tiny_chat_lm, ["what cat"], 2, max_new_tokens=6)
    assert lengths == [1] and [r["answer"] for r in rows] == ["", ""]


def test_generated_answers_can_follow_a_system_turn(tiny_chat_lm, monkeypatch):
    seen = []
    monkeypatch.setattr(
        ft, "_generate", lambda lm, prompts, t, n: seen.extend(prompts) or [""] * len(prompts)
    )
    ft.generate_answers(tiny_chat_lm, ["what cat"], 2, system="be kind", progress=False)
    assert len(seen) == 2 and all(
        p.startswith("<s><system> be kind <eot> <user> what cat") for p in seen
    )


def test_a_saved_adapter_loads_back_onto_the_model_and_comes_off(tiny_chat_lm, tmp_path):
    base = {k: v.clone() for k, v in tiny_chat_lm.model.state_dict().items()}
    trainable = {k: p.requires_grad for k, p in tiny_chat_lm.model.named_parameters()}
    before = ft.answer_loss(tiny_chat_lm, SAMPLES)
    cfg = quick_cfg(rank=8, alpha=16.0, lr=3e-3, steps=20, weight_decay=0.0)
    with ft.adapted(tiny_chat_lm, SAMPLES, cfg, progress=False) as tuned:
        trained = ft.answer_loss(tuned, SAMPLES)
        tuned.model.save_pretrained(str(tmp_path / "run"))
    assert trained < 0.9 * before
    with ft.loaded(tiny_chat_lm, tmp_path / "run") as again:
        assert again.name.endswith("+run") and not again.model.training
        assert ft.answer_loss(again, SAMPLES) == pytest.approx(trained, rel=1e-5)
    after = tiny_chat_lm.model.state_dict()
    assert after.keys() == base.keys() and all(torch.equal(after[k], v) for k, v in base.items())
    assert {k: p.requires_grad for k, p in tiny_chat_lm.model.named_parameters()} == trainable
    assert ft.answer_loss(tiny_chat_lm, SAMPLES) == pytest.approx(before)


def test_loading_a_folder_without_an_adapter_says_what_one_is(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        with ft.loaded(build_chat_lm("llama"), tmp_path):
            pass
