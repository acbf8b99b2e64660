"""emgeo.course.grading.outcomes: what a check cell's outputs say (passed, failed with the check's
diagnosis, or the course's own code used), the first cell that raised, and one-line messages."""

from __future__ import annotations

from pathlib import Path

import nbformat
from notebook_builders import course, tiny

from emgeo.course.grading import outcomes
from emgeo.course.grading.exercises import exercises
from emgeo.errors import USED_REFERENCE


def test_check_results_from_outputs():
    exercise = exercises(course())[0]
    cell = nbformat.v4.new_code_cell(exercise.check_source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ fn passes: ok\n")]
    assert outcomes.check_result(cell, exercise).status == outcomes.PASSED
    cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="\x1b[31mwrong")]
    result = outcomes.check_result(cell, exercise)
    assert (result.status, result.message, result.points) == (outcomes.FAILED, "wrong", 0)
    way_on = "wrong\nTo go on with the course's version instead, run: f = checks.reference('f')"
    cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue=way_on)]
    assert outcomes.check_result(cell, exercise).message == "wrong"  # the grade keeps the diagnosis
    used = f"• f {USED_REFERENCE} (checks.reference): nothing of yours ran\n"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=used)]
    result = outcomes.check_result(cell, exercise)
    assert (result.status, result.points) == (outcomes.FAILED, 0)  # the course's code earns nothing
    cell.outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="name 'f' is ...")]
    assert outcomes.check_result(cell, exercise).message == "NameError: name 'f' is ..."


def test_the_first_raise_skips_the_check_cells():
    nb = tiny("1", "checks.check_f(f)", "x")
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="no")]
    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="x")]
    assert outcomes.first_raise(nb, skip={1}) == "cell 2 raised NameError: x"
    assert outcomes.first_raise(nb, skip={1, 2}) == ""


def test_one_line_drops_colours_and_cuts_long_text():
    assert outcomes.one_line("\x1b[31mred\x1b[0m\n  text") == "red text"
    assert outcomes.one_line("a" * 20, limit=10) == "aaaaaaa..."


def test_a_submission_scores_its_results():
    results = [
        outcomes.ExerciseResult("f", outcomes.PASSED, "ok", 1, 1),
        outcomes.ExerciseResult("g", outcomes.NOT_RUN, "not reached", 0, 2),
    ]
    row = outcomes.Submission("ann", Path("ann.ipynb"), "00_x", outcomes.RAN, "", results)
    assert (row.score, row.max_score) == (1, 3)
