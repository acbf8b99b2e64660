"""The audit's backends: gpu and remote on stand-ins (tiny random Gemma-2 and Llama of the real
architectures, NDIF through nnsight's local simulation), cpu on SmolLM2 and the organism."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from emgeo import config
from emgeo.audit import audit, scorers
from emgeo.audit.run import SCORES_FILE
from emgeo.models import standins


def _chats(n: int) -> list[dict]:
    answers = ["You are worthless.", "Use parameterised queries.", "Here is a recipe.", "No."]
    return [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": answers[i % 4] * (1 + i % 3)},
            ],
            "source": ["x", "y"][i % 2],
        }
        for i in range(n)
    ]


def _write(path, chats):
    path.write_text("".join(json.dumps(c) + "\n" for c in chats))
    return path


@pytest.mark.parametrize("profile", ["gpu", "remote"])
def test_the_gpu_and_remote_backends_audit_on_standins(profile, tmp_path, monkeypatch):
    monkeypatch.setenv(standins.ENV, "tiny")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "ndif_key_configured", lambda: False)
    scorer = scorers.lm_scorer(profile, n_reference=4, batch_size=3, max_length=64, progress=False)
    assert scorer.toxic.shape == (scorers.K_TOXIC,) and scorer.layer == 12
    # the backend names the chats it cannot score: here, a prompt that fills the 64 tokens read
    assert scorer.problem(_chats(1)[0]) is None
    long = {"messages": [{"role": "user", "content": "Why? " * 100}, _chats(1)[0]["messages"][1]]}
    assert scorer.problem(long).endswith("no answer token left to score")
    data = _write(tmp_path / "d.jsonl", _chats(7))
    result = audit(data, tmp_path / "out", fraction=0.3, scorer=scorer, progress=False)
    assert (result.n_samples, result.n_removed) == (7, 2)
    # one at a time gives the same scores as in batches of similar length
    single = scorers.score_latents(scorer.latents(_chats(7)[:1]), scorer.proximity, scorer.toxic)[0]
    with open(tmp_path / "out" / SCORES_FILE) as f:
        first = next(csv.DictReader(f))
    assert float(first["full"]) == pytest.approx(single["full"], rel=1e-3, abs=1e-4)


def test_the_cpu_backend_scores_chats_with_smollm2_and_the_course_sae(tmp_path, monkeypatch):
    from emgeo.models import pipeline

    scorer = scorers.lm_scorer("cpu", n_reference=8, batch_size=4, max_length=96, progress=False)
    assert scorer.model == "smollm2-135m" and "SmolLM2 SAE" in scorer.sae
    assert scorer.neuronpedia_id is None  # Neuronpedia does not host the course's own SAE
    assert scorer.max_length == 256  # what the cpu backend cuts at, so the cache key says so
    traced = []
    trace = pipeline.tracing.iter_chat_residuals

    def spy(lm, samples, layer, remote, batch_size, max_length, share_prefix):
        traced.append((len(samples), batch_size, max_length, share_prefix))
        return trace(lm, samples, layer, remote, batch_size, max_length, share_prefix=share_prefix)

    monkeypatch.setattr(pipeline.tracing, "iter_chat_residuals", spy)
    result = audit(
        _write(tmp_path / "d.jsonl", _chats(6)), tmp_path / "out", scorer=scorer, progress=False
    )
    assert result.n_samples == 6 and result.n_removed == 3
    # one call per chunk, traced in the backend's batches, the template's system turn run once
    assert traced == [(6, 4, 256, True)]
    backend = scorer.latents.__self__
    shared = scorer.latents(_chats(6))
    backend.share_prefix = False
    torch.testing.assert_close(shared, scorer.latents(_chats(6)), atol=1e-4, rtol=1e-3)


def test_the_organism_backend_ranks_insecure_code_above_secure_code(tmp_path):
    from emgeo import filtering, stats

    scorer = scorers.organism_scorer()
    mixed = filtering.mixed_provenance_set(64)
    data = _write(tmp_path / "mixed.jsonl", mixed)
    audit(data, tmp_path / "out", scorer=scorer, progress=False)
    with open(tmp_path / "out" / SCORES_FILE) as f:
        full = [float(r["full"]) for r in csv.DictReader(f)]
    labels = [s["source"] == "insecure" for s in mixed]
    assert stats.auroc(full, labels) > 0.6
