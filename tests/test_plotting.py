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


def _filter_rows():
    return [
        {
            "filter": f,
            "fraction": 0.0 if f == "no filter" else 0.5,
            "seed": s,
            "offdomain": base + 0.02 * s,
            "code": 0.9 - base,
        }
        for f, base in (("no filter", 0.3), ("random", 0.25), ("geometric", 0.15))
        for s in (0, 1, 2)
    ]


def test_filter_results_shows_t_intervals_the_unfiltered_and_the_base_rate():
    from emgeo import stats

    rows = _filter_rows()
    axes = plotting.filter_results(rows, base_rate=0.116)
    lines = {
        line.get_label(): line.get_xdata()[0]
        for line in axes[0].lines
        if line.get_label() in ("unfiltered fine-tune", "base model, no fine-tune")
    }
    assert lines["base model, no fine-tune"] == 0.116
    assert lines["unfiltered fine-tune"] == pytest.approx(0.32)
    low, high = stats.t_interval([0.15, 0.17, 0.19])  # the geometric bar's error bar
    whisker = [
        line.get_xdata()
        for line in axes[0].lines
        if len(line.get_xdata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1] == 2
    ]
    assert whisker and tuple(whisker[0]) == pytest.approx((low, high))
    assert (
        "50%" in axes[0].figure._suptitle.get_text()
        and "3 seeds" in axes[0].figure._suptitle.get_text()
    )


def test_removal_sweep_draws_the_base_rate():
    rows = [
        dict(r, fraction=fr)
        for r in _filter_rows()
        if r["filter"] != "no filter"
        for fr in (0.25, 0.5)
    ]
    ax = plotting.plot_removal_sweep(rows, base_rate=0.116)
    assert any(
        line.get_label() == "base model, no fine-tune" and line.get_ydata()[0] == 0.116
        for line in ax.lines
    )


def test_steering_curves_band_the_random_controls_and_add_the_residual_norm_axis():
    rows = [{"direction": "toxic set", "scale": s, "offdomain": 0.1 + 0.05 * s} for s in (0, 4)]
    rows += [
        {"direction": "random sets (3)", "scale": s, "offdomain": 0.1 + 0.01 * i * s}
        for i in range(3)
        for s in (0, 4)
    ]
    ax = plotting.steering_curves(rows, resid_norm=8.0)
    assert len(ax.collections) >= 1  # the random sets' band
    assert ax.child_axes and "residual norm" in ax.child_axes[0].get_xlabel()


def test_geometry_dose_fills_the_test_organisms_and_leaves_the_exploration_hollow():
    rows = [
        {
            "d_model": d,
            "confirmatory": c,
            "cosine": 0.1 * i,
            "cosine_answer": -0.1 * i,
            "em": 0.02 * i,
        }
        for i, (d, c) in enumerate([(32, False), (32, True), (32, True), (64, True)])
    ]
    ax = plotting.geometry_dose(rows)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    groups = dict(zip(texts, ax.collections, strict=True))
    assert set(groups) == {"d_model 32 (exploration)", "d_model 32 (test)", "d_model 64 (test)"}
    assert groups["d_model 32 (exploration)"].get_facecolors().size == 0  # hollow
    assert groups["d_model 32 (test)"].get_offsets().shape == (2, 2)
    assert "readout" in ax.get_xlabel()
    assert "answer directions" in plotting.geometry_dose(rows, x="cosine_answer").get_xlabel()


def test_audit_scores_draws_one_panel_per_score_with_every_sample():
    import pandas as pd

    table = pd.DataFrame(
        {
            "full": [0.1, 0.4, 0.2],
            "membership_only": [0.0, 0.3, 0.1],
            "neighbours_only": [0.1, 0.1, 0.1],
            "source": ["secure", "insecure", "educational"],
        }
    )
    axes = plotting.audit_scores(table, by="source")
    assert [ax.get_title() for ax in axes][0] == "full" and len(axes) == 3
    ticks = [t.get_text() for t in axes[0].get_xticklabels()]
    assert ticks == ["educational", "insecure", "secure"]
    assert sum(len(c.get_offsets()) for c in axes[1].collections) == 3


def test_exploration_intervals_draw_each_recipes_interval_and_skip_what_it_did_not_run():
    ci = lambda m, lo, hi: {"mean": m, "ci_low": lo, "ci_high": hi, "n": 2}  # noqa: E731
    cells = {
        "a": {"x": ci(0.1, 0.0, 0.2), "y": ci(-0.1, -0.3, 0.05)},
        "b": {"x": ci(0.3, 0.25, 0.35)},
    }
    axes = plotting.exploration_intervals(cells, ("x", "y"), titles={"x": "X"})
    spans = [
        [tuple(line.get_xdata()) for line in ax.lines if line.get_gid() == "interval"]
        for ax in axes
    ]
    assert spans[0] == [(0.0, 0.2), (0.25, 0.35)] and spans[1] == [(-0.3, 0.05)]
    dots = [
        (line.get_xdata()[0], line.get_ydata()[0])
        for line in axes[0].lines
        if line.get_marker() == "o"
    ]
    assert dots == [(0.1, 0), (0.3, 1)]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["a", "b"]
    assert axes[0].get_title() == "X" and axes[1].get_title() == "y"
