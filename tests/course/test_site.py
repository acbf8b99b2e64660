"""emgeo.course.site: widget outputs made static, launch links, the link checker, and the whole
site built from docs/ and solutions/ with every warning an error."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from emgeo.config import SOLUTIONS_DIR
from emgeo.course import site

NOTEBOOKS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
# The per-notebook compute times the instructor page states (headless run, 2-core CPU).
STATED_TIMES = {
    "00": 14,
    "01": 52,
    "02": 27,
    "03": 77,
    "04": 69,
    "05": 53,
    "06": 88,
    "07": 98,
    "08": 146,
    "09": 80,
}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _needs_sphinx():
    for module in ("sphinx", "myst_nb", "sphinx_book_theme", "jupyter_server_mathjax"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[site]')")


# ---------------------------------------------------------------- staging


def test_widget_outputs_become_what_they_showed():
    nb = site.static_widget_outputs(_read("01_toy_superposition"))
    assert "widgets" not in nb.metadata
    assert not [o for o in _outputs(nb) if site.WIDGET_VIEW in o.get("data", {})]
    explorer = next(c for c in nb.cells if "plotting.toy_explorer(sweep)" in c.source)
    assert explorer.outputs[0]["text"] == "sparsity S = 0.99\ndecay = 1.0\n"
    assert "image/png" in explorer.outputs[1]["data"]
    bars = [o["text"] for o in _outputs(nb) if "training toy models" in o.get("text", "")]
    assert bars and all("100%" in bar and "5000/5000" in bar or "3000/3000" in bar for bar in bars)


def test_badges_become_links_to_the_course_versions():
    nb = site.launch_links(_read("00_orientation"))
    first = nb.cells[0].source
    assert "![" not in first and ".svg" not in first
    assert "blob/main/course/00_orientation.ipynb" in first
    assert "labpath=course/00_orientation.ipynb" in first


# ---------------------------------------------------------------- the link checker


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!DOCTYPE html><html><head></head><body>{body}</body></html>")


def test_check_site_finds_broken_links_anchors_and_network_resources(tmp_path):
    _page(tmp_path / "index.html", "<h1 id='top'>x</h1><a href='a/b.html#sec'>b</a>")
    _page(tmp_path / "a" / "b.html", "<h2 id='sec'>s</h2><a href='../index.html#top'>home</a>")
    assert site.check_site(tmp_path) == []

    _page(
        tmp_path / "a" / "c.html",
        "<a href='missing.html'>m</a><a href='b.html#nope'>n</a>"
        "<a href='https://example.org'>external links are not followed</a>"
        "<script src='https://cdn.example.org/x.js'></script><img src='../_images/gone.png'>",
    )
    problems = site.check_site(tmp_path)
    assert len(problems) == 4, problems
    assert any("missing.html, which is missing" in p for p in problems)
    assert any("anchor #nope is missing" in p for p in problems)
    assert any("loads https://cdn.example.org/x.js from the network" in p for p in problems)
    assert any("gone.png, which is missing" in p for p in problems)


# ---------------------------------------------------------------- the whole site


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    _needs_sphinx()
    out = tmp_path_factory.mktemp("site") / "site"
    site.build_site(out)
    return out


def test_site_has_every_page_and_no_broken_link(built):
    for page in ("index", "launch", "profiles", "instructors"):
        assert (built / f"{page}.html").exists()
    for path in NOTEBOOKS:
        page = (built / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
        n_figures = sum("image/png" in o.get("data", {}) for o in _outputs(_read(path.stem)))
        assert page.count('<img alt="../_images/') + page.count("<img ") >= n_figures
    assert site.check_site(built) == []
    assert (built / "_static" / "mathjax" / "MathJax.js").exists()


def test_instructor_page_states_times_and_plans(built):
    text = (built / "instructors.html").read_text(encoding="utf-8")
    for prefix, seconds in STATED_TIMES.items():
        assert f"<td><p>{prefix}</p></td>" in text or f"<td>{prefix}</td>" in text
        assert f"{seconds} s" in text
    assert "2-core CPU" in text
    for heading in ("one-day-workshop", "four-week-course", "grading", "with-nbgrader"):
        assert f'id="{heading}"' in text


def test_a_broken_cross_reference_fails_the_build(tmp_path):
    _needs_sphinx()
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(site.DOCS_DIR / "conf.py", docs / "conf.py")
    (docs / "index.md").write_text(
        "# Home\n\nSee [the plan](instructors.md#no-such-plan).\n\n"
        "```{toctree}\n:hidden:\n\ninstructors\n```\n"
    )
    (docs / "instructors.md").write_text("# Instructors\n\n## A plan\n")
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    with pytest.raises(site.SiteError, match="no-such-plan"):
        site.build_site(tmp_path / "out", docs_dir=docs, solutions_dir=solutions)


def test_the_instructor_table_counts_each_notebooks_exercises_and_their_minutes():
    from emgeo.course import build

    table = (site.DOCS_DIR / "instructors.md").read_text(encoding="utf-8")
    total_n = total_minutes = 0
    for path in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        minutes = build.exercise_minutes(nb)
        assert len(minutes) == len(build.exercise_cells(nb)), f"{path.name}: a header per exercise"
        row = next(line for line in table.splitlines() if line.startswith(f"| {path.name[:2]} |"))
        assert f"| {len(minutes)} · {sum(minutes)} min |" in row, row
        total_n, total_minutes = total_n + len(minutes), total_minutes + sum(minutes)
    assert f"**{total_n} · {total_minutes} min**" in table
