"""emgeo.course.grade: exercises and nbgrader metadata, reading check results, the gradebook, and
grading real notebooks in a kernel: a complete one, an untouched one, a wrong answer, an endless
loop and a file that is not JSON give five rows with the right scores, and the grader goes on."""

from __future__ import annotations

import csv
import re
import socket
from pathlib import Path

import nbformat
import pytest

from emgeo.config import COURSE_DIR, SOLUTIONS_DIR
from emgeo.course import grade
from emgeo.course.build import BEGIN, END, STUB, course_notebook
from emgeo.errors import USED_REFERENCE

SOLUTIONS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
ORIENTATION = SOLUTIONS_DIR / "00_orientation.ipynb"


def _course(path: Path = ORIENTATION) -> nbformat.NotebookNode:
    """The learner's notebook, generated from its source as build-course does."""
    return course_notebook(nbformat.read(path, as_version=4))


def _with_answer(body: str) -> nbformat.NotebookNode:
    """Notebook 00 as a learner who wrote ``body`` (indented) in place of the stub."""
    nb = _course()
    stub = "\n".join("    " + line for line in STUB)
    cell = next(c for c in nb.cells if stub in c.source)
    cell.source = cell.source.replace(stub, body)
    return nb


def _complete() -> nbformat.NotebookNode:
    """Notebook 00 as a learner who wrote the reference solution."""
    solution = next(c for c in nbformat.read(ORIENTATION, as_version=4).cells if BEGIN in c.source)
    lines = [line for line in solution.source.splitlines() if line.strip() not in (BEGIN, END)]
    nb = _course()
    cell = next(c for c in nb.cells if STUB[1] in c.source)
    cell.source = "\n".join(lines)
    return nb


def _tiny(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


# ---------------------------------------------------------------- exercises and nbgrader metadata


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_check_cell_is_an_exercise_with_its_function(path):
    nb = nbformat.read(path, as_version=4)
    found = grade._find_exercise_cells(nb)
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
    assert [e.name for e in grade.exercises(_course())] == ["cosine_similarity"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_nbgrader_metadata_marks_solutions_and_locks_checks(path):
    nb = grade.add_nbgrader_metadata(_course(path))
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
    assert len(marked) == 2 * len(grade.exercises(nb))


def test_nbgrader_source_is_the_solutions_with_metadata_and_no_outputs(tmp_path):
    written = grade.write_nbgrader_source(tmp_path)
    assert [p.name for p in written] == [p.name for p in SOLUTIONS]
    nb = nbformat.read(tmp_path / "source" / "00_orientation" / "00_orientation.ipynb", 4)
    solution = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    assert BEGIN in solution.source and END in solution.source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


# ---------------------------------------------------------------- reading a run


def test_identify_by_name_then_by_checks():
    course = grade.course_exercises()
    nb = _course()
    assert grade.identify(Path("alice_00_orientation.ipynb"), nb, course) == "00_orientation"
    assert grade.identify(Path("Untitled.ipynb"), nb, course) == "00_orientation"
    assert grade.identify(Path("Untitled.ipynb"), _tiny("1 + 1"), course) is None


def test_student_names(tmp_path):
    assert grade.student_name(tmp_path / "alice" / "x.ipynb", tmp_path, None) == "alice"
    path = tmp_path / "bob_00_orientation.ipynb"
    assert grade.student_name(path, tmp_path, "00_orientation") == "bob"


def test_check_results_from_outputs():
    exercise = grade.exercises(_course())[0]
    cell = nbformat.v4.new_code_cell(exercise.check_source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ fn passes: ok\n")]
    assert grade.check_result(cell, exercise).status == grade.PASSED
    cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="\x1b[31mwrong")]
    result = grade.check_result(cell, exercise)
    assert (result.status, result.message, result.points) == (grade.FAILED, "wrong", 0)
    way_on = "wrong\nTo go on with the course's version instead, run: f = checks.reference('f')"
    cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue=way_on)]
    assert grade.check_result(cell, exercise).message == "wrong"  # the grade keeps the diagnosis
    used = f"• f {USED_REFERENCE} (checks.reference): nothing of yours ran\n"
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=used)]
    result = grade.check_result(cell, exercise)
    assert (result.status, result.points) == (grade.FAILED, 0)  # the course's code earns nothing
    cell.outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="name 'f' is ...")]
    assert grade.check_result(cell, exercise).message == "NameError: name 'f' is ..."


def test_edited_and_deleted_checks_are_restored():
    course = grade.exercises(_course())
    nb = _course()
    check = next(i for i, c in enumerate(nb.cells) if c.source.startswith("checks.check_"))
    nb.cells[check].source = "checks.check_cosine_similarity(lambda a, b: None) or print('✓')"
    assert grade.restore_checks(nb, course) == {"cosine_similarity": check}
    assert nb.cells[check].source == course[0].check_source
    del nb.cells[check]
    assert grade.restore_checks(nb, course) == {"cosine_similarity": check}


def test_kernel_env_is_offline_and_has_no_credentials():
    env = grade.kernel_env({"HF_TOKEN": "x", "NDIF_API_KEY": "y", "PATH": "/bin", "HOME": "/h"})
    assert "HF_TOKEN" not in env and "NDIF_API_KEY" not in env and env["PATH"] == "/bin"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:")


