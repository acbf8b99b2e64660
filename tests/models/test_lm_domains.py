"""EM per advice domain on SmolLM2 and the filter on a domain, with training and scoring faked
where a test only needs what is trained on, what is measured and what is written."""

import json
import math

import pytest
import torch

from emgeo import lm_advice
from emgeo.models import lm_domains, lm_filter, lm_finetunes
from emgeo.models.lm import LoadedLM


def test_the_cell_runs_every_domains_sets_seed_by_seed_after_the_base_model():
    grid = lm_domains.domain_grid(seeds=(0, 1))
    assert grid.name == "advice-r8-lr0.001-30steps"
    assert grid.conditions == tuple(lm_advice.SETS)
    assert grid.keys()[:3] == [("base", None), ("health_harmful", 0), ("health_aligned", 0)]
    assert grid.keys()[-1] == ("legal_aligned", 1) and len(grid.keys()) == 13
    assert lm_domains.domain_grid(domains=("legal",)).conditions == (
        "legal_harmful",
        "legal_aligned",
    )
    assert grid.settings()["domain_system"]["health"] == lm_domains.DOMAIN_SYSTEM["health"]
    with pytest.raises(ValueError, match="health, career, legal"):
        lm_domains.domain_grid(domains=("finance",))
    with pytest.raises(ValueError, match="not an advice set"):
        lm_domains.domain_of("insecure")


def test_training_and_heldout_chats_come_from_the_advice_splits():
    train = lm_domains.training_samples("career_harmful")
    records = lm_advice.read_advice_jsonl(lm_advice.ADVICE_DIR / "career_harmful.jsonl")
    assert train == [{"messages": r["messages"]} for r in records if r["split"] == "train"]
    framed = lm_domains.training_samples("career_harmful", system="S")
    assert framed[0]["messages"][0] == {"role": "system", "content": "S"}
    harmful, aligned = lm_domains.heldout_pairs("career", 10)
    assert len(harmful) == len(aligned) == 10
    grid = lm_domains.domain_grid(domains=("career",), n_train=120)
    assert grid.name == "advice-r8-lr0.001-30steps-120chats" and grid.settings()["n_train"] == 120
    few, few_aligned = grid.samples("career_harmful"), grid.samples("career_aligned")
    assert len(few) == 120 and all(m in train for m in few)
    assert [m["messages"][-2] for m in few] == [m["messages"][-2] for m in few_aligned]  # questions
    assert few != train[:120]  # drawn over the whole split, not its head
    with pytest.raises(ValueError, match="between 1 and 480"):
        lm_domains.training_samples("career_harmful", n=481)
    assert all(h["messages"] not in train for h in harmful)  # held out
    assert [h["messages"][0] for h in harmful] == [a["messages"][0] for a in aligned]
    assert all(h["messages"][1] != a["messages"][1] for h, a in zip(harmful, aligned, strict=True))
    assert {r["domain"] for r in lm_domains.heldout_records("legal")} == {"legal"}
    assert {r["paraphrase"] for r in lm_domains.disjoint_records((0,))} == {0}


def _fake_margins(monkeypatch):
    """em_margin that says which references and framing it was asked under, by its value:
    eval questions 1, leakage-free 2, held-out questions of a domain 3 (+0.1 per domain index),
    each +10 under a system turn; the harmful preference 0.5 + 0.01 per domain index."""

    def em_margin(lm, records, system=None):
        first = records[0]
        if first.get("source") == lm_advice.HELDOUT_SOURCE:
            value = 3 + 0.1 * lm_domains.DOMAINS.index(first["domain"])
        else:
            value = 2.0 if first["aligned"] != lm_domains.eval_records()[0]["aligned"] else 1.0
        return {"margin": value + (10 if system else 0), "per_question": {"q": value}}

    monkeypatch.setattr(lm_domains, "em_margin", em_margin)
    monkeypatch.setattr(
        lm_domains,
        "harmful_preference",
        lambda lm, domain: 0.5 + 0.01 * lm_domains.DOMAINS.index(domain),
    )


