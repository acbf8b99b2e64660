"""Full-size runs without a GPU: the gpu and remote code paths on fake tensors, measured.

A :class:`Session` builds Gemma-2-2B or Llama-3.1-8B (configs in ``data/arch/*.json``) and their
SAEs at full size on the meta device and materialises them as *fake* tensors
(``torch._subclasses.fake_tensor.FakeTensorMode``) on the fake GPU (:data:`GPU`): shapes, dtypes and
devices without data. The package's own functions then run on them, step by step, while the session

- fails any op whose tensors sit on different devices (fake tensors do this for most ops;
  :class:`StrictDevices` adds the indexing rules CUDA has and fake tensors do not check);
- counts the bytes of live tensors per device and keeps each step's peak (:class:`LiveBytes`);
- counts FLOPs with torch's FLOP formulas (``torch.utils.flop_counter.flop_registry``;
  :class:`FlopCount`).

What cannot run on fake tensors is run as its forward passes: sampling (``generate`` stops on
data) becomes a prefill and one decode step at the full cache length; the local judge runs its
device part (:meth:`emgeo.models.judge.LocalJudge._next_probs`). A remote trace runs on a fake
"server" GPU, and what NDIF would send back lands on the host, where the SAE is applied.

Time comes from the measured FLOPs and weight reads and the assumed rates in :data:`GPUS`
(:meth:`StepCost.seconds`); memory is measured. Peak GPU memory adds :data:`CUDA_CONTEXT_GIB`,
host memory adds the process's own size (``host_baseline_gib``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import jaxtyping
import psutil
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from emgeo import config
from emgeo.models import lm as lm_module
from emgeo.models import standins, tracing

ARCH_DIR = config.DATA_DIR / "arch"
# The fake GPU. Fake tensors can be put on "cuda:0" on a CPU-only build, but indexing one
# (``x[..., None]``) and autograd take a CUDA device guard, which such a build lacks: they fail or
# abort. "meta" has a guard everywhere, so fake tensors on meta stand for the GPU, and a mix of
# them with host tensors fails as a CUDA/CPU mix would.
GPU = torch.device("meta")
CUDA = torch.device("cuda", 0)  # with its index: "cuda" alone asks for the (absent) CUDA runtime
HOST = torch.device("cpu")
GIB = 2**30

# -- assumptions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    """A GPU's datasheet numbers (dense, no sparsity) and the host RAM of its usual runtime."""

    name: str
    flops: float  # peak FLOP/s in the dtype the course uses (bfloat16)
    bandwidth: float  # memory bandwidth, bytes/s
    memory_gib: float
    host_gib: float


GPUS: dict[str, Gpu] = {
    # Turing: no bfloat16 tensor cores, so bfloat16 runs at about the FP32 rate.
    "t4": Gpu("T4 (free Colab)", 8.1e12, 320e9, 15.0, 12.7),
    "l4": Gpu("L4", 121e12, 300e9, 22.5, 53.0),
    "a100": Gpu("A100 40GB", 312e12, 1555e9, 40.0, 83.5),
}
FLOP_UTILISATION = 0.35  # share of peak FLOP/s eager PyTorch reaches on these matmul sizes
BANDWIDTH_UTILISATION = 0.6  # share of peak bandwidth a memory-bound decode step reaches
DECODE_OVERHEAD_S = 0.03  # per generated token: Python and kernel launches of an eager HF step
DOWNLOAD_BYTES_PER_S = 100e6  # Hugging Face hub to a Colab runtime
CUDA_CONTEXT_GIB = 0.5  # CUDA context, cuBLAS workspace and allocator slack on the device
CUDA_HOST_GIB = 1.0  # the CUDA runtime's own host memory (libraries, pinned buffers)

# -- architectures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    """A full-size architecture: its transformers config, dtype, checkpoint sizes and SAE."""

    name: str
    config: object
    dtype: torch.dtype
    attn_implementation: str
    checkpoint_gib: dict[str, float]
    sae: dict

    @property
    def n_params(self) -> int:
        return _count_params(self)


