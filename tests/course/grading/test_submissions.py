"""emgeo.course.grading.submissions: which notebook and student a submission is, a row for every
file however it fails, and, in kernels, a complete notebook, an untouched one, a wrong answer, an
endless loop and a file that is not JSON give five rows with the right scores; cheating on a check
earns nothing, and a kernel can neither read another submission nor write outside its folder."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
from notebook_builders import complete, course, tiny, with_answer

from emgeo.course.grading import outcomes, submissions
from emgeo.course.grading.exercises import course_exercises
from emgeo.course.grading.gradebook import write_gradebook
from emgeo.course.grading.kernel import isolation


def test_identify_by_name_then_by_checks():
    by_notebook = course_exercises()
    nb = course()
    assert submissions.identify(Path("alice_00_orientation.ipynb"), nb, by_notebook) == (
        "00_orientation"
    )
    assert submissions.identify(Path("Untitled.ipynb"), nb, by_notebook) == "00_orientation"
    assert submissions.identify(Path("Untitled.ipynb"), tiny("1 + 1"), by_notebook) is None


def test_student_names(tmp_path):
    assert submissions.student_name(tmp_path / "alice" / "x.ipynb", tmp_path, None) == "alice"
    path = tmp_path / "bob_00_orientation.ipynb"
    assert submissions.student_name(path, tmp_path, "00_orientation") == "bob"


def test_hidden_folders_and_checkpoints_are_no_submissions(tmp_path):
    for relative in ("ann/00.ipynb", "ann/.ipynb_checkpoints/00.ipynb", ".git/x.ipynb", "b.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}")
    assert submissions.find_submissions(tmp_path) == [tmp_path / "ann" / "00.ipynb"]


def test_a_file_that_is_not_json_gets_a_row(tmp_path):
    path = tmp_path / "erin" / "00_orientation.ipynb"
    path.parent.mkdir()
    path.write_text("{ not json")
    row = submissions.grade_notebook(path, tmp_path, course_exercises(), timeout_s=5.0)
    assert (row.student, row.status, row.score, row.max_score) == ("erin", outcomes.MALFORMED, 0, 1)
    assert "not a valid notebook" in row.reason
    assert row.results[0].status == outcomes.NOT_RUN


def test_a_notebook_of_no_course_gets_a_row(tmp_path):
    path = tmp_path / "homework.ipynb"
    nbformat.write(tiny("print('hi')"), path)
    row = submissions.grade_notebook(path, tmp_path, course_exercises(), timeout_s=5.0)
    assert row.status == outcomes.UNKNOWN and "00_orientation.ipynb" in row.reason


def test_the_graders_own_failure_is_a_row(tmp_path, monkeypatch):
    def broken(nb, exercises):
        raise RuntimeError("the grader broke")

    monkeypatch.setattr(submissions, "restore_checks", broken)
    path = tmp_path / "gus" / "00_orientation.ipynb"
    path.parent.mkdir()
    nbformat.write(course(), path)
    row = submissions.grade_notebook(path, tmp_path, course_exercises(), timeout_s=5.0)
    assert (row.student, row.status) == ("gus", outcomes.GRADER_ERROR)
    assert row.reason == "RuntimeError('the grader broke')"


def test_a_kernel_that_dies_gets_a_row(tmp_path):
    path = tmp_path / "fay_00_orientation.ipynb"
    nbformat.write(tiny("import os\nos._exit(1)"), path)
    row = submissions.grade_notebook(path, tmp_path, course_exercises(), timeout_s=60.0)
    assert row.status == outcomes.KERNEL_DIED and (row.score, row.max_score) == (0, 1)
    assert "not reached" in row.results[0].message


def test_grading_five_submissions(tmp_path):
    """The acceptance case: five notebooks, five rows, the right scores, no crash."""
    root = tmp_path / "submitted"
    learners = {
        "alice": complete(),
        "bob": course(),
        "carol": with_answer("    return a @ b.T"),
        "dan": with_answer("    while True:\n        pass"),
    }
    for student, nb in learners.items():
        (root / student).mkdir(parents=True)
        nbformat.write(nb, root / student / "00_orientation.ipynb")
    (root / "erin").mkdir()
    (root / "erin" / "00_orientation.ipynb").write_text("this is not { json")

    rows = {s.student: s for s in submissions.grade(root, timeout_s=40.0)}
    assert sorted(rows) == ["alice", "bob", "carol", "dan", "erin"]
    got = {name: (s.status, s.score, s.max_score) for name, s in rows.items()}
    assert got == {
        "alice": (outcomes.RAN, 1, 1),
        "bob": (outcomes.RAISED, 0, 1),
        "carol": (outcomes.RAN, 0, 1),
        "dan": (outcomes.TIMED_OUT, 0, 1),
        "erin": (outcomes.MALFORMED, 0, 1),
    }
    message = {name: s.results[0].message for name, s in rows.items()}
    assert message["alice"].startswith("✓ cosine_similarity passes")
    assert "still raises NotImplementedError" in message["bob"]
    assert "plain dot product" in message["carol"]
    assert "did not return within 40 s" in rows["dan"].reason  # the check's call never ended
    assert message["dan"].startswith("`cosine_similarity` never returned")
    assert rows["bob"].reason.startswith("cell ") and "NotImplementedError" in rows["bob"].reason

    csv_path, html_path = write_gradebook(list(rows.values()), root, tmp_path)
    assert len(list(csv.DictReader(csv_path.open(encoding="utf-8")))) == 5
    assert html_path.read_text(encoding="utf-8").count("<tr>") == 6  # header and five rows


def _before_check(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """``nb`` with a cell of ``source`` just before its check cell."""
    index = next(i for i, c in enumerate(nb.cells) if "checks.check_cosine" in c.source)
    nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    return nb


_PATCH_EVERY_CHECK = """
import sys
import emgeo.geometry