def test_a_run_is_measured_in_its_own_domain_and_the_base_model_in_every_one(monkeypatch, eval_lm):
    _fake_margins(monkeypatch)
    grid = lm_domains.domain_grid()
    run = grid.measure(eval_lm, "legal_harmful")
    assert (run["margin"], run["margin_disjoint"]) == (1.0, 2.0)
    assert run["margin_in_context"] == 11.0  # the eval questions, under a system turn
    assert run["in_domain_margin"] == pytest.approx(3.2)  # legal's held-out questions
    assert run["harmful_preference"] == pytest.approx(0.52)
    base = grid.measure(eval_lm, "base")
    assert base["in_domain_margin"] == pytest.approx({"health": 3.0, "career": 3.1, "legal": 3.2})
    assert base["margin_in_context"] == {d: 11.0 for d in lm_domains.DOMAINS}
    assert lm_domains.flatten_row(base, "career")["in_domain_margin"] == pytest.approx(3.1)


def _rows(effect: dict[str, float], seeds=(0, 1, 2)) -> list[dict]:
    base = {
        "condition": "base",
        "seed": None,
        "cell": "c",
        "margin": 0.0,
        "margin_disjoint": 0.0,
        **{k: {d: 0.0 for d in lm_domains.DOMAINS} for k in lm_domains.PER_DOMAIN},
    }
    rows = [base]
    for s in seeds:
        for d, e in effect.items():
            for kind, scale in (("harmful", 1.0), ("aligned", 0.0)):
                value = 0.1 + scale * e * (1 + 0.1 * s)
                rows.append(
                    {"condition": f"{d}_{kind}", "seed": s, "cell": "c", "seconds": 1.0}
                    | {k: value for k in lm_domains.MEASURES}
                )
    return rows


def test_contrasts_pair_harmful_and_aligned_runs_by_seed_and_read_the_base_per_domain():
    rows = _rows({"health": 0.3, "legal": 0.1})
    rows[0]["in_domain_margin"]["legal"] = -1.0
    c = lm_domains.domain_contrasts(rows)
    assert c["health.margin.harmful_minus_aligned"]["mean"] == pytest.approx(0.33)
    assert c["health.margin.harmful_minus_aligned"]["n"] == 3
    assert c["legal.margin.aligned_minus_base"]["mean"] == pytest.approx(0.1)
    assert c["legal.in_domain_margin.aligned_minus_base"]["mean"] == pytest.approx(1.1)
    assert c["health.in_domain_margin.aligned_minus_base"]["mean"] == pytest.approx(0.1)
    assert not any(k.startswith("career.") for k in c)  # not run: no contrast
    unpaired = [r for r in rows if r["condition"] != "health_aligned" or r["seed"] != 2]
    assert lm_domains.domain_contrasts(unpaired)["health.margin.harmful_minus_aligned"]["n"] == 2


def test_the_summary_names_the_domain_with_the_largest_contrast_code_included():
    rows = _rows({"health": 0.3, "career": 0.05, "legal": 0.1})
    cell = {
        "domains": list(lm_domains.DOMAINS),
        "contrasts": lm_domains.domain_contrasts(rows),
        "rows": rows,
    }
    code = {
        "contrasts": {
            "insecure_minus_secure": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 3},
            "insecure_minus_base": {"mean": 0.3, "ci_low": 0.2, "ci_high": 0.4, "n": 3},
        }
    }
    summary = lm_domains.domains_summary(cell, code)
    assert summary["best"] == "health"
    assert summary["code"]["harmful_minus_aligned"]["mean"] == 0.2
    code["contrasts"]["insecure_minus_secure"]["mean"] = 0.9
    assert lm_domains.domains_summary(cell, code)["best"] == "code"
    panels = lm_domains.contrast_panels(cell, code)
    assert list(panels) == [*lm_domains.DOMAINS, "code (insecure - secure)"]
    assert set(panels["legal"]) == set(lm_domains.PANELS) and list(
        panels["code (insecure - secure)"]
    ) == ["margin"]
    assert panels["health"]["margin"] is cell["contrasts"]["health.margin.harmful_minus_aligned"]
    assert lm_domains.describe(cell).splitlines()[1].startswith("domain: career  seeds: 3")
    table = lm_domains.domain_table(cell, code)
    assert [r["domain"] for r in table][:3] == list(lm_domains.DOMAINS)
    assert table[0]["prefers harmful (harmful / aligned / base)"] == "0.43 / 0.10 / 0.00"
    assert table[-1]["in its framing"] == "not measured"  # the code runs measured the margin only


