"""Grade submissions: every ``*.ipynb`` under a folder is one, graded alone in a fresh kernel.

Each runs top to bottom (cpu profile, no network, a wall-clock budget per notebook), with its
check cells restored from the course, and every exercise's check gives one result: passed, failed
with the check's message, or not run. A submission that is not a notebook, is no course notebook,
raises, hangs or kills its kernel still gets a row that says why.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from emgeo.course.grading.exercises import CHECK_LINE, Exercise, course_exercises, restore_checks
from emgeo.course.grading.kernel import KernelRun, run_notebook
from emgeo.course.grading.outcomes import (
    GRADER_ERROR,
    MALFORMED,
    RAISED,
    RAN,
    UNKNOWN,
    ExerciseResult,
    Submission,
    check_result,
    first_raise,
    not_run,
    one_line,
)

DEFAULT_TIMEOUT_S = 600.0


def identify(path: Path, nb: NotebookNode | None, course: dict[str, list[Exercise]]) -> str | None:
    """Which course notebook a submission is: by its file name, else by the checks it calls."""
    for name in sorted(course, key=len, reverse=True):
        if name in path.stem:
            return name
    if nb is None:
        return None
    calls = {m.group("check") for c in nb.cells for m in CHECK_LINE.finditer(c.source)}
    overlap = {name: len(calls & {e.check for e in exs}) for name, exs in course.items()}
    best = max(overlap, key=lambda name: overlap[name], default=None)
    return best if best is not None and overlap[best] > 0 else None


def student_name(path: Path, root: Path, notebook: str | None) -> str:
    """The student a submission belongs to: its first folder under ``root``, else its file name."""
    relative = path.relative_to(root)
    if len(relative.parts) > 1:
        return relative.parts[0]
    stem = path.stem.replace(notebook, "") if notebook else path.stem
    return stem.strip("_-. ") or path.stem


def grade_notebook(
    path: Path, root: Path, course: dict[str, list[Exercise]], timeout_s: float
) -> Submission:
    """Grade one submission; never raises: what went wrong is the row's status and reason."""
    start = time.monotonic()
    try:
        submission = _grade(path, root, course, timeout_s)
    except Exception as err:  # the grader's own failure is a row too, never a crash
        submission = Submission(
            student_name(path, root, None), path, None, GRADER_ERROR, one_line(f"{err!r}")
        )
    submission.seconds = round(time.monotonic() - start, 1)
    return submission


def _grade(
    path: Path, root: Path, course: dict[str, list[Exercise]], timeout_s: float
) -> Submission:
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:
        name = identify(path, None, course)
        reason = one_line(f"not a valid notebook: {type(err).__name__}: {err}")
        results = [not_run(e, "the file is not a valid notebook") for e in course.get(name, [])]
        return Submission(student_name(path, root, name), path, name, MALFORMED, reason, results)
    name = identify(path, nb, course)
    student = student_name(path, root, name)
    if name is None:
        known = ", ".join(f"{n}.ipynb" for n in course)
        reason = f"matches no course notebook by name or checks (expected one of {known})"
        return Submission(student, path, None, UNKNOWN, reason)
    positions = restore_checks(nb, course[name])
    with tempfile.TemporaryDirectory(prefix="emgeo-grade-") as tmp:
        run = run_notebook(nb, Path(tmp), timeout_s)
    results = [
        _result(nb, run, exercise, positions.get(exercise.name)) for exercise in course[name]
    ]
    status, reason = run.status, run.reason
    if status == RAN:
        reason = first_raise(nb, skip=set(positions.values()))
        status = RAISED if reason else RAN
    return Submission(student, path, name, status, reason, results)


def _result(
    nb: NotebookNode, run: KernelRun, exercise: Exercise, index: int | None
) -> ExerciseResult:
    if index is None:
        return not_run(exercise, "the check cell could not be placed")
    if index in run.executed:
        return check_result(nb.cells[index], exercise)
    if index == run.stopped_at:
        return not_run(exercise, f"stopped in this check: the notebook {run.reason}")
    return not_run(exercise, f"not reached: the notebook {run.reason}")


def find_submissions(root: Path) -> list[Path]:
    """Every ``*.ipynb`` under ``root`` (checkpoints and hidden folders left out), sorted."""
    return sorted(
        p
        for p in root.rglob("*.ipynb")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def grade(
    root: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    reference_dir: Path | None = None,
    progress: Callable[[Submission], None] | None = None,
) -> list[Submission]:
    """Grade every submission under ``root``, one at a time; call ``progress`` after each."""
    course = course_exercises(reference_dir)
    graded = []
    for path in find_submissions(root):
        submission = grade_notebook(path, root, course, timeout_s)
        graded.append(submission)
        if progress is not None:
            progress(submission)
    return graded
