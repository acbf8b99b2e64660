"""Every figure function draws what it says, on small inputs (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from emgeo import plotting, toy  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_similarity_heatmap_annotates_every_cell():
    ax = plotting.similarity_heatmap(torch.eye(3), title="t")
    assert ax.get_title() == "t" and len(ax.texts) == 9


def test_gram_grid_and_arrows_have_a_panel_per_model():
    Ws = [torch.randn(2, 5) for _ in range(3)]
    assert len(plotting.gram_grid(Ws, ["a", "b", "c"]).axes) == 6
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


def test_organism_plots():
    rows = [
        {"step": s, "fine-tune": f, "measure": m, "rate": 0.1 * s}
        for s in (0, 10)
        for f in ("insecure", "secure")
        for m in ("off-domain", "code")
    ]
    ax = plotting.em_trajectory(rows)
    assert ax.get_ylabel() == "misaligned rate" and ax.get_legend() is not None
    dose = [
        {"fraction": f, "seed": s, "offdomain": f + 0.01 * s} for f in (0.0, 0.5) for s in (0, 1)
    ]
    ax = plotting.plot_dose_response(dose, base_rate=0.1)
    assert ax.lines[-1].get_ydata()[0] == 0.1  # the base-model reference line


def test_drag_during_finetune_shows_the_two_terms_and_the_per_latent_scatter():
    rows = [
        {
            "step": s,
            "offdomain": 0.1 + s / 100,
            "measured": s / 10,
            "predicted": s / 8,
            "self term": s / 16,
            "neighbour term": s / 16,
        }
        for s in (0, 5, 10)
    ]
    ax = plotting.drag_during_finetune(rows)
    assert len(ax.get_lines()) == 4  # measured, predicted, self term, drag term
    per_latent = [
        {
            "step": 5,
            "latent": j,
            "measured": 0.1 * j,
            "self term": 0.0,
            "neighbour term": 0.2 * j,
            "shared": j == 0,
        }
        for j in range(4)
    ]
    ax = plotting.drag_per_latent(per_latent)
    assert len(ax.collections) == 2
