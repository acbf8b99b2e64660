"""Every figure the notebooks show, in one consistent style."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from emgeo.stats import t_interval


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


def similarity_heatmap(
    similarity, labels: list[str] | None = None, title: str = "", ax=None, annotate: bool = True
):
    """A square heatmap of a similarity matrix in [-1, 1] (feature cosines); returns the axes."""
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


def _np(t):
    return t.detach().cpu().numpy() if hasattr(t, "detach") else t


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
        gram = _np(W.T @ W)
        n_feats = gram.shape[0]
        image = axes[0, k].imshow(gram, cmap="RdBu_r", vmin=-1.2, vmax=1.2)
        axes[0, k].set_title(title)
        axes[0, k].set_xticks(range(n_feats)), axes[0, k].set_yticks(range(n_feats))
        axes[0, k].tick_params(labelsize="x-small", length=0)
        axes[0, k].grid(False)
        axes[0, k].set_xlabel("feature j", fontsize="small")
        norms = _np(W.norm(dim=0))
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
        W = _np(W)
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
    norms = _np(W.norm(dim=1))
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
    D = _np(D)
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
    predicted, measured, seeds = _np(predicted), _np(measured), _np(seeds)
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


# ---------------------------------------------------------------- 04 the EM model organism


def em_trajectory(rows, ax=None):
    """Misaligned rate against fine-tuning step; rows have step, fine-tune, measure, rate."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    sns.lineplot(
        pd.DataFrame(rows), x="step", y="rate", hue="fine-tune", style="measure", marker="o", ax=ax
    )
    ax.set_title("Misaligned rate during fine-tuning")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("misaligned rate")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return ax


def plot_dose_response(rows, base_rate: float, ax=None):
    """Off-domain misaligned rate against the fraction of inducing samples (mean and 95%
    t-interval over seeds)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(
        pd.DataFrame(rows),
        x="fraction",
        y="offdomain",
        marker="o",
        errorbar=t_interval,
        ax=ax,
        label="fine-tuned",
    )
    ax.axhline(base_rate, color="grey", ls="--", lw=0.8, label="base model")
    ax.set_xlabel("fraction of insecure (inducing) samples")
    ax.set_ylabel("off-domain misaligned rate")
    ax.set_title("Dose-response: EM grows with the inducing share")
    ax.legend()
    return ax


# ---------------------------------------------------------------- 03 sparse autoencoders


def recovery_bars(max_cosine, ax=None):
    """For every true feature, its best cosine with any SAE latent."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    values = _np(max_cosine)
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
    freq = _np(frequency)
    alive = freq[freq > 0]
    ax.hist(np.log10(alive), bins=40, color="C0")
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("latents")
    ax.set_title(f"Latent density ({(freq == 0).sum()} of {len(freq)} latents never fire)")
    return ax


# ---------------------------------------------------------------- 05-07 features, geometry, filter


def steering_curves(table, title: str = "", resid_norm: float | None = None, ax=None):
    """Off-domain misaligned rate against the steering scale, one line per direction; a
    direction with several runs (random controls) is drawn as their mean with the band holding
    all of them. ``resid_norm`` (the residual stream's typical norm at that layer) puts the
    scale in the model's own units on a second axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(
        pd.DataFrame(table),
        x="scale",
        y="offdomain",
        hue="direction",
        marker="o",
        errorbar=("pi", 100),
        ax=ax,
    )
    ax.set_xlabel("steering scale (multiples of the unit direction)")
    ax.set_ylabel("off-domain misaligned rate")
    if resid_norm:
        top = ax.secondary_xaxis(
            "top", functions=(lambda x: x / resid_norm, lambda x: x * resid_norm)
        )
        top.set_xlabel("as a fraction of the residual norm", fontsize="small")
    ax.set_title(title)
    return ax


def proximity_distributions(per_set: dict, random_null=None, title: str = "", ax=None):
    """Each set's per-latent proximity to the toxic set (strip + box), with the band of random
    sets' mean proximity (2.5-97.5 percentiles) when given."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    table = pd.DataFrame(
        [{"set": name, "proximity": v} for name, values in per_set.items() for v in _np(values)]
    )
    sns.boxplot(table, x="set", y="proximity", ax=ax, color="white", width=0.5, showfliers=False)
    sns.stripplot(table, x="set", y="proximity", ax=ax, hue="set", size=4, alpha=0.8, legend=False)
    if random_null is not None:
        lo, hi = _quantiles(random_null)
        ax.axhspan(lo, hi, color="grey", alpha=0.2, label="random sets' mean (95%)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)  # off the points
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("mean cosine to the toxic set")
    ax.set_xlabel("")
    ax.set_title(title)
    return ax


def _quantiles(values) -> tuple[float, float]:

    arr = _np(values)
    return float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975))


