"""Build the course website: ``make site`` (``emgeo site``) writes ``build/site/``.

The pages in ``docs/`` and the executed ``solutions/`` notebooks, with their stored outputs, are
staged into ``build/site-src/`` and built by Sphinx with MyST-NB (nothing is executed). Staging
also copies MathJax from the ``jupyter-server-mathjax`` package, so pages render math with no
network, and turns widget outputs into what they showed: a progress bar's last line, the explorer's
last figure. Sphinx runs with every warning an error (``-W -n``: broken cross-references, missing
documents); afterwards :func:`check_site` follows every internal link and anchor of the built
pages, and fails on any page that would load a script, stylesheet or image from the network.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nbformat
from nbformat import NotebookNode

from emgeo.config import REPO_ROOT, SOLUTIONS_DIR

DOCS_DIR = REPO_ROOT / "docs"
BUILD_DIR = REPO_ROOT / "build"
SITE_DIR = BUILD_DIR / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# MathJax parts the site does not use: the SVG output (its fonts only) and accessibility tools.
_MATHJAX_SKIP = ("SVG", "a11y")


class SiteError(RuntimeError):
    """The site did not build, or a built page has a broken link."""


# ---------------------------------------------------------------- widgets as static outputs


def tag_free(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u2007", " ").strip()


def _widget_parts(model_id: str, state: dict[str, Any]) -> tuple[list[str], list[dict]]:
    """Text and outputs that a widget (and its children) showed when the notebook was saved."""
    model = state.get(model_id)
    if model is None:
        return [], []
    name, s = model.get("model_name", ""), model.get("state", {})
    if name == "OutputModel":
        return [], list(s.get("outputs", []))
    if name in ("HTMLModel", "LabelModel"):
        return [tag_free(s.get("value", ""))], []
    if "Slider" in name or "Dropdown" in name:
        labels = s.get("_options_labels")
        value = labels[s["index"]] if labels and "index" in s else s.get("value")
        return [f"{tag_free(s.get('description', ''))} = {value}"], []
    texts, outputs = [], []
    for child in s.get("children", []):
        child_texts, child_outputs = _widget_parts(child.removeprefix("IPY_MODEL_"), state)
        texts += child_texts
        outputs += child_outputs
    if name == "HBoxModel":  # a tqdm bar: description, bar, counts on one line
        texts = [" ".join(t for t in texts if t)]
    return texts, outputs


def static_widget_outputs(nb: NotebookNode) -> NotebookNode:
    """Replace every widget output by what it showed (text, then its outputs), in place."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            texts, nested = _widget_parts(view.get("model_id", ""), state)
            text = "\n".join(t for t in texts if t)
            if text:
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text + "\n"))
            outputs += [nbformat.from_dict(o) for o in nested]
        cell.outputs = outputs
    return nb


_BADGE = re.compile(r"\[!\[(?P<alt>[^\]]*)\]\([^)]*\)\]\((?P<url>[^)\s]*)\)")


