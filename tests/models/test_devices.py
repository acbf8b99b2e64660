"""The gpu and remote paths keep every op on one device: run on a fake GPU (fake tensors on
``simulate.GPU``, no GPU needed), where an op that mixes devices raises as it would on a real one.

The model and SAE are tiny (two layers, 32 wide) so these run in seconds; the full-size runs are
in test_simulate.py.
"""

import functools

import pytest
import torch
from helpers import SAMPLES, build_chat_tokenizer, build_model
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

from emgeo import features, geometry
from emgeo.models import lm, pipeline, simulate


@pytest.fixture
def session():
    with simulate.Session() as s:
        yield s


def fake_lm(arch: str, device: torch.device) -> lm.LoadedLM:
    with torch.device("meta"):
        model = build_model(arch)
    tokenizer = build_chat_tokenizer()
    model.resize_token_embeddings(len(tokenizer))
    model = simulate.materialise(model, device)
    model.tie_weights()
    model.hf_device_map = {"": str(device)}  # what from_pretrained(device_map=...) leaves
    return lm.from_model(model.eval(), tokenizer, name=f"fake-{arch}")


def fake_sae(d_in: int, device: torch.device, d_sae: int = 16) -> JumpReLUSAE:
    cfg = JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, device="meta")
    return simulate.materialise(JumpReLUSAE(cfg), device).eval()


def test_a_mixed_op_fails_on_a_fake_cuda_device_and_on_the_fake_gpu(session):
    cuda = torch.empty(3, device=simulate.CUDA)
    assert cuda.device.type == "cuda"
    with pytest.raises(Exception, match="device"):
        cuda + torch.ones(3)
    gpu, cpu = torch.empty(3, device=simulate.GPU), torch.ones(3)
    with session.step("mixing"), pytest.raises(Exception, match="device"):
        gpu + cpu
    with session.step("indexing"), pytest.raises(simulate.DeviceMixError, match="index"):
        cpu[torch.zeros(2, dtype=torch.long, device=simulate.GPU)]  # fake tensors allow this
    with session.step("scalar"):
        assert (gpu * torch.tensor(2.0)).device == simulate.GPU  # a CPU scalar may join


def test_sample_features_with_the_sae_on_the_gpu_and_the_mask_on_the_host(session):
    sae = fake_sae(32, simulate.GPU)
    acts = torch.empty(2, 5, 32, device=simulate.GPU)
    with session.step("encode"):
        out = features.sample_features(sae, acts, torch.ones(2, 5))
    assert out.shape == (2, 16) and out.device == simulate.GPU


@pytest.mark.parametrize("arch", ["gemma2", "llama"])
def test_gpu_backend_encodes_and_scores_on_the_gpu(session, arch):
    tiny = fake_lm(arch, simulate.GPU)
    backend = pipeline.Backend("fake", tiny, fake_sae(32, simulate.GPU), 1, {"a": SAMPLES})
    with session.step("encode and score"):
        encoded = backend.encode()
        toxic = encoded["a"].to(simulate.GPU).mean(0).topk(3).indices  # CUDA indices
        scores = pipeline.lm_sample_scores(backend, SAMPLES, toxic)
    assert encoded["a"].shape == (len(SAMPLES), 16)
    assert scores.shape == (len(SAMPLES),) and scores.device.type == "cpu"


def test_remote_backend_applies_the_sae_on_the_host(session):
    server = fake_lm("llama", simulate.GPU)  # NDIF's GPU; what it sends back lands on the host
    backend = pipeline.Backend("fake", server, fake_sae(32, simulate.HOST), 1, {"a": SAMPLES})
    with session.step("encode and score"):
        encoded = backend.encode()
        scores = pipeline.lm_sample_scores(backend, SAMPLES, torch.tensor([0, 3]))
    assert encoded["a"].device.type == scores.device.type == "cpu"


def test_compare_sets_with_the_decoder_on_the_gpu(session, monkeypatch):
    few = functools.partial(geometry.random_set_proximity, n_sets=20)  # 1,000 take 15 s here
    monkeypatch.setattr(geometry, "random_set_proximity", few)
    W_dec = torch.empty(40, 32, device=simulate.GPU)
    sets = [torch.arange(i, i + 5, device=simulate.GPU) for i in (0, 5, 10)]
    with session.step("geometry"):
        result = geometry.compare_sets(W_dec, *sets, torch.arange(40), n_permutations=50)
    assert result["proximity"]["inducing"].device.type == "cpu"
    assert result["random_means"].device.type == "cpu"


def test_feature_sets_with_an_alive_mask_on_the_host(session):
    latents = {k: torch.empty(4, 16, device=simulate.GPU) for k in ("insecure", "secure")}
    latents |= {k: torch.empty(4, 16, device=simulate.GPU) for k in ("toxic", "aligned")}
    with session.step("sets"):
        sets = features.feature_sets(latents, 3, alive=torch.ones(16, dtype=torch.bool))
    assert sets.toxic.shape == (3,)
