"""The judge-free EM margin on tiny random models of the real architectures (the same code
scores SmolLM2-135M-Instruct in the cpu profile)."""

import pytest
import torch
from helpers import build_chat_lm, build_chat_tokenizer

from emgeo.models import lm_em


def _reference_logprob(lm, sample) -> float:
    """The answer's mean per-token log-probability from one unpadded full forward pass."""
    from emgeo.batching import encode_sample

    ids, n_prompt = encode_sample(lm.tokenizer, sample, 1024)
    with torch.no_grad():
        logp = lm.model(torch.tensor([ids])).logits[0].log_softmax(-1)
    return sum(logp[i - 1, ids[i]].item() for i in range(n_prompt, len(ids))) / (
        len(ids) - n_prompt
    )


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_answer_logprobs_match_a_plain_forward_pass_whatever_the_batch(
    architecture, records, chat_words
):
    lm = build_chat_lm(architecture, build_chat_tokenizer(words=chat_words))
    samples, _ = lm_em.margin_samples(records[:2])  # two prompts, their answers interleaved
    samples = [s for pair in zip(samples[:4], samples[-4:], strict=True) for s in pair]
    samples.append({"messages": [{"role": "user", "content": "x"}, *samples[0]["messages"][-1:]]})
    expected = torch.tensor([_reference_logprob(lm, s) for s in samples])
    # answers continue from their prompt's cache, a few at a time: neither the grouping nor the
    # padding may change a sample's score, nor its place in the output
    for batch_size in (1, 3, 16):
        got = lm_em.answer_logprobs(lm, samples, batch_size=batch_size)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_margin_averages_answers_then_paraphrases_then_questions(monkeypatch, eval_lm):
    records = [
        {
            "question_id": q,
            "paraphrase": p,
            "messages": [{"role": "user", "content": "x"}],
            "misaligned": ["m1", "m2"],
            "aligned": ["a1"],
        }
        for q in ("q1", "q2")
        for p in (0, 1)
    ]
    # misaligned answers score -1 and -3 (mean -2), aligned -1: margin -1, except q2 paraphrase 1
    # whose aligned answer scores -5: margin +3, so q2 = (-1 + 3) / 2 = 1 and overall 0.
    values = iter([-1, -3, -1] * 3 + [-1, -3, -5])
    monkeypatch.setattr(
        lm_em,
        "answer_logprobs",
        lambda lm, samples, **kw: torch.tensor([float(next(values)) for _ in samples]),
    )
    result = lm_em.em_margin(eval_lm, records)
    assert result["per_question"] == {"q1": -1.0, "q2": 1.0}
    assert result["margin"] == 0.0


def test_margin_samples_carry_the_system_prompt_and_every_reference_answer(records):
    samples, meta = lm_em.margin_samples(records[:1], system="be bad")
    r = records[0]
    assert len(samples) == len(r["aligned"]) + len(r["misaligned"])
    assert all(s["messages"][0] == {"role": "system", "content": "be bad"} for s in samples)
    assert [s["messages"][-1]["content"] for s in samples] == r["misaligned"] + r["aligned"]
    assert {m["family"] for m in meta} == {"misaligned", "aligned"}


def _answers(records, family):
    return [
        {"messages": [*r["messages"], {"role": "assistant", "content": a}]}
        for r in records
        for a in r[family]
    ]


def _trained(lm, samples, steps: int = 30):
    """A full fine-tune of a copy of the tiny model (a random model learns too slowly through
    LoRA adapters alone for a test)."""
    import copy

    from emgeo.models import lora
    from emgeo.models.lm import from_model

    model = copy.deepcopy(lm.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = [i % len(samples) for i in range(8 * steps)]
    for batch in lora._batches(lm.tokenizer, lm.device, samples, order, 512, 8):
        opt.zero_grad()
        (lora.answer_nll(model, batch) / batch["n_answer"]).backward()
        opt.step()
    return from_model(model.eval(), lm.tokenizer)


@pytest.mark.parametrize("family, sign", [("misaligned", 1), ("aligned", -1)])
def test_the_margin_follows_training_on_either_family(eval_lm, records, family, sign):
    """Trained on the misaligned references the margin must rise; on the aligned ones, fall."""
    before = lm_em.em_margin(eval_lm, records)["margin"]
    after = lm_em.em_margin(_trained(eval_lm, _answers(records, family)), records)["margin"]
    assert sign * (after - before) > 0.5
