"""`emgeo robustness`: the claims of 04, 06 and 07 over organisms pretrained from other seeds."""

import json

import pytest

from emgeo import organism
from emgeo.experiments import robustness


def test_aggregate_gives_values_spread_and_how_often_each_sentence_holds():
    per = {
        0: {
            "geometry.disjoint.p_value": 0.09,
            "filter.paper.full.selectivity": 0.46,
            "em.base": 0.1,
        },
        1: {
            "geometry.disjoint.p_value": 0.01,
            "filter.paper.full.selectivity": 1.3,
            "em.base": 0.2,
        },
        2: {
            "geometry.disjoint.p_value": 0.30,
            "filter.paper.full.selectivity": 0.5,
            "em.base": 0.3,
        },
    }
    out = robustness.aggregate(per)
    p = out["geometry.disjoint.p_value"]
    assert p["values"] == [0.09, 0.01, 0.3] and p["holds_in"] == 1 and p["of"] == 3
    assert p["min"] == 0.01 and p["max"] == 0.3
    assert out["filter.paper.full.selectivity"]["holds_in"] == 1  # only organism 1 is above 1
    assert out["em.base"]["mean"] == pytest.approx(0.2)
    assert out["em.base"]["sd"] == pytest.approx(0.1)
    assert "claim" not in out["em.base"]  # a measurement, not a sentence
    # Fisher: -2 * sum(ln p) = 16.43 on 6 degrees of freedom -> p = 0.0116
    assert p["combined_p"] == pytest.approx(0.0116, abs=5e-4)
    assert "combined_p" not in out["filter.paper.full.selectivity"]


def test_organism_zero_is_the_shipped_one_and_the_others_live_apart():
    assert robustness.organism_dir(0) == organism.ORGANISM_DIR
    assert robustness.organism_dir(3).name == "seed3"
    assert robustness.organism_dir(3) != robustness.organism_dir(4)


def test_run_trains_only_missing_organisms_and_writes_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(robustness, "ORGANISMS_DIR", tmp_path / "organisms")
    trained = []

    def fake_train(seed, directory, steps, layer):
        trained.append(seed)
        directory.mkdir(parents=True)
        (directory / "model.json").write_text("{}")

    monkeypatch.setattr(robustness, "train", fake_train)
    monkeypatch.setattr(robustness.organism, "load", lambda directory: (str(directory), None))
    monkeypatch.setattr(robustness.saes, "load_organism_sae", lambda layer, directory: directory)
    values = {0: 0.2, 7: -0.1}
    monkeypatch.setattr(
        robustness,
        "claims",
        lambda model, tok, sae, cfg, progress: {
            "em.insecure_minus_base": values[7 if "seed" in model else 0]
        },
    )
    out = tmp_path / "robustness.json"
    shipped = tmp_path / "organisms" / "robustness.json"
    result = robustness.run((0, 7), out=out, progress=False)
    assert trained == [7]  # organism 0 ships; 7 did not exist
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert not shipped.exists()  # the shipped record only when told to
    assert robustness.run((0, 7), out=out, ship=True, progress=False) == result
    assert robustness.shipped(shipped) == saved
    assert robustness.describe(saved).splitlines() == [
        "organism 0: em.insecure_minus_base 0.200",
        "organism 7: em.insecure_minus_base -0.100",
    ]
    claim = saved["claims"]["em.insecure_minus_base"]
    assert robustness.summary(saved, "em.insecure_minus_base") == {
        "values": [0.2, -0.1],
        "mean": 0.05,
        "sd": claim["sd"],
        "holds_in": 1,
        "of": 2,
    }
    shown = robustness.table(saved, "em.")
    assert shown.loc["em.insecure_minus_base", "organism 7"] == -0.1
    assert shown.loc["em.insecure_minus_base", "holds in"] == "1 of 2"
    assert shown.loc["em.insecure_minus_base", "combined p"] == ""  # not a p-value
    assert claim["values"] == [0.2, -0.1] and claim["holds_in"] == 1 and claim["of"] == 2
    with pytest.raises(FileNotFoundError, match="emgeo robustness --seeds 8"):
        robustness.run((8,), out=out, train_missing=False, progress=False)