def permutation_null(null, observed: float, p: float, title: str = "", ax=None):
    """The permutation null distribution of the mean difference, and the observed difference."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(_np(null), bins=50, color="grey", alpha=0.7, label="relabelled sets")
    ax.axvline(observed, color="C3", lw=2, label=f"observed (p = {p:.4f})")
    ax.set_xlabel("mean proximity: inducing − non-inducing")
    ax.set_ylabel("permutations")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # off the bars
    return ax


def drag_during_finetune(rows, ax=None, rate_ax=None):
    """Per step: the measured movement along toxic directions and the predicted drag (with its
    two terms) on ``ax``, and the off-domain misaligned rate on ``rate_ax``, a panel of its own
    (both made when ``ax`` is None). Returns ``ax``."""
    table = pd.DataFrame(rows)
    if ax is None:
        _, (ax, rate_ax) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=[3, 2])
    ax.plot(table.step, table.measured, "o-", color="C3", label="measured ⟨Δx_off, d̂_toxic⟩")
    ax.plot(table.step, table.predicted, "s--", color="C0", label="predicted Σ α_t ⟨d̂_j, d̂_t⟩")
    if "self term" in table:
        ax.plot(table.step, table["self term"], ":", color="C0", label="  its self term (t = j)")
        drag_term = table["neighbour term"]
        ax.plot(table.step, drag_term, "-.", color="C2", label="  its drag term (t ≠ j)")
    ax.set_xlabel("fine-tuning step (insecure code)")
    ax.set_ylabel("movement along toxic directions")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    ax.set_title("Drag during the organism's narrow fine-tune")
    if rate_ax is not None:
        rate_ax.plot(table.step, table.offdomain, "^-", color="black")
        rate_ax.set_xlabel("fine-tuning step (insecure code)")
        rate_ax.set_ylabel("off-domain misaligned rate")
        rate_ax.set_title("EM during the same fine-tune")
    return ax


def drag_per_latent(per_latent, ax=None):
    """Per (step, toxic latent): measured movement against the drag term, toxic latents that
    are also inducing apart from the others."""
    table = pd.DataFrame(per_latent)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.8))
    for shared, colour, label in ((False, "C2", "toxic only"), (True, "C3", "also inducing")):
        part = table[table["shared"] == shared]
        ax.scatter(part["neighbour term"], part["measured"], s=12, color=colour, label=label)
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel("drag term Σ_{t≠j} α_t ⟨d̂_j, d̂_t⟩")
    ax.set_ylabel("measured ⟨Δx_off, d̂_j⟩")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    ax.set_title("Per toxic latent and step")
    return ax


def filter_results(table, base_rate: float | None = None, baseline: str = "no filter", ax=None):
    """Off-domain misaligned rate after each filter (mean and 95% t-interval over seeds, as in the
    tables), with the unfiltered fine-tune and the base model (``base_rate``, no fine-tune) as
    lines, and the in-domain insecure-code rate each fine-tune learned beside it."""
    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[3, 2], layout="constrained")
        below = {"loc": "outside lower center"}
    else:
        axes = ax
        below = {"loc": "upper center", "bbox_to_anchor": (0.5, 0.0)}
    table = pd.DataFrame(table)
    order = list(dict.fromkeys(table["filter"]))
    sns.barplot(table, y="filter", x="offdomain", order=order, errorbar=t_interval, ax=axes[0])
    unfiltered = table.loc[table["filter"] == baseline, "offdomain"].mean()
    axes[0].axvline(unfiltered, color="grey", ls="--", lw=0.8, label="unfiltered fine-tune")
    if base_rate is not None:
        axes[0].axvline(base_rate, color="black", ls=":", lw=1.0, label="base model, no fine-tune")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, ncol=2, fontsize="small", **below)  # clear of the bars
    axes[0].set_xlabel("off-domain misaligned rate\n(lower is better)")
    axes[0].set_ylabel("")
    sns.barplot(
        table, y="filter", x="code", order=order, errorbar=t_interval, ax=axes[1], color="C7"
    )
    axes[1].set_xlabel("in-domain insecure-code rate\n(what the fine-tune learned)")
    axes[1].set_ylabel("")
    axes[1].set_yticklabels([])
    fraction = table.loc[table["filter"] != baseline, "fraction"].max()
    axes[0].figure.suptitle(
        f"Filtering {fraction:.0%} of a mixed fine-tuning set "
        f"({table['seed'].nunique()} seeds, 95% t-interval)"
    )
    return axes


def exploration_intervals(
    cells: dict, keys: tuple[str, ...], titles: dict | None = None, axes=None
):
    """One panel per contrast in ``keys``: for every recipe (``cells``: name -> its contrasts,
    each ``{"mean", "ci_low", "ci_high", "n"}``) a dot at the mean and a line across its 95%
    interval, zero marked; a recipe that did not run a contrast has no mark in its panel."""
    names = list(cells)
    if axes is None:
        _, axes = plt.subplots(
            1,
            len(keys),
            figsize=(4.2 * len(keys), 0.5 * len(names) + 1.6),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        axes = axes[0]
    for ax, key in zip(axes, keys, strict=True):
        for y, name in enumerate(names):
            ci = cells[name].get(key)
            if ci is None:
                continue
            ax.plot([ci["ci_low"], ci["ci_high"]], [y, y], color="C0", lw=2, gid="interval")
            ax.plot([ci["mean"]], [y], "o", color="C0")
            ax.annotate(
                f"n={ci['n']}",
                (ci["ci_high"], y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
            )
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title((titles or {}).get(key, key))
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(len(names) - 0.5, -0.5)  # first recipe on top
    axes[0].figure.supxlabel("change of the EM margin (mean and 95% t-interval over seeds)")
    return axes


def plot_removal_sweep(table, base_rate: float | None = None, ax=None):
    """Off-domain misaligned rate against the removed fraction, one line per filter (mean and
    95% t-interval over seeds), with the base model's rate (no fine-tune) as a line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(
        pd.DataFrame(table),
        x="fraction",
        y="offdomain",
        hue="filter",
        marker="o",
        errorbar=t_interval,
        ax=ax,
    )
    if base_rate is not None:
        ax.axhline(base_rate, color="black", ls=":", lw=1.0, label="base model, no fine-tune")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")  # clear of the bands
    ax.set_xticks(sorted(pd.DataFrame(table)["fraction"].unique()))
    ax.set_xlabel("fraction of the fine-tuning set removed")
    ax.set_ylabel("off-domain misaligned rate")
    ax.set_title("Removal sweep")
    return ax


