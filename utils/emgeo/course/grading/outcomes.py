"""What grading says: the statuses of rows and exercises, and the errors in a notebook's cells.

An exercise is passed, failed (with its check's diagnosis) or not run. A submission's row says how
its notebook ran: to the end, raising somewhere, out of time, killing its kernel; or why it never
ran: not a notebook, no course notebook, or the grader's own failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from emgeo.course.grading.exercises import Exercise

MESSAGE_CHARS = 400
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"
RAN, RAISED, TIMED_OUT, KERNEL_DIED = "ran", "raised", "timed out", "kernel died"
MALFORMED, UNKNOWN, GRADER_ERROR = "malformed", "not a course notebook", "grader error"


@dataclass
class ExerciseResult:
    """What one exercise's check said about a submission."""

    name: str
    status: str  # PASSED, FAILED or NOT_RUN
    message: str
    points: int
    max_points: int


@dataclass
class Submission:
    """One graded notebook: who, which course notebook, what happened, and every exercise."""

    student: str
    path: Path
    notebook: str | None
    status: str
    reason: str = ""
    results: list[ExerciseResult] = field(default_factory=list)
    seconds: float = 0.0
    seed: int | None = None  # what the grader drew for the checks' inputs (to run them again)
    isolation: str = ""  # how its kernel was walled in (kernel.Isolation.note); "" if none ran

    @property
    def score(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> int:
        return sum(r.max_points for r in self.results)


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text`` on one line, without terminal colours, cut to ``limit`` characters."""
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(cell: NotebookNode) -> str | None:
    """``"Name: value"`` of the first error output of a cell, if any."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), output.get("evalue", "")
            return one_line(f"{name}: {value}" if value else name)
    return None


def failed(exercise: Exercise, message: str) -> ExerciseResult:
    """An exercise whose check failed, with what it said."""
    return ExerciseResult(exercise.name, FAILED, one_line(message), 0, exercise.points)


def not_run(exercise: Exercise, why: str) -> ExerciseResult:
    """An exercise whose check never ran, and why."""
    return ExerciseResult(exercise.name, NOT_RUN, why, 0, exercise.points)


def first_raise(nb: NotebookNode, skip: set[int]) -> str:
    """``"cell N raised Name: value"`` for the first code cell not in ``skip`` that raised."""
    for index, cell in enumerate(nb.cells):
        error = _error(cell) if cell.cell_type == "code" and index not in skip else None
        if error:
            return f"cell {index} raised {error}"
    return ""
