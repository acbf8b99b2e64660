"""The claims table: each claim's figure read from a summary, its verdict from the interval, and
the same figures computed from the records the course ships."""

import json

import pytest

from emgeo.config import REPO_ROOT
from emgeo.course import claims


def test_an_interval_gives_the_verdict():
    assert claims.interval_verdict(0.01, 0.3) == "supported"
    assert claims.interval_verdict(-0.1, 0.3) == "not supported"
    assert claims.interval_verdict(-0.3, -0.02) == "contradicted"


def test_rows_read_each_figure_and_say_what_is_missing():
    summary = {
        "pooled": {
            "filter": {
                "paper": {"full": {"mean": -0.03, "ci": [-0.07, 0.01], "n": 5, "unit": "organisms"}}
            },
            "dose": {"between": {"p": 0.0002, "detail": "rho = 0.84 over 16 organisms"}},
        },
        "lm": {"geometry": {"disjoint": {"p_value": 0.58}}},
    }
    rows = claims.rows(summary)
    assert all(r["verdict"] in claims.VERDICTS for r in rows)
    by = {(r["claim"][:30], r["where"]): r for r in rows}
    paper = next(
        r for (c, w), r in by.items() if c.startswith("Removing") and w == claims.ORGANISMS
    )
    assert paper["figure"] == "cut vs random -3.0% [-7.0%, +1.0%], 5 organisms"
    assert paper["verdict"] == "not supported"
    lm = next(r for r in rows if r["where"].startswith("SmolLM2") and "nearer" in r["claim"])
    assert lm["verdict"] == "not supported" and "p = 0.58" in lm["figure"]
    dose = next(r for r in rows if r["where"].endswith("between organisms"))
    assert dose["verdict"] == "supported" and "rho = 0.84" in dose["figure"]
    within = next(r for r in rows if r["where"].endswith("within an organism"))
    assert within["verdict"] == "not in this run" and "geometry-subtasks" in within["figure"]
    judge = next(r for r in rows if "LLM-judge" in r["claim"])
    assert judge["verdict"] == "not tested here"


def test_the_table_and_markdown_show_each_claim_once():
    table = claims.table({})
    assert (table["claim"] != "").sum() == len(claims.CLAIMS)
    text = claims.markdown({})
    assert text.count("\n") == 2 + sum(len(c.tests) for c in claims.CLAIMS)
    assert all(c.claim in text for c in claims.CLAIMS)


def _records(tmp_path, reductions: list[float]):
    organisms = tmp_path / "organisms"
    organisms.mkdir(parents=True)
    entry = {"values": reductions, "holds_in": 2, "of": 3}
    robust = {
        "claims": {
            "geometry.disjoint.p_value": {"combined_p": 0.2, "holds_in": 1, "of": 3},
            "geometry.confounded.p_value": {"combined_p": 0.001, "holds_in": 3, "of": 3},
            "filter.paper.full.reduction_vs_random": entry,
        }
    }
    (organisms / "robustness.json").write_text(json.dumps(robust))
    dose = {"correlations": {"cosine": {"n": 16, "p_value": 0.0002, "rho": 0.84}}}
    (organisms / "geometry_dose.json").write_text(json.dumps(dose))
    (tmp_path / "lm_em").mkdir()
    per_seed = {"mean": -0.11, "ci_low": -0.27, "ci_high": 0.05, "n": 3}
    lm = {"summary": {"reduction_vs_random": {"per_seed": per_seed}}}
    (tmp_path / "lm_em" / "filter.json").write_text(json.dumps(lm))
    return tmp_path


def test_the_shipped_records_give_pooled_figures(tmp_path):
    summary = claims.shipped_summary(_records(tmp_path, [0.2, 0.25, 0.3]))
    paper = summary["pooled"]["filter"]["paper"]["full"]
    assert paper["mean"] == pytest.approx(0.25) and paper["n"] == 3
    assert paper["ci"][0] == pytest.approx(0.25 - 4.303 * 0.05 / 3**0.5, abs=1e-3)
    assert summary["pooled"]["geometry"]["disjoint"]["p"] == 0.2
    assert summary["pooled"]["filter"]["lm"]["full"]["ci"] == [-0.27, 0.05]
    verdicts = {(r["claim"][:20], r["where"]): r["verdict"] for r in claims.rows(summary)}
    assert verdicts[("Removing the half of", claims.ORGANISMS)] == "supported"
    assert verdicts[("Features of the indu", claims.ORGANISMS + ", outside the toxic set")] == (
        "not supported"
    )


def test_the_course_ships_every_record_the_table_reads():
    summary = claims.shipped_summary()["pooled"]
    assert {"geometry", "dose", "filter"} <= set(summary)
    assert {"paper", "mixed", "lm"} <= set(summary["filter"])


def test_the_readme_holds_the_table_the_records_give():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert claims.readme_block() in readme, "run `emgeo claims --write` after a record changes"


def test_writing_the_readme_replaces_only_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# t\n\nbefore\n{claims.README_START}\nstale table\n{claims.README_END}\nafter\n"
    )
    assert claims.write_readme(readme)
    text = readme.read_text()
    assert text.startswith("# t\n\nbefore\n") and text.endswith("\nafter\n")
    assert "stale table" not in text and claims.markdown(claims.with_shipped({})) in text
    assert not claims.write_readme(readme)