def load_arch(name: str, directory: Path = ARCH_DIR) -> Arch:
    """``data/arch/<name>.json``: the real config values of ``gemma-2-2b`` or ``llama-3.1-8b``."""
    raw = json.loads((directory / f"{name}.json").read_text())
    values = dict(raw["model"])
    cfg = AutoConfig.for_model(values.pop("model_type"), **values)
    return Arch(
        name,
        cfg,
        getattr(torch, raw["dtype"]),
        raw["attn_implementation"],
        raw["checkpoint_gib"],
        raw["sae"],
    )


def _count_params(arch: Arch) -> int:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch.config)
    return sum(p.numel() for p in model.parameters())


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers, each tensor once (tied weights count once)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


# -- fake tensors, device rules, bytes ----------------------------------------------------------


class DeviceMixError(RuntimeError):
    """An op got tensors on different devices (what CUDA refuses); the message names the op."""


_COPIES = {
    "aten._to_copy",
    "aten.copy_",
    "aten._copy_from",
    "aten._copy_from_and_resize",
    "aten.lift_fresh",
    "aten.lift_fresh_copy",
    "aten.detach",
    "aten.alias",
    "aten._local_scalar_dense",
    "prim.device",
}


# A GPU tensor may be indexed with CPU indices (CUDA copies them over); not the other way round.
_INDEXING = {"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"}


