"""emgeo.course.grading.exercises: every check cell is an exercise with its function, nbgrader
metadata marks and locks them, and a submission's edited or deleted check cells are restored."""

from __future__ import annotations

import re

import nbformat
import pytest
from notebook_builders import SOLUTIONS, course

from emgeo.config import COURSE_DIR
from emgeo.course.build import BEGIN, END, STUB
from emgeo.course.grading import exercises


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_check_cell_is_an_exercise_with_its_function(path):
    nb = nbformat.read(path, as_version=4)
    found = exercises._find_exercise_cells(nb)
    assert found, f"{path.name} has no exercise"
    for cells in found:
        assert cells.solution is not None and BEGIN in nb.cells[cells.solution].source
        name = cells.exercise.name  # a class exercise (ToyModel) is checked by check_toy_model
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        assert cells.exercise.check in (f"check_{name}", f"check_{snake}")
    names = [c.exercise.name for c in found]
    assert len(names) == len(set(names))


def test_the_demo_of_a_failing_check_is_no_exercise():
    """Notebook 00 calls a check inside try/except to show a failure: that is not graded."""
    assert [e.name for e in exercises.exercises(course())] == ["cosine_similarity"]


def test_course_exercises_are_read_from_solutions_by_notebook_name():
    by_notebook = exercises.course_exercises()
    assert list(by_notebook) == [p.stem for p in SOLUTIONS]
    assert [e.name for e in by_notebook["00_orientation"]] == ["cosine_similarity"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_nbgrader_metadata_marks_solutions_and_locks_checks(path):
    nb = exercises.add_nbgrader_metadata(course(path))
    marked = [c for c in nb.cells if "nbgrader" in c.metadata]
    ids = [c.metadata.nbgrader["grade_id"] for c in marked]
    assert len(ids) == len(set(ids)), "grade ids must be unique in a notebook"
    for cell in marked:
        meta = cell.metadata.nbgrader
        assert meta["schema_version"] == 3 and cell.cell_type == "code"
        if meta["solution"]:
            assert STUB[1] in cell.source and not meta["grade"] and not meta["locked"]
        else:
            assert meta["grade"] and meta["locked"] and meta["points"] == 1
            assert cell.source.startswith("checks.check_")
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False
    assert len(marked) == 2 * len(exercises.exercises(nb))


def test_nbgrader_source_is_the_solutions_with_metadata_and_no_outputs(tmp_path):
    written = exercises.write_nbgrader_source(tmp_path)
    assert [p.name for p in written] == [p.name for p in SOLUTIONS]
    nb = nbformat.read(tmp_path / "source" / "00_orientation" / "00_orientation.ipynb", 4)
    solution = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    assert BEGIN in solution.source and END in solution.source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_edited_and_deleted_checks_are_restored():
    course_exercises = exercises.exercises(course())
    nb = course()
    check = next(i for i, c in enumerate(nb.cells) if c.source.startswith("checks.check_"))
    nb.cells[check].source = "checks.check_cosine_similarity(lambda a, b: None) or print('✓')"
    assert exercises.restore_checks(nb, course_exercises) == {"cosine_similarity": check}
    assert nb.cells[check].source == course_exercises[0].check_source
    del nb.cells[check]
    assert exercises.restore_checks(nb, course_exercises) == {"cosine_similarity": check}
    assert nb.cells[check].source == course_exercises[0].check_source


def test_a_check_cell_is_found_by_its_nbgrader_id_first():
    """A check cell whose source no longer names its check is still found by its grade id."""
    nb = exercises.add_nbgrader_metadata(course())
    course_exercises = exercises.exercises(course())
    check = next(i for i, c in enumerate(nb.cells) if c.source.startswith("checks.check_"))
    nb.cells[check].source = "pass  # the student emptied the check cell"
    assert exercises.restore_checks(nb, course_exercises) == {"cosine_similarity": check}
    assert len(nb.cells) == len(course().cells)  # restored in place, not inserted again


def test_course_notebooks_match_their_source():
    """The grader reads exercises from solutions/; the course/ learners get has the same ones."""
    for path in SOLUTIONS:
        shipped = COURSE_DIR / path.name
        assert exercises.exercises(nbformat.read(shipped, 4)) == exercises.exercises(course(path))