for name, module in list(sys.modules.items()):
    if name.startswith("emgeo.course.checks"):
        for attr in dir(module):
            if attr.startswith("check_"):
                setattr(module, attr, lambda fn, *a, **k: print("✓ passes"))
emgeo.geometry.cosine_similarity_matrix = lambda a, b: a @ b.T
"""
_SILENCE_THE_COMPARISONS = """
import emgeo.course.checks.core as core

core._expect_close = core._expect_shape = core._expect_match = lambda *a, **k: None
core._call = lambda fn, *args: None
"""


def test_cheating_earns_nothing_and_the_walls_hold(tmp_path):
    """A replaced check, patched modules, silenced comparisons: each scores 0 for the exercise
    it fakes; a submission that reads another's or writes outside its folder fails to."""
    root = tmp_path / "submitted"
    learners = {
        "alice": complete(),
        "mallory": _before_check(course(), "checks.check_cosine_similarity = lambda fn: None"),
        "oscar": _before_check(with_answer("    return a @ b.T"), _PATCH_EVERY_CHECK),
        "trudy": _before_check(with_answer("    return a @ b.T"), _SILENCE_THE_COMPARISONS),
        "eve": _before_check(complete(), f"open({str(root / 'alice' / '00_orientation.ipynb')!r})"),
        "walt": _before_check(complete(), f"open({str(tmp_path / 'escape.txt')!r}, 'w')"),
    }
    for student, nb in learners.items():
        (root / student).mkdir(parents=True)
        nbformat.write(nb, root / student / "00_orientation.ipynb")

    rows = {s.student: s for s in submissions.grade(root, timeout_s=60.0)}
    scores = {name: s.score for name, s in rows.items()}
    assert scores == {"alice": 1, "mallory": 0, "oscar": 0, "trudy": 0, "eve": 1, "walt": 1}
    assert "still raises NotImplementedError" in rows["mallory"].results[0].message
    assert "plain dot product" in rows["oscar"].results[0].message
    assert "plain dot product" in rows["trudy"].results[0].message
    assert len({s.seed for s in rows.values()}) == len(rows)  # a seed drawn for every run
    if isolation().walled:
        assert {s.isolation for s in rows.values()} == {"isolated"}
        assert rows["eve"].status == outcomes.RAISED and "FileNotFoundError" in rows["eve"].reason
        assert rows["walt"].status == outcomes.RAISED and "Read-only" in rows["walt"].reason
        assert not (tmp_path / "escape.txt").exists()
    else:
        assert all(s.isolation.startswith("not isolated") for s in rows.values())
