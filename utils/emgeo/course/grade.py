"""Grade students' course notebooks: ``emgeo grade SUBMISSIONS_DIR`` writes a gradebook.

Every ``*.ipynb`` under the directory is one submission. Each runs top to bottom in a fresh kernel
(cpu profile, no network, a wall-clock budget per notebook), with its check cells restored from the
course, and every exercise's check gives one result: passed, failed with the check's message, or not
run. A submission that is not a notebook, is no course notebook, raises, hangs or kills its kernel
still gets a row that says why. The gradebook is written as CSV and as an HTML summary.

The same exercises carry nbgrader metadata (:func:`add_nbgrader_metadata`): each exercise's
function cell is a solution cell, each check cell a locked autograded cell worth one point, so an
instructor who uses nbgrader can grade with it instead.
"""

from __future__ import annotations

import csv
import functools
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets.config import Config

from emgeo.config import SOLUTIONS_DIR
from emgeo.course.notebooks import notebook_env
from emgeo.errors import USED_REFERENCE

DEFAULT_TIMEOUT_S = 600.0
STARTUP_TIMEOUT_S = 120
MESSAGE_CHARS = 400
POINTS_PER_CHECK = 1
NBGRADER_SCHEMA = 3
CHECK_LINE = re.compile(r"^checks\.(?P<check>check_\w+)\(\s*(?P<fn>\w+)", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Variables a student's code must not see: credentials of the grader's own accounts.
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)

PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"
RAN, RAISED, TIMED_OUT, KERNEL_DIED = "ran", "raised", "timed out", "kernel died"
MALFORMED, UNKNOWN, GRADER_ERROR = "malformed", "not a course notebook", "grader error"


# ---------------------------------------------------------------- exercises and nbgrader metadata


@dataclass(frozen=True)
class Exercise:
    """One exercise of a course notebook: the learner's function and the check that grades it."""

    name: str  # the function the learner writes, e.g. "cosine_similarity"
    check: str  # the check that grades it, e.g. "check_cosine_similarity"
    check_source: str  # the check cell as the course ships it
    points: int = POINTS_PER_CHECK


@dataclass(frozen=True)
class _ExerciseCells:
    solution: int | None  # index of the cell that defines the function, if any
    check: int  # index of the check cell
    exercise: Exercise


def _find_exercise_cells(nb: NotebookNode) -> list[_ExerciseCells]:
    """Every top-level ``checks.check_<name>(fn)`` cell, with the cell above it defining ``fn``."""
    found = []
    for index, cell in enumerate(nb.cells):
        match = CHECK_LINE.search(cell.source) if cell.cell_type == "code" else None
        if not match:
            continue
        fn = match.group("fn")
        defines = re.compile(rf"^\s*(def|class) {re.escape(fn)}\b", re.MULTILINE)
        solution = next(
            (j for j in range(index - 1, -1, -1) if defines.search(nb.cells[j].source)), None
        )
        exercise = Exercise(name=fn, check=match.group("check"), check_source=cell.source)
        found.append(_ExerciseCells(solution, index, exercise))
    return found


def exercises(nb: NotebookNode) -> list[Exercise]:
    """The exercises of a course (or solutions) notebook, in order."""
    return [cells.exercise for cells in _find_exercise_cells(nb)]


def add_nbgrader_metadata(nb: NotebookNode) -> NotebookNode:
    """Mark every exercise for nbgrader (schema 3), in place; return ``nb``.

    The function cell becomes a solution cell (grade id: the function's name); the check cell a
    locked, autograded test cell worth :data:`POINTS_PER_CHECK` (grade id: the check's name), which
    JupyterLab also shows as read-only.
    """
    for cells in _find_exercise_cells(nb):
        if cells.solution is not None:
            nb.cells[cells.solution].metadata["nbgrader"] = _nbgrader(
                cells.exercise.name, solution=True
            )
        check = nb.cells[cells.check]
        check.metadata["nbgrader"] = _nbgrader(
            cells.exercise.check, grade=True, locked=True, points=cells.exercise.points
        )
        check.metadata.update(editable=False, deletable=False)
    return nb


