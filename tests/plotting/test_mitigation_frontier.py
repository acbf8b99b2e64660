"""The mitigations' frontier draws one point per mitigation where its numbers say, with its
interval."""

import pytest

from emgeo.plotting.mitigations import KNOWS, mitigation_frontier


def _entry(cut, ci, kept, needs):
    return {"em_cut": cut, "em_cut_ci": ci, "task_kept": kept, "needs": needs}


def test_one_point_per_mitigation_at_task_kept_and_em_cut_with_its_interval():
    pooled = {
        "no mitigation": _entry(0.0, [0.0, 0.0], 1.0, "nothing"),
        "preventative steering": _entry(0.4, [0.3, 0.5], 0.95, "a direction: the persona vector"),
        "benign data": _entry(0.6, [None, None], 0.99, "data: aligned chats"),
    }
    ax = mitigation_frontier(pooled)
    points = {t.get_text(): t.xy for t in ax.texts}
    assert points == {"preventative steering": (0.95, 0.4), "benign data": (0.99, 0.6)}
    bars = [c for c in ax.collections if len(c.get_segments())]
    assert len(bars) == 1  # only the mitigation with an interval has a bar
    (segment,) = bars[0].get_segments()
    assert segment[:, 1].tolist() == pytest.approx([0.3, 0.5])
    colours = {line.get_label(): line.get_color() for line in ax.lines if line.get_label()}
    assert colours["needs a direction"] == KNOWS["a direction"]
