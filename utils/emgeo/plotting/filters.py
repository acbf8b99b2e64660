"""Figures of the filter (07), the real model's recipes (08) and the audit (09)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from emgeo.stats import t_interval


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


_AUDIT_SCORES = {
    "full": "full",
    "membership_only": "membership only (toxic latents)",
    "neighbours_only": "neighbours only (near, not toxic)",
}


def audit_scores(table, by: str = "source", axes=None):
    """An audit's three scores per sample (``scores.csv``), one panel each, split by a metadata
    column: strip plots, so every sample is a point. The panels share one y-scale (every score
    lies in [0, 1]), so a score that separates nothing looks flat beside one that does."""
    if axes is None:
        _, axes = plt.subplots(1, len(_AUDIT_SCORES), figsize=(12, 3.4), sharey=True)
    order = sorted(table[by].unique())  # the same colour for a value in every figure
    for ax, (column, title) in zip(axes, _AUDIT_SCORES.items(), strict=True):
        sns.stripplot(
            data=table, x=by, y=column, hue=by, order=order, hue_order=order,
            size=2.5, jitter=0.3, legend=False, ax=ax,
        )  # fmt: skip
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(by)
        ax.set_ylabel("score" if ax is axes[0] else "")
    low = min(0.0, float(table[list(_AUDIT_SCORES)].min().min()))
    high = max(float(table[list(_AUDIT_SCORES)].max().max()), 0.05)
    for ax in axes:
        ax.set_ylim(low - 0.02 * (high - low), high + 0.05 * (high - low))
    return axes


def budget_curves(curves: dict[str, list[tuple[float, float, float]]], ax=None):
    """What each budget removes, per score: for every ``(fraction, caught, others)`` the share
    of the inducing samples removed (solid) and of the others (dashed), against the budget; the
    diagonal is a score that knows nothing (random removal takes each class in proportion)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (label, points) in enumerate(curves.items()):
        fractions, caught, others = zip(*points, strict=True)
        ax.plot(fractions, caught, color=f"C{i}", marker="o", ms=3, label=f"{label}: inducing")
        ax.plot(fractions, others, color=f"C{i}", ls="--", label=f"{label}: the rest")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="random removal")
    ax.set_xlabel("budget (share of the set removed)")
    ax.set_ylabel("share of the class removed")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("What the audit removes at each budget")
    return ax
