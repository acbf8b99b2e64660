"""The figures of the filter, the real model's recipes and the audit (07-09) draw what they say,
on small inputs."""

import pytest

from emgeo import plotting


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
    assert axes[0].get_ylim() == axes[2].get_ylim(), "one y-scale for the three scores"
    assert axes[0].get_ylim()[1] >= 0.4


def test_budget_curves_draw_each_scores_two_classes_and_the_diagonal():
    curves = {
        "full": [(0.1, 0.2, 0.0), (0.5, 0.9, 0.1)],
        "neighbours": [(0.1, 0.1, 0.1), (0.5, 0.6, 0.4)],
    }
    ax = plotting.budget_curves(curves)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"full: inducing", "full: the rest", "neighbours: inducing",
                          "neighbours: the rest", "random removal"}  # fmt: skip
    assert list(lines["full: inducing"].get_ydata()) == [0.2, 0.9]
    assert list(lines["random removal"].get_xydata()[:, 1]) == [0, 1]


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