# ---------------------------------------------------------------- rows without a kernel


def test_a_file_that_is_not_json_gets_a_row(tmp_path):
    path = tmp_path / "erin" / "00_orientation.ipynb"
    path.parent.mkdir()
    path.write_text("{ not json")
    row = grade.grade_notebook(path, tmp_path, grade.course_exercises(), timeout_s=5.0)
    assert (row.student, row.status, row.score, row.max_score) == ("erin", grade.MALFORMED, 0, 1)
    assert "not a valid notebook" in row.reason
    assert row.results[0].status == grade.NOT_RUN


def test_a_notebook_of_no_course_gets_a_row(tmp_path):
    path = tmp_path / "homework.ipynb"
    nbformat.write(_tiny("print('hi')"), path)
    row = grade.grade_notebook(path, tmp_path, grade.course_exercises(), timeout_s=5.0)
    assert row.status == grade.UNKNOWN and "00_orientation.ipynb" in row.reason


def test_gradebook_csv_and_html(tmp_path):
    ok = grade.ExerciseResult("f", grade.PASSED, "✓ f passes", 1, 1)
    bad = grade.ExerciseResult("f", grade.FAILED, "<b>wrong</b>", 0, 1)
    rows = [
        grade.Submission("ann", tmp_path / "ann.ipynb", "00_x", grade.RAN, "", [ok]),
        grade.Submission("ben", tmp_path / "ben.ipynb", "00_x", grade.RAISED, "cell 3", [bad]),
    ]
    csv_path, html_path = grade.write_gradebook(rows, tmp_path, tmp_path / "out")
    table = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [(r["student"], r["score"], r["00 f"]) for r in table] == [
        ("ann", "1", "passed"),
        ("ben", "0", "failed"),
    ]
    assert table[1]["00 f message"] == "<b>wrong</b>"
    page = html_path.read_text(encoding="utf-8")
    assert "&lt;b&gt;wrong&lt;/b&gt;" in page and "<b>wrong" not in page


# ---------------------------------------------------------------- in a kernel


def test_the_kernel_has_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "a secret the student must not see")
    if not grade.network_isolation():
        pytest.skip("no network namespace can be made here (unshare --net is not permitted)")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        nb = _tiny(
            "import os, socket\n"
            "print(os.environ.get('HF_HUB_OFFLINE'), 'NDIF_API_KEY' in os.environ)\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        )
        run = grade.run_notebook(nb, tmp_path, timeout_s=60.0)
    assert run.status == grade.RAN
    outputs = nb.cells[0].outputs
    assert outputs[0]["text"].strip() == "1 False"
    assert outputs[-1]["output_type"] == "error" and outputs[-1]["ename"] == "OSError"


def test_a_kernel_that_dies_gets_a_row(tmp_path):
    path = tmp_path / "fay_00_orientation.ipynb"
    nbformat.write(_tiny("import os\nos._exit(1)"), path)
    row = grade.grade_notebook(path, tmp_path, grade.course_exercises(), timeout_s=60.0)
    assert row.status == grade.KERNEL_DIED and (row.score, row.max_score) == (0, 1)
    assert "not reached" in row.results[0].message


def test_grading_five_submissions(tmp_path):
    """The acceptance case: five notebooks, five rows, the right scores, no crash."""
    root = tmp_path / "submitted"
    learners = {
        "alice": _complete(),
        "bob": _course(),
        "carol": _with_answer("    return a @ b.T"),
        "dan": _with_answer("    while True:\n        pass"),
    }
    for student, nb in learners.items():
        (root / student).mkdir(parents=True)
        nbformat.write(nb, root / student / "00_orientation.ipynb")
    (root / "erin").mkdir()
    (root / "erin" / "00_orientation.ipynb").write_text("this is not { json")

    rows = {s.student: s for s in grade.grade(root, timeout_s=40.0)}
    assert sorted(rows) == ["alice", "bob", "carol", "dan", "erin"]
    got = {name: (s.status, s.score, s.max_score) for name, s in rows.items()}
    assert got == {
        "alice": (grade.RAN, 1, 1),
        "bob": (grade.RAISED, 0, 1),
        "carol": (grade.RAN, 0, 1),
        "dan": (grade.TIMED_OUT, 0, 1),
        "erin": (grade.MALFORMED, 0, 1),
    }
    message = {name: s.results[0].message for name, s in rows.items()}
    assert message["alice"].startswith("✓ cosine_similarity passes")
    assert "still raises NotImplementedError" in message["bob"]
    assert "plain dot product" in message["carol"]
    assert "did not finish within 40 s" in rows["dan"].reason
    assert rows["bob"].reason.startswith("cell ") and "NotImplementedError" in rows["bob"].reason

    csv_path, html_path = grade.write_gradebook(list(rows.values()), root, tmp_path)
    assert len(list(csv.DictReader(csv_path.open(encoding="utf-8")))) == 5
    assert html_path.read_text(encoding="utf-8").count("<tr>") == 6  # header and five rows


def test_course_notebooks_match_their_source():
    """The grader reads exercises from solutions/; the course/ learners get has the same ones."""
    for path in SOLUTIONS:
        shipped = COURSE_DIR / path.name
        assert grade.exercises(nbformat.read(shipped, 4)) == grade.exercises(_course(path))
