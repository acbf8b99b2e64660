"""What `make install` and `make test` promise on another machine: a supported Python or one clear
sentence, torch's CPU build without a GPU, test tooling kept out of a learner's install, and the
notebooks tested in the environment their outputs were stored in."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib

import pytest

from emgeo.config import CACHE_DIR, REPO_ROOT
from emgeo.course.notebooks import notebook_env, rss_mb

MAKEFILE = (REPO_ROOT / "Makefile").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _python_check() -> str:
    line = next(ln for ln in MAKEFILE.splitlines() if "sys.version_info" in ln)
    return re.search(r"-c '(.*)'", line).group(1).replace("$(PYTHON)", "python3")


@pytest.mark.parametrize(
    ("version", "ok"), [((3, 10), False), ((3, 11), True), ((3, 13), True), ((3, 14), False)]
)
def test_make_names_an_unsupported_python_in_one_sentence(version, ok):
    code = f"import sys; sys.version_info = {version + (0,)!r}; exec({_python_check()!r})"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (run.returncode == 0) == ok
    if not ok:
        message = run.stderr.strip()
        assert len(message.splitlines()) == 1
        assert f"{version[0]}.{version[1]}" in message and "3.11, 3.12 or 3.13" in message


def test_requires_python_matches_the_make_check():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.14"


def test_without_a_gpu_linux_gets_torchs_cpu_build_at_the_pinned_version():
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch=="))
    dry = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "install"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f'"{torch_pin}"' in dry
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in dry
    assert "nvidia-smi" in dry  # a machine with an NVIDIA driver keeps pip's default (CUDA) build
    assert dry.index(torch_pin) < dry.index('-e ".[dev,lab,site]"')  # torch first, then the rest


def test_test_tooling_and_jupyterlab_are_extras_not_every_learners_install():
    runtime = {d.split("==")[0] for d in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not runtime & {"pytest", "nbval", "ruff", "beartype", "jupyterlab"}
    assert {"pytest", "nbval"} <= {d.split("==")[0] for d in extras["dev"]}
    assert [d.split("==")[0] for d in extras["lab"]] == ["jupyterlab"]
    assert "ipykernel" in runtime  # `emgeo reproduce` runs notebooks in a kernel
    binder = (REPO_ROOT / "binder" / "requirements.txt").read_text().splitlines()
    assert extras["lab"][0] in binder
    assert not {"nbval", "pytest"} & {d.split("==")[0] for d in binder}


def _imported_libraries() -> dict[str, set[str]]:
    """Every library outside the standard library that utils/emgeo imports, at module level or in
    a function, with the modules that import it (code in string literals is not imported)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "utils" / "emgeo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.partition(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top not in {"emgeo", "__future__"}:
                    found.setdefault(top, set()).add(path.stem)
    return found


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_library_the_package_imports_is_pinned_exactly():
    project = PYPROJECT["project"]
    pins = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    pinned = {_dist(pin.partition("==")[0]) for pin in pins if "==" in pin}
    owners = importlib.metadata.packages_distributions()
    only_on_colab = {"google"}  # google.colab: Colab's Secrets, imported only there
    imported = _imported_libraries()
    assert {"torch", "pandas", "huggingface_hub", "tokenizers", "traitlets"} <= set(imported)
    unpinned = {
        top: sorted(modules)
        for top, modules in imported.items()
        if top not in only_on_colab and not {_dist(d) for d in owners.get(top, [])} & pinned
    }
    assert not unpinned, f"imported but not pinned in pyproject.toml: {unpinned}"


def test_setuptools_floor_reads_the_license_string():
    requires = PYPROJECT["build-system"]["requires"]
    floor = next(r for r in requires if r.startswith("setuptools>="))
    assert tuple(int(x) for x in floor.split(">=")[1].split(".")) >= (77,)


def test_nbval_runs_in_this_environment_with_the_stored_outputs_environment():
    assert "--nbval-current-env" in MAKEFILE
    stored = notebook_env(n_threads=int(os.environ["EMGEO_THREADS"]))
    for key in ("EMGEO_PROFILE", "PYTHONHASHSEED", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM"):
        assert os.environ[key] == stored[key], key


def test_tests_never_write_to_the_users_cache():
    assert CACHE_DIR.is_relative_to(REPO_ROOT / ".cache")
    assert not CACHE_DIR.is_relative_to(os.path.expanduser("~/.cache/emgeo"))


def test_peak_memory_is_in_megabytes_on_linux_and_macos():
    assert rss_mb(2048 * 1024, "Linux") == 2048
    assert rss_mb(2048 * 1024**2, "Darwin") == 2048
