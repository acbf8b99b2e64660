"""Where the course's files are: in a clone of the repository, or in an installed wheel.

In a clone (and in an editable install of one, ``pip install -e .``) the package is
``utils/emgeo`` and its data is the repository's ``data/``, where the commands that remake data
write. A wheel carries a copy of ``data/`` inside the package, as ``emgeo/_data`` (setup.py copies
it at build time), to be read only; it has no ``solutions/`` or ``course/``, and the directories
the course would find at the repository's root are looked for in the working directory instead.

This module imports nothing from emgeo: :mod:`emgeo.config` builds its paths from it.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The name setup.py gives the copy of data/ inside a wheel's package; a clone has no such directory.
PACKAGED_DATA = "_data"


def installed_from_wheel(package_dir: Path = PACKAGE_DIR) -> bool:
    """Whether emgeo runs from an installed wheel (it carries its data) rather than a clone."""
    return (package_dir / PACKAGED_DATA).is_dir()


def project_root(package_dir: Path = PACKAGE_DIR) -> Path:
    """The repository's root in a clone (``utils/emgeo`` -> ``utils`` -> root); from a wheel, the
    working directory, where ``results/`` (and any ``solutions/``) of a learner's own are."""
    return Path.cwd() if installed_from_wheel(package_dir) else package_dir.parents[1]


def data_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """The course's data: the repository's ``data/`` in a clone, the wheel's copy of it else."""
    if installed_from_wheel(package_dir):
        return package_dir / PACKAGED_DATA
    return package_dir.parents[1] / "data"
