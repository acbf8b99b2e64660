"""Course notebooks as learners hand them in, for the grading tests: notebook 00 as the course ships
it, with the reference solution, with another answer in place of the stub, and tiny notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat

from emgeo.config import SOLUTIONS_DIR
from emgeo.course.build import BEGIN, END, STUB, course_notebook

SOLUTIONS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
ORIENTATION = SOLUTIONS_DIR / "00_orientation.ipynb"


def course(path: Path = ORIENTATION) -> nbformat.NotebookNode:
    """The learner's notebook, generated from its source as build-course does."""
    return course_notebook(nbformat.read(path, as_version=4))


def with_answer(body: str) -> nbformat.NotebookNode:
    """Notebook 00 as a learner who wrote ``body`` (indented) in place of the stub."""
    nb = course()
    stub = "\n".join("    " + line for line in STUB)
    cell = next(c for c in nb.cells if stub in c.source)
    cell.source = cell.source.replace(stub, body)
    return nb


def complete() -> nbformat.NotebookNode:
    """Notebook 00 as a learner who wrote the reference solution."""
    solution = next(c for c in nbformat.read(ORIENTATION, as_version=4).cells if BEGIN in c.source)
    lines = [line for line in solution.source.splitlines() if line.strip() not in (BEGIN, END)]
    nb = course()
    cell = next(c for c in nb.cells if STUB[1] in c.source)
    cell.source = "\n".join(lines)
    return nb


def tiny(*sources: str) -> nbformat.NotebookNode:
    """A notebook of one code cell per source."""
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
