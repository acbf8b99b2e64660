"""emgeo.course.grade, the commands: ``emgeo grade`` prints a line per submission and writes the
gradebook, or says why it cannot; ``emgeo nbgrader-source`` writes one assignment per notebook.
(The grading itself is tested in tests/course/grading/.)"""

from __future__ import annotations

import argparse
import csv

import nbformat
from notebook_builders import SOLUTIONS, tiny

from emgeo.course import grade


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="emgeo")
    grade.add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_grade_writes_the_gradebook_and_a_line_per_submission(tmp_path, capsys):
    root = tmp_path / "submitted"
    (root / "erin").mkdir(parents=True)
    (root / "erin" / "00_orientation.ipynb").write_text("{ not json")
    nbformat.write(tiny("print('hi')"), root / "homework.ipynb")
    assert _run("grade", str(root), "--out", str(tmp_path / "out"), "--timeout", "5") == 0
    lines = capsys.readouterr().out.splitlines()
    graded = [line for line in lines if line.startswith(("erin ", "homework "))]
    assert len(graded) == 2 and "malformed" in graded[0] and "not a course notebook" in graded[1]
    assert lines[-2:] == [
        f"wrote {tmp_path / 'out' / 'gradebook.csv'}",
        f"wrote {tmp_path / 'out' / 'gradebook.html'}",
    ]
    table = list(csv.DictReader((tmp_path / "out" / "gradebook.csv").open(encoding="utf-8")))
    assert [(r["student"], r["status"]) for r in table] == [
        ("erin", "malformed"),
        ("homework", "not a course notebook"),
    ]


def test_grade_says_why_it_cannot(tmp_path, capsys):
    assert _run("grade", str(tmp_path / "missing")) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert _run("grade", str(tmp_path)) == 1
    assert "no notebook under" in capsys.readouterr().err


def test_nbgrader_source_writes_one_assignment_per_notebook(tmp_path, capsys):
    assert _run("nbgrader-source", str(tmp_path)) == 0
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == len(SOLUTIONS)
    assert (tmp_path / "source" / "00_orientation" / "00_orientation.ipynb").is_file()
