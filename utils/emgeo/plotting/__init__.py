"""Every figure the notebooks show, in one consistent style (:func:`set_style`): the toy models'
figures in :mod:`~emgeo.plotting.superposition` (00-03), the organism's, its features' and their
geometry's in :mod:`~emgeo.plotting.misalignment` (04-06), the filter's, the real model's and the
audit's in :mod:`~emgeo.plotting.filters` (07-09). Notebooks call them as ``plotting.<name>``."""

from emgeo.plotting.filters import (
    audit_scores,
    budget_curves,
    exploration_intervals,
    filter_results,
    plot_removal_sweep,
)
from emgeo.plotting.misalignment import (
    drag_during_finetune,
    drag_per_latent,
    em_trajectory,
    geometry_dose,
    permutation_null,
    plot_dose_response,
    proximity_distributions,
    steering_curves,
    subtask_doses,
)
from emgeo.plotting.style import set_style
from emgeo.plotting.superposition import (
    STICKY_FRACTIONS,
    density_histogram,
    dimensionality_scatter,
    drag_breakdown,
    drag_scatter,
    feature_arrows,
    gram_grid,
    grouped_bars,
    norms_across_sparsity,
    recovery_bars,
    similarity_heatmap,
    toy_explorer,
)

__all__ = [
    "budget_curves",
    "STICKY_FRACTIONS",
    "audit_scores",
    "density_histogram",
    "dimensionality_scatter",
    "drag_breakdown",
    "drag_during_finetune",
    "drag_per_latent",
    "drag_scatter",
    "em_trajectory",
    "exploration_intervals",
    "feature_arrows",
    "filter_results",
    "geometry_dose",
    "gram_grid",
    "grouped_bars",
    "norms_across_sparsity",
    "permutation_null",
    "plot_dose_response",
    "plot_removal_sweep",
    "proximity_distributions",
    "recovery_bars",
    "set_style",
    "similarity_heatmap",
    "steering_curves",
    "subtask_doses",
    "toy_explorer",
]
