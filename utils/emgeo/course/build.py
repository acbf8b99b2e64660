"""Generate course/ from solutions/: the learner's notebooks, with exercises stubbed out.

solutions/NN_*.ipynb is the single source. For each notebook:

- code between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` becomes ``# YOUR CODE HERE`` and
  ``raise NotImplementedError()``, at the indentation of the ``# BEGIN SOLUTION`` line;
- cells tagged ``solution`` are dropped (worked answers, solution-only plots);
- outputs, execution counts and execution metadata are cleared;
- after every check cell, every cell with a figure and every cell tagged ``expected``, a markdown
  cell shows what the course's own run of that cell printed and drew (figures as attachments),
  folded under "Expected output", so a learner can compare without opening solutions/;
- links to the notebook's own location (Colab/Binder badges) are pointed at course/.

``emgeo build-course --check`` regenerates in memory and fails if course/ differs.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from emgeo.config import COURSE_DIR, SOLUTIONS_DIR
from emgeo.course.grading.exercises import add_nbgrader_metadata
from emgeo.errors import BuildError

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
SOLUTION_TAG = "solution"
EXPECTED_TAG = "expected"  # a cell whose output course/ shows as the result to expect
NO_EXPECTED_TAGS = ("nbval-ignore-output", SOLUTION_TAG)  # machine facts; solution-only cells
EXPECTED_MAX_LINES = 40
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_BEGIN_RE = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
_END_RE = re.compile(r"^\s*# END SOLUTION\s*$")


def stub_source(source: str, where: str = "<cell>") -> str:
    """Replace every solution block in ``source`` by the stub, keeping the block's indentation."""
    out: list[str] = []
    indent: str | None = None
    for lineno, line in enumerate(source.splitlines(), start=1):
        begin, end = _BEGIN_RE.match(line), _END_RE.match(line)
        if begin:
            if indent is not None:
                raise BuildError(f"{where}, line {lineno}: nested {BEGIN}")
            indent = begin.group("indent")
            out.extend(indent + s for s in STUB)
        elif end:
            if indent is None:
                raise BuildError(f"{where}, line {lineno}: {END} without {BEGIN}")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise BuildError(f"{where}: {BEGIN} is never closed")
    return "\n".join(out)


def _shows_expected(cell: nbformat.NotebookNode) -> bool:
    if cell.cell_type != "code" or not cell.get("outputs"):
        return False
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & set(NO_EXPECTED_TAGS):
        return False
    has_figure = any("image/png" in o.get("data", {}) for o in cell.outputs)
    return EXPECTED_TAG in tags or has_figure or "checks.check_" in cell.source


def _output_text(cell: nbformat.NotebookNode) -> str:
    """What a cell printed and returned as text: no progress bars, warnings or figure reprs."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream" and output.get("name") == "stdout":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "text/plain" in data and not {"image/png", WIDGET_VIEW} & set(data):
                parts.append(data["text/plain"] + "\n")
    lines = "".join(parts).rstrip("\n").splitlines()
    if len(lines) > EXPECTED_MAX_LINES:
        lines = lines[:EXPECTED_MAX_LINES] + [f"... ({len(lines) - EXPECTED_MAX_LINES} more lines)"]
    return "\n".join(lines)


def expected_cell(cell: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    """A markdown cell showing ``cell``'s stored output (text in a block, figures attached),
    folded under "Expected output"; None when there is nothing to show."""
    if not _shows_expected(cell):
        return None
    text = _output_text(cell)
    figures = [o.data["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
    if not text and not figures:
        return None
    body = ["<details>", "<summary>Expected output (the course's own run)</summary>", ""]
    if text:
        body += ["```text", text, "```", ""]
    attachments = {}
    for k, png in enumerate(figures, start=1):
        name = f"expected-{k}.png"
        attachments[name] = {"image/png": png}
        body += [f"![expected figure {k}](attachment:{name})", ""]
    body.append("</details>")
    md = nbformat.v4.new_markdown_cell("\n".join(body))
    if "id" in cell:  # a stable id, so that a rebuild writes the same file
        md["id"] = f"{cell['id'][:55]}-expected"
    md.metadata["tags"] = [EXPECTED_TAG]
    if attachments:
        md["attachments"] = attachments
    return md


def course_notebook(nb: nbformat.NotebookNode, where: str = "<notebook>") -> nbformat.NotebookNode:
    """The learner's version of a solutions notebook (a new object; ``nb`` is not changed)."""
    nb = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(nb.cells):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        cell.source = cell.source.replace("/blob/main/solutions/", "/blob/main/course/")
        cell.source = cell.source.replace("labpath=solutions/", "labpath=course/")
        expected = expected_cell(cell)
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source, where=f"{where}, cell {i}")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
        if expected is not None:
            cells.append(expected)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    add_nbgrader_metadata(nb)  # grade ids, points, locked check cells for nbgrader users
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    """Serialize as nbformat does, with a trailing newline, so files compare byte for byte."""
    return nbformat.writes(nb) + "\n"


@dataclass
class BuildResult:
    written: list[Path]
    drifted: list[Path]


def build_course(
    solutions_dir: Path = SOLUTIONS_DIR, course_dir: Path = COURSE_DIR, check: bool = False
) -> BuildResult:
    """Generate every course notebook; with ``check`` write nothing and report the drifted ones."""
    written, drifted = [], []
    sources = sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb"))
    expected_names = {p.name for p in sources}
    for src in sources:
        text = dumps(course_notebook(nbformat.read(src, as_version=4), where=str(src)))
        dst = course_dir / src.name
        if not dst.exists() or dst.read_text() != text:
            drifted.append(dst)
            if not check:
                course_dir.mkdir(parents=True, exist_ok=True)
                dst.write_text(text)
                written.append(dst)
    # A course notebook with no source is drift too: it would never be updated again.
    for orphan in sorted(course_dir.glob("[0-9][0-9]_*.ipynb")):
        if orphan.name not in expected_names:
            drifted.append(orphan)
            if not check:
                orphan.unlink()
    return BuildResult(written=written, drifted=drifted)


def exercise_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells that hold a solution block."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and BEGIN in c.source]


_HEADER = re.compile(r"^> \*\*Exercise[^*]*\*\*\s*\n> Difficulty [^\n]*about (\d+) minutes", re.M)


def exercise_minutes(nb: nbformat.NotebookNode) -> list[int]:
    """The minutes each exercise header of ``nb`` gives (``> **Exercise · ...**`` followed by
    ``> Difficulty ... · about N minutes``), in order."""
    return [
        int(m.group(1))
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for m in _HEADER.finditer(cell.source)
    ]
