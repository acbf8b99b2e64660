"""The course's plot style, and the array conversion every figure shares."""

from __future__ import annotations

import matplotlib as mpl
import seaborn as sns


def set_style() -> None:
    """The course's plot style: seaborn's whitegrid, a colour-blind-safe palette, fixed sizes."""
    sns.set_theme(style="whitegrid", palette="colorblind", context="notebook")
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 80,
            "savefig.dpi": 120,
            "axes.titlesize": "medium",
            "svg.hashsalt": "emgeo",  # deterministic SVG ids
        }
    )


def as_numpy(t):
    """A tensor (on any device, with or without grad) as a NumPy array; anything else as is."""
    return t.detach().cpu().numpy() if hasattr(t, "detach") else t
