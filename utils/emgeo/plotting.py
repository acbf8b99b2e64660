"""Every figure the notebooks show, in one consistent style."""

from __future__ import annotations

import matplotlib as mpl


def set_style() -> None:
    """The course's plot style: seaborn's whitegrid, a colour-blind-safe palette, fixed sizes."""
    import seaborn as sns

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


def similarity_heatmap(
    similarity, labels: list[str] | None = None, title: str = "", ax=None, annotate: bool = True
):
    """A square heatmap of a similarity matrix in [-1, 1] (feature cosines); returns the axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    values = similarity.detach().cpu().numpy() if hasattr(similarity, "detach") else similarity
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    labels = labels or [str(i) for i in range(values.shape[0])]
    sns.heatmap(
        values,
        ax=ax,
        vmin=-1,
        vmax=1,
        cmap="RdBu_r",
        square=True,
        annot=annotate,
        fmt=".2f",
        xticklabels=labels,
        yticklabels=labels,
        cbar_kws={"shrink": 0.8},
    )
    ax.set_title(title)
    ax.set_xlabel("feature")
    ax.set_ylabel("feature")
    return ax
