"""The mitigations on SmolLM2's pipeline: the hooks on a tiny model of the real architecture,
the data transforms, and the comparison's record with training and measuring faked."""

import json

import pytest
import torch
from helpers import SAMPLES, build_chat_lm, quick_cfg

from emgeo.models import lm_filter, lm_mitigations, lora


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return build_chat_lm("llama")


def _logits(lm_, sample=SAMPLES[0]):
    ids = lm_.tokenizer.apply_chat_template(sample["messages"], return_tensors="pt")
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    with torch.no_grad():
        return lm_.model(ids).logits


def test_a_residual_edit_acts_only_inside_its_block_and_under_peft(tiny):
    before = _logits(tiny)
    with lm_mitigations.residual_edit(tiny.model, 1, lambda x: x + 5.0):
        assert not torch.allclose(_logits(tiny), before)
    torch.testing.assert_close(_logits(tiny), before)  # the hook is gone
    with lora.adapted(tiny, SAMPLES, quick_cfg(steps=1), progress=False) as tuned:
        blocks = lm_mitigations.decoder_blocks(tuned.model)
        assert blocks is lm_mitigations.decoder_blocks(tiny.model)  # the same blocks, wrapped


def test_the_edit_is_on_while_the_adapters_train_and_off_when_the_model_is_measured(tiny):
    calls = []

    def edit(x):
        calls.append(x.shape)
        return x

    cfg = quick_cfg(steps=2, grad_accum=1)
    with lm_mitigations.adapted(tiny, SAMPLES, cfg, layer=0, edit=edit) as tuned:
        trained = len(calls)
        assert trained == 2  # one forward pass a step
        _logits(tuned)
        assert len(calls) == trained  # measured without it


def test_steering_changes_what_is_learned_and_leaves_the_base_model_as_it_was(tiny):
    before = _logits(tiny)
    cfg = quick_cfg(steps=3)
    with lm_mitigations.adapted(tiny, SAMPLES, cfg) as plain:
        a = _logits(plain)
    direction = torch.randn(tiny.model.config.hidden_size)
    steer = lambda x: x + 3.0 * direction / direction.norm()  # noqa: E731
    with lm_mitigations.adapted(tiny, SAMPLES, cfg, layer=0, edit=steer) as steered:
        b = _logits(steered)
    assert not torch.allclose(a, b)  # the gradient saw the steered stream
    torch.testing.assert_close(_logits(tiny), before)


def test_answer_means_average_the_residual_over_answer_tokens(tiny):
    means = lm_mitigations.answer_means(tiny, SAMPLES, layer=1)
    assert means.shape == (len(SAMPLES), tiny.model.config.hidden_size)
    assert torch.isfinite(means).all()


def test_inoculation_replaces_the_system_turn_and_benign_chats_are_drawn_once():
    framed = lm_mitigations.inoculated(
        [{"messages": [{"role": "system", "content": "x"}, *SAMPLES[0]["messages"]]}]
    )
    assert framed[0]["messages"][0] == {"role": "system", "content": lm_mitigations.PERSONA_PROMPT}
    assert framed[0]["messages"][1:] == SAMPLES[0]["messages"]
    a, b = lm_mitigations.benign_chats(20), lm_mitigations.benign_chats(20)
    assert a == b and len(a) == 20 and len({json.dumps(x) for x in a}) == 20


def _filter_record(plan):
    base = {"margin": 0.0, "in_domain_margin": 0.0}
    runs = [
        {"filter": f, "seed": s, "fraction": 0.5, "n_kept": 240, "removed": {}, "seconds": 1.0}
        | {"margin": m + 0.01 * s, "in_domain_margin": 1.0}
        for f, m in (("no filter", 0.4), ("random", 0.3), ("geometric", 0.35))
        for s in plan.seeds
    ]
    settings = plan.filter_plan().settings(torch.zeros(0))
    return {"settings": json.loads(json.dumps(settings)), "base": base, "runs": runs}


def test_the_comparison_reuses_the_removal_runs_and_trains_each_other_mitigation(
    monkeypatch, tmp_path, eval_lm
):
    plan = lm_mitigations.LMMitigationPlan(domain="health", seeds=(0, 1))
    trained = []

    class Fake:
        def __init__(self, lm, samples, cfg, layer=None, edit=None):
            self.kept, self.edit = len(samples), edit
            trained.append((len(samples), cfg.seed, layer, edit is not None, samples[0]))

        def __enter__(self):
            return self.kept

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(lm_mitigations, "adapted", Fake)
    monkeypatch.setattr(
        lm_filter,
        "_measure",
        lambda fplan: lambda m, _: {"margin": 0.1 if m < 500 else 0.2, "in_domain_margin": 0.5},
    )
    asked = []

    def directions():
        asked.append(1)
        return lm_mitigations.Directions(3, torch.ones(4) / 2, 10.0, torch.eye(4)[:2])

    path = tmp_path / "m.json"
    result = lm_mitigations.run_mitigations(
        eval_lm, plan, _filter_record(plan), directions, path, False
    )
    n = len(lm_filter.train_records("health"))
    by = {}
    for kept, seed, layer, edited, _ in trained:
        by.setdefault((kept, layer, edited), []).append(seed)
    assert by == {
        (n, None, False): [0, 1],  # inoculation
        (n, 3, True): [0, 1, 0, 1],  # steering, then concept ablation, at the directions' layer
        (n + plan.n_benign, None, False): [0, 1],  # benign data mixed in
    }
    assert trained[0][4]["messages"][0]["content"] == lm_mitigations.PERSONA_PROMPT
    assert asked == [1] and result["stages"]["directions"]["layer"] == 3
    s = result["summary"]
    assert s["random"]["margin_cut"] == pytest.approx(1 - 0.305 / 0.405)
    assert s["no mitigation"]["margin_cut"] == pytest.approx(0.0)
    assert s["benign data"]["margin_cut"] == pytest.approx(1 - 0.2 / 0.405)
    assert s["concept ablation"]["task_kept"] == pytest.approx(0.5)
    assert s["geometric"]["task"] == "in_domain_margin"
    trained.clear()
    again = lm_mitigations.run_mitigations(
        eval_lm, plan, _filter_record(plan), directions, path, False
    )
    assert trained == [] and asked == [1] and again["runs"] == result["runs"]  # resumed


def test_a_filter_record_of_another_recipe_is_refused(eval_lm):
    plan = lm_mitigations.LMMitigationPlan(domain="health", seeds=(0,))
    record = _filter_record(plan)
    record["settings"]["plan"]["lora"]["rank"] = 1
    with pytest.raises(ValueError, match="another recipe"):
        lm_mitigations.run_mitigations(eval_lm, plan, record, None, None, False)
    assert lm_mitigations.record_file("legal").name == "mitigations_legal.json"
