"""The package outside a clone: built from the sources as an sdist and then a wheel (as
``python -m build`` does), installed into a fresh environment, it loads the organism, the shipped
SmolLM2 SAE and a chat file from the data the wheel carries, and writes nothing into itself.

The fresh environment is a venv without pip whose one other path is this venv's site-packages, as
a ``.pth`` line: the ``.pth`` files in there, the editable install's path to utils/ among them,
are not run. Nothing is downloaded, and the emgeo it imports can only be the wheel's. Building,
installing and loading take about 30 s: marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from emgeo import resources
from emgeo.config import DATA_DIR, REPO_ROOT

PACKAGE = REPO_ROOT / "utils" / "emgeo"
# What a build reads from the clone: the package, its data, the build's configuration.
BUILD_INPUTS = ("utils", "data", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")

# Run by the wheel's emgeo in a working directory of its own; prints what the tests check.
LOAD_FROM_WHEEL = """
import json, sys
import emgeo
from emgeo import chats, config, organism, resources
from emgeo.models import saes

model, tok = organism.load()
sae = saes.smollm2_sae()
chat_file = chats.LM_DATA_DIR / "insecure.jsonl"
print(json.dumps({
    "emgeo": emgeo.__file__,
    "from_wheel": resources.installed_from_wheel(),
    "paths": {
        "data": str(config.DATA_DIR),
        "organism": str(organism.ORGANISM_DIR),
        "smollm2_sae": str(saes.SMOLLM2_SAE_DIR),
        "chats": str(chat_file),
    },
    "repo_root": str(config.REPO_ROOT),
    "results": str(config.RESULTS_DIR),
    "vocab": len(tok),
    "sae_d_in": sae.cfg.d_in,
    "n_chats": len(chats.read_lm_jsonl(chat_file)),
}))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{cmd[:3]} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return run.stdout


def _build_wheel(src: Path, out: Path) -> Path:
    """An sdist of ``src``, then the wheel built from that sdist, both in ``out``."""
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    sdist = _run([sys.executable, "-c", code], cwd=src).strip().splitlines()[-1]
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    _run([*pip, "-w", str(out), str(out / sdist)], cwd=out)
    return next(out.glob("emgeo-*.whl"))


def _fresh_env(root: Path, wheel: Path) -> tuple[Path, Path]:
    """A venv holding only the wheel, that sees this venv's packages but not its emgeo; returns
    its python and its site-packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", code], cwd=root).strip())
    (site / "main-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    _run([*pip, "--no-index", str(wheel)], cwd=root)
    return python, site


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The wheel built from a copy of this clone's sources, and a fresh venv it is installed in."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, out = tmp / "src", tmp / "dist"
    out.mkdir()
    for name in BUILD_INPUTS:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, src / name, ignore=NOT_SOURCES)
        else:
            shutil.copy2(REPO_ROOT / name, src / name)
    wheel = _build_wheel(src, out)
    python, site = _fresh_env(tmp / "venv", wheel)
    return {"wheel": wheel, "python": python, "site": site, "tmp": tmp}


def _files(root: Path, keep: Callable[[Path], bool]) -> set[str]:
    """The files under ``root`` that ``keep`` accepts, relative to it; bytecode left out."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and keep(p)
    }


@pytest.mark.slow
def test_the_wheel_carries_all_of_data_and_every_template(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    data = {f"emgeo/{resources.PACKAGED_DATA}/{f}" for f in _files(DATA_DIR, lambda p: True)}
    templates = {f"emgeo/{f}" for f in _files(PACKAGE, lambda p: p.suffix not in {".py", ".pyc"})}
    assert any(n.endswith("organism/model.safetensors") for n in data)
    assert any(n.endswith(".j2") for n in templates)
    assert not data - names, f"data/ files missing from the wheel: {sorted(data - names)[:5]}"
    assert not templates - names, f"package files missing from the wheel: {templates - names}"


@pytest.mark.slow
def test_the_installed_wheel_loads_the_organism_the_sae_and_chats_from_its_own_data(built):
    work = built["tmp"] / "work"
    work.mkdir()
    package = built["site"] / "emgeo"
    before = _files(package, lambda p: True)
    env = {k: v for k, v in os.environ.items() if k not in {"EMGEO_RESULTS_DIR", "PYTHONPATH"}}
    env["HF_HUB_OFFLINE"] = "1"  # the SAE is the shipped copy: nothing comes from the hub
    out = _run([str(built["python"]), "-I", "-c", LOAD_FROM_WHEEL], cwd=work, env=env)
    got = json.loads(out.strip().splitlines()[-1])

    assert Path(got["emgeo"]).is_relative_to(package), "imported the clone's emgeo, not the wheel's"
    assert got["from_wheel"]
    assert got["paths"]["data"] == str(package / resources.PACKAGED_DATA)
    for name, path in got["paths"].items():
        assert Path(path).is_relative_to(package / resources.PACKAGED_DATA), name
    # Outside a clone, results go to the working directory, never into site-packages.
    assert got["repo_root"] == str(work) and got["results"] == str(work / "results")
    meta = json.loads((DATA_DIR / "organism" / "model.json").read_text())
    sae_cfg = json.loads((DATA_DIR / "smollm2_sae" / "cfg.json").read_text())
    n_lines = len((DATA_DIR / "lm" / "insecure.jsonl").read_text().splitlines())
    assert (got["vocab"], got["sae_d_in"], got["n_chats"]) == (
        len(meta["vocab"]),
        sae_cfg["d_in"],
        n_lines,
    )
    assert _files(package, lambda p: True) == before, "the run wrote into the installed package"


def test_a_clone_reads_and_writes_the_repositorys_data(tmp_path):
    package = tmp_path / "utils" / "emgeo"
    package.mkdir(parents=True)
    assert not resources.installed_from_wheel(package)
    assert resources.project_root(package) == tmp_path
    assert resources.data_dir(package) == tmp_path / "data"
    assert DATA_DIR == REPO_ROOT / "data" and not resources.installed_from_wheel()


def test_a_wheel_reads_the_data_it_carries_and_roots_the_rest_in_the_working_directory(
    tmp_path, monkeypatch
):
    package = tmp_path / "site-packages" / "emgeo"
    (package / resources.PACKAGED_DATA).mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert resources.installed_from_wheel(package)
    assert resources.data_dir(package) == package / resources.PACKAGED_DATA
    assert resources.project_root(package) == work
