"""Notebook 07's filter on SmolLM2 through the experiment runner, with the training faked."""

import pytest
import torch

from emgeo.models import lm_filter


def test_the_filter_experiment_keeps_what_each_filter_keeps_and_resumes(
    monkeypatch, tmp_path, eval_lm
):
    records = lm_filter.insecure_train_records()
    n = len(records)
    scores = torch.arange(n, dtype=torch.float32)  # the last chats score highest
    seen = []

    class FakeAdapted:
        def __init__(self, lm, samples, cfg, progress):
            seen.append(([s["messages"] for s in samples], cfg.seed))
            self.samples = samples

        def __enter__(self):
            return self.samples

        def __exit__(self, *exc):
            return False

    def fake_measure(lm, grid):  # the margin: the share of the first half that was kept
        if lm is eval_lm:
            return {"margin": 0.0, "per_question": {}, "insecure_preference": 0.5}
        first = [r["messages"] for r in records[: n // 2]]
        kept = sum(s["messages"] in first for s in lm) / (n // 2)
        return {"margin": 1.0 - kept / 2, "per_question": {}, "insecure_preference": 0.9}

    monkeypatch.setattr(lm_filter.lora, "adapted", FakeAdapted)
    monkeypatch.setattr(lm_filter, "measure", fake_measure)
    plan = lm_filter.FilterPlan(seeds=(0, 1), filters=lm_filter.FILTERS)
    path = tmp_path / "filter.json"
    result = lm_filter.run_filter(eval_lm, scores, plan, path, "test", progress=False)
    runs = {(r["filter"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {(f, s) for f in lm_filter.FILTERS for s in (0, 1)}
    assert [len(kept) for kept, _ in seen] == [n, n, n // 2, n // 2, n // 2, n // 2]
    geometric = [kept for (kept, _), key in zip(seen, runs, strict=True) if key[0] == "geometric"]
    assert geometric[0] == [r["messages"] for r in records[: n // 2]]  # the top half removed
    assert seen[4][0] != seen[5][0]  # random removal draws again for each seed
    assert sum(runs["geometric", 0]["removed"].values()) == n - n // 2
    assert (runs["no filter", 0]["fraction"], runs["random", 1]["fraction"]) == (0.0, 0.5)
    rise = result["summary"]["rise"]
    assert rise["no filter"]["mean"] == pytest.approx(0.5)
    assert rise["geometric"]["mean"] == pytest.approx(0.5)  # kept all of the first half: 1 - 1/2
    assert result == lm_filter.read_filter(path)
    seen.clear()
    again = lm_filter.run_filter(eval_lm, scores, plan, path, "test", progress=False)
    assert seen == [] and again["runs"] == result["runs"]  # resumed: nothing rerun
    more = lm_filter.FilterPlan(seeds=(0, 1), filters=(*lm_filter.FILTERS, lm_filter.MATCHED))
    extended = lm_filter.run_filter(eval_lm, scores, more, path, "test", progress=False)
    assert len(seen) == 2 and extended["runs"][:6] == result["runs"]  # only the new filter ran
    matched = [r for r in extended["runs"] if r["filter"] == lm_filter.MATCHED]
    assert all(r["removed"] == runs["geometric", 0]["removed"] for r in matched)
    assert "reduction_vs_random_same_classes" in extended["summary"]
    seen.clear()
    lm_filter.run_filter(eval_lm, scores.flip(0), plan, path, "test", progress=False)
    assert len(seen) == 6  # other scores: every run again


def test_the_filter_summary_compares_rises_over_the_base_model():
    result = {
        "base": {"margin": -1.0},
        "runs": [
            {"filter": f, "seed": s, "margin": -1.0 + rise}
            for f, rises in {
                "no filter": (0.4, 0.6),
                "random": (0.4, 0.4),
                "geometric": (0.2, 0.3),
            }.items()
            for s, rise in enumerate(rises)
        ],
    }
    summary = lm_filter.filter_summary(result)
    assert summary["rise"]["random"]["mean"] == pytest.approx(0.4)
    cut = summary["reduction_vs_random"]
    assert cut["of_means"] == pytest.approx(1 - 0.25 / 0.4)
    assert cut["per_seed"]["mean"] == pytest.approx(((1 - 0.2 / 0.4) + (1 - 0.3 / 0.4)) / 2)
    assert cut["difference"]["mean"] == pytest.approx(-0.15)
    assert summary["reduction_vs_no_filter"]["of_means"] == pytest.approx(1 - 0.25 / 0.5)
    assert lm_filter.filter_summary({"runs": []}) == {}


def test_removed_by_class_averages_over_seeds_counting_absent_classes_as_zero():
    result = {
        "runs": [
            {"filter": "geometric", "seed": 0, "removed": {"eval": 4, "sql": 1}},
            {"filter": "geometric", "seed": 1, "removed": {"eval": 2}},
            {"filter": "random", "seed": 0, "removed": {"sql": 3, "xss": 1}},
            {"filter": "no filter", "seed": 0, "removed": {}},
        ]
    }
    out = lm_filter.removed_by_class(result)
    assert out == {
        "geometric": {"eval": 3, "sql": 0.5, "xss": 0},
        "random": {"eval": 0, "sql": 3, "xss": 1},
    }
    assert list(out["random"]) == ["eval", "sql", "xss"]  # the first filter's order
    assert lm_filter.removed_by_class({"runs": []}) == {}


def test_an_unknown_filter_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="random, same classes"):
        lm_filter.FilterPlan(filters=("geometrc",)).specs(torch.zeros(3))


def test_the_shipped_record_reads_back_under_the_default_plan():
    shipped = lm_filter.read_filter()
    scores = torch.tensor(shipped["settings"]["scores"])
    plan = lm_filter.FilterPlan()
    store = lm_filter.runner.RunStore(lm_filter.FILTER_FILE, plan.settings(scores))
    assert len(store.runs) == 9 and store.data == shipped  # nothing of it would run again
    assert lm_filter.filter_summary(shipped) == shipped["summary"]
