"""Figures of the toy models: feature similarity (00), superposition (01), neighbour-feature
drag (02) and sparse autoencoders (03)."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from emgeo.plotting.style import as_numpy
from emgeo.stats import t_interval


def similarity_heatmap(
    similarity, labels: list[str] | None = None, title: str = "", ax=None, annotate: bool = True
):
    """A square heatmap of a similarity matrix in [-1, 1] (feature cosines); returns the axes."""
    values = as_numpy(similarity)
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


# ---------------------------------------------------------------- 01 toy superposition

STICKY_FRACTIONS = {
    "1": 1.0,
    "3/4": 0.75,
    "2/3": 2 / 3,
    "1/2": 0.5,
    "2/5": 0.4,
    "3/8": 0.375,
    "1/3": 1 / 3,
}


def gram_grid(Ws, titles: list[str], suptitle: str = ""):
    """W^T W for several models side by side, with each feature's norm ||W_i|| below."""
    n = len(Ws)
    fig, axes = plt.subplots(
        2,
        n,
        figsize=(2.0 * n + 1.4, 4.6),
        height_ratios=[3, 1],
        squeeze=False,
        layout="constrained",
    )
    for k, (W, title) in enumerate(zip(Ws, titles, strict=True)):
        gram = as_numpy(W.T @ W)
        n_feats = gram.shape[0]
        image = axes[0, k].imshow(gram, cmap="RdBu_r", vmin=-1.2, vmax=1.2)
        axes[0, k].set_title(title)
        axes[0, k].set_xticks(range(n_feats)), axes[0, k].set_yticks(range(n_feats))
        axes[0, k].tick_params(labelsize="x-small", length=0)
        axes[0, k].grid(False)
        axes[0, k].set_xlabel("feature j", fontsize="small")
        norms = as_numpy(W.norm(dim=0))
        axes[1, k].bar(range(n_feats), norms, color=plt.cm.viridis(np.linspace(0, 1, n_feats)))
        axes[1, k].set_ylim(0, 1.3)
        axes[1, k].set_xticks(range(n_feats))
        axes[1, k].tick_params(axis="x", labelsize="x-small")
        axes[1, k].set_xlabel("feature i", fontsize="small")
        axes[1, k].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0, 0].set_ylabel("$W^T W$\nfeature i")
    axes[1, 0].set_ylabel(r"$\|W_i\|$")
    fig.suptitle(suptitle)
    colorbar = fig.colorbar(image, ax=list(axes[0]), fraction=0.02, pad=0.01)
    colorbar.set_label(r"$W_i \cdot W_j$")
    return fig


def feature_arrows(Ws, titles: list[str], suptitle: str = ""):
    """Each feature's 2-D direction W_i as an arrow, coloured by feature index (importance rank,
    dark = most important); represented features (||W_i|| > 0.5) carry their index at the tip."""
    n = len(Ws)
    fig, axes = plt.subplots(1, n, figsize=(2.0 * n + 0.4, 2.9), squeeze=False)
    for ax, W, title in zip(axes[0], Ws, titles, strict=True):
        W = as_numpy(W)
        n_feats = W.shape[1]
        colors = plt.cm.viridis(np.linspace(0, 1, n_feats))
        for i in range(n_feats):
            ax.plot([0, W[0, i]], [0, W[1, i]], color=colors[i], lw=1.5, label=f"feature {i}")
            ax.scatter(W[0, i], W[1, i], color=colors[i], s=18, zorder=3)
            norm = float(np.hypot(W[0, i], W[1, i]))
            if norm > 0.5:
                tip = W[:, i] / norm * (norm + 0.28)
                ax.text(tip[0], tip[1], str(i), fontsize="x-small", ha="center", va="center")
        ax.set_xlim(-1.6, 1.6), ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title)
    axes[0, 0].set_xlabel("hidden dim 1", fontsize="small")
    axes[0, 0].set_ylabel("hidden dim 2", fontsize="small")
    if n > 1:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small")
    fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0.1 if n > 1 else 0, 1, 1))
    return fig


