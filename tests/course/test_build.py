import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from emgeo import errors
from emgeo.config import COURSE_DIR, SOLUTIONS_DIR
from emgeo.course import build

SOLVED = '''def f(x):
    """Double x."""
    # BEGIN SOLUTION
    y = 2 * x
    return y
    # END SOLUTION

print(f)'''


def test_stub_source_replaces_block_keeping_indentation():
    assert build.stub_source(SOLVED) == (
        'def f(x):\n    """Double x."""\n'
        "    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"
    )


def test_stub_source_leaves_cells_without_markers_alone():
    assert build.stub_source("x = 1\ny = 2") == "x = 1\ny = 2"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("# BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n# END SOLUTION", "without"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "nested"),
    ],
)
def test_stub_source_rejects_unbalanced_markers(bad, message):
    with pytest.raises(errors.BuildError, match=message):
        build.stub_source(bad)


def _solved_notebook():
    answer = new_code_cell("print('the answer')", metadata={"tags": ["solution"]})
    exercise = new_code_cell(SOLVED, outputs=[nbformat.v4.new_output("stream", text="hi")])
    exercise.execution_count = 3
    badge = new_markdown_cell("[colab](https://x/blob/main/solutions/01_a.ipynb)")
    return new_notebook(cells=[badge, exercise, answer])


def test_course_notebook_strips_solutions_outputs_and_tagged_cells():
    nb = _solved_notebook()
    course = build.course_notebook(nb)
    assert len(course.cells) == 2, "the solution-tagged cell must be dropped"
    assert course.cells[0].source == "[colab](https://x/blob/main/course/01_a.ipynb)"
    code = course.cells[1]
    assert "raise NotImplementedError()" in code.source and "2 * x" not in code.source
    assert code.outputs == [] and code.execution_count is None
    assert len(nb.cells) == 3 and nb.cells[1].outputs, "the source notebook must not change"


@pytest.fixture
def repo_copy(tmp_path):
    solutions, course = tmp_path / "solutions", tmp_path / "course"
    shutil.copytree(SOLUTIONS_DIR, solutions)
    shutil.copytree(COURSE_DIR, course)
    return solutions, course


def test_checked_in_course_is_in_sync():
    result = build.build_course(check=True)
    assert result.drifted == [], f"run `emgeo build-course`: {result.drifted}"


def test_check_fails_after_an_exercise_cell_is_edited(repo_copy):
    solutions, course = repo_copy
    assert build.build_course(solutions, course, check=True).drifted == []
    src = sorted(solutions.glob("*.ipynb"))[0]
    nb = nbformat.read(src, as_version=4)
    index = build.exercise_cells(nb)[0]
    # An edit inside the solution block changes nothing in course/ ...
    nb.cells[index].source = nb.cells[index].source.replace(
        "# END SOLUTION", "pass  # an edited solution\n    # END SOLUTION"
    )
    nbformat.write(nb, src)
    assert build.build_course(solutions, course, check=True).drifted == []
    # ... but an edit of the code around it, which learners see, is drift.
    nb.cells[index].source = "# a changed exercise header\n" + nb.cells[index].source
    nbformat.write(nb, src)
    assert build.build_course(solutions, course, check=True).drifted == [course / src.name]
    build.build_course(solutions, course)
    assert build.build_course(solutions, course, check=True).drifted == []


def test_check_fails_on_an_orphan_course_notebook(repo_copy):
    solutions, course = repo_copy
    shutil.copy(sorted(course.glob("*.ipynb"))[0], course / "99_orphan.ipynb")
    assert build.build_course(solutions, course, check=True).drifted == [course / "99_orphan.ipynb"]