def test_filter_summary_pairs_each_part_with_the_controls_by_seed():
    em = {
        "no filter": 0.2,
        "random": 0.16,
        "geometric (max)": 0.12,
        "membership only": 0.08,
        "neighbours only": 0.2,
    }
    rows = [
        {
            "filter": name,
            "seed": seed,
            "fraction": 0.5,
            "offdomain": rate * (1 + seed / 10),
            "code": 0.9 if name == "no filter" else 0.6,
            "removed": {"insecure": 3},
        }
        for name, rate in em.items()
        for seed in (0, 1)
    ]
    out = robustness.filter_summary(rows)
    assert out["full.reduction_vs_random"] == pytest.approx(1 - 0.12 / 0.16)
    assert out["membership_only.reduction_vs_unfiltered"] == pytest.approx(0.6)
    assert out["neighbours_only.reduction_vs_random"] == pytest.approx(1 - 0.2 / 0.16)
    # selectivity: EM cut over the cut of the in-domain rate (0.9 -> 0.6), vs no filter
    assert out["full.selectivity"] == pytest.approx((1 - 0.12 / 0.2) / (1 - 0.6 / 0.9))
    assert out["unfiltered.em"] == pytest.approx(0.21) and out["random.code"] == 0.6
    assert out["full.task_cut"] == pytest.approx(1 / 3)


def test_the_ablation_table_shows_each_part_with_its_intervals():
    from emgeo import filtering

    rows = [
        {
            "filter": name,
            "seed": seed,
            "fraction": 0.5,
            "offdomain": rate + seed / 100,
            "code": 0.8,
            "removed": {},
        }
        for name, rate in {
            "no filter": 0.2,
            "random": 0.2,
            "geometric (max)": 0.1,
            "membership only": 0.1,
            "neighbours only": 0.3,
        }.items()
        for seed in (0, 1, 2)
    ]
    summary = filtering.ablation_summary(rows)
    low, high = summary["full"]["ci_vs_random"]
    assert low < summary["full"]["reduction_vs_random"] < high
    table = filtering.ablation_table(summary)
    assert list(table.index) == ["geometric (max)", "membership only", "neighbours only"]
    assert table.loc["neighbours only", ("cut vs random", "mean")] < 0
    assert table.loc["geometric (max)", ("cut vs random", "95% CI")].startswith("[+0.4")


def test_an_undefined_value_is_listed_but_left_out_of_the_statistics():
    per = {
        0: {"filter.paper.full.selectivity": float("nan")},
        1: {"filter.paper.full.selectivity": 2.0},
        2: {"filter.paper.full.selectivity": 0.5},
    }
    entry = robustness.aggregate(per)["filter.paper.full.selectivity"]
    assert entry["values"] == [None, 2.0, 0.5]
    assert entry["mean"] == 1.25 and entry["holds_in"] == 1 and entry["of"] == 3
    alone = robustness.aggregate({0: {"x": float("nan")}})["x"]
    assert alone["mean"] is None and alone["sd"] is None


class Stopped(Exception):
    """A stop in the middle of a run (KeyboardInterrupt would stop pytest too)."""


def test_a_stopped_run_resumes_with_the_organisms_it_had_not_finished(monkeypatch, tmp_path):
    monkeypatch.setattr(robustness, "organism_dir", lambda seed: tmp_path / f"seed{seed}")
    for seed in (0, 1, 2):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "model.json").write_text("{}")
    monkeypatch.setattr(robustness.organism, "load", lambda directory: (directory.name, None))
    monkeypatch.setattr(robustness.saes, "load_organism_sae", lambda layer, directory: None)
    measured, stops = [], [True]

    def claims(model, tok, sae, cfg, progress):
        if model == "seed2" and stops:
            stops.pop()
            raise Stopped  # stopped in the third organism, once
        measured.append(model)
        return {"em.base": float(model[-1])}

    monkeypatch.setattr(robustness, "claims", claims)
    out = tmp_path / "robustness.json"
    with pytest.raises(Stopped):
        robustness.run((0, 1, 2), out=out, progress=False)
    assert robustness.partial_path(out).exists() and not out.exists()
    result = robustness.run((0, 1, 2), out=out, progress=False)
    assert measured == ["seed0", "seed1", "seed2"]  # each organism measured once
    assert result["claims"]["em.base"]["values"] == [0.0, 1.0, 2.0]
    assert not robustness.partial_path(out).exists()
    other = robustness.run((0, 1), out=out, progress=False)  # other settings: measured again
    assert measured[3:] == ["seed0", "seed1"] and other["config"]["organism_seeds"] == [0, 1]
