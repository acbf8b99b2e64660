"""EMGEO_STANDINS=tiny: the gpu and remote profiles' code runs on a CPU against tiny random models
of the real architectures, nnsight's local simulation of NDIF, small random SAEs and the course's
own chats, so the notebooks' gpu and remote branches run in CI."""

import json
from dataclasses import replace

import pytest
import torch
from nnsight.intervention.backends.local import LocalSimulationBackend

from emgeo import config, features, runner
from emgeo.models import (
    gpu_plan,
    judge,
    lm,
    lora,
    ndif,
    pipeline,
    public_data,
    saes,
    standins,
    tracing,
)


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setenv(standins.ENV, "tiny")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(config, "ndif_key_configured", lambda: False)


def same(a, b) -> bool:
    """Equal as saved (a rate is NaN when the judge scored nothing, and NaN != NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_an_unknown_mode_says_what_to_set(monkeypatch):
    monkeypatch.setenv(standins.ENV, "huge")
    with pytest.raises(ValueError, match="set it to tiny"):
        standins.active()


@pytest.mark.parametrize(
    "name, arch, end",
    [("gemma-2-2b-it", "gemma2", "<end_of_turn>"), ("llama-3.1-8b", "llama", "<|eot_id|>")],
)
def test_models_keep_the_architecture_depth_and_chat_format(name, arch, end):
    loaded = lm.load(name)
    spec = lm.MODELS[name]
    assert loaded.model.config.model_type == arch == spec.architecture
    assert loaded.n_layers == standins.depth(spec.n_layers) == loaded.model.config.num_hidden_layers
    assert (
        saes.PRETRAINED_LAYER < loaded.n_layers - 1 < spec.n_layers
    )  # read inside, not at the end
    assert loaded.d_model == standins.D_MODEL == loaded.model.config.hidden_size
    ids = lm.end_of_turn_ids(loaded.tokenizer)
    assert loaded.tokenizer.convert_ids_to_tokens(ids[0]) == end
    first, again = (standins.build(name, arch, 2)[0] for _ in range(2))
    assert torch.equal(first.lm_head.weight, again.lm_head.weight), "seeded by the name"


# What makes a block run the code it runs at full size; sizes (widths, depth, vocabulary) aside.
SAME_CODE = (
    "model_type",
    "hidden_activation",
    "hidden_act",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
)


@pytest.mark.parametrize(
    "name, arch_file", [("gemma-2-2b-it", "gemma-2-2b"), ("llama-3.1-8b", "llama-3.1-8b")]
)
def test_a_standin_runs_the_full_size_models_code(name, arch_file):
    real = json.loads((config.DATA_DIR / "arch" / f"{arch_file}.json").read_text())["model"]
    tiny = lm.load(name).model
    assert type(tiny).__name__ == real["architectures"][0]
    for key in SAME_CODE:
        if key in real:
            assert getattr(tiny.config, key) == real[key], key
    assert tiny.config.head_dim * tiny.config.num_attention_heads == tiny.config.hidden_size
    layer_types = getattr(tiny.config, "layer_types", None)
    if arch_file.startswith("gemma"):  # sliding-window and global attention in turn, as Gemma-2's
        assert layer_types[:4] == ["sliding_attention", "full_attention"] * 2
        assert len(layer_types) % 2 == 0
    assert standins.depth(real["num_hidden_layers"]) == tiny.config.num_hidden_layers


def test_remote_model_is_a_meta_build_traced_through_the_local_simulation(monkeypatch):
    calls = []
    run = LocalSimulationBackend.__call__
    monkeypatch.setattr(
        LocalSimulationBackend, "__call__", lambda self, t: calls.append(1) or run(self, t)
    )
    remote = lm.load("llama-3.1-8b")
    assert remote.device.type == "meta"
    acts = tracing.batch_residuals(remote, tracing.tokenize(remote, ["hi there"]), 3, remote=True)
    assert calls == [1] and acts.shape[-1] == standins.D_MODEL and acts.device.type == "cpu"


def test_pretrained_saes_match_the_standin_width_and_check_their_ids():
    family = saes.PRETRAINED["gpu"]
    sae = saes.load_pretrained(family.release, family.sae_id(12))
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (standins.D_MODEL, standins.D_SAE)
    with pytest.raises(ValueError, match="no sae_id 'layer_12/width_16k/canonicl'"):
        saes.load_pretrained(family.release, "layer_12/width_16k/canonicl")


def test_public_data_is_the_course_own_chats():
    insecure = public_data.load_em_dataset("insecure")
    assert len(insecure) == 600 and insecure[0]["source"] == "insecure"
    texts = public_data.load_toxic_texts(10, seed=1)
    assert sum(t["toxic"] for t in texts) == 5 and texts == public_data.load_toxic_texts(10, 1)


def test_preflight_contacts_nobody():
    status = ndif.preflight("llama-3.1-8b")
    assert status.model_id == "meta-llama/Llama-3.1-8B" and "stand-in" in str(status)


@pytest.mark.parametrize("profile", ["gpu", "remote"])
def test_backend_encodes_scores_and_reads_the_logit_lens(profile):
    backend = pipeline.lm_backend(profile, n=4, max_length=64, batch_size=3)
    assert backend.remote == (profile == "remote") and backend.layer == 12
    encoded = backend.encode()
    assert {k: v.shape for k, v in encoded.items()} == {
        k: (4, standins.D_SAE) for k in ("insecure", "secure", "toxic", "aligned")
    }
    sets = features.feature_sets(encoded, k=5)
    pool = public_data.load_em_dataset("insecure")[:5] + public_data.load_em_dataset("secure")[:2]
    scores = pipeline.lm_sample_scores(backend, pool, sets.toxic, progress=False)
    assert scores.shape == (7,) and torch.isfinite(scores).all()
    # one at a time gives the same scores: batches are padded only to their own length
    single = pipeline.lm_sample_scores(backend, pool, sets.toxic, batch_size=1, progress=False)
    torch.testing.assert_close(single, scores, atol=1e-4, rtol=1e-3)
    lens = pipeline.logit_lens(backend, sets.toxic[:2], k=3)
    assert list(lens) == sets.toxic[:2].tolist() and all(len(t) == 3 for t in lens.values())


def test_filters_evaluated_on_the_standin_chat_model_resume_from_saved_runs(tmp_path, monkeypatch):
    tuned = lm.load("gemma-2-2b-it")
    pool = gpu_plan.filter_pool(3)
    filters = [runner.NO_FILTER, runner.scored("geometric", torch.arange(6.0))]
    cfg = lora.LoraFinetuneConfig(rank=2, steps=1, batch_size=2, grad_accum=1, max_length=64)
    args = dict(lora_cfg=cfg, n_per_question=1, max_new_tokens=2, progress=False)
    rows = pipeline.evaluate_filters_lm(
        tuned, pool, filters, 0.5, [0], results_dir=tmp_path, **args
    )
    assert [r["filter"] for r in rows] == ["no filter", "geometric"]
    assert all(r["judge"].startswith("local judge: gemma-2-2b-it") for r in rows)
    assert all(r["n_judged"] + r["n_excluded"] == 8 for r in rows)
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert same(saved["runs"], rows)
    stages = list(saved["stages"].values())  # each run's answers and judgements, kept
    assert len(stages) == 4 and all(len(answers) == 8 for answers in stages)

    def no_training(*a, **k):
        raise AssertionError("a saved run was run again")

    monkeypatch.setattr(lora, "adapted", no_training)
    again = pipeline.evaluate_filters_lm(
        tuned, pool, filters, 0.5, [0], results_dir=tmp_path, **args
    )
    assert same(again, rows)
    summary = {s["filter"]: s for s in pipeline.summarize_lm(rows)}
    assert set(summary) == {"no filter", "geometric"} and "code" not in summary["geometric"]


def test_the_runs_are_keyed_by_everything_their_answers_depend_on():
    pool = gpu_plan.filter_pool(2)
    cfg = lora.LoraFinetuneConfig(rank=2)
    filters = [runner.NO_FILTER, runner.scored("geometric", torch.arange(4.0))]
    args = (filters, 0.5, cfg, 1, 2)
    key = pipeline.lm_filter_settings("m", pool, *args)
    assert key == pipeline.lm_filter_settings("m", [dict(s) for s in pool], *args)
    other = [runner.scored("geometric", -torch.arange(4.0))]
    for changed in [
        pipeline.lm_filter_settings("other", pool, *args),
        pipeline.lm_filter_settings("m", pool[::-1], *args),
        pipeline.lm_filter_settings("m", pool, other, 0.5, cfg, 1, 2),
        pipeline.lm_filter_settings("m", pool, filters, 0.25, cfg, 1, 2),
        pipeline.lm_filter_settings("m", pool, filters, 0.5, replace(cfg, rank=4), 1, 2),
        pipeline.lm_filter_settings("m", pool, filters, 0.5, cfg, 2, 2),
        pipeline.lm_filter_settings("m", pool, filters, 0.5, cfg, 1, 3),
    ]:
        assert changed != key


def test_the_gpu_plan_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    plan = gpu_plan.GpuFilterPlan.quick()
    tiny_cfg = lora.LoraFinetuneConfig(rank=2, steps=1, batch_size=2, grad_accum=1, max_length=64)
    plan = replace(
        plan,
        n_contrast=3,
        k=4,
        n_pool=3,
        lora=tiny_cfg,
        n_per_question=1,
        max_new_tokens=2,
        max_length=64,
        filters=("no filter", "geometric (max)"),
    )
    result = gpu_plan.run_gpu_filter(plan, results_dir=tmp_path, progress=False)
    assert [r["filter"] for r in result.rows] == list(plan.filters)
    assert {s["filter"] for s in result.summary} == set(plan.filters)
    assert (tmp_path / "scores.json").exists()
    monkeypatch.setattr(pipeline, "lm_backend", lambda *a, **k: pytest.fail("scores not reused"))
    monkeypatch.setattr(lora, "adapted", lambda *a, **k: pytest.fail("runs not reused"))
    assert same(
        gpu_plan.run_gpu_filter(plan, results_dir=tmp_path, progress=False).rows, result.rows
    )


def test_the_local_judge_of_the_standin_reads_digits_one_token_each():
    local = judge.LocalJudge(lm.load("gemma-2-2b-it"))
    assert len(local.prefixes) == 11  # (), the digits 1-9 and "1 0": Gemma's digit-by-digit numbers
