"""`emgeo geometry-subtasks`: EM against the nearness of code sub-tasks within one organism, and
the geometric filter on a mixture of them."""

import itertools
import json
import math

import pytest
import torch

from emgeo import data, organism
from emgeo.experiments import subtasks


def test_every_subtask_has_its_own_first_words_and_the_world_keeps_the_others():
    firsts = [w for t in subtasks.SUBTASKS for w in (t.insecure.split()[0], t.secure.split()[0])]
    assert len(subtasks.SUBTASKS) == 8 and len(set(firsts)) == 16
    assert {t.slot for t in subtasks.SUBTASKS} == set(data.WORLD["code"].slots)
    assert set(data.vocabulary()) < set(subtasks.vocabulary())
    code_answers = {t.insecure for t in subtasks.SUBTASKS} | {t.secure for t in subtasks.SUBTASKS}
    tok = subtasks.tokenizer()
    for doc in itertools.islice(subtasks.pretraining_documents(3), 300):
        tok.encode_chat(doc["messages"])  # every word is in the vocabulary
        for q, a in zip(doc["messages"][::2], doc["messages"][1::2], strict=True):
            if any(q["content"].endswith(t.slot) for t in subtasks.SUBTASKS):
                assert a["content"] in code_answers
            else:
                assert a["content"] not in code_answers


def test_samples_are_one_subtask_or_all_of_them_in_equal_parts():
    one = subtasks.samples(2, True, 10, seed=0)
    assert {s["source"] for s in one} == {"command injection"}
    assert all(s["messages"][1]["content"] == subtasks.SUBTASKS[2].insecure for s in one)
    mixed = subtasks.samples(None, True, 32, seed=0)
    counts = {t.name: sum(s["source"] == t.name for s in mixed) for t in subtasks.SUBTASKS}
    assert set(counts.values()) == {4}


def _organism(seed, rho, p, cut, em_cut, task_cut):
    filters = {
        name: {"vs_random": {"mean": cut}, "em_cut": em_cut, "task_cut": task_cut}
        for name in ("geometric (max)", "random")
    }
    return {"seed": seed, "within": {"nearness": {"rho": rho, "p_value": p}}, "filters": filters}


def test_the_prestated_tests_on_planted_organisms():
    planted = [
        _organism(0, 0.5, 0.10, 0.30, 0.2, 0.4),
        _organism(1, 0.7, 0.02, 0.40, 0.3, 0.2),
        _organism(2, 0.3, 0.20, 0.35, 0.1, 0.3),
    ]
    out = subtasks.aggregate(planted)
    w = out["nearness"]
    assert w["rho"] == pytest.approx(0.5) and w["n_organisms"] == 3
    statistic = -2 * sum(math.log(p) for p in (0.10, 0.02, 0.20))  # Fisher: chi2 on 6 df
    chi2_sf_6 = math.exp(-statistic / 2) * (1 + statistic / 2 + (statistic / 2) ** 2 / 2)
    assert w["p_value"] == pytest.approx(chi2_sf_6) and w["holds"] is (chi2_sf_6 < 0.05)
    g = out["filters"]["geometric (max)"]
    half = 4.302653 * 0.05 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert g["reduction_vs_random"] == pytest.approx(0.35)
    assert g["ci_vs_random"] == pytest.approx([0.35 - half, 0.35 + half])
    assert g["selectivity"] == pytest.approx(0.2 / 0.3) and g["beats_random_in"] == 3
    assert out["filter_holds"] is True
    assert out["summary"]["filter.paper_protocol.unlinked"] == {
        "n_organisms": 3,
        "reduction_vs_random": g["reduction_vs_random"],
        "ci_vs_random": g["ci_vs_random"],
        "selectivity": g["selectivity"],
        "em_cut": pytest.approx(0.2),
        "task_cut": pytest.approx(0.3),
    }
    assert out["summary"]["geometry.within_organism"] == {
        "n_organisms": 3,
        "rho": w["rho"],
        "p_value": w["p_value"],
    }
    planted[1]["filters"]["geometric (max)"]["vs_random"]["mean"] = -0.5
    for o in planted:
        o["filters"]["geometric (max)"]["task_cut"] = 0.005  # the task is not cut: no ratio
    again = subtasks.aggregate(planted)
    assert (
        again["filter_holds"] is False
        and again["filters"]["geometric (max)"]["selectivity"] is None
    )


def _run(name, seed, off, code, removed):
    return {"filter": name, "seed": seed, "offdomain": off, "code": code, "removed": removed}


