"""The one build step pyproject.toml cannot declare: the course's data/ goes into the wheel.

data/ sits at the repository's root, outside the package (utils/emgeo), and holds directories
that are not Python packages (``r8-lr0.001-30steps``). At build time all of it is copied into the
built package as ``emgeo/_data``, where :mod:`emgeo.resources` finds it in an installed wheel. An
editable install copies nothing: it reads the repository's data/ in place.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = Path(__file__).resolve().parent / "data"
PACKAGED_DATA = "_data"  # emgeo.resources.PACKAGED_DATA


class BuildPyWithData(build_py):
    """``build_py``, then a fresh copy of every file under data/ into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib, "emgeo", PACKAGED_DATA)
        shutil.rmtree(target, ignore_errors=True)  # no file deleted from data/ lingers in build/
        shutil.copytree(DATA, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