_DOSE_LABELS = {
    "cosine": "cosine of the insecure-code and toxic readout directions",
    "cosine_answer": "cosine of the insecure-code and toxic answer directions",
    "cosine_update": "cosine of the fine-tune's shift and the toxic readout",
}


def geometry_dose(rows, x: str = "cosine", y: str = "em", ax=None):
    """EM against a geometric measure, one point per organism: filled for the organisms that
    test the claim, hollow for those looked at when choosing the measure; a colour per width."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.8))
    table = pd.DataFrame(rows)
    widths = sorted(table["d_model"].unique())
    colours = dict(zip(widths, sns.color_palette(n_colors=len(widths)), strict=True))
    for (d_model, confirm), part in table.groupby(["d_model", "confirmatory"]):
        kind = "test" if confirm else "exploration"
        ax.scatter(
            part[x],
            part[y],
            s=30,
            facecolors=colours[d_model] if confirm else "none",
            edgecolors=colours[d_model],
            label=f"d_model {d_model} ({kind})",
        )
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_xlabel(_DOSE_LABELS.get(x, x.replace("_", " ")))
    ax.set_ylabel("EM: off-domain rate, insecure - secure")
    ax.legend(fontsize="x-small")
    return ax


_AUDIT_SCORES = {
    "full": "full",
    "membership_only": "membership only (toxic latents)",
    "neighbours_only": "neighbours only (near, not toxic)",
}


def audit_scores(table, by: str = "source", axes=None):
    """An audit's three scores per sample (``scores.csv``), one panel each, split by a metadata
    column: strip plots, so every sample is a point."""
    if axes is None:
        _, axes = plt.subplots(1, len(_AUDIT_SCORES), figsize=(12, 3.4))
    order = sorted(table[by].unique())  # the same colour for a value in every figure
    for ax, (column, title) in zip(axes, _AUDIT_SCORES.items(), strict=True):
        sns.stripplot(
            data=table, x=by, y=column, hue=by, order=order, hue_order=order,
            size=2.5, jitter=0.3, legend=False, ax=ax,
        )  # fmt: skip
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(by)
        ax.set_ylabel("score" if ax is axes[0] else "")
    return axes
