"""emgeo.course.plan: every notebook of the course has a plan, and every plan a line per profile."""

from emgeo.config import PROFILES, SOLUTIONS_DIR
from emgeo.course.plan import NOTEBOOK_PLAN


def test_every_notebook_has_a_plan_for_every_profile():
    assert list(NOTEBOOK_PLAN) == [p.stem for p in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))]
    for notebook, plan in NOTEBOOK_PLAN.items():
        assert set(plan) == set(PROFILES), notebook
        assert all(line.strip() for line in plan.values()), notebook