def test_the_filter_among_the_mitigations_is_read_against_the_largest_cut():
    def entry(cut, low, high):
        return {"em_cut": cut, "em_cut_ci": [low, high]}

    pooled = {
        "no mitigation": entry(0.0, 0.0, 0.0),
        "geometric (max)": entry(0.1, 0.02, 0.18),
        "benign data": entry(0.8, 0.7, 0.9),
        "random": entry(0.01, -0.05, 0.07),
    }
    read = claims.among_mitigations("organism")
    text, verdict = read({"pooled": {"mitigations": {"organism": pooled}}})
    assert verdict == "contradicted" and "2 of 3" in text and "benign data +80.0%" in text
    pooled["benign data"] = entry(0.2, 0.1, 0.3)  # intervals overlap
    assert read({"pooled": {"mitigations": {"organism": pooled}}})[1] == "not supported"
    pooled["geometric (max)"] = entry(0.3, 0.2, 0.4)
    assert read({"pooled": {"mitigations": {"organism": pooled}}})[1] == "supported"
    assert "per task lost" not in text  # no selectivity given
    pooled["random"] |= {"selectivity": 9.0}  # its cut is not resolved: never the most selective
    pooled["benign data"] |= {"selectivity": 2.0}
    pooled["geometric (max)"] |= {"selectivity": None}
    text = read({"pooled": {"mitigations": {"organism": pooled}}})[0]
    assert text.endswith("the most EM cut per task lost: benign data (2.0)")
    assert "kept whole" not in text
    pooled["geometric (max)"] |= {"task_kept": 1.0}  # resolved, the task untouched
    pooled["random"] |= {"task_kept": 1.0}  # not resolved
    text = read({"pooled": {"mitigations": {"organism": pooled}}})[0]
    assert "; the largest with the task kept whole: geometric (max);" in text
    assert read({"pooled": {}}) is None


def _ci(mean, low, high, n=3):
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": n}


def test_the_advice_records_give_each_domains_verdict_and_the_strongest_domains_filter(tmp_path):
    contrasts = {
        "health.margin.harmful_minus_aligned": _ci(0.2, 0.1, 0.3),
        "health.margin_disjoint.harmful_minus_aligned": _ci(0.1, 0.05, 0.15),
        "career.margin.harmful_minus_aligned": _ci(0.1, 0.02, 0.2),
        "career.margin_disjoint.harmful_minus_aligned": _ci(-0.1, -0.2, 0.01),  # words only
        "legal.margin.harmful_minus_aligned": _ci(-0.1, -0.2, -0.05),
        "legal.margin_disjoint.harmful_minus_aligned": _ci(-0.1, -0.2, -0.05),
    }
    cell = {"domains": ["health", "career", "legal"], "contrasts": contrasts}
    (tmp_path / "lm_em").mkdir()
    record = {"cells": {"advice-r8-lr0.001-30steps": cell}}
    (tmp_path / "lm_em" / "domains.json").write_text(json.dumps(record))
    runs = [
        {"filter": f, "seed": s, "margin": rise}
        for f, rises in (("random", (0.4, 0.5, 0.6)), ("geometric", (0.2, 0.26, 0.3)))
        for s, rise in enumerate(rises)
    ]
    filtered = {
        "base": {"margin": 0.0},
        "runs": runs,
        "stages": {"geometry": {"p_value": 0.01, "effect_size": 0.9}},
    }
    (tmp_path / "lm_em" / "filter_health.json").write_text(json.dumps(filtered))
    pooled = claims.shipped_summary(tmp_path)["pooled"]
    full = pooled["filter"]["lm_domain"]["full"]  # per seed: 1 - 0.2/0.4, 1 - 0.26/0.5, 1 - 0.3/0.6
    assert full["mean"] == pytest.approx((0.5 + 0.48 + 0.5) / 3) and full["n"] == 3
    assert 0 < full["ci"][0] < full["mean"] < full["ci"][1]
    assert "neighbours_only" not in pooled["filter"]["lm_domain"]  # the ablation did not run
    assert pooled["geometry"]["lm_domain"]["p"] == 0.01
    verdicts = {r["where"]: r["verdict"] for r in claims.rows({"pooled": pooled})}
    assert verdicts["SmolLM2-135M, LoRA, health advice"] == "supported"
    assert verdicts["SmolLM2-135M, LoRA, career advice"] == "not supported"
    assert verdicts["SmolLM2-135M, LoRA, legal advice"] == "contradicted"
    by_claim = {(r["claim"][:20], r["where"]): r for r in claims.rows({"pooled": pooled})}
    assert by_claim[("Removing the half of", claims.ADVICE)]["verdict"] == "supported"
    assert "health advice" in by_claim[("Removing the half of", claims.ADVICE)]["figure"]
    mitigated = {
        "no mitigation": {"rise": _ci(0.5, 0.4, 0.6)},
        "geometric": {"em_cut": 0.05, "em_cut_ci": [-0.1, 0.2], "selectivity": None},
        "benign data": {"em_cut": 0.4, "em_cut_ci": [0.3, 0.5], "selectivity": 4.0},
    }
    (tmp_path / "lm_em" / "mitigations_career.json").write_text(json.dumps({"summary": {}}))
    assert "mitigations" not in claims.shipped_summary(tmp_path)["pooled"]  # not the best domain's
    (tmp_path / "lm_em" / "mitigations_health.json").write_text(json.dumps({"summary": mitigated}))
    pooled = claims.shipped_summary(tmp_path)["pooled"]
    assert set(pooled["mitigations"]["lm"]) == {"geometric", "benign data"}
    row = next(
        r
        for r in claims.rows({"pooled": pooled})
        if r["claim"].startswith("Beside the other ways") and r["where"].startswith(claims.ADVICE)
    )
    assert row["verdict"] == "contradicted"
    assert "geometric +5.0% [-10.0%, +20.0%], 2 of 2" in row["figure"]
    assert row["figure"].endswith("benign data (4.0)")
