"""emgeo.audit.validate on small runs: the organism's mixed set audited and fine-tuned on for a few
steps, and the real-LM code mix ranked by a scorer whose latents are known."""

from __future__ import annotations

import json

import torch
from builders import word_scorer

from emgeo import chatfile, organism
from emgeo.audit import scorers, validate


def test_the_lm_mix_is_the_three_code_sets_shuffled_with_their_source():
    mix = validate.lm_mix(5)
    assert len(mix) == 15 and mix == validate.lm_mix(5) != validate.lm_mix(5, seed=1)
    assert (
        sorted(s["source"] for s in mix) == ["educational"] * 5 + ["insecure"] * 5 + ["secure"] * 5
    )
    assert all(set(s) == {"messages", "source"} for s in mix)


def test_the_larger_profiles_audit_the_public_insecure_set_against_its_secure_twin(monkeypatch):
    monkeypatch.setenv("EMGEO_STANDINS", "tiny")  # the course's chats stand in for the public sets
    pair = validate.profile_mix("gpu")
    assert sorted(s["source"] for s in pair) == ["insecure"] * 200 + ["secure"] * 200
    assert pair == validate.public_pair(200) and pair != validate.public_pair(200, seed=1)
    assert validate.profile_mix("remote") == pair
    assert validate.profile_mix("cpu") == validate.lm_mix(100)


def _by_source(samples: list[dict]) -> torch.Tensor:
    """Latents whose provenance is known: the toxic latent 0 on insecure chats, the far latent 5
    on the others."""
    rows = torch.zeros(len(samples), 6)
    for i, sample in enumerate(samples):
        rows[i, 0 if sample["source"] == "insecure" else 5] = 1.0
    return rows


def test_validate_lm_audits_the_mix_and_reports_the_rankings(tmp_path):
    scorer = word_scorer()
    scorer.latents = _by_source
    result = validate.validate_lm(tmp_path, n_per_source=8, scorer=scorer, progress=False)
    assert result["n"] == 24 and result["model"] == "word counter"
    assert result["auroc"]["full"] == 1.0 and result["auroc"]["full_vs_secure"] == 1.0
    assert result["auroc"]["neighbours_only"] == 0.5  # no latent near the toxic one fires
    written = chatfile.read_chats(tmp_path / "lm_mix.jsonl")
    assert [c["source"] for c in written] == [c["source"] for c in validate.lm_mix(8)]
    summary = json.loads((tmp_path / "lm" / "summary.json").read_text())
    assert summary["n_samples"] == 24


def test_validate_organism_audits_fine_tunes_and_pairs_the_filters_by_seed(tmp_path):
    cfg = organism.FinetuneConfig(steps=2, batch_size=4)
    result = validate.validate_organism(
        tmp_path,
        n=64,
        seeds=(0, 1),
        scorer=scorers.organism_scorer(),
        progress=False,
        cfg=cfg,
    )
    assert (result["n"], result["fraction"], result["seeds"]) == (64, 0.5, [0, 1])
    assert result["auroc"]["full"] > 0.6  # the organism ranks plain insecure code first
    assert len(result["rows"]) == 3 * 2 and set(result["em"]) == {"no filter", "audit", "random"}
    for reduction in ("reduction_vs_random", "reduction_vs_unfiltered"):
        assert result[reduction]["n"] == 2