def norms_across_sparsity(sparsities, W, ax=None):
    """||W_i|| of every feature against the sparsity S; W is (sparsity, d_hidden, feats)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    norms = as_numpy(W.norm(dim=1))
    x = [1 / (1 - s) for s in sparsities]
    for i in range(norms.shape[1]):
        ax.plot(
            x,
            norms[:, i],
            marker="o",
            color=plt.cm.viridis(i / max(norms.shape[1] - 1, 1)),
            label=f"feature {i}",
        )
    ax.set_xscale("log")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("1 / (1 - S)   (sparser to the right)")
    ax.set_ylabel(r"$\|W_i\|$")
    ax.set_title("Which features get represented, as sparsity grows")
    ax.legend(fontsize="small", ncol=1, loc="center left", bbox_to_anchor=(1, 0.5))
    return ax


def dimensionality_scatter(sparsities, D, ax=None):
    """Feature dimensionality of every feature at every sparsity, with the sticky fractions
    labelled at the right edge (labels pushed apart where fractions lie close)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    D = as_numpy(D)
    for k, s in enumerate(sparsities):
        ax.scatter([1 / (1 - s)] * D.shape[1], D[k], s=10, alpha=0.6, color="C0")
    label_y = 2.0
    transform = mpl.transforms.blended_transform_factory(ax.transAxes, ax.transData)
    for label, value in sorted(STICKY_FRACTIONS.items(), key=lambda item: -item[1]):
        ax.axhline(value, color="grey", lw=0.6, ls=":")
        label_y = min(value, label_y - 0.055)
        ax.annotate(
            label,
            xy=(1.0, value),
            xytext=(1.03, label_y),
            xycoords=transform,
            textcoords=transform,
            fontsize="x-small",
            va="center",
            arrowprops=dict(arrowstyle="-", color="grey", lw=0.5),
        )
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 - S)")
    ax.set_ylabel("feature dimensionality $D_i$")
    ax.set_title("Dimensionality sticks at simple fractions")
    return ax


def toy_explorer(sweep):
    """An ipywidgets explorer: pick a sparsity and an importance decay, see the trained geometry."""

    def show(sparsity: float, decay: float):
        W, _ = sweep.condition(sparsity, decay)
        fig = feature_arrows([W], [f"S = {sparsity}, I_i = {decay}^i"])
        plt.show(fig)

    return widgets.interactive(
        show,
        sparsity=widgets.SelectionSlider(
            options=sweep.sparsities,
            value=sweep.sparsities[-1],
            description="sparsity S",
            continuous_update=False,
        ),
        decay=widgets.SelectionSlider(
            options=sweep.decays,
            value=sweep.decays[-1],
            description="decay",
            continuous_update=False,
        ),
    )


# ---------------------------------------------------------------- 02 neighbor-feature drag


def drag_scatter(predicted, measured, seeds, title: str, ax=None):
    """Measured vs predicted change of every non-target feature, one colour per seed."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.8))
    predicted, measured, seeds = as_numpy(predicted), as_numpy(measured), as_numpy(seeds)
    for s in sorted(set(seeds.tolist())):
        keep = seeds == s
        ax.scatter(predicted[keep], measured[keep], s=8, alpha=0.6, label=f"seed {s}")
    lo, hi = min(predicted.min(), measured.min()), max(predicted.max(), measured.max())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="measured = predicted")
    ax.set_xlabel(r"predicted  $\alpha\, x_t \langle W_j, W_t \rangle$")
    ax.set_ylabel("measured change")
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(5))
    ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(5))
    ax.set_title(title)
    ax.legend(fontsize="x-small", loc="lower right")
    return ax


def drag_breakdown(steps, curves: dict, ylabel: str, title: str, ax=None):
    """One line per variant of how the prediction fares as fine-tuning goes on."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.4))
    for label, values in curves.items():
        ax.plot(steps, values, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("fine-tuning steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def grouped_bars(table, x: str, y: str, hue: str | None = None, title: str = "", ax=None):
    """A seaborn bar plot (mean and 95% t-interval over seeds) with the per-seed points on top."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.4))
    data = pd.DataFrame(table)
    sns.barplot(data=data, x=x, y=y, hue=hue, ax=ax, errorbar=t_interval, alpha=0.8)
    points = {"palette": "dark:black"} if hue else {"color": "black"}
    sns.stripplot(
        data=data, x=x, y=y, hue=hue, ax=ax, dodge=hue is not None, size=3, legend=False, **points
    )
    ax.set_title(title)
    return ax


# ---------------------------------------------------------------- 03 sparse autoencoders


def recovery_bars(max_cosine, ax=None):
    """For every true feature, its best cosine with any SAE latent."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    values = as_numpy(max_cosine)
    ax.bar(range(len(values)), values, color="C0")
    ax.axhline(0.9, color="grey", ls="--", lw=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(range(len(values)))  # one integer tick per feature
    ax.tick_params(axis="x", labelsize="small")
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_xlabel("true feature")
    ax.set_ylabel("best cosine with a latent")
    ax.set_title("Does the SAE find the toy model's features?")
    return ax


def density_histogram(frequency, ax=None):
    """Histogram of log10 firing frequency of SAE latents; dead latents counted in the title."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    freq = as_numpy(frequency)
    alive = freq[freq > 0]
    ax.hist(np.log10(alive), bins=40, color="C0")
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("latents")
    ax.set_title(f"Latent density ({(freq == 0).sum()} of {len(freq)} latents never fire)")
    return ax
