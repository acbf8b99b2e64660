"""emgeo.course.grading.outcomes: a failed or unrun exercise, the first cell that raised, one-line
messages, and a submission's score."""

from __future__ import annotations

from pathlib import Path

import nbformat
from notebook_builders import course, tiny

from emgeo.course.grading import outcomes
from emgeo.course.grading.exercises import exercises


def test_a_failed_exercise_keeps_one_line_of_its_message():
    exercise = exercises(course())[0]
    result = outcomes.failed(exercise, "\x1b[31mwrong\n  values")
    assert (result.status, result.message, result.points) == (outcomes.FAILED, "wrong values", 0)
    assert outcomes.not_run(exercise, "not reached").status == outcomes.NOT_RUN


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
