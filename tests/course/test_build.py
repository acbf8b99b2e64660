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


PNG = (  # a 1x1 image
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def _with_outputs(source: str, outputs: list, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = new_code_cell(source, outputs=outputs, metadata={"tags": list(tags)})
    return new_notebook(cells=[cell])


def _expected(course_nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [
        c
        for c in course_nb.cells
        if c.cell_type == "markdown" and build.EXPECTED_TAG in c.metadata.get("tags", [])
    ]


def test_a_check_cells_stored_output_follows_it_in_course_folded():
    out = nbformat.v4.new_output("stream", name="stdout", text="✓ f passes: 4 random trials\n")
    course = build.course_notebook(_with_outputs("checks.check_f(f)", [out]))
    assert course.cells[0].outputs == [] and len(course.cells) == 2
    (expected,) = _expected(course)
    assert expected.cell_type == "markdown"
    assert expected.source.startswith("<details>") and expected.source.endswith("</details>")
    assert "```text\n✓ f passes: 4 random trials\n```" in expected.source


def test_a_figure_is_attached_with_the_text_the_cell_printed_and_no_progress_or_warnings():
    outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="training: 100%|███| 3/3\n"),
        nbformat.v4.new_output(
            "display_data", data={build.WIDGET_VIEW: {"model_id": "x"}, "text/plain": "0%|  | 0/3"}
        ),
        nbformat.v4.new_output("stream", name="stdout", text="r = 0.91\n"),
        nbformat.v4.new_output(
            "display_data", data={"image/png": PNG, "text/plain": "<Figure size 640x480>"}
        ),
    ]
    course = build.course_notebook(_with_outputs("plot()", outputs))
    nbformat.validate(course)
    (expected,) = _expected(course)
    assert expected.attachments == {"expected-1.png": {"image/png": PNG}}
    assert "![expected figure 1](attachment:expected-1.png)" in expected.source
    assert "r = 0.91" in expected.source
    for hidden in ("100%", "0/3", "Figure size"):
        assert hidden not in expected.source


def test_only_checks_figures_and_tagged_cells_get_an_expected_output():
    printed = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    assert not _expected(build.course_notebook(_with_outputs("print(42)", printed)))
    tagged = build.course_notebook(_with_outputs("print(42)", printed, tags=("expected",)))
    assert "```text\n42\n```" in _expected(tagged)[0].source
    machine = ("expected", "nbval-ignore-output")  # machine facts are never shown as expected
    assert not _expected(build.course_notebook(_with_outputs("doctor()", printed, tags=machine)))


def test_a_long_expected_output_is_cut_with_a_count_of_what_is_left():
    text = "".join(f"line {i}\n" for i in range(build.EXPECTED_MAX_LINES + 5))
    out = nbformat.v4.new_output("stream", name="stdout", text=text)
    (expected,) = _expected(build.course_notebook(_with_outputs("show()", [out], ("expected",))))
    assert f"line {build.EXPECTED_MAX_LINES - 1}" in expected.source
    assert f"line {build.EXPECTED_MAX_LINES}\n" not in expected.source
    assert "(5 more lines)" in expected.source


def test_every_course_figure_is_the_solutions_figure():
    for src in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb")):
        solved = nbformat.read(src, as_version=4)
        stored = [
            o.data["image/png"]
            for c in solved.cells
            if c.cell_type == "code" and "nbval-ignore-output" not in c.metadata.get("tags", [])
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        course = nbformat.read(COURSE_DIR / src.name, as_version=4)
        shown = [
            a["image/png"] for c in _expected(course) for a in c.get("attachments", {}).values()
        ]
        assert shown == stored, src.name


def test_every_notebook_opens_with_objectives_and_ends_with_questions_whose_answers_fold():
    for src in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(src, as_version=4)
        markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
        assert any(s.startswith("## Learning objectives") for s in markdown[:3]), src.name
        last = markdown[-1]
        assert last.startswith("## Check your understanding"), src.name
        n_answers = last.count("<details><summary>Answer</summary>")
        assert n_answers >= 3 and n_answers == last.count("</details>"), src.name