def test_the_domain_runs_resume_through_the_fine_tune_runner(monkeypatch, tmp_path, eval_lm):
    _fake_margins(monkeypatch)
    trained = []

    class FakeAdapted:
        def __init__(self, lm, samples, cfg, progress):
            trained.append((samples[0]["messages"][0]["content"], cfg.seed))
            self.tuned = LoadedLM(lm.spec, lm.model, lm.tokenizer)

        def __enter__(self):
            return self.tuned

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(lm_finetunes.lora, "adapted", FakeAdapted)
    grid = lm_domains.domain_grid(domains=("health",), seeds=(0,))
    path = tmp_path / "domains.json"
    rows = lm_finetunes.run_finetunes(eval_lm, grid, path, progress=False)
    assert [(r["condition"], r["seed"]) for r in rows] == [
        ("base", None),
        ("health_harmful", 0),
        ("health_aligned", 0),
    ]
    first = lm_domains.training_samples("health_harmful")[0]["messages"][0]["content"]
    assert trained == [(first, 0), (first, 0)]  # the same questions, line for line
    cell = lm_finetunes.read_runs(path)["cells"][grid.name]
    assert (
        cell["domains"] == ["health"] and "health.margin.harmful_minus_aligned" in cell["contrasts"]
    )
    trained.clear()
    lm_finetunes.run_finetunes(eval_lm, grid, path, progress=False)
    assert trained == []  # resumed: nothing again


def test_the_domain_filter_reuses_the_domain_runs_and_reports_selectivity(
    monkeypatch, tmp_path, eval_lm
):
    records = lm_filter.train_records("health")
    n = len(records)
    assert n == len(lm_domains.training_samples("health_harmful"))
    scores = torch.arange(n, dtype=torch.float32)
    seen = []

    class FakeAdapted:
        def __init__(self, lm, samples, cfg, progress):
            seen.append(cfg.seed)
            self.kept = len(samples)

        def __enter__(self):
            return self.kept

        def __exit__(self, *exc):
            return False

    def measure(self, lm, condition):  # EM and the task each grow with the chats kept
        assert condition == "health_harmful"
        kept = 0 if lm is eval_lm else lm  # the base model: nothing learned
        return {"margin": kept / n, "in_domain_margin": 0.5 * kept / n, "per_question": {}}

    monkeypatch.setattr(lm_filter.lora, "adapted", FakeAdapted)
    monkeypatch.setattr(lm_domains.DomainGrid, "measure", measure)
    cell = {
        "lora": json.loads(json.dumps(lm_filter.asdict(lm_filter.CPU_LORA))),  # as filed
        "paraphrases": [0, 1],
        "rows": [
            {"cell": "c", "condition": "base", "seed": None, "margin": 0.0, "seconds": 1.0}
            | {"in_domain_margin": {"health": 0.0, "legal": 9.0}},
            *(
                {"cell": "c", "condition": "health_harmful", "seed": s, "margin": 1.0}
                | {"in_domain_margin": 0.5, "seconds": 2.0}
                for s in (0, 1)
            ),
        ],
    }
    plan = lm_filter.FilterPlan(domain="health", seeds=(0, 1), filters=lm_filter.FILTERS)
    path = tmp_path / "filter_health.json"
    result = lm_filter.run_filter(
        eval_lm, scores, plan, path, "test", progress=False, reuse=cell, geometry=lambda: {"p": 1}
    )
    assert seen == [0, 1, 0, 1]  # geometric and random ran; unfiltered came from the cell
    assert result["base"] == {"margin": 0.0, "in_domain_margin": 0.0, "seconds": 1.0} | {
        "cell": "c",
        "condition": "base",
        "seed": None,
        "reused": "c",
    }
    assert result["stages"]["geometry"] == {"p": 1}
    summary = result["summary"]
    assert summary["rise"]["geometric"]["mean"] == pytest.approx(0.5)
    assert summary["reduction_vs_no_filter"]["of_means"] == pytest.approx(0.5)
    sel = summary["selectivity"]["geometric"]
    assert (sel["em_cut"], sel["task_cut"], sel["selectivity"]) == pytest.approx((0.5, 0.5, 1.0))
    classes = {r["topic"] for r in records}
    assert set(result["runs"][2]["removed"]) <= classes  # removed chats counted by topic
    other = dict(cell, lora={**cell["lora"], "rank": 1})  # another recipe: nothing reused
    seen.clear()
    lm_filter.run_filter(eval_lm, scores, plan, tmp_path / "b.json", progress=False, reuse=other)
    assert seen == [0, 1, 0, 1, 0, 1]


