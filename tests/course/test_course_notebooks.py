"""course/ notebooks run for a learner: up to their first exercise in a real kernel, and every
stub in them, executed as generated, makes its check fail with the stub message.

Everything after the first exercise is the same code as in solutions/ (the build check proves it)
and is executed there by nbval, so it is not run a second time here.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from emgeo.config import COURSE_DIR
from emgeo.course.build import STUB
from emgeo.course.notebooks import KERNEL, notebook_env

NOTEBOOKS = sorted(COURSE_DIR.glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r"checks\.(check_\w+)\((\w+)")


def _is_stub(cell) -> bool:
    return cell.cell_type == "code" and STUB[1] in cell.source


def _exercises(nb):
    """(stub cell index, check name, function name) for every exercise."""
    found = []
    for i, cell in enumerate(nb.cells):
        if not _is_stub(cell):
            continue
        following = next(c for c in nb.cells[i + 1 :] if c.cell_type == "code")
        match = CHECK_CALL.search(following.source)
        assert match, f"cell {i}: an exercise must be followed by a checks.check_*(fn) cell"
        found.append((i, match.group(1), match.group(2)))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_course_notebook_has_exercises_with_checks(path):
    assert _exercises(nbformat.read(path, as_version=4)), f"{path.name} has no exercise"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_course_notebook_runs_to_its_first_exercise(path, monkeypatch):
    for key, value in notebook_env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    first, check, _ = _exercises(nb)[0]
    check_cell = next(j for j in range(first + 1, len(nb.cells)) if nb.cells[j].cell_type == "code")
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        for index in range(check_cell):  # everything before the check runs without error
            client.execute_cell(nb.cells[index], index)
        with pytest.raises(CellExecutionError, match="NotImplementedError"):
            client.execute_cell(nb.cells[check_cell], check_cell)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stub_fails_its_check(path):
    """Run each generated stub cell, with the notebook's import cell, in-process."""
    from emgeo.course import checks

    nb = nbformat.read(path, as_version=4)
    to_python = TransformerManager().transform_cell
    setup = next(c for c in nb.cells if c.cell_type == "code" and "emgeo.setup(" in c.source)
    for index, check, fn_name in _exercises(nb):
        namespace: dict = {}
        exec(to_python(setup.source), namespace)
        exec(to_python(nb.cells[index].source), namespace)
        with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
            getattr(checks, check)(namespace[fn_name])
