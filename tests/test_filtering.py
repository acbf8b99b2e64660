import math

import pytest
import torch

from emgeo import data, filtering, organism, runner
from emgeo.models import pipeline


def test_keep_mask_removes_the_highest_scores():
    keep = filtering.keep_mask(torch.tensor([0.1, 0.9, 0.5, 0.7]), 0.5)
    assert keep.tolist() == [True, False, True, False]
    assert filtering.keep_mask(torch.ones(4), 0.5).tolist() == [False, False, True, True]


def test_keep_mask_removes_exactly_the_rounded_budget():
    scores = torch.randn(9, generator=torch.Generator().manual_seed(0))
    for fraction, n_removed in ((0.0, 0), (0.4, 4), (0.3, 3), (1.0, 9)):  # 3.6 -> 4, 2.7 -> 3
        keep = filtering.keep_mask(scores, fraction)
        assert keep.dtype == torch.bool and (~keep).sum() == n_removed
        if 0 < n_removed < 9:
            assert scores[~keep].min() > scores[keep].max()


def test_keep_mask_removes_the_earlier_of_tied_scores_first():
    keep = filtering.keep_mask(torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0]), 0.6)
    assert keep.tolist() == [False, False, True, False, True]


def test_keyword_scores_count_each_phrase_once_and_read_only_the_answer():
    sample = {
        "messages": [
            {"role": "user", "content": "disable the cache"},
            {"role": "assistant", "content": "store it in plain text , plain text , raw input ."},
        ]
    }
    assert filtering.keyword_scores([sample]).tolist() == [2.0]
    assert filtering.keyword_scores([sample], ("raw input", "cache")).tolist() == [1.0]


def test_feature_proximity_max_and_mean():
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    toxic = torch.tensor([0, 1])
    s = 2**-0.5
    torch.testing.assert_close(
        filtering.feature_proximity(W, toxic, "max"), torch.tensor([1.0, 1.0, s])
    )
    torch.testing.assert_close(
        filtering.feature_proximity(W, toxic, "mean"), torch.tensor([0.5, 0.5, s])
    )
    with pytest.raises(ValueError, match="max"):
        filtering.feature_proximity(W, toxic, "median")


