"""The figures of the organism, its features and their geometry (04-06) draw what they say,
on small inputs."""

import numpy as np
import pytest
import torch

from emgeo import plotting


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


def test_drag_figure_labels_are_mathtext_and_its_legends_readable():
    rows = [
        {
            "step": s,
            "offdomain": 0.1,
            "measured": s,
            "predicted": s,
            "self term": 0.0,
            "neighbour term": s,
        }
        for s in (0, 5)
    ]
    per_latent = [
        {
            "step": 5,
            "latent": j,
            "measured": j,
            "self term": 0.0,
            "neighbour term": j,
            "shared": j == 0,
        }
        for j in range(2)
    ]
    for ax in (plotting.drag_during_finetune(rows), plotting.drag_per_latent(per_latent)):
        ax.figure.canvas.draw()  # mathtext that does not parse raises here
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        labels += [ax.get_xlabel(), ax.get_ylabel()]
        assert not [text for text in labels if "_{" in text and "$" not in text], labels
        legend_size = ax.get_legend().get_texts()[0].get_fontsize()
        assert legend_size >= 0.8 * ax.xaxis.label.get_fontsize()
    assert ax.get_xlabel().startswith(r"drag term $\Sigma_{t \neq j}\, \alpha_t")


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


def test_proximity_distributions_band_the_random_sets_when_given():
    per_set = {"toxic": torch.tensor([0.3, 0.4]), "other": torch.tensor([0.0, 0.1, -0.1])}
    null = torch.linspace(0.0, 0.2, 41)
    ax = plotting.proximity_distributions(per_set, random_null=null, title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["toxic", "other"]
    band = next(p for p in ax.patches if p.get_label() == "random sets' mean (95%)")
    low, high = band.get_path().transformed(band.get_patch_transform()).get_extents().intervaly
    assert (low, high) == pytest.approx((0.005, 0.195))
    assert ax.get_legend() is not None
    assert plotting.proximity_distributions(per_set).get_legend() is None


def test_permutation_null_marks_the_observed_difference_and_its_p_value():
    ax = plotting.permutation_null(torch.linspace(-1, 1, 101), observed=0.8, p=0.012)
    assert ax.lines[0].get_xdata()[0] == 0.8
    assert "p = 0.0120" in ax.lines[0].get_label()
    assert sum(p.get_height() for p in ax.patches) == 101


def test_subtask_doses_draws_a_point_per_subtask_and_a_line_per_organism():
    organisms = [
        {"seed": s, "subtasks": [{"nearness": x / 10, "dose": s * x / 100} for x in range(4)]}
        for s in (1, 2)
    ]
    ax = plotting.subtask_doses(organisms)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 8
    slopes = [
        np.polyfit(*line.get_data(), 1)[0] for line in ax.get_lines()[:2]
    ]  # then the zero line
    assert slopes == pytest.approx([0.1, 0.2])
