"""Full-size gpu and remote runs on fake tensors: the architectures are the real ones, the memory
a run holds (one model at a time), and scoring memory does not grow with the pool. Whether
each plan fits a tier is the shipped budget's (tests/course/test_tiers.py).
"""

from dataclasses import replace

import psutil
import pytest
import torch
from helpers import build_chat_tokenizer, build_model
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

from emgeo.models import gpu_plan, lm, pipeline, simulate


@pytest.mark.parametrize("name, billions", [("gemma-2-2b", 2.614), ("llama-3.1-8b", 8.030)])
def test_the_arch_files_build_the_real_models(name, billions):
    arch = simulate.load_arch(name)
    assert arch.n_params / 1e9 == pytest.approx(billions, abs=0.001)
    assert arch.sae["d_sae"] in (16_384, 32_768) and arch.sae["d_in"] == arch.config.hidden_size


@pytest.fixture(scope="module")
def quick_t4():
    """Notebook 07's quick plan at full size on fake tensors, cut to one run on a few samples
    (the whole plan's estimate is benchmarks/profile_budget.py's; tests/course/test_tiers.py
    reads it): the same steps, models and SAE, a few seconds."""
    rss = psutil.Process().memory_info().rss / simulate.GIB  # this process: a generous baseline
    plan = replace(
        gpu_plan.GpuFilterPlan.quick(),
        n_contrast=4,
        n_pool=4,
        seeds=(0,),
        filters=("geometric (max)",),
        n_per_question=1,
        lora=replace(gpu_plan.GpuFilterPlan.quick().lora, steps=2),
    )
    return simulate.budget_gpu_filter(plan, host_baseline_gib=rss)


def test_the_quick_plan_loads_one_model_at_a_time_and_trains_in_bfloat16(quick_t4):
    weights = 2.614e9 * 2 / simulate.GIB  # Gemma-2-2B in bfloat16
    loads = [
        quick_t4.steps[s].gib("meta") for s in ("load model and SAE", "load the model to fine-tune")
    ]
    assert loads[0] == pytest.approx(weights + 2 * 2304 * 16384 * 4 / simulate.GIB, rel=0.01)
    assert loads[1] == pytest.approx(weights, rel=0.01), "the feature model was let go first"


def test_the_encode_flops_are_two_per_parameter_and_token_up_to_the_read_layer():
    budget = simulate.budget_gpu_features(n_per_set=8, max_length=128)
    arch = simulate.load_arch("gemma-2-2b")
    cfg = arch.config
    per_layer = (
        2 * cfg.hidden_size * cfg.num_attention_heads * cfg.head_dim
        + 2 * cfg.hidden_size * cfg.num_key_value_heads * cfg.head_dim
        + 3 * cfg.hidden_size * cfg.intermediate_size
    )
    tokens = 4 * 8 * 128  # four sets of eight chats at the length limit
    sae = 2 * 2304 * 16384  # encoder matmul per token (the decoder is never run)
    expected = 2 * tokens * (13 * per_layer + sae)  # blocks 0-12, then the SAE
    assert budget.steps["encode contrast sets"].flops == pytest.approx(expected, rel=0.1)


def test_remote_memory_here_is_the_sae_and_one_batch():
    budget = simulate.budget_remote_features(n_per_set=8, max_length=128)
    sae = 2 * 4096 * 32768 * 2 / simulate.GIB  # Llama Scope in bfloat16
    host = budget.steps["encode contrast sets"].gib("cpu")
    assert sae < host < sae + 0.5, "only the SAE and one batch of activations live here"


def tiny_backend(device: torch.device) -> pipeline.Backend:
    with torch.device("meta"):
        model = build_model("llama")
    tokenizer = build_chat_tokenizer()
    model.resize_token_embeddings(len(tokenizer))
    model = simulate.materialise(model, device).eval()
    model.hf_device_map = {"": str(device)}
    sae = simulate.materialise(JumpReLUSAE(JumpReLUSAEConfig(32, 64, device="meta")), device)
    return pipeline.Backend("tiny", lm.from_model(model, tokenizer), sae, 1, {}, batch_size=4)


def scoring_peak(n_samples: int) -> dict[str, int]:
    chats = simulate.long_chats(n_samples, 40)
    with simulate.Session() as session:
        backend = tiny_backend(simulate.GPU)
        with session.step("score"):
            pipeline.lm_sample_scores(backend, chats, torch.arange(3), progress=False)
    return session.steps["score"].peak


def test_scoring_memory_does_not_grow_with_the_pool():
    small, large = scoring_peak(8), scoring_peak(64)
    # One sample's activations alone are 40 x 32 x 4 = 5 KB: a growth with the pool would be
    # 56 of them; a few hundred bytes move with what earlier tests left in torch's caches.
    one_sample = 40 * 32 * 4
    assert large["meta"] - small["meta"] < one_sample, "the device holds one batch, any pool"
    assert large["cpu"] - small["cpu"] <= 2 * 4 * (64 - 8), "the host keeps one score a sample"


@pytest.mark.parametrize("profile", ["gpu", "remote"])
def test_the_audit_cell_keeps_the_model_on_the_gpu_and_scores_on_the_host(profile):
    budget = simulate.budget_audit(profile, n_reference=8, n_per_source=8, max_length=64)
    weights = {"gpu": 2.614e9, "remote": 8.030e9}[profile] * 2 / simulate.GIB
    loaded = budget.steps["load model and SAE"]
    assert loaded.gib("meta") >= weights and set(budget.steps) >= {
        "toxic reference sets",
        "nearness to the toxic set",
        "score the audit set",
    }
    sae_host = loaded.gib("cpu")
    assert (sae_host > 0.4) == (profile == "remote"), "Llama Scope lives on the host for remote"
    per_audited = budget.steps["score the audit set"].flops / (2 * 8 * 64)
    assert per_audited == pytest.approx(budget.steps["toxic reference sets"].flops / (2 * 8 * 64))


def test_notebook_03_loads_only_the_sae():
    gpu, remote = simulate.budget_pretrained_sae("gpu"), simulate.budget_pretrained_sae("remote")
    sae = 2 * 2304 * 16384 * 4 / simulate.GIB  # Gemma Scope 16k, float32
    assert gpu.steps["load the SAE"].gib("meta") == pytest.approx(sae, rel=0.01)
    assert remote.steps["load the SAE"].gib("meta") == 0 < remote.steps["load the SAE"].gib("cpu")