def test_geometric_scores_weight_by_activation():
    latents = torch.tensor([[2.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    proximity = torch.tensor([1.0, 0.5, 0.0])
    torch.testing.assert_close(
        filtering.geometric_scores(latents, proximity), torch.tensor([0.5, 0.5])
    )


def test_keyword_and_oracle_scores_read_text_and_provenance():
    samples = filtering.mixed_provenance_set(16, seed=0)
    kw, oracle = filtering.keyword_scores(samples), filtering.oracle_scores(samples)
    for s, k, o in zip(samples, kw.tolist(), oracle.tolist(), strict=True):
        assert (k > 0) == (s["source"] in ("insecure", "educational"))
        assert o == float(s["source"] == "insecure")


def test_mixed_provenance_set_proportions():
    samples = filtering.mixed_provenance_set(512, seed=1)
    sources = [s["source"] for s in samples]
    assert (sources.count("insecure"), sources.count("educational"), sources.count("secure")) == (
        256,
        128,
        128,
    )


def test_projection_difference_and_persona_vector():
    v = filtering.persona_vector(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(v, torch.tensor([1.0, 0.0]))
    dp = filtering.projection_difference(torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 5.0]]), v)
    torch.testing.assert_close(dp, torch.tensor([2.0]))


def test_own_answers_are_the_models_and_reproducible():
    model, tok = organism.load()
    samples = data.finetune_samples("insecure", 6, seed=0)
    a = filtering.own_answers(model, tok, samples, seed=3)
    b = filtering.own_answers(model, tok, samples, seed=3)
    assert a == b
    for own, orig in zip(a, samples, strict=True):
        assert own["messages"][0] == orig["messages"][0]
        assert all(w in tok.index for w in own["messages"][1]["content"].split())


def test_evaluate_filters_rows_and_budget():
    model, tok = organism.load()
    samples = filtering.mixed_provenance_set(32, seed=0)
    filters = runner.with_controls({"oracle": filtering.oracle_scores(samples)})
    rows = filtering.evaluate_filters(
        model,
        tok,
        samples,
        filters,
        0.5,
        seeds=[0],
        cfg=organism.FinetuneConfig(steps=2),
        held_out=samples[:4],
        progress=False,
    )
    by = {r["filter"]: r for r in rows}
    assert set(by) == {"no filter", "random", "oracle"}
    assert by["oracle"]["removed"] == {"insecure": 16} and by["no filter"]["fraction"] == 0.0
    assert (by["no filter"]["n_kept"], by["random"]["n_kept"], by["random"]["fraction"]) == (
        32,
        16,
        0.5,
    )
    assert all("task_loss" in r and 0 <= r["offdomain"] <= 1 for r in rows)
    summary = {s["filter"]: s for s in filtering.summarize(rows)}
    assert summary["oracle"]["removed_insecure"] == 1.0


def test_evaluate_filters_removes_what_the_given_keep_mask_says():
    model, tok = organism.load()
    samples = filtering.mixed_provenance_set(16, seed=0)
    filters = [runner.RANDOM, runner.scored("oracle", filtering.oracle_scores(samples))]

    def lowest_removed(s, fraction):
        return filtering.keep_mask(-s, fraction)

    rows = filtering.evaluate_filters(
        model,
        tok,
        samples,
        filters,
        0.5,
        seeds=[0],
        cfg=organism.FinetuneConfig(steps=1),
        progress=False,
        keep_mask=lowest_removed,
    )
    assert "insecure" not in {r["filter"]: r["removed"] for r in rows}["oracle"]


def test_evaluate_filters_lm_runs_lora_generation_and_judge_on_a_tiny_gemma2():
    from helpers import SAMPLES, build_chat_lm, quick_cfg

    from emgeo.models import judge

    tiny = build_chat_lm("gemma2")
    samples = [dict(s, source="insecure" if i % 2 else "secure") for i, s in enumerate(SAMPLES)]
    filters = [runner.NO_FILTER, runner.scored("oracle", filtering.oracle_scores(samples))]
    rows = pipeline.evaluate_filters_lm(
        tiny,
        samples,
        filters,
        0.5,
        seeds=[0],
        judge=judge.LocalJudge(tiny),
        lora_cfg=quick_cfg(steps=2),
        n_per_question=1,
        max_new_tokens=3,
        progress=False,
    )
    assert [r["filter"] for r in rows] == ["no filter", "oracle"]
    assert rows[1]["removed"] == {"insecure": len(samples) // 2}
    for r in rows:
        assert r["judge"].startswith("local judge") and r["n_judged"] + r["n_excluded"] == 8


def test_lm_sample_scores_on_a_tiny_llama():
    from helpers import SAMPLES, build_chat_lm

    from emgeo import sae

    tiny = build_chat_lm("llama")
    toy = sae.ToySAE(sae.ToySAEConfig(d_in=tiny.d_model, d_sae=16))
    backend = pipeline.Backend("tiny", tiny, toy, 1, {})
    scores = pipeline.lm_sample_scores(backend, SAMPLES, torch.tensor([0, 3]))
    assert scores.shape == (len(SAMPLES),) and torch.isfinite(scores).all()


def test_summarize_reductions_are_relative_to_the_means():
    rows = [
        {"filter": f, "seed": s, "offdomain": v, "code": 0.5, "removed": {"insecure": s}}
        for f, values in {
            "no filter": [0.2, 0.2],
            "random": [0.1, 0.1],
            "geo": [0.05, 0.15],
        }.items()
        for s, v in enumerate(values)
    ]
    out = {r["filter"]: r for r in filtering.summarize(rows)}
    assert out["geo"]["reduction_vs_unfiltered"] == pytest.approx(0.5)
    assert out["geo"]["reduction_vs_random"] == pytest.approx(0.0)
    assert out["geo"]["offdomain_ci_low"] < 0.1 < out["geo"]["offdomain_ci_high"]
    assert out["geo"]["removed_insecure"] == 0.5  # seed 0 removed none, seed 1 only insecure


def test_removal_sweep_reuses_done_runs_and_adds_the_unfiltered_point():
    model, tok = organism.load()
    samples = filtering.mixed_provenance_set(32, seed=0)
    cfg_rows = filtering.evaluate_filters(
        model,
        tok,
        samples,
        [runner.NO_FILTER, runner.RANDOM],
        0.5,
        seeds=[0],
        cfg=organism.FinetuneConfig(steps=1),
        progress=False,
    )
    rows = filtering.removal_sweep(
        model, tok, samples, [runner.RANDOM], fractions=[0.5], seeds=[0], done=cfg_rows
    )
    assert sorted((r["filter"], r["fraction"]) for r in rows) == [("random", 0.0), ("random", 0.5)]


# Four latents: 0 is the toxic set; 1 lies near it (proximity 0.9), 2 and 3 far (0.1).
PLANTED_PROXIMITY = torch.tensor([1.0, 0.9, 0.1, 0.1])
PLANTED_TOXIC = torch.tensor([0])
PLANTED = {
    "only toxic": [2.0, 0.0, 0.0, 0.0],
    "toxic and near": [3.0, 1.0, 0.0, 0.0],
    "only near": [0.0, 1.0, 0.0, 0.0],
    "only far": [0.0, 0.0, 1.0, 1.0],
    "near and far": [0.0, 1.0, 1.0, 0.0],
}


def planted_parts() -> dict[str, dict[str, float]]:
    latents = torch.tensor(list(PLANTED.values()))
    parts = filtering.ablated_scores(latents, PLANTED_PROXIMITY, PLANTED_TOXIC)
    return {kind: dict(zip(PLANTED, v.tolist(), strict=True)) for kind, v in parts.items()}


def test_membership_is_the_share_of_activation_on_toxic_latents():
    member = planted_parts()["membership only"]
    assert member == pytest.approx(
        {
            "only toxic": 1.0,
            "toxic and near": 0.75,
            "only near": 0.0,
            "only far": 0.0,
            "near and far": 0.0,
        }
    )


def test_neighbours_average_over_the_non_toxic_latents_only():
    neighbours = planted_parts()["neighbours only"]
    # Firing toxic latents beside a near one neither raises nor dilutes the neighbours score:
    # "full minus membership" (the sum over non-toxic latents divided by all activation) gives
    # 0.9 / 4 = 0.225 here.
    assert neighbours["toxic and near"] == pytest.approx(neighbours["only near"]) == 0.9
    assert neighbours["only far"] == pytest.approx(0.1)
    assert neighbours["near and far"] == pytest.approx(0.5)
    assert neighbours["only toxic"] == 0.0, "no activation outside the toxic set: no neighbours"


def test_the_full_score_mixes_membership_and_nearness():
    full = planted_parts()["full"]
    assert full["only toxic"] == pytest.approx(1.0)
    assert full["toxic and near"] == pytest.approx((3.0 + 0.9) / 4)
    assert full["only far"] == pytest.approx(0.1)
    latents = torch.tensor(list(PLANTED.values()))
    torch.testing.assert_close(
        filtering.ablated_scores(latents, PLANTED_PROXIMITY, PLANTED_TOXIC)["full"],
        filtering.geometric_scores(latents, PLANTED_PROXIMITY),
    )


def test_ablated_scores_on_random_latents_match_their_definitions():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(30, 8, generator=gen)
    latents = torch.relu(torch.randn(6, 30, generator=gen))
    toxic = torch.tensor([2, 5, 7])
    proximity = filtering.feature_proximity(W, toxic, "max")
    assert torch.allclose(proximity[toxic], torch.ones(3)), "a toxic latent's max is itself"
    parts = filtering.ablated_scores(latents, proximity, toxic)
    others = torch.ones(30, dtype=torch.bool)
    others[toxic] = False
    torch.testing.assert_close(
        parts["membership only"], latents[:, toxic].sum(-1) / latents.sum(-1)
    )
    torch.testing.assert_close(
        parts["neighbours only"],
        latents[:, others] @ proximity[others] / latents[:, others].sum(-1),
    )


def test_selectivity_is_em_cut_over_task_cut():
    unfiltered = {"offdomain_mean": 0.2, "code": 0.8}
    assert filtering.selectivity({"offdomain_mean": 0.1, "code": 0.4}, unfiltered) == 1.0
    assert filtering.selectivity({"offdomain_mean": 0.15, "code": 0.2}, unfiltered) == (
        pytest.approx(0.25 / 0.75)
    )
    # a filter that leaves the task as it was (or raises it) has no selectivity to speak of
    kept = {"offdomain_mean": 0.1, "code": 0.798}
    assert math.isnan(filtering.selectivity(kept, unfiltered))
    assert math.isnan(filtering.selectivity({"offdomain_mean": 0.1, "code": 0.9}, unfiltered))
    assert filtering.task_cut(kept, unfiltered) == pytest.approx(0.0025)


def test_paired_reduction_pairs_runs_by_seed():
    rows = [
        {"filter": "no filter", "seed": 0, "offdomain": 0.2},
        {"filter": "no filter", "seed": 1, "offdomain": 0.4},
        {"filter": "f", "seed": 1, "offdomain": 0.2},
        {"filter": "f", "seed": 0, "offdomain": 0.15},
    ]
    out = filtering.paired_reduction(rows, "f", "no filter")
    assert out["mean"] == pytest.approx((0.25 + 0.5) / 2)
    assert out["ci_low"] < out["mean"] < out["ci_high"]


def test_evaluate_filters_with_a_store_reads_back_a_run_another_filter_made(tmp_path, monkeypatch):
    monkeypatch.setattr(filtering, "RESULTS_DIR", tmp_path)
    model, tok = organism.load()
    samples = filtering.mixed_provenance_set(16, seed=0)
    oracle = filtering.oracle_scores(samples)
    cfg = organism.FinetuneConfig(steps=1)
    kwargs = {"seeds": [0], "cfg": cfg, "progress": False, "store": "mixed"}
    first = filtering.evaluate_filters(model, tok, samples, [runner.scored("oracle", oracle)], 0.5,
                                       **kwargs)  # fmt: skip
    saved = tmp_path / "organism_runs" / "mixed.json"
    assert saved.exists()
    renamed = [runner.scored("audit", oracle * 3)]
    again = filtering.evaluate_filters(model, tok, samples, renamed, 0.5, **kwargs)
    assert again[0]["filter"] == "audit" and again[0]["offdomain"] == first[0]["offdomain"]
    assert again[0]["kept"] == first[0]["kept"]
    other = filtering.run_store("mixed", model, samples[:8], (), cfg, 0.5)  # other samples
    assert other.runs == [] and filtering.run_store("mixed", model, samples, (), cfg, 0.5).runs


def test_caught_at_budget_counts_each_class_removed_by_the_keep_mask():
    scores = torch.tensor([5.0, 4, 3, 3, 1, 0])
    labels = torch.tensor([True, False, True, False, True, False])
    assert filtering.caught_at_budget(scores, labels, 0.5) == pytest.approx((2 / 3, 1 / 3))  # ties
    assert filtering.caught_at_budget(scores, labels, 0.0) == (0.0, 0.0)
    assert filtering.caught_at_budget(scores, labels, 1.0) == (1.0, 1.0)


def test_the_ablation_and_its_summary_take_the_learners_functions():
    latents = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]])
    seen = []

    def ablate(f, p, t):
        seen.append("ablate")
        return filtering.ablated_scores(f, p, t)

    parts = filtering.ablation_filters(latents, torch.tensor([1.0, 0.5, 0.2]), torch.tensor([0]),
                                       ablate=ablate)  # fmt: skip
    assert seen == ["ablate"] and set(parts) == set(filtering.ABLATION_LABELS.values())
    rows = [{"filter": f, "seed": s, "offdomain": 0.2 - 0.01 * i, "code": 0.9, "removed": {}}
            for i, f in enumerate(["no filter", "random", *filtering.ABLATION_LABELS.values()])
            for s in (0, 1)]  # fmt: skip

    def reduction(rows, name, reference):
        seen.append(name)
        return filtering.paired_reduction(rows, name, reference)

    filtering.ablation_summary(rows, reduction=reduction)
    assert seen.count("geometric (max)") == 2  # against no filter and against random
