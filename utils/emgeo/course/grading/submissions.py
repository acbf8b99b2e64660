"""Grade submissions: every ``*.ipynb`` under a folder is one, graded alone in a fresh kernel.

Each runs top to bottom in a working copy of its own (cpu profile, no network, walled in where
the machine allows, a wall-clock budget per notebook), with its check cells restored from the
course. At each check cell the grader computes the verdict in its own process, on inputs drawn
from a seed it draws for this run (:mod:`~emgeo.course.grading.verdicts`): passed, failed with
the check's message, or not run. A submission that is not a notebook, is no course notebook,
raises, hangs or kills its kernel still gets a row that says why.
"""

from __future__ import annotations

import functools
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from emgeo.course.grading.exercises import CHECK_LINE, Exercise, course_exercises, restore_checks
from emgeo.course.grading.kernel import KernelRun, isolation, run_notebook
from emgeo.course.grading.outcomes import (
    GRADER_ERROR,
    MALFORMED,
    RAISED,
    RAN,
    TIMED_OUT,
    UNKNOWN,
    ExerciseResult,
    Submission,
    failed,
    first_raise,
    not_run,
    one_line,
)
from emgeo.course.grading.verdicts import verdict

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
    path: Path,
    root: Path,
    course: dict[str, list[Exercise]],
    timeout_s: float,
    hidden: Sequence[Path] = (),
) -> Submission:
    """Grade one submission; never raises: what went wrong is the row's status and reason.

    Its kernel sees neither ``root`` nor ``hidden`` (where :func:`isolation` walls it in)."""
    start = time.monotonic()
    try:
        submission = _grade(path, root, course, timeout_s, [root, *hidden])
    except Exception as err:  # the grader's own failure is a row too, never a crash
        submission = Submission(
            student_name(path, root, None), path, None, GRADER_ERROR, one_line(f"{err!r}")
        )
    submission.seconds = round(time.monotonic() - start, 1)
    return submission


def _grade(
    path: Path,
    root: Path,
    course: dict[str, list[Exercise]],
    timeout_s: float,
    hidden: Sequence[Path],
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
    seed = secrets.randbelow(2**31)  # the checks' inputs: no notebook can know them in advance
    by_index = {index: e for e in course[name] if (index := positions.get(e.name)) is not None}
    verdicts = {index: functools.partial(verdict, e, seed=seed) for index, e in by_index.items()}
    with tempfile.TemporaryDirectory(prefix="emgeo-grade-") as tmp:
        workdir = Path(tmp).resolve()
        (workdir / path.name).write_bytes(path.read_bytes())  # the submission's working copy
        run = run_notebook(nb, workdir, timeout_s, verdicts, hidden)
    results = [_result(run, exercise, positions.get(exercise.name)) for exercise in course[name]]
    status, reason = run.status, run.reason
    if status == RAN:
        reason = first_raise(nb, skip=set(positions.values()))
        status = RAISED if reason else RAN
    submission = Submission(student, path, name, status, reason, results, seed=seed)
    submission.isolation = isolation().note
    return submission


def _result(run: KernelRun, exercise: Exercise, index: int | None) -> ExerciseResult:
    if index is None:
        return not_run(exercise, "the check cell could not be placed")
    if index in run.verdicts:
        return run.verdicts[index]
    if index == run.stopped_at:  # the student's function never returned, or killed its kernel
        never = "never returned" if run.status == TIMED_OUT else "killed its kernel"
        return failed(exercise, f"`{exercise.name}` {never}: the notebook {run.reason}")
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
    hidden: Sequence[Path] = (),
) -> list[Submission]:
    """Grade every submission under ``root``, one at a time; call ``progress`` after each.

    No kernel sees ``root`` or ``hidden`` (say, the gradebook's folder)."""
    course = course_exercises(reference_dir)
    graded = []
    for path in find_submissions(root):
        submission = grade_notebook(path, root, course, timeout_s, hidden)
        graded.append(submission)
        if progress is not None:
            progress(submission)
    return graded
