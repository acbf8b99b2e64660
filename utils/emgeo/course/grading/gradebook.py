"""The gradebook: one row per submission, one column per exercise, as CSV and as an HTML page.

Each row says how its kernel was isolated (a run that was not is marked in the page) and the seed
the grader drew for its checks' inputs.

The page is rendered from the package's Jinja2 template ``templates/gradebook.html.j2`` with
autoescaping on: a student's name, file or check message is shown as text, never as markup.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2

from emgeo.course.grading.outcomes import FAILED, PASSED, RAISED, RAN, Submission

TEMPLATE = "gradebook.html.j2"  # in emgeo/course/grading/templates/
_CSS_CLASS = {PASSED: "passed", FAILED: "failed"}  # any other status: "notrun"
_MARK = {PASSED: "✓", FAILED: "✗"}  # any other status: "–"


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
            "isolation": s.isolation,
            "seed": "" if s.seed is None else str(s.seed),
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


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("emgeo.course.grading", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE)


def _html_row(s: Submission, root: Path, columns: list[tuple[str, str]]) -> dict[str, Any]:
    """What the template shows of one submission; a cell is None where it has no such exercise."""
    by_name = {r.name: r for r in s.results} if s.notebook else {}
    cells = []
    for notebook, name in columns:
        r = by_name.get(name) if s.notebook == notebook else None
        cells.append(
            None
            if r is None
            else {
                "css": _CSS_CLASS.get(r.status, "notrun"),
                "mark": _MARK.get(r.status, "–"),
                "status": r.status,
                "message": r.message,
            }
        )
    return {
        "student": s.student,
        "file": str(s.path.relative_to(root)),
        "notebook": s.notebook or "",
        "status": s.status,
        "problem": s.status != RAN,
        "reason": s.reason,
        "score": s.score,
        "max_score": s.max_score,
        "isolation": s.isolation,
        "cells": cells,
    }


def render_html(submissions: Sequence[Submission], root: Path) -> str:
    """A self-contained HTML summary: one row per submission, one column per exercise."""
    columns = _columns(submissions)
    return _template().render(
        root=str(root),
        n_submissions=len(submissions),
        n_ok=sum(s.status in (RAN, RAISED) for s in submissions),
        not_isolated=sum(s.isolation not in ("", "isolated") for s in submissions),
        columns=[f"{notebook[:2]} {name}" for notebook, name in columns],
        rows=[_html_row(s, root, columns) for s in submissions],
    )


def write_gradebook(submissions: Sequence[Submission], root: Path, out_dir: Path) -> list[Path]:
    """Write ``gradebook.csv`` and ``gradebook.html`` into ``out_dir``; return their paths."""
    csv_path = write_csv(gradebook_rows(submissions, root), out_dir / "gradebook.csv")
    html_path = out_dir / "gradebook.html"
    html_path.write_text(render_html(submissions, root), encoding="utf-8")
    return [csv_path, html_path]
