"""emgeo: the package behind the course *Fine-tuning is not local*.

Importing it has no side effects; notebooks call :func:`emgeo.setup` once.
"""

from __future__ import annotations

import torch

from emgeo.config import DEFAULT_SEED, Profile, get_profile, seed_everything
from emgeo.errors import ProfileError

__all__ = ["Profile", "ProfileError", "get_profile", "setup"]
__version__ = "0.1.0"


def setup(
    profile: str | None = None, seed: int = DEFAULT_SEED, n_threads: int | None = None
) -> Profile:
    """The one call at the top of every notebook: profile, threads, seeds and plot style.

    It sits above the layers because it reaches two of them: the profile (:mod:`emgeo.config`,
    which imports no science module) and the plot style (:mod:`emgeo.plotting`).
    """
    prof = get_profile(profile, n_threads=n_threads, seed=seed)
    torch.set_num_threads(prof.n_threads)
    seed_everything(seed)
    from emgeo import plotting  # matplotlib: imported only when a notebook starts

    plotting.set_style()
    return prof
