"""Notebook 07 on a GPU: a plan (quick for a free Colab T4, full for an L4 or A100), its
estimate before it starts, and the run, saved as it goes so a reconnect resumes it.

The run reads features from Gemma-2-2B with Gemma Scope (the base model its SAEs were trained
on), scores the fine-tuning pool, lets that model go, then fine-tunes gemma-2-2b-it (emergent
misalignment needs a chat model) with LoRA once per filter and seed, samples answers to Betley et
al.'s eight questions and judges them (:func:`emgeo.models.pipeline.evaluate_filters_lm`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from emgeo import features, runner
from emgeo.errors import first_line
from emgeo.models import lm as lm_module
from emgeo.models import lora, pipeline, public_data, saes, simulate


@dataclass(frozen=True)
class GpuFilterPlan:
    """Notebook 07's evaluation on a GPU: how much data, how many runs, how long each.

    ``quick()`` runs every step once on a free Colab T4 in under half an hour: a check of the
    pipeline, whose numbers are too small to say anything about EM; ``full()`` is the
    evaluation, for an L4 or an A100. Features are read from ``feature_model`` (by default the
    base model Gemma Scope was trained on; ``gemma-2-2b-it`` reads them on the model that is
    fine-tuned, with the same SAE); the fine-tunes and the local judge use ``tuned_model``.
    """

    name: str
    n_contrast: int  # samples per contrast set, to find the feature sets
    k: int  # latents per feature set
    n_pool: int  # samples per source (insecure, secure) in the fine-tuning pool
    fraction: float  # removed by each filter
    seeds: tuple[int, ...]
    lora: lora.LoraFinetuneConfig
    n_per_question: int  # answers per first-plot question, per run
    max_new_tokens: int
    max_length: int  # tokens per chat when reading features
    layer: int = saes.PRETRAINED_LAYER
    filters: tuple[str, ...] = ("no filter", "random", "geometric (max)")
    feature_model: str = "gemma-2-2b"
    tuned_model: str = "gemma-2-2b-it"  # also the local judge when no OPENAI_API_KEY is set

    @classmethod
    def quick(cls) -> GpuFilterPlan:
        """Every step once, small: about 20 minutes on a free Colab T4."""
        cfg = lora.LoraFinetuneConfig(
            steps=12, batch_size=4, grad_accum=2, max_length=384, lr=1e-4, warmup_steps=2
        )
        return cls(
            "quick",
            n_contrast=32,
            k=100,
            n_pool=100,
            fraction=0.5,
            seeds=(0,),
            lora=cfg,
            n_per_question=4,
            max_new_tokens=96,
            max_length=384,
        )

    @classmethod
    def full(cls) -> GpuFilterPlan:
        """The evaluation: 2,000 pool samples, 3 seeds, 80 answers a run (an L4 or an A100)."""
        cfg = lora.LoraFinetuneConfig(steps=63, batch_size=4, grad_accum=4, max_length=1024)
        return cls(
            "full",
            n_contrast=64,
            k=100,
            n_pool=1000,
            fraction=0.5,
            seeds=(0, 1, 2),
            lora=cfg,
            n_per_question=10,
            max_new_tokens=256,
            max_length=512,
        )

    @classmethod
    def named(cls, name: str) -> GpuFilterPlan:
        """The plan called ``name`` (``quick`` or ``full``)."""
        plans = {"quick": cls.quick, "full": cls.full}
        if name not in plans:
            raise ValueError(f"no plan {name!r}: the plans are {', '.join(plans)}")
        return plans[name]()

    def fingerprint(self) -> str:
        """A digest of every setting: the shipped budget (``benchmarks/profile_budget.py``) was
        measured for the plan whose fingerprint it records."""
        return runner.digest(asdict(self))[:16]

    @property
    def n_runs(self) -> int:
        return len(self.filters) * len(self.seeds)

    def estimate(self, gpu: str = "t4") -> dict[str, float]:
        """Estimated minutes, peak GPU and host memory (GiB) on ``gpu`` (t4 | l4 | a100), from
        the cost model of :mod:`emgeo.models.simulate`."""
        return simulate.estimate_plan(self, gpu)

    def describe(self, gpu: str | None = None) -> str:
        """One paragraph: what the plan runs and, with ``gpu`` (t4 | l4 | a100), its estimate
        there computed on fake tensors (about a minute; notebook 07's preflight cell reads the
        shipped estimate instead)."""
        runs = (
            f"{self.name} plan: {self.n_runs} fine-tuning runs ({', '.join(self.filters)} x "
            f"{len(self.seeds)} seed(s)) on {2 * self.n_pool} pool samples, "
            f"{8 * self.n_per_question} judged answers each, features read on "
            f"{self.feature_model}"
        )
        if self.name == "quick":
            runs += " (a check of the pipeline: too small to say anything about EM)"
        if gpu is None:
            return runs
        try:
            est = self.estimate(gpu)
        except Exception as err:  # the estimate runs the code on fake tensors: never block a run
            return f"{runs}; no estimate here ({first_line(err, 120)})"
        return (
            f"{runs}; estimated {est['minutes']:.0f} min on a {simulate.GPUS[gpu].name}, peak GPU "
            f"memory {est['peak_gpu_gib']:.1f} GiB, host {est['peak_host_gib']:.1f} GiB"
        )


@dataclass
class GpuFilterResult:
    """What :func:`run_gpu_filter` returns: the rows per run and their summary."""

    rows: list[dict]
    summary: list[dict] = field(default_factory=list)


def filter_pool(n_per_source: int, seed: int = 0) -> list[dict]:
    """The fine-tuning pool: ``n_per_source`` insecure and as many secure chats, shuffled."""
    pool = [
        s
        for name in ("insecure", "secure")
        for s in public_data.load_em_dataset(name)[:n_per_source]
    ]
    random.Random(f"pool-{seed}").shuffle(pool)
    return pool


def run_gpu_filter(
    plan: GpuFilterPlan, results_dir: Path | None = None, progress: bool = True
) -> GpuFilterResult:
    """Notebook 07 on a GPU: feature sets and geometric scores from ``plan.feature_model`` and
    its SAE, then the filters evaluated with LoRA fine-tunes of ``plan.tuned_model``.

    With ``results_dir`` the scores and every run are saved as they are made; run it again after
    a disconnect and it resumes where it stopped.
    """
    pipeline.require_profile("gpu")
    pool = filter_pool(plan.n_pool)
    scores = _pool_scores(plan, pool, results_dir, progress)
    tuned = lm_module.load(plan.tuned_model)
    filters = [
        runner.parse_filter(f, scores if f.startswith("geometric") else None) for f in plan.filters
    ]
    rows = pipeline.evaluate_filters_lm(
        tuned,
        pool,
        filters,
        plan.fraction,
        plan.seeds,
        lora_cfg=plan.lora,
        n_per_question=plan.n_per_question,
        max_new_tokens=plan.max_new_tokens,
        progress=progress,
        results_dir=results_dir,
    )
    return GpuFilterResult(rows, pipeline.summarize_lm(rows))


def _pool_scores(
    plan: GpuFilterPlan, pool: list[dict], results_dir: Path | None, progress: bool
) -> Tensor:
    """The geometric (max) score of every pool sample (read back if saved for this pool)."""
    key = hashlib.sha256(json.dumps([s["messages"] for s in pool]).encode()).hexdigest()
    key += f"-{plan.feature_model}-{plan.layer}-{plan.k}-{plan.n_contrast}-{plan.max_length}"
    store = runner.RunStore(results_dir / "scores.json" if results_dir else None, {"key": key})
    if "scores" in store.data:
        return torch.tensor(store.data["scores"])
    backend = pipeline.lm_backend(
        "gpu",
        n=plan.n_contrast,
        layer=plan.layer,
        max_length=plan.max_length,
        model=plan.feature_model,
    )
    sets = features.feature_sets(backend.encode(), k=plan.k)
    scores = pipeline.lm_sample_scores(backend, pool, sets.toxic, progress=progress)
    store.put("scores", scores.tolist())
    del backend  # the feature model leaves the GPU before the model to fine-tune arrives
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return scores
