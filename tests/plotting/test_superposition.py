"""The toy models' figures (00-03) draw what they say, on small inputs."""

import torch

from emgeo import plotting, toy


def test_similarity_heatmap_annotates_every_cell():
    ax = plotting.similarity_heatmap(torch.eye(3), title="t")
    assert ax.get_title() == "t" and len(ax.texts) == 9


def test_gram_grid_and_arrows_have_a_panel_per_model():
    Ws = [torch.randn(2, 5) for _ in range(3)]
    assert len(plotting.gram_grid(Ws, ["a", "b", "c"]).axes) == 6 + 1  # and the colourbar
    fig = plotting.feature_arrows(Ws, ["a", "b", "c"])
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 5


def test_sparsity_plots_draw_a_series_per_feature():
    ax = plotting.norms_across_sparsity([0.0, 0.9], torch.randn(2, 2, 4))
    assert len(ax.get_lines()) == 4 + 1  # four features and the threshold line
    ax = plotting.dimensionality_scatter([0.0, 0.9], torch.rand(2, 4))
    assert len(ax.collections) == 2


def test_drag_plots():
    ax = plotting.drag_scatter(
        torch.arange(6.0), torch.arange(6.0), torch.tensor([0, 0, 0, 1, 1, 1]), "t"
    )
    assert len(ax.collections) == 2
    ax = plotting.drag_breakdown([1, 10], {"a": [1.0, 0.9], "b": [1.0, 0.5]}, "r", "t")
    assert len(ax.get_lines()) == 2
    rows = [
        {"kind": k, "value": float(v), "seed": s}
        for s in range(3)
        for k, v in [("x", s), ("y", -s)]
    ]
    assert plotting.grouped_bars(rows, x="kind", y="value").get_xlabel() == "kind"


def test_toy_explorer_redraws_for_every_condition():
    sweep = toy.train_sweep([0.0, 0.9], decays=(0.7, 1.0), n_restarts=1, steps=5, progress=False)
    explorer = plotting.toy_explorer(sweep)
    sliders = explorer.children[:2]
    assert [s.options for s in sliders] == [(0.0, 0.9), (0.7, 1.0)]
    sliders[0].value = 0.0
    explorer.update()


def test_recovery_bars_draw_a_bar_per_true_feature():
    ax = plotting.recovery_bars(torch.tensor([0.95, 0.5, 0.99]))
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.95, 0.5, 0.99]


def test_density_histogram_counts_the_dead_latents_in_its_title():
    ax = plotting.density_histogram(torch.tensor([0.0, 0.0, 0.1, 0.01, 0.001]))
    assert "2 of 5 latents never fire" in ax.get_title()
    assert sum(p.get_height() for p in ax.patches) == 3  # only the live latents are binned
