"""emgeo.course.grading.gradebook: one CSV row and one HTML row per submission, one column per
exercise, and whatever a student wrote shown as text in the page, never as markup."""

from __future__ import annotations

import csv

from emgeo.course.grading import gradebook
from emgeo.course.grading.outcomes import (
    FAILED,
    NOT_RUN,
    PASSED,
    RAISED,
    RAN,
    UNKNOWN,
    ExerciseResult,
    Submission,
)


def _rows(root):
    ok = ExerciseResult("f", PASSED, "✓ f passes", 1, 1)
    bad = ExerciseResult("f", FAILED, "<b>wrong</b>", 0, 1)
    return [
        Submission("ann", root / "ann.ipynb", "00_x", RAN, "", [ok]),
        Submission("ben", root / "ben.ipynb", "00_x", RAISED, "cell 3", [bad]),
    ]


def test_gradebook_csv_and_html(tmp_path):
    csv_path, html_path = gradebook.write_gradebook(_rows(tmp_path), tmp_path, tmp_path / "out")
    table = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [(r["student"], r["score"], r["00 f"]) for r in table] == [
        ("ann", "1", "passed"),
        ("ben", "0", "failed"),
    ]
    assert table[1]["00 f message"] == "<b>wrong</b>"
    page = html_path.read_text(encoding="utf-8")
    assert "&lt;b&gt;wrong&lt;/b&gt;" in page and "<b>wrong" not in page
    assert page.count("<tr>") == 3 and "2 submission(s)" in page and "2 ran to the end" in page


def test_the_page_escapes_every_field_a_student_controls(tmp_path):
    folder = tmp_path / "<script>x</script>"
    rows = [
        Submission("<i>eve</i>", folder / "a&b.ipynb", None, UNKNOWN, "matches <no> notebook"),
        Submission(
            "", folder / "c.ipynb", "00_x", RAN, "", [ExerciseResult("g", NOT_RUN, "", 0, 1)]
        ),
    ]
    page = gradebook.render_html(rows, tmp_path)
    for markup in ("<script>", "<i>", "<no>", "a&b"):
        assert markup not in page
    assert "&lt;i&gt;eve&lt;/i&gt;" in page and "a&amp;b.ipynb" in page
    assert '<td class="problem">not a course notebook' in page  # a row that did not run is marked
    assert '<td class="notrun">– not run</td>' in page and "<th>00 g</th>" in page


def test_columns_follow_course_order_whatever_the_row_order(tmp_path):
    first = Submission(
        "a", tmp_path / "a.ipynb", "01_y", RAN, "", [ExerciseResult("h", PASSED, "", 1, 1)]
    )
    second = Submission(
        "b", tmp_path / "b.ipynb", "00_x", RAN, "", [ExerciseResult("f", PASSED, "", 1, 1)]
    )
    rows = gradebook.gradebook_rows([first, second], tmp_path)
    assert [k for k in rows[0] if k in ("00 f", "01 h")] == ["00 f", "01 h"]
    assert (rows[0]["00 f"], rows[0]["01 h"], rows[1]["00 f"]) == ("", "passed", "passed")
