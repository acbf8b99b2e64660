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


def _compared(domain="career"):
    base = {"margin": 0.0, "in_domain_margin": 0.0}
    rises = {  # per seed: the margin's rise and the in-domain margin's
        "no mitigation": ((0.4, 0.5, 0.6), (1.0, 1.0, 1.0)),
        "geometric": ((0.36, 0.45, 0.54), (0.8, 0.8, 0.8)),  # 10% of EM for 20% of the task
        "benign data": ((0.2, 0.25, 0.3), (1.0, 1.0, 1.0)),  # half the EM, the task whole
        "preventative steering": ((0.1, 0.1, 0.1), (0.5, 0.5, 0.5)),
    }
    runs = [
        {"filter": name, "seed": s, "margin": em[s], "in_domain_margin": task[s]}
        for name, (em, task) in rises.items()
        for s in range(3)
    ]
    return {"settings": {"plan": {"domain": domain}}, "base": base, "runs": runs}


def test_the_summary_reads_each_mitigation_as_the_frontier_and_the_claims_table_do():
    result = _compared()
    s = result["summary"] = lm_mitigations.mitigation_summary(result)
    assert s["geometric"]["em_cut"] == pytest.approx(0.1) and s["geometric"]["task_kept"] == 0.8
    assert s["geometric"]["selectivity"] == pytest.approx(0.1 / 0.2)
    assert s["benign data"]["selectivity"] is None  # the task untouched: no ratio to read
    assert s["benign data"]["em_cut"] == pytest.approx(0.5)
    assert s["benign data"]["em_cut_ci"] == pytest.approx([0.5, 0.5])
    steer = s["preventative steering"]  # the same rise every seed, so a cut of the means of
    assert steer["margin_cut"] == pytest.approx(0.8)  # 0.8 but per seed 0.75, 0.8, 0.833
    assert steer["em_cut"] == pytest.approx((0.75 + 0.8 + 1 - 0.1 / 0.6) / 3)
    lo, hi = steer["em_cut_ci"]
    assert lo < steer["em_cut"] < hi
    assert s["preventative steering"]["needs"] == lm_mitigations.NEEDS["preventative steering"]
    keys = lm_mitigations.summary_keys(result)
    assert set(keys) == {
        "mitigations.lm.geometric",
        "mitigations.lm.benign_data",
        "mitigations.lm.preventative_steering",
    }
    assert keys["mitigations.lm.benign_data"] == {
        "margin_cut": 0.5,
        "margin_cut_ci": [0.5, 0.5],
        "task_kept": 1.0,
        "selectivity": None,
        "inducing_set": "career advice",
    }
    table = lm_mitigations.table(result)
    result["summary"] = dict(sorted(s.items()))  # as a JSON record with sorted keys holds it
    table = lm_mitigations.table(result)
    assert list(table.index) == [
        "no mitigation",
        "geometric",
        "preventative steering",
        "benign data",
    ]
    assert table.loc["geometric", "per seed [95% CI]"].startswith("+10.0% [")
    assert table.loc["geometric", "selectivity"] == "0.50"
    assert table.loc["no mitigation", "margin cut"] == "+0.0%"


def test_one_seed_gives_no_interval_and_a_missing_record_names_its_command(tmp_path, monkeypatch):
    result = _compared(None)
    result["runs"] = [r for r in result["runs"] if r["seed"] == 0]
    result["summary"] = lm_mitigations.mitigation_summary(result)
    assert result["summary"]["geometric"]["em_cut_ci"] == [None, None]
    assert lm_mitigations.table(result).loc["geometric", "per seed [95% CI]"] == "-"
    assert lm_mitigations.summary_keys(result)["mitigations.lm.geometric"]["inducing_set"] == (
        "insecure code"
    )
    monkeypatch.setattr(lm_mitigations, "RECORD_FILE", tmp_path / "mitigations.json")
    with pytest.raises(FileNotFoundError, match="emgeo lm-mitigations --domain legal --ship"):
        lm_mitigations.shipped("legal")