def launch_links(nb: NotebookNode) -> NotebookNode:
    """Badges become text links (no image from the network) that open the course version."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = _BADGE.sub(r"[\g<alt>](\g<url>)", cell.source)
            text = text.replace("/blob/main/solutions/", "/blob/main/course/")
            cell.source = text.replace("labpath=solutions/", "labpath=course/")
    return nb


# ---------------------------------------------------------------- staging


def _write_if_changed(path: Path, text: str) -> None:
    """Write only on change, so Sphinx rebuilds only the pages whose source changed."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _copy_tree_if_changed(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> set[Path]:
    copied = set()
    for path in src.rglob("*"):
        relative = path.relative_to(src)
        if path.is_dir() or any(part in skip for part in relative.parts):
            continue
        target = dst / relative
        stat = path.stat()
        if not target.exists() or (target.stat().st_size, target.stat().st_mtime) != (
            stat.st_size,
            stat.st_mtime,
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        copied.add(target)
    return copied


def mathjax_dir() -> Path:
    """MathJax 2.7 as the jupyter-server-mathjax package ships it."""
    import jupyter_server_mathjax  # the `site` extra: only `emgeo site` needs it

    return Path(jupyter_server_mathjax.__file__).parent / "static"


def stage(
    stage_dir: Path, docs_dir: Path = DOCS_DIR, solutions_dir: Path = SOLUTIONS_DIR
) -> list[Path]:
    """Lay out the Sphinx source folder; return the notebook pages it holds."""
    kept = _copy_tree_if_changed(docs_dir, stage_dir, skip=("_build", "__pycache__"))
    kept |= _copy_tree_if_changed(mathjax_dir(), stage_dir / "_static" / "mathjax", _MATHJAX_SKIP)
    pages = []
    for src in sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb")):
        nb = launch_links(static_widget_outputs(nbformat.read(src, as_version=4)))
        page = stage_dir / "notebooks" / src.name
        _write_if_changed(page, nbformat.writes(nb) + "\n")
        pages.append(page)
    for stale in [p for p in stage_dir.rglob("*") if p.is_file()]:
        if stale not in kept and stale not in pages:
            stale.unlink()  # a page removed from docs/ or solutions/ must leave the site
    return pages


# ---------------------------------------------------------------- building


def sphinx_command(stage_dir: Path, out_dir: Path, doctrees: Path) -> list[str]:
    """Sphinx, HTML, every warning an error (``-W``), nitpicky (``-n``), all reported first."""
    return [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-W",
        "--keep-going",
        "-n",
        "-q",
        "-d",
        str(doctrees),
        str(stage_dir),
        str(out_dir),
    ]


def build_site(
    out_dir: Path = SITE_DIR, docs_dir: Path = DOCS_DIR, solutions_dir: Path = SOLUTIONS_DIR
) -> Path:
    """Stage, build with Sphinx and check every link; return ``out_dir/index.html``.

    The staged sources and Sphinx's caches go to ``<out_dir>-work`` beside it, so a second build
    redoes only the pages whose source changed.
    """
    work = out_dir.parent / f"{out_dir.name}-work"
    stage(work / "src", docs_dir=docs_dir, solutions_dir=solutions_dir)
    cmd = sphinx_command(work / "src", out_dir, work / "doctrees")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SiteError(f"sphinx failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    problems = check_site(out_dir)
    if problems:
        raise SiteError("broken links in the built site:\n" + "\n".join(problems[:50]))
    return out_dir / "index.html"


# ---------------------------------------------------------------- checking the built site


class _Links(HTMLParser):
    """Collects a page's ids, its links and the resources it loads."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag in ("script", "img", "iframe", "source") and a.get("src"):
            self.resources.append(a["src"])
        elif tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "preload"):
            self.resources.append(a["href"])


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parser


def check_site(site_dir: Path) -> list[str]:
    """Every problem of the built site: a link to a missing page or anchor, a network resource."""
    pages = {
        p.resolve(): _parse(p)
        for p in site_dir.rglob("*.html")
        if "_static" not in p.relative_to(site_dir).parts  # theme templates, not pages
    }
    problems = []
    for page, parsed in sorted(pages.items()):
        where = page.relative_to(site_dir.resolve())
        for url in parsed.resources:
            if urlsplit(url).scheme in ("http", "https") or url.startswith("//"):
                problems.append(f"{where}: loads {url} from the network")
            elif not _target(page, url).exists() and not url.startswith("data:"):
                problems.append(f"{where}: loads {url}, which is missing")
        for url in parsed.links:
            problem = _link_problem(page, url, pages)
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def _target(page: Path, url: str) -> Path:
    path = unquote(urlsplit(url).path)
    return (page.parent / path).resolve() if path else page


def _link_problem(page: Path, url: str, pages: dict[Path, _Links]) -> str | None:
    parts = urlsplit(url)
    if parts.scheme or url.startswith(("//", "mailto:", "javascript:")):
        return None  # external: no network here to check it
    target = _target(page, url)
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return f"links to {url}, which is missing"
    fragment = unquote(parts.fragment)
    if fragment and target in pages and fragment not in pages[target].ids:
        return f"links to {url}, whose anchor #{fragment} is missing"
    return None


# ---------------------------------------------------------------- the command


def add_subcommand(sub: Any) -> None:
    """Register ``emgeo site`` on the CLI's argparse subparsers."""
    p = sub.add_parser("site", help="build the course website into build/site/ (Sphinx, MyST-NB)")
    p.add_argument("--out", type=Path, default=SITE_DIR, help=f"default: {SITE_DIR}")
    p.set_defaults(func=run_command)


def run_command(args: Any) -> int:
    """``emgeo site``: build, check, say where the site is."""
    try:
        index = build_site(Path(args.out))
    except SiteError as err:
        print(f"emgeo site: {err}", file=sys.stderr)
        return 1
    n_pages = sum(1 for _ in index.parent.rglob("*.html"))
    print(f"built {n_pages} pages, every internal link checked: {index}")
    return 0