def _nbgrader(
    grade_id: str,
    solution: bool = False,
    grade: bool = False,
    locked: bool = False,
    points: int | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": NBGRADER_SCHEMA,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return meta


def write_nbgrader_source(out_root: Path, solutions_dir: Path | None = None) -> list[Path]:
    """Write nbgrader's ``source/`` folder: one assignment per solutions notebook.

    Each notebook goes to ``out_root/source/<name>/<name>.ipynb`` with its outputs cleared and
    :func:`add_nbgrader_metadata` applied; ``nbgrader generate_assignment <name>`` then makes the
    learner's version (the solution markers are nbgrader's own).
    """
    written = []
    for src in sorted((solutions_dir or SOLUTIONS_DIR).glob("[0-9][0-9]_*.ipynb")):
        nb = add_nbgrader_metadata(nbformat.read(src, as_version=4))
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        dst = out_root / "source" / src.stem / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dst)
        written.append(dst)
    return written


# ---------------------------------------------------------------- results


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

    @property
    def score(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> int:
        return sum(r.max_points for r in self.results)


# ---------------------------------------------------------------- running a notebook in a kernel


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that starts a kernel in a new network namespace, or () if none works.

    Linux's ``unshare --net`` (as root, or with ``--map-root-user`` where user namespaces are
    allowed) leaves the kernel only a loopback device that is down: no connection can leave it.
    Elsewhere the kernel runs without that, and only the offline environment applies.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    candidates = [(unshare, "--net")] if os.geteuid() == 0 else []
    candidates.append((unshare, "--map-root-user", "--net"))
    for prefix in candidates:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


class OfflineKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel with :func:`network_isolation`'s prefix.

    Used with the ``ipc`` transport (Unix sockets), which works across network namespaces.
    """

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*network_isolation(), *super().format_kernel_cmd(extra_arguments)]


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: the course's headless one, offline, with no credentials.

    Hugging Face and transformers are told they are offline, proxies point to a closed local port
    (so HTTP clients that honour them fail at once even without a network namespace), and every
    variable that looks like a credential (token, key, secret, password) is removed.
    """
    env = {k: v for k, v in (base or notebook_env()).items() if not _SECRET.search(k)}
    dead_proxy = "http://127.0.0.1:9"
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        ALL_PROXY=dead_proxy,
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        all_proxy=dead_proxy,
        NO_PROXY="",
        no_proxy="",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@dataclass
class _Run:
    executed: set[int] = field(default_factory=set)
    stopped_at: int | None = None  # the cell that timed out or killed the kernel
    status: str = RAN
    reason: str = ""


