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
