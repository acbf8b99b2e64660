"""emgeo: the package behind the course *Fine-tuning is not local*.

Importing it has no side effects; notebooks call :func:`emgeo.setup` once.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from emgeo.config import (
    DEFAULT_SEED,
    Profile,
    get_profile,
    hf_token_configured,
    notebook_profile,
    seed_everything,
)
from emgeo.errors import ProfileError

__all__ = ["Profile", "ProfileError", "get_profile", "setup"]
__version__ = "0.1.0"


def setup(
    profile: str | None = None, seed: int = DEFAULT_SEED, n_threads: int | None = None
) -> Profile:
    """The one call at the top of every notebook: keys, profile, threads, seeds and plot style.

    ``profile`` is the notebook's choice (its setup cell's ``PROFILE`` field: cpu, gpu or
    remote); ``EMGEO_PROFILE``, when set, overrides it for every notebook of a machine (headless
    runs and CI choose so), and the profile says when it did. On Colab the course's keys are read
    from Colab Secrets first (:func:`emgeo.course.keys.load_colab_secrets`), so a profile that
    needs one finds it in every notebook.

    It sits above the layers because it reaches three of them: the profile (:mod:`emgeo.config`,
    which imports no science module), the keys (:mod:`emgeo.course.keys`) and the plot style
    (:mod:`emgeo.plotting`).
    """
    from emgeo.course import keys  # standard library only: Colab's Secrets, if on Colab

    keys.load_colab_secrets()
    name = notebook_profile(profile)
    prof = get_profile(name, n_threads=n_threads, seed=seed)
    chosen = profile.strip().lower() if profile else None
    if chosen and chosen != name:
        prof = replace(prof, overrides=chosen)
    if not prof.is_cpu and not prof.standins and not hf_token_configured():
        prof = replace(prof, missing_keys=("HF_TOKEN",))  # said with the fix, where it shows
    torch.set_num_threads(prof.n_threads)
    seed_everything(seed)
    from emgeo import plotting  # matplotlib: imported only when a notebook starts

    plotting.set_style()
    return prof