def run_notebook(nb: NotebookNode, workdir: Path, timeout_s: float) -> _Run:
    """Execute ``nb`` in place in a fresh offline kernel in ``workdir``, within ``timeout_s``."""
    run = _Run()
    deadline = time.monotonic() + timeout_s
    config = Config({"KernelManager": {"transport": "ipc", "ip": str(workdir / ".ipc" / "k")}})
    (workdir / ".ipc").mkdir(exist_ok=True)
    client = NotebookClient(
        nb,
        config=config,
        kernel_name="python3",
        kernel_manager_class=OfflineKernelManager,
        allow_errors=True,
        startup_timeout=STARTUP_TIMEOUT_S,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        shutdown_kernel="immediate",
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    with client.setup_kernel(env=kernel_env()):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if time.monotonic() >= deadline:
                return _stop(run, index, TIMED_OUT, f"did not finish within {timeout_s:g} s")
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                return _stop(run, index, TIMED_OUT, f"did not finish within {timeout_s:g} s")
            except DeadKernelError:
                return _stop(run, index, KERNEL_DIED, "killed its kernel")
            run.executed.add(index)
    return run


def _stop(run: _Run, index: int, status: str, why: str) -> _Run:
    run.stopped_at, run.status, run.reason = index, status, f"{why} in cell {index}"
    return run


# ---------------------------------------------------------------- reading results


def _one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(cell: NotebookNode) -> str | None:
    """``"Name: value"`` of the first error output of a cell, if any."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name, value = output.get("ename", "Error"), output.get("evalue", "")
            return _one_line(f"{name}: {value}" if value else name)
    return None


def _stdout(cell: NotebookNode) -> str:
    return "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stdout"
    )


def check_result(cell: NotebookNode, exercise: Exercise) -> ExerciseResult:
    """The result of an executed check cell: an error output fails it, anything else passes."""
    error = _error(cell)
    if error is None:
        lines = [line for line in _stdout(cell).splitlines() if line.strip()]
        message = _one_line(lines[-1] if lines else f"{exercise.check} passed")
        if USED_REFERENCE in message:  # the learner went on with checks.reference(...)
            return ExerciseResult(exercise.name, FAILED, message, 0, exercise.points)
        return ExerciseResult(exercise.name, PASSED, message, exercise.points, exercise.points)
    message = error.removeprefix("CheckFailed: ").split(" To go on with", 1)[0]  # the diagnosis
    return ExerciseResult(exercise.name, FAILED, message, 0, exercise.points)


def _not_run(exercise: Exercise, why: str) -> ExerciseResult:
    return ExerciseResult(exercise.name, NOT_RUN, why, 0, exercise.points)


def _first_raise(nb: NotebookNode, skip: set[int]) -> str:
    for index, cell in enumerate(nb.cells):
        error = _error(cell) if cell.cell_type == "code" and index not in skip else None
        if error:
            return f"cell {index} raised {error}"
    return ""


# ---------------------------------------------------------------- restoring the check cells


def restore_checks(nb: NotebookNode, course: Sequence[Exercise]) -> dict[str, int]:
    """Put the course's check cells back into a student's notebook; return each one's index.

    A check cell is found by its nbgrader grade id, else by its ``checks.check_*(fn)`` line; its
    source is reset to the course's (a student cannot edit a check into passing). A deleted check
    cell is inserted again after the cell that defines the function, or at the end.
    """
    for exercise in course:
        index = _locate_check(nb, exercise)
        if index is None:
            index = _insert_check(nb, exercise)
        nb.cells[index].source = exercise.check_source
    located = {e.name: _locate_check(nb, e) for e in course}
    return {name: index for name, index in located.items() if index is not None}


def _locate_check(nb: NotebookNode, exercise: Exercise) -> int | None:
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade_id") == exercise.check:
            return index
    for index, cell in enumerate(nb.cells):
        match = CHECK_LINE.search(cell.source) if cell.cell_type == "code" else None
        if match and match.group("check") == exercise.check:
            return index
    return None


def _insert_check(nb: NotebookNode, exercise: Exercise) -> int:
    defines = re.compile(rf"^\s*(def|class) {re.escape(exercise.name)}\b", re.MULTILINE)
    after = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and defines.search(c.source)
    ]
    index = after[-1] + 1 if after else len(nb.cells)
    nb.cells.insert(index, nbformat.v4.new_code_cell(exercise.check_source))
    return index


# ---------------------------------------------------------------- grading one submission


def course_exercises(reference_dir: Path | None = None) -> dict[str, list[Exercise]]:
    """The exercises of every course notebook, by notebook name (e.g. ``"00_orientation"``).

    They are read from solutions/ (the single source), whose check cells are the course's.
    """
    root = reference_dir or SOLUTIONS_DIR
    return {
        path.stem: exercises(nbformat.read(path, as_version=4))
        for path in sorted(root.glob("[0-9][0-9]_*.ipynb"))
    }


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
            student_name(path, root, None), path, None, GRADER_ERROR, _one_line(f"{err!r}")
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
        reason = _one_line(f"not a valid notebook: {type(err).__name__}: {err}")
        results = [_not_run(e, "the file is not a valid notebook") for e in course.get(name, [])]
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
        reason = _first_raise(nb, skip=set(positions.values()))
        status = RAISED if reason else RAN
    return Submission(student, path, name, status, reason, results)


def _result(nb: NotebookNode, run: _Run, exercise: Exercise, index: int | None) -> ExerciseResult:
    if index is None:
        return _not_run(exercise, "the check cell could not be placed")
    if index in run.executed:
        return check_result(nb.cells[index], exercise)
    if index == run.stopped_at:
        return _not_run(exercise, f"stopped in this check: the notebook {run.reason}")
    return _not_run(exercise, f"not reached: the notebook {run.reason}")


# ---------------------------------------------------------------- a whole directory


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


# ---------------------------------------------------------------- the gradebook


def _columns(submissions: Iterable[Submission]) -> list[tuple[str, str]]:
    """(notebook, exercise) pairs that any submission has, in course order."""
    seen: dict[tuple[str, str], None] = {}
    for s in sorted(submissions, key=lambda s: s.notebook or ""):
        for r in s.results:
            seen.setdefault((s.notebook or "", r.name), None)
    return list(seen)


def gradebook_rows(submissions: Sequence[Submission], root: Path) -> list[dict[str, str]]:
    """One row per submission: who, which notebook, status, score, and each check's result."""
    columns = _columns(submissions)
    rows = []
    for s in submissions:
        row = {
            "student": s.student,
            "file": str(s.path.relative_to(root)),
            "notebook": s.notebook or "",
            "status": s.status,
            "score": str(s.score),
            "max_score": str(s.max_score),
            "reason": s.reason,
            "seconds": f"{s.seconds:.1f}",
        }
        by_name = {r.name: r for r in s.results}
        for notebook, name in columns:
            r = by_name.get(name) if s.notebook == notebook else None
            row[f"{notebook[:2]} {name}"] = r.status if r else ""
            row[f"{notebook[:2]} {name} message"] = r.message if r else ""
        rows.append(row)
    return rows


def write_csv(rows: Sequence[dict[str, str]], path: Path) -> Path:
    """Write the gradebook rows as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fieldnames = list(rows[0]) if rows else ["student", "file", "notebook", "status", "score"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.6em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
.passed { background: #e6f4e6; } .failed { background: #fbe4e4; } .notrun { background: #f1f1f1; }
.problem { color: #a00; } small { color: #555; display: block; max-width: 28em; }
"""


def render_html(submissions: Sequence[Submission], root: Path) -> str:
    """A self-contained HTML summary: one row per submission, one column per exercise."""
    columns = _columns(submissions)
    head = "".join(f"<th>{html.escape(nb[:2])} {html.escape(name)}</th>" for nb, name in columns)
    body = "".join(_html_row(s, root, columns) for s in submissions)
    n_ok = sum(s.status in (RAN, RAISED) for s in submissions)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Gradebook</title><style>{_CSS}</style></head><body>"
        f"<h1>Gradebook</h1><p>{len(submissions)} submission(s) from "
        f"<code>{html.escape(str(root))}</code>; {n_ok} ran to the end.</p>"
        "<table><thead><tr><th>student</th><th>file</th><th>notebook</th><th>status</th>"
        f"<th>score</th>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def _html_row(s: Submission, root: Path, columns: list[tuple[str, str]]) -> str:
    by_name = {r.name: r for r in s.results} if s.notebook else {}
    cells = []
    for notebook, name in columns:
        r = by_name.get(name) if s.notebook == notebook else None
        if r is None:
            cells.append("<td></td>")
            continue
        css = {PASSED: "passed", FAILED: "failed"}.get(r.status, "notrun")
        mark = {PASSED: "✓", FAILED: "✗"}.get(r.status, "–")
        cells.append(
            f"<td class='{css}'>{mark} {r.status}<small>{html.escape(r.message)}</small></td>"
        )
    status_css = "" if s.status == RAN else " class='problem'"
    reason = f"<small>{html.escape(s.reason)}</small>" if s.reason else ""
    return (
        f"<tr><td>{html.escape(s.student)}</td><td>{html.escape(str(s.path.relative_to(root)))}"
        f"</td><td>{html.escape(s.notebook or '')}</td><td{status_css}>{html.escape(s.status)}"
        f"{reason}</td><td>{s.score} / {s.max_score}</td>{''.join(cells)}</tr>"
    )


def write_gradebook(submissions: Sequence[Submission], root: Path, out_dir: Path) -> list[Path]:
    """Write ``gradebook.csv`` and ``gradebook.html`` into ``out_dir``; return their paths."""
    csv_path = write_csv(gradebook_rows(submissions, root), out_dir / "gradebook.csv")
    html_path = out_dir / "gradebook.html"
    html_path.write_text(render_html(submissions, root), encoding="utf-8")
    return [csv_path, html_path]


# ---------------------------------------------------------------- the command


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


def run_command(args: Any) -> int:
    """``emgeo grade``: grade, print one line per submission, write the gradebook."""
    root = Path(args.submissions)
    if not root.is_dir():
        print(f"emgeo grade: {root} is not a folder", file=sys.stderr)
        return 2
    if not network_isolation():
        print("note: no network namespace here; kernels run with offline settings only")

    def report(s: Submission) -> None:
        print(
            f"{s.student:<16} {s.notebook or '-':<36} {s.score}/{s.max_score:<3} "
            f"{s.status:<22} {s.seconds:6.1f} s  {s.reason}"
        )

    submissions = grade(root, timeout_s=args.timeout, progress=report)
    if not submissions:
        print(f"emgeo grade: no notebook under {root}", file=sys.stderr)
        return 1
    for path in write_gradebook(submissions, root, Path(args.out or root)):
        print(f"wrote {path}")
    return 0