class StrictDevices(TorchDispatchMode):
    """Fail an op (other than a copy) whose tensor arguments are on more than one device, as
    CUDA does; a 0-dim CPU tensor may join any device, and CPU indices may index a GPU tensor.
    Fake tensors check most ops themselves but let a CPU tensor be indexed with GPU indices,
    which CUDA refuses."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name not in _COPIES:
            tensors = tree_leaves((args, kwargs))
            if name in _INDEXING and args[0].device.type != "cpu":
                tensors = [t for t in tensors if t is args[0] or t.device.type != "cpu"]
            devices = {
                t.device
                for t in tensors
                if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)
            }
            if len(devices) > 1:
                found = ", ".join(sorted(str(d) for d in devices))
                raise DeviceMixError(f"{name} got tensors on {found}: move them to one device")
        return func(*args, **kwargs)


class LiveBytes(TorchDispatchMode):
    """The bytes of live tensor storages per device type, and their peak since the last reset.

    Every tensor an op returns is counted once per storage until the storage is freed; tensors
    made before (a model's weights) are added with :meth:`track`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._refs: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        return out

    def track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self._refs and self._refs[key]() is storage:
            return
        device, size = t.device.type, storage.nbytes()
        if not isinstance(size, int):  # a data-dependent size (e.g. nonzero): not counted
            return
        self._refs[key] = weakref.ref(storage, lambda _: self._free(key, device, size))
        self.live[device] += size
        self.peak[device] = max(self.peak[device], self.live[device])

    def track_module(self, module: torch.nn.Module) -> None:
        for t in [*module.parameters(), *module.buffers()]:
            self.track(t)

    def _free(self, key: int, device: str, size: int) -> None:
        self._refs.pop(key, None)
        self.live[device] -= size

    def reset_peak(self) -> None:
        self.peak = Counter(self.live)


class FlopCount(TorchDispatchMode):
    """FLOPs of every op that has a formula in torch's FLOP registry (matmuls, convolutions,
    attention): ``FlopCounterMode``'s count without its module tracker, whose hooks keep
    activation-checkpointed tensors alive and so would inflate the memory measured beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


@dataclass
class StepCost:
    """One step of a notebook: its FLOPs and weight reads (all repeats), sequential decode steps,
    hub download, and its peak bytes per device type (the fake GPU's "meta", and "cpu")."""

    flops: float = 0.0
    weight_reads: float = 0.0
    decode_steps: int = 0
    download: float = 0.0
    peak: dict[str, int] = field(default_factory=dict)

    def seconds(self, gpu: Gpu) -> float:
        """Time on ``gpu``: FLOP-bound or weight-read-bound, whichever is slower, plus the
        per-token overhead of sequential decoding and the download."""
        compute = self.flops / (gpu.flops * FLOP_UTILISATION)
        reads = self.weight_reads / (gpu.bandwidth * BANDWIDTH_UTILISATION)
        return (
            max(compute, reads)
            + self.decode_steps * DECODE_OVERHEAD_S
            + (self.download / DOWNLOAD_BYTES_PER_S)
        )

    def gib(self, device: str) -> float:
        return self.peak.get(device, 0) / GIB


class Session:
    """Fake tensors, device rules and byte counting for a sequence of measured steps."""

    def __init__(self) -> None:
        # A shape environment lets ``.item()`` give a symbolic number instead of raising (the
        # statistics of notebook 06 read scalars); shapes stay static.
        self.mode = FakeTensorMode(
            allow_non_fake_inputs=True, shape_env=ShapeEnv(), static_shapes=True
        )
        self.bytes = LiveBytes()
        self.steps: dict[str, StepCost] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Session:
        self._stack.enter_context(_no_runtime_type_checks())
        self._stack.enter_context(self.mode)
        self._stack.enter_context(self.bytes)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @contextlib.contextmanager
    def step(
        self,
        name: str,
        repeats: int | float = 1.0,
        weight_reads: float = 0.0,
        decode_steps: int = 0,
        download: float = 0.0,
    ) -> Iterator[StepCost]:
        """Measure what runs inside: its peak bytes per device (live tensors from before count)
        and its FLOPs, times ``repeats`` (the step stands for that many identical ones)."""
        gc.collect()
        self.bytes.reset_peak()
        cost = StepCost(weight_reads=weight_reads, decode_steps=decode_steps, download=download)
        counter = FlopCount()
        with counter, StrictDevices():
            yield cost
        cost.flops = counter.total * repeats
        cost.peak = dict(self.bytes.peak)
        self.steps[name] = cost

    def free(self) -> None:
        """Let go of what nothing references any more (after ``del``)."""
        gc.collect()


@contextlib.contextmanager
def _no_runtime_type_checks() -> Iterator[None]:
    """Switch jaxtyping's runtime checks off (the test suite turns them on): under fake tensors a
    scalar read with ``.item()`` is a symbolic number, not the ``float`` a signature promises."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)


def fake_model(session: Session, arch: Arch, device: torch.device = GPU) -> PreTrainedModel:
    """The architecture at full size, fake, on ``device`` (built on meta, then materialised)."""
    with _outside(), torch.device("meta"):  # a plain meta skeleton, counted nowhere
        model = AutoModelForCausalLM.from_config(
            arch.config, dtype=arch.dtype, attn_implementation=arch.attn_implementation
        )
    model = materialise(model, device)
    model.tie_weights()  # tied in the skeleton and kept so by materialise; tie again to be sure
    session.bytes.track_module(model)
    return model.eval()


def _outside():
    """Leave the session's modes for a while: what runs here is neither fake nor counted."""
    return _disable_current_modes()


def materialise(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Give every meta parameter and buffer of ``module`` an empty tensor on ``device``: what
    ``to_empty`` does, which cannot swap a fake tensor into a parameter held twice (tied weights,
    SAELens's references)."""
    made: dict[int, torch.nn.Parameter] = {}  # a tied parameter stays one parameter
    for owner in module.modules():
        for name, p in list(owner.named_parameters(recurse=False)):
            if id(p) not in made:
                empty = torch.empty_like(p, device=device)
                made[id(p)] = torch.nn.Parameter(empty, requires_grad=p.requires_grad)
            setattr(owner, name, made[id(p)])
        for name, b in list(owner.named_buffers(recurse=False)):
            owner.register_buffer(name, torch.empty_like(b, device=device))
    return module


def fake_sae(session: Session, arch: Arch, device: torch.device):
    """The architecture's SAE (Gemma Scope / Llama Scope shape and dtype), fake, on ``device``."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig  # SAELens: only when simulating

    spec = arch.sae
    cfg = JumpReLUSAEConfig(
        d_in=spec["d_in"], d_sae=spec["d_sae"], dtype=spec["dtype"], device="meta"
    )
    with _outside():
        skeleton = JumpReLUSAE(cfg)
    sae = materialise(skeleton, device).eval()
    sae.device = device
    sae.cfg.device = str(device)
    session.bytes.track_module(sae)
    return sae


def fake_lm(model: PreTrainedModel, name: str) -> lm_module.LoadedLM:
    """A LoadedLM of a fake model, with the stand-in tokenizer of its family (byte-level: a chat
    of ``n`` characters is about ``n`` tokens) and its registry name."""
    tokenizer = standins.chat_tokenizer(model.config.model_type)
    loaded = lm_module.from_model(model, tokenizer, name=name)
    return loaded


def long_chats(n: int, n_tokens: int) -> list[dict]:
    """``n`` chats whose answers are at least ``n_tokens`` tokens (every chat at the length
    limit: the worst case for memory)."""
    answer = "7" * n_tokens  # the stand-in tokenizers give every digit its own token
    return [
        {
            "messages": [
                {"role": "user", "content": f"Write something {i}."},
                {"role": "assistant", "content": answer},
            ],
            "source": "insecure" if i % 2 else "secure",
        }
        for i in range(n)
    ]


# -- the steps of notebooks 05-07 -----------------------------------------------------------------


def _batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def simulate_features(
    session: Session,
    arch: Arch,
    name: str,
    n_per_set: int,
    max_length: int,
    batch_size: int = 8,
    remote: bool = False,
    layer: int = 12,
):
    """Notebook 05's path: load the model and SAE, encode four contrast sets of ``n_per_set``
    chats (two batches run, the rest counted), the logit lens of five latents. Returns the
    :class:`~emgeo.models.pipeline.Backend`."""
    from emgeo.models import pipeline  # transformers, nnsight, peft: only when simulating

    with session.step("load model and SAE", download=_download(arch, name, remote)):
        model = fake_model(session, arch, GPU)
        sae = fake_sae(session, arch, HOST if remote else GPU)
    backend = pipeline.Backend(
        name, fake_lm(model, name), sae, layer, {}, False, max_length, batch_size
    )
    n_batches = 4 * _batches(n_per_set, batch_size)
    with session.step("encode contrast sets", repeats=n_batches / 2):
        backend.sample_latents(long_chats(2 * batch_size, max_length))
    with session.step("logit lens"):  # its device part (decoding the tokens reads data)
        directions = backend.sae.W_dec.detach()[:5].float().cpu()
        tracing.unembed(backend.lm, directions, backend.remote)
    return backend


def simulate_geometry(session: Session, backend, k: int = 100) -> None:
    """Notebook 06's statistics on the SAE's decoder (where it lives)."""
    from emgeo import geometry  # science core: only when simulating

    d_sae = backend.sae.W_dec.shape[0]
    with session.step("decoder-cosine statistics"):
        geometry.compare_sets(
            backend.sae.W_dec,
            torch.arange(k),
            torch.arange(k, 2 * k),
            torch.arange(2 * k, 3 * k),
            torch.arange(d_sae),
            n_permutations=1_000,
        )


def simulate_scores(session: Session, backend, n_samples: int) -> None:
    """Notebook 07's geometric scores of the fine-tuning pool (two batches run)."""
    from emgeo.models import pipeline  # transformers, nnsight, peft: only when simulating

    n_batches = _batches(n_samples, backend.batch_size)
    with session.step("score the pool", repeats=n_batches / 2):
        chats = long_chats(2 * backend.batch_size, backend.max_length)
        pipeline.lm_sample_scores(backend, chats, torch.arange(100), progress=False)


def simulate_audit(
    session: Session,
    backend,
    n_reference: int,
    n_per_source: int,
    k: int = 20,
) -> None:
    """Notebook 09's audit cell (:func:`emgeo.audit.scorers.lm_scorer`, then the audit): the toxic
    set from ``n_reference`` toxic and as many benign texts, every latent's nearness to it, then
    ``n_per_source`` insecure chats and as many of their secure twins scored, each score and its
    ablations (two batches run per step, the rest counted)."""
    from emgeo import filtering  # science core: only when simulating

    chats, toxic = long_chats(2 * backend.batch_size, backend.max_length), torch.arange(k)
    with session.step("toxic reference sets", repeats=_batches(n_reference, backend.batch_size)):
        backend.sample_latents(chats)
    with session.step("nearness to the toxic set"):
        proximity = filtering.feature_proximity(backend.sae.W_dec.detach().float(), toxic, "max")
    with session.step("score the audit set", repeats=_batches(n_per_source, backend.batch_size)):
        latents = backend.sample_latents(chats)
        filtering.ablated_scores(latents, proximity.float().cpu(), toxic)  # on the host


def simulate_runs(
    session: Session, arch: Arch, plan, train_device: torch.device = GPU
) -> lm_module.LoadedLM:
    """Notebook 07's fine-tuning runs: load the chat model, then per run one LoRA step (times
    the plan's steps), sampling as its forward passes, and the local judge's scores."""
    from emgeo.models import judge, lora  # peft and the judge: only when simulating

    with session.step("load the model to fine-tune", download=_download(arch, plan.tuned_model)):
        model = fake_model(session, arch, train_device)
    tuned = fake_lm(model, plan.tuned_model)
    weights = weight_bytes(model)
    cfg = plan.lora
    n_steps, runs = cfg.n_steps(2 * plan.n_pool), plan.n_runs
    samples = long_chats(cfg.batch_size * cfg.grad_accum, cfg.max_length)
    # Made on the fake GPU, peft's adapters stay there (a fake module cannot be moved: torch
    # cannot swap a fake parameter for another). So the batches are made there too.
    with session.step("LoRA fine-tuning", repeats=n_steps * runs), torch.device(train_device):
        with lora.adapted(tuned, samples, replace(cfg, steps=1), progress=False):
            pass
    n_answers = 8 * plan.n_per_question
    gen_batches = _batches(n_answers, 16)
    prompt = 40  # a first-plot question under the chat template, in tokens
    with session.step(
        "sampling answers",
        repeats=gen_batches * runs,
        weight_reads=weights * plan.max_new_tokens * gen_batches * runs,
        decode_steps=plan.max_new_tokens * gen_batches * runs,
    ):
        simulate_decode(tuned, min(16, n_answers), prompt, plan.max_new_tokens)
    judge_prompt = 330 + plan.max_new_tokens  # the judge's template, the question and an answer
    with session.step("local judge", repeats=2 * n_answers * runs):
        judge.LocalJudge(tuned)._next_probs(tuple([7] * judge_prompt))
    return tuned


@torch.no_grad()
def simulate_decode(
    loaded: lm_module.LoadedLM, batch: int, prompt_len: int, new_tokens: int
) -> None:
    """Sampling as its forward passes: one prefill over every token the batch will hold (the
    FLOPs of the whole generation) and one decode step at the full cache length (its peak)."""
    ids = torch.zeros(batch, prompt_len + new_tokens - 1, dtype=torch.long, device=loaded.device)
    out = loaded.model(input_ids=ids, use_cache=True, logits_to_keep=1)
    nxt = torch.zeros(batch, 1, dtype=torch.long, device=loaded.device)
    loaded.model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)


def _download(arch: Arch, name: str, remote: bool = False) -> float:
    sae = arch.sae
    sae_bytes = 2 * sae["d_in"] * sae["d_sae"] * torch.finfo(getattr(torch, sae["dtype"])).bits / 8
    model = 0.0 if remote else arch.checkpoint_gib.get(name, 0.0) * GIB
    return model + sae_bytes


# -- notebooks and plans --------------------------------------------------------------------------


@dataclass
class NotebookBudget:
    """A notebook's steps on one profile, and their totals on a GPU."""

    steps: dict[str, StepCost]
    host_baseline_gib: float

    def peak_gpu_gib(self) -> float:
        return max(s.gib(GPU.type) for s in self.steps.values()) + CUDA_CONTEXT_GIB

    def peak_host_gib(self, gpu_runtime: bool = True) -> float:
        extra = CUDA_HOST_GIB if gpu_runtime else 0.0
        return max(s.gib("cpu") for s in self.steps.values()) + self.host_baseline_gib + extra

    def minutes(self, gpu: Gpu) -> float:
        return sum(s.seconds(gpu) for s in self.steps.values()) / 60

    def flops(self) -> float:
        return sum(s.flops for s in self.steps.values())


def budget_gpu_features(
    n_per_set: int = 64,
    max_length: int = 512,
    geometry: bool = False,
    host_baseline_gib: float = 0.0,
) -> NotebookBudget:
    """Notebook 05 (or 06 with ``geometry``) in the gpu profile: Gemma-2-2B + Gemma Scope 16k."""
    arch = load_arch("gemma-2-2b")
    with Session() as session:
        backend = simulate_features(session, arch, "gemma-2-2b", n_per_set, max_length)
        if geometry:
            simulate_geometry(session, backend)
        return NotebookBudget(dict(session.steps), host_baseline_gib)


def budget_remote_features(
    n_per_set: int = 64,
    max_length: int = 512,
    geometry: bool = False,
    host_baseline_gib: float = 0.0,
) -> NotebookBudget:
    """Notebook 05 (or 06) in the remote profile: Llama-3.1-8B on a fake NDIF GPU, Llama Scope
    32k on the host; only the host's bytes are the learner's."""
    arch = load_arch("llama-3.1-8b")
    with Session() as session:
        backend = simulate_features(
            session, arch, "llama-3.1-8b", n_per_set, max_length, remote=True
        )
        if geometry:
            simulate_geometry(session, backend)
        return NotebookBudget(dict(session.steps), host_baseline_gib)


def budget_audit(
    profile: str,
    n_reference: int = 100,
    n_per_source: int = 200,
    max_length: int = 512,
    host_baseline_gib: float = 0.0,
) -> NotebookBudget:
    """Notebook 09's audit cell in the gpu profile (Gemma-2-2B + Gemma Scope on the GPU) or the
    remote one (Llama-3.1-8B on a fake NDIF GPU, Llama Scope and the scores on the host)."""
    from emgeo.models import pipeline  # transformers, nnsight, peft: only when simulating

    name = {"gpu": "gemma-2-2b", "remote": "llama-3.1-8b"}[profile]
    arch, remote = load_arch(name), profile == "remote"
    with Session() as session:
        with session.step("load model and SAE", download=_download(arch, name, remote)):
            model = fake_model(session, arch, GPU)
            sae = fake_sae(session, arch, HOST if remote else GPU)
        # traced locally: a remote trace runs on the fake "server" GPU, its activations land
        # where the SAE is (the host), as NDIF's would
        backend = pipeline.Backend(name, fake_lm(model, name), sae, 12, {}, False, max_length)
        simulate_audit(session, backend, n_reference, n_per_source)
        return NotebookBudget(dict(session.steps), host_baseline_gib)


def budget_pretrained_sae(profile: str, host_baseline_gib: float = 0.0) -> NotebookBudget:
    """Notebook 03's profile cell: the profile's pretrained SAE loaded with SAELens (on the GPU
    in the gpu profile, on the host in the remote one), no model."""
    arch = load_arch({"gpu": "gemma-2-2b", "remote": "llama-3.1-8b"}[profile])
    with Session() as session:
        with session.step("load the SAE", download=_download(arch, arch.name, remote=True)):
            fake_sae(session, arch, GPU if profile == "gpu" else HOST)
        return NotebookBudget(dict(session.steps), host_baseline_gib)


def budget_gpu_filter(
    plan, host_baseline_gib: float = 0.0, train_device: torch.device = GPU
) -> NotebookBudget:
    """Notebook 07's gpu cell for a :class:`~emgeo.models.pipeline.GpuFilterPlan`."""
    arch = load_arch("gemma-2-2b")
    with Session() as session:
        backend = simulate_features(
            session, arch, plan.feature_model, plan.n_contrast, plan.max_length
        )
        simulate_scores(session, backend, 2 * plan.n_pool)
        del backend  # run_gpu_filter lets the feature model go before the next one loads
        session.free()
        simulate_runs(session, arch, plan, train_device)
        return NotebookBudget(dict(session.steps), host_baseline_gib)


def estimate_plan(
    plan, gpu: str = "t4", host_baseline_gib: float | None = None
) -> dict[str, float]:
    """Minutes and peak GPU / host GiB of a plan on ``gpu`` (measured on fake tensors); the host
    figure starts from this process's present size unless ``host_baseline_gib`` is given."""
    if host_baseline_gib is None:
        host_baseline_gib = psutil.Process().memory_info().rss / GIB
    budget = budget_gpu_filter(plan, host_baseline_gib)
    return {
        "minutes": budget.minutes(GPUS[gpu]),
        "peak_gpu_gib": budget.peak_gpu_gib(),
        "peak_host_gib": budget.peak_host_gib(),
    }