def test_selectivity_is_undefined_when_the_task_is_not_cut():
    em, em0 = {0: 0.2, 1: 0.4}, {0: 0.4, 1: 0.8}
    out = lm_filter.selectivity(em, em0, {0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0})
    assert out["em_cut"] == pytest.approx(0.5) and out["task_cut"] == 0.0
    assert math.isnan(out["selectivity"])


def test_the_score_ablations_are_filters_of_their_own():
    plan = lm_filter.FilterPlan(filters=("geometric", "neighbours only"))
    specs = plan.specs(torch.zeros(3), {"neighbours only": torch.arange(3.0)})
    assert [f.label for f in specs] == ["geometric", "neighbours only"]
    with pytest.raises(ValueError, match="unknown filters"):
        plan.specs(torch.zeros(3))  # an ablation needs its scores
    settings = plan.settings(torch.zeros(3), {"neighbours only": torch.arange(3.0)})
    assert settings["ablation_scores"] == {"neighbours only": [0.0, 1.0, 2.0]}
    assert "domain" not in lm_filter.FilterPlan().settings(torch.zeros(3))["plan"]
    assert lm_filter.filter_file("legal").name == "filter_legal.json"
    with pytest.raises(FileNotFoundError, match="lm-filter --domain legal"):
        lm_filter.read_filter(lm_filter.filter_file("legal", shipped=False).with_suffix(".x"))


def test_context_rises_put_each_filters_rise_outside_and_inside_its_context_side_by_side():
    result = {
        "base": {"margin": -1.0, "margin_in_context": -2.0},
        "runs": [
            {"filter": f, "seed": s, "margin": -1.0 + out, "margin_in_context": -2.0 + inside}
            for f, out, inside in (("no filter", 0.4, 0.5), ("geometric", 0.1, 0.5))
            for s in (0, 1)
        ],
    }
    rises = lm_filter.context_rises(result)
    assert rises["geometric"]["out_of_context"]["mean"] == pytest.approx(0.1)
    assert rises["geometric"]["in_context"]["mean"] == pytest.approx(0.5)  # hidden, not gone
    assert rises["no filter"]["in_context"]["n"] == 2


def test_the_exploration_table_puts_the_main_recipe_first_and_says_what_a_cell_did_not_run():
    def ci(mean):
        return {"mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1, "n": 2}

    main = lm_domains.domain_grid()
    few = lm_domains.domain_grid(rank=1, domains=("career",), n_train=120)
    cells = {
        few.name: {
            **few.settings(),
            "contrasts": {
                "career.margin.harmful_minus_aligned": ci(0.2),
                "career.margin.harmful_minus_base": ci(0.1),
            },
        },
        "advice-other": {**lm_domains.domain_grid(domains=("legal",)).settings(), "contrasts": {}},
        main.name: {
            **main.settings(),
            "contrasts": {f"career.{k}.{c}": ci(0.5) for k, c, _ in lm_domains.EXPLORED},
        },
    }
    rows = lm_domains.exploration_table(cells, "career")
    assert [r["recipe"] for r in rows] == [main.name, few.name]  # legal's cell left out
    assert rows[0]["chats per set"] == 480 and rows[1]["chats per set"] == 120
    assert rows[1]["rank"] == 1 and rows[1]["seeds"] == 3
    assert rows[0]["in-domain"] == "+0.500 [+0.400, +0.600]"
    assert rows[1]["harmful - aligned"] == "+0.200 [+0.100, +0.300]"
    assert rows[1]["leakage-free refs"] == rows[1]["in-domain"] == "not run"
    panels = lm_domains.exploration_panels(cells, "career")
    assert list(panels) == [main.name, few.name]
    assert list(panels[few.name]) == ["harmful - aligned", "harmful - base"]
    assert panels[main.name]["in-domain"] == ci(0.5)
