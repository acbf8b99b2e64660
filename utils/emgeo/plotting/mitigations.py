"""The figure of the mitigations compared (:mod:`emgeo.experiments.mitigations`): the frontier a
team chooses from."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

# What a mitigation must know in advance, as emgeo.mitigations.NEEDS begins, and its colour.
KNOWS = {"nothing": "C7", "data": "C2", "labels": "C1", "a direction": "C0"}


TASK_LABEL = "task kept (in-domain insecure-code rate over no mitigation's)"
CUT_LABEL = "EM cut vs no mitigation\n(mean over organisms, 95% interval)"


def mitigation_frontier(
    pooled: dict[str, dict],
    ax=None,
    reference: str = "no mitigation",
    task_label: str = TASK_LABEL,
    cut_label: str = CUT_LABEL,
):
    """EM cut vs task kept, one point per mitigation with its 95% interval of the EM cut (over
    organisms: ``pooled`` as :func:`emgeo.experiments.mitigations.pooled` gives it), coloured by
    what it must know in advance. Up is less EM, right is more of the task kept: the frontier is
    the upper right; ``reference`` (no mitigation, at 0 and 1) is the cross of the two lines.
    ``task_label`` and ``cut_label`` name the axes (SmolLM2's runs measure the task and EM by
    margins, over seeds)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    shown = sorted((n for n in pooled if n != reference), key=lambda n: pooled[n]["task_kept"])
    for i, name in enumerate(shown):
        e = pooled[name]
        low, high = (math.nan if v is None else v for v in e["em_cut_ci"])
        knows = next((k for k in KNOWS if e["needs"].startswith(k)), "nothing")
        yerr = [[e["em_cut"] - low], [high - e["em_cut"]]] if math.isfinite(low) else None
        ax.errorbar(e["task_kept"], e["em_cut"], yerr=yerr, fmt="o", color=KNOWS[knows], capsize=3)
        ax.annotate(
            name,
            (e["task_kept"], e["em_cut"]),
            xytext=(5, 4 if i % 2 == 0 else -12),  # neighbours along the x axis alternate
            textcoords="offset points",
            fontsize="small",
        )
    ax.axhline(0, color="grey", ls="--", lw=0.8)
    ax.axvline(1, color="grey", ls=":", lw=0.8)
    for knows, colour in KNOWS.items():
        ax.plot([], [], "o", color=colour, label=f"needs {knows}")
    ax.legend(fontsize="small", loc="lower left")
    ax.set_xlabel(task_label)
    ax.set_ylabel(cut_label)
    return ax