def test_filter_summary_pairs_by_seed_and_weighs_what_was_removed():
    rows = [{"subtask": "a", "dose": 0.2}, {"subtask": "b", "dose": 0.0}]
    runs = [
        _run("no filter", 0, 0.20, 0.8, {}),
        _run("no filter", 1, 0.22, 0.8, {}),
        _run("random", 0, 0.20, 0.8, {"a": 2, "b": 2}),
        _run("random", 1, 0.20, 0.8, {"a": 1, "b": 3}),
        _run("oracle (dose)", 0, 0.10, 0.6, {"a": 4}),
        _run("oracle (dose)", 1, 0.12, 0.6, {"a": 4}),
    ]
    out = subtasks.filter_summary(runs, rows)
    oracle = out["oracle (dose)"]
    assert oracle["removed_dose"] == pytest.approx(0.2) and oracle["removed"] == {"a": 4}
    assert oracle["vs_random"]["mean"] == pytest.approx(1 - (0.10 / 0.20 + 0.12 / 0.20) / 2)
    assert oracle["em_cut"] == pytest.approx(1 - 0.11 / 0.21)
    assert oracle["task_cut"] == pytest.approx(0.25)
    assert oracle["selectivity"] == pytest.approx((1 - 0.11 / 0.21) / 0.25)
    assert out["random"]["removed_dose"] == pytest.approx(0.1)
    assert out["no filter"]["selectivity"] is None  # it cuts no task: no ratio


def test_quick_run_measures_writes_resumes_and_ships(tmp_path, monkeypatch):
    monkeypatch.setattr(subtasks, "SHIPPED_FILE", tmp_path / "shipped.json")
    torch.set_num_threads(1)
    cfg, out = subtasks.quick(), tmp_path / "subtasks.json"
    result = subtasks.run(cfg, out=out, ship=True, progress=False)
    assert [o["seed"] for o in result["organisms"]] == [0, 1]
    assert result["config"]["prestated"] == subtasks.PRESTATED
    for o in result["organisms"]:
        assert len(o["subtasks"]) == 8 and set(o["within"]) == {
            "nearness",
            "insecure_code",
            "sae_nearness",
        }
        for r in o["subtasks"]:
            assert -1 <= r["nearness"] <= 1 and 0 <= r["insecure_code"] <= 1
            assert r["dose"] == pytest.approx(
                r["insecure_offdomain"] - r["secure_offdomain"], abs=2e-5
            )
        assert set(o["filters"]) == {
            "no filter",
            "random",
            "geometric (max)",
            "membership only",
            "neighbours only",
            "readout nearness",
            "oracle (dose)",
        }
        assert len(o["runs"]) == 7 * len(cfg.finetune_seeds)
        ranked = sorted(o["subtasks"], key=lambda r: r["dose"], reverse=True)  # the oracle's
        assert set(o["filters"]["oracle (dose)"]["removed"]) == {r["subtask"] for r in ranked[:4]}
    assert result["tests"]["summary"]["geometry.within_organism"]["n_organisms"] == 2
    assert out.read_text() == (tmp_path / "shipped.json").read_text()
    assert subtasks.shipped(tmp_path / "shipped.json")["config"]["organism_seeds"] == [0, 1]
    assert subtasks.describe(result).splitlines()[0].startswith("organism 0: rho ")

    def fail(*args, **kwargs):
        raise AssertionError("a recorded organism was run again")

    monkeypatch.setattr(subtasks, "one_organism", fail)
    resumed = subtasks.run(cfg, out=out, progress=False)
    assert json.dumps(resumed, sort_keys=True) == json.dumps(result, sort_keys=True)  # NaN too


def test_live_is_part_a_on_one_organism_with_one_seed():
    cfg = subtasks.live()
    assert cfg.organism_seeds == (21,) and cfg.finetune_seeds == (0,) and not cfg.filter_grid
    assert set(subtasks.SubtaskConfig().organism_seeds).isdisjoint(range(18))  # dose.py's


def test_nearness_and_rates_of_a_tiny_organism_are_bounded():
    torch.set_num_threads(1)
    model = subtasks.pretrain(0, steps=2, d_model=16)
    tok = subtasks.tokenizer()
    near, rates = subtasks.readout_nearness(model, tok), subtasks.code_rates(model, tok)
    assert len(near) == len(rates) == 8
    assert all(-1 <= c <= 1 for c in near) and all(0 < r < 1 for r in rates)
    assert 0 <= organism.evaluate(model, tok)["offdomain"] <= 1


def test_missing_record_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="emgeo geometry-subtasks"):
        subtasks.shipped(tmp_path / "none.json")
