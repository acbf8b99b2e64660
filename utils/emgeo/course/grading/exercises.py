"""A course notebook's exercises: each learner's function and the check cell that grades it.

The same exercises carry nbgrader metadata (:func:`add_nbgrader_metadata`): each exercise's
function cell is a solution cell, each check cell a locked autograded cell worth one point, so an
instructor who uses nbgrader can grade with it instead. Before a submission runs, the course's
check cells are put back into it (:func:`restore_checks`): they mark where, in the notebook's
order, the grader computes each verdict itself (:mod:`emgeo.course.grading.verdicts`), and which
function of the notebook it grades there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from emgeo.config import SOLUTIONS_DIR

POINTS_PER_CHECK = 1
NBGRADER_SCHEMA = 3
CHECK_LINE = re.compile(r"^checks\.(?P<check>check_\w+)\(\s*(?P<fn>\w+)", re.MULTILINE)


@dataclass(frozen=True)
class Exercise:
    """One exercise of a course notebook: the learner's function and the check that grades it."""

    name: str  # the function the learner writes, e.g. "cosine_similarity"
    check: str  # the check that grades it, e.g. "check_cosine_similarity"
    check_source: str  # the check cell as the course ships it
    points: int = POINTS_PER_CHECK


@dataclass(frozen=True)
class _ExerciseCells:
    solution: int | None  # index of the cell that defines the function, if any
    check: int  # index of the check cell
    exercise: Exercise


def _defines(name: str) -> re.Pattern[str]:
    """A line that defines ``name`` as a function or a class."""
    return re.compile(rf"^\s*(def|class) {re.escape(name)}\b", re.MULTILINE)


def _find_exercise_cells(nb: NotebookNode) -> list[_ExerciseCells]:
    """Every top-level ``checks.check_<name>(fn)`` cell, with the cell above it defining ``fn``."""
    found = []
    for index, cell in enumerate(nb.cells):
        match = CHECK_LINE.search(cell.source) if cell.cell_type == "code" else None
        if not match:
            continue
        fn = match.group("fn")
        defines = _defines(fn)
        solution = next(
            (j for j in range(index - 1, -1, -1) if defines.search(nb.cells[j].source)), None
        )
        exercise = Exercise(name=fn, check=match.group("check"), check_source=cell.source)
        found.append(_ExerciseCells(solution, index, exercise))
    return found


def exercises(nb: NotebookNode) -> list[Exercise]:
    """The exercises of a course (or solutions) notebook, in order."""
    return [cells.exercise for cells in _find_exercise_cells(nb)]


def course_exercises(reference_dir: Path | None = None) -> dict[str, list[Exercise]]:
    """The exercises of every course notebook, by notebook name (e.g. ``"00_orientation"``).

    They are read from solutions/ (the single source), whose check cells are the course's.
    """
    root = reference_dir or SOLUTIONS_DIR
    return {
        path.stem: exercises(nbformat.read(path, as_version=4))
        for path in sorted(root.glob("[0-9][0-9]_*.ipynb"))
    }


# ---------------------------------------------------------------- nbgrader metadata


def add_nbgrader_metadata(nb: NotebookNode) -> NotebookNode:
    """Mark every exercise for nbgrader (schema 3), in place; return ``nb``.

    The function cell becomes a solution cell (grade id: the function's name); the check cell a
    locked, autograded test cell worth :data:`POINTS_PER_CHECK` (grade id: the check's name), which
    JupyterLab also shows as read-only.
    """
    for cells in _find_exercise_cells(nb):
        if cells.solution is not None:
            nb.cells[cells.solution].metadata["nbgrader"] = _nbgrader(
                cells.exercise.name, solution=True
            )
        check = nb.cells[cells.check]
        check.metadata["nbgrader"] = _nbgrader(
            cells.exercise.check, grade=True, locked=True, points=cells.exercise.points
        )
        check.metadata.update(editable=False, deletable=False)
    return nb


def _nbgrader(
    grade_id: str,
    solution: bool = False,
    grade: bool = False,
    locked: bool = False,
    points: int | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": NBGRADER_SCHEMA,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return meta


def write_nbgrader_source(out_root: Path, solutions_dir: Path | None = None) -> list[Path]:
    """Write nbgrader's ``source/`` folder: one assignment per solutions notebook.

    Each notebook goes to ``out_root/source/<name>/<name>.ipynb`` with its outputs cleared and
    :func:`add_nbgrader_metadata` applied; ``nbgrader generate_assignment <name>`` then makes the
    learner's version (the solution markers are nbgrader's own).
    """
    written = []
    for src in sorted((solutions_dir or SOLUTIONS_DIR).glob("[0-9][0-9]_*.ipynb")):
        nb = add_nbgrader_metadata(nbformat.read(src, as_version=4))
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        dst = out_root / "source" / src.stem / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dst)
        written.append(dst)
    return written


# ---------------------------------------------------------------- restoring the check cells


def restore_checks(nb: NotebookNode, course: Sequence[Exercise]) -> dict[str, int]:
    """Put the course's check cells back into a student's notebook; return each one's index.

    A check cell is found by its nbgrader grade id, else by its ``checks.check_*(fn)`` line; its
    source is reset to the course's (a student cannot edit a check into passing). A deleted check
    cell is inserted again after the cell that defines the function, or at the end.
    """
    for exercise in course:
        index = _locate_check(nb, exercise)
        if index is None:
            index = _insert_check(nb, exercise)
        nb.cells[index].source = exercise.check_source
    located = {e.name: _locate_check(nb, e) for e in course}
    return {name: index for name, index in located.items() if index is not None}


def _locate_check(nb: NotebookNode, exercise: Exercise) -> int | None:
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade_id") == exercise.check:
            return index
    for index, cell in enumerate(nb.cells):
        match = CHECK_LINE.search(cell.source) if cell.cell_type == "code" else None
        if match and match.group("check") == exercise.check:
            return index
    return None


def _insert_check(nb: NotebookNode, exercise: Exercise) -> int:
    defines = _defines(exercise.name)
    after = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and defines.search(c.source)
    ]
    index = after[-1] + 1 if after else len(nb.cells)
    nb.cells.insert(index, nbformat.v4.new_code_cell(exercise.check_source))
    return index
