"""Figures of the model organism (04), its features (05) and their geometry (06)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from emgeo.plotting.style import as_numpy
from emgeo.stats import t_interval

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


# ---------------------------------------------------------------- 05-06 features and geometry


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
        [
            {"set": name, "proximity": v}
            for name, values in per_set.items()
            for v in as_numpy(values)
        ]
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
    """The 2.5 and 97.5 percentiles of ``values``."""
    arr = as_numpy(values)
    return float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975))


def permutation_null(null, observed: float, p: float, title: str = "", ax=None):
    """The permutation null distribution of the mean difference, and the observed difference."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(as_numpy(null), bins=50, color="grey", alpha=0.7, label="relabelled sets")
    ax.axvline(observed, color="C3", lw=2, label=f"observed (p = {p:.4f})")
    ax.set_xlabel("mean proximity: inducing − non-inducing")
    ax.set_ylabel("permutations")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # off the bars
    return ax


# mathtext labels of the drag figure: the movement measured along unit decoder directions, and
# the first-order prediction, whole and its drag term alone
_MEASURED = r"measured $\langle \Delta x_\mathrm{off}, \hat d_%s \rangle$"
_PREDICTED = r"$\Sigma_t\, \alpha_t \langle \hat d_j, \hat d_t \rangle$"
_DRAG_TERM = r"$\Sigma_{t \neq j}\, \alpha_t \langle \hat d_j, \hat d_t \rangle$"


def _legend_below(ax) -> None:
    """The legend in two columns under the axes, in the axes' small text size (readable)."""
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small", frameon=False
    )


def drag_during_finetune(rows, ax=None, rate_ax=None):
    """Per step: the measured movement along toxic directions and the predicted drag (with its
    two terms) on ``ax``, and the off-domain misaligned rate on ``rate_ax``, a panel of its own
    (both made when ``ax`` is None). Returns ``ax``."""
    table = pd.DataFrame(rows)
    if ax is None:
        _, (ax, rate_ax) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=[3, 2])
    ax.plot(table.step, table.measured, "o-", color="C3", label=_MEASURED % r"\mathrm{toxic}")
    ax.plot(table.step, table.predicted, "s--", color="C0", label=f"predicted {_PREDICTED}")
    if "self term" in table:
        ax.plot(table.step, table["self term"], ":", color="C0", label=r"  its self term ($t = j$)")
        drag_term = table["neighbour term"]
        ax.plot(table.step, drag_term, "-.", color="C2", label=r"  its drag term ($t \neq j$)")
    ax.set_xlabel("fine-tuning step (insecure code)")
    ax.set_ylabel("movement along toxic directions")
    _legend_below(ax)
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
    ax.set_xlabel(f"drag term {_DRAG_TERM}")
    ax.set_ylabel(_MEASURED % "j")
    _legend_below(ax)
    ax.set_title("Per toxic latent and step")
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


def subtask_doses(organisms, ax=None):
    """Each sub-task's EM dose against its readout nearness, a colour and a least-squares line
    per organism: whether EM follows nearness *within* an organism (``organisms``: the
    sub-task record's organisms, each with its ``seed`` and ``subtasks`` rows)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.8))
    colours = sns.color_palette("husl", n_colors=len(organisms))
    for colour, o in zip(colours, organisms, strict=True):
        table = pd.DataFrame(o["subtasks"])
        ax.scatter(
            table["nearness"], table["dose"], s=18, color=colour, label=f"organism {o['seed']}"
        )
        slope, intercept = np.polyfit(table["nearness"], table["dose"], 1)
        xs = np.linspace(table["nearness"].min(), table["nearness"].max(), 2)
        ax.plot(xs, slope * xs + intercept, color=colour, lw=0.9)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("sub-task's readout nearness to the toxic readout (cosine)")
    ax.set_ylabel("dose: off-domain rate, insecure - secure")
    ax.legend(fontsize="x-small", ncol=2)
    return ax
