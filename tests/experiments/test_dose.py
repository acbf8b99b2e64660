"""`emgeo geometry-dose`: EM against the insecure/toxic angle in organisms with no data link."""

import json

import pytest
import torch

from emgeo import organism
from emgeo.experiments import dose


def _row(d_model, cosine, em, code=0.9):
    return {
        "d_model": d_model,
        "cosine": cosine,
        "cosine_update": cosine,
        "cosine_answer": -cosine,
        "shift_norm": 1.0 + cosine,
        "em": em,
        "em_vs_base": em,
        "insecure_code": code,
        "base_offdomain": 0.1,
    }


def test_correlations_state_the_test_and_its_rivals():
    rows = [
        _row(16, c, 0.1 * c, code) for c, code in [(0.1, 0.9), (0.5, 0.8), (0.3, 0.95), (0.7, 0.85)]
    ]
    out = dose.correlations(rows, n_permutations=500)
    assert out["cosine"]["rho"] == pytest.approx(1.0) and out["cosine"]["n"] == 4
    assert out["insecure_code"]["rho"] == pytest.approx(-0.6)  # a rival, measured, not assumed
    assert (
        out["cosine_answer"]["rho"] == pytest.approx(-1.0) and out["cosine_answer"]["p_value"] > 0.9
    )
    assert "cosine@d16" in out and "cosine@d32" not in out


def test_quick_run_trains_measures_and_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(dose, "DOSE_FILE", tmp_path / "shipped.json")
    torch.set_num_threads(1)
    result = dose.run(dose.quick(), out=tmp_path / "dose.json", ship=True, progress=False)
    organisms = [(r["d_model"], r["seed"], r["confirmatory"]) for r in result["rows"]]
    assert organisms == [(16, s, s >= 3) for s in range(6)]
    assert result["correlations"]["cosine"]["n"] == 3 == result["exploration"]["cosine"]["n"]
    for r in result["rows"]:
        assert -1 <= r["cosine"] <= 1 and 0 <= r["insecure_offdomain"] <= 1
        assert r["em"] == pytest.approx(r["insecure_offdomain"] - r["secure_offdomain"], abs=2e-5)
    assert json.loads((tmp_path / "dose.json").read_text()) == dose.shipped(
        tmp_path / "shipped.json"
    )
    assert result["config"]["link"] is False
    assert dose.describe(result).splitlines()[0].startswith("d_model 16 seed 0: cosine ")


def test_unlinked_small_organisms_save_and_load(tmp_path):
    cfg = organism.PretrainConfig(steps=2, d_model=16, link=False)
    model = organism.pretrain(cfg, progress=False)
    organism.save(model, tmp_path)
    loaded, _ = organism.load(tmp_path)
    assert loaded.cfg.d_model == 16 and loaded.cfg.d_head == 4 and loaded.cfg.d_mlp == 64
    assert torch.equal(loaded.W_E, model.W_E)


def test_missing_record_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="emgeo geometry-dose"):
        dose.shipped(tmp_path / "none.json")
