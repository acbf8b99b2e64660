"""``emgeo grade SUBMISSIONS_DIR`` writes a gradebook; ``emgeo nbgrader-source DIR`` writes
solutions/ as nbgrader's source folder. The grading itself is :mod:`emgeo.course.grading`.

Every ``*.ipynb`` under the directory is one submission, run in a fresh offline kernel, walled
in where the machine allows, with the course's check cells, whose verdicts the grader computes
itself; the command prints one line per submission as it is graded, then writes
``gradebook.csv`` and ``gradebook.html``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from emgeo.course.grading.exercises import write_nbgrader_source
from emgeo.course.grading.gradebook import write_gradebook
from emgeo.course.grading.kernel import isolation
from emgeo.course.grading.outcomes import Submission
from emgeo.course.grading.submissions import DEFAULT_TIMEOUT_S, grade


def add_subcommand(sub: Any) -> None:
    """Register ``emgeo grade`` and ``emgeo nbgrader-source`` on the CLI's argparse subparsers."""
    p = sub.add_parser(
        "grade", help="run students' course notebooks and write a gradebook (CSV and HTML)"
    )
    p.add_argument("submissions", type=Path, help="a folder of submitted notebooks (searched deep)")
    p.add_argument(
        "--out", type=Path, default=None, help="where to write the gradebook (default: SUBMISSIONS)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds each notebook may run (default {DEFAULT_TIMEOUT_S})",
    )
    p.set_defaults(func=run_command)
    p = sub.add_parser(
        "nbgrader-source",
        help="write solutions/ as an nbgrader source/ folder, one assignment each",
    )
    p.add_argument("course_dir", type=Path, help="the nbgrader course folder to write into")
    p.set_defaults(func=_nbgrader_source_command)


def _nbgrader_source_command(args: Any) -> int:
    for path in write_nbgrader_source(Path(args.course_dir)):
        print(f"wrote {path}")
    return 0


def _report(s: Submission) -> None:
    """One line per graded submission, printed as soon as it is graded."""
    print(
        f"{s.student:<16} {s.notebook or '-':<36} {s.score}/{s.max_score:<3} "
        f"{s.status:<22} {s.seconds:6.1f} s  {s.reason}"
    )


def run_command(args: Any) -> int:
    """``emgeo grade``: grade, print one line per submission, write the gradebook."""
    root = Path(args.submissions)
    if not root.is_dir():
        print(f"emgeo grade: {root} is not a folder", file=sys.stderr)
        return 2
    out = Path(args.out or root)
    if not isolation().walled:
        print(f"note: kernels run {isolation().note}: each can read what the grader can")
    submissions = grade(root, timeout_s=args.timeout, progress=_report, hidden=[out])
    if not submissions:
        print(f"emgeo grade: no notebook under {root}", file=sys.stderr)
        return 1
    for path in write_gradebook(submissions, root, out):
        print(f"wrote {path}")
    return 0
