import re

import nbformat
import pytest

from emgeo import pins
from emgeo.config import COURSE_DIR, REPO_ROOT, SOLUTIONS_DIR

NOTEBOOKS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb")) + sorted(
    COURSE_DIR.glob("[0-9][0-9]_*.ipynb")
)


def test_every_dependency_is_pinned_exactly():
    for dep in pins.pinned_dependencies():
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", dep), f"not pinned exactly: {dep}"


def test_torch_is_the_cpu_wheel_version():
    assert "torch==2.13.0" in pins.pinned_dependencies()


def test_binder_requirements_match_the_pins():
    assert pins.BINDER_REQUIREMENTS.read_text() == pins.binder_requirements(), (
        "binder/requirements.txt drifted from pyproject.toml: run `emgeo pins --write`"
    )


def test_binder_requirements_follow_a_pin_change():
    deps = ["torch==9.9.9", "numpy==1.0"]
    text = pins.binder_requirements(deps)
    assert "torch==9.9.9+cpu" in text and "numpy==1.0" in text and "numpy==2" not in text


def test_binder_runtime_is_a_supported_python():
    assert (REPO_ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_starts_with_badges_and_the_colab_cell(path):
    nb = nbformat.read(path, as_version=4)
    rel = path.relative_to(REPO_ROOT).as_posix()
    assert nb.cells[0].cell_type == "markdown"
    assert pins.colab_badge(rel) in nb.cells[0].source
    assert pins.binder_badge(rel) in nb.cells[0].source
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source == pins.colab_cell(), "the Colab setup cell drifted from emgeo.pins"
