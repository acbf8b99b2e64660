"""The package's shape: imports go one way (course -> audit -> models -> science -> base), no
import cycle, a science core that talks to no model library, and every function-local import with
its reason written next to it. The layers are read from the layout, not listed by hand."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import emgeo

PACKAGE = Path(emgeo.__file__).parent
MODULES = sorted(
    "emgeo." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
)
# The foundation every layer may import: profiles and paths, errors, where the files are. It
# imports nothing else of emgeo. (emgeo.config reads nnsight's stored NDIF key when the remote
# profile is asked for; the run-time check below imports it with the science core.)
BASE = ["emgeo.config", "emgeo.errors", "emgeo.resources"]
# The subpackages above the science core, lowest first; a module may import its own layer and
# the layers below it (emgeo.experiments runs the notebooks' claims again with the organisms'
# SAEs of emgeo.models). Every other module is science: one module per notebook plus what they
# share. ``emgeo`` itself, the package whose __init__ every import runs first, stands above all
# (emgeo.setup).
ABOVE_SCIENCE = ["models", "experiments", "audit", "course"]
LAYERS = ["base", "science", *ABOVE_SCIENCE]


def layer(module: str) -> str | None:
    """The layer of a module of the package; None for the package itself (its __init__)."""
    if module in ("emgeo", "emgeo.__init__"):
        return None
    if module in BASE:
        return "base"
    sub = module.split(".")[1]
    return sub if sub in ABOVE_SCIENCE else "science"


SCIENCE = [m for m in MODULES if layer(m) == "science"]
# Of those, the ones that do not build on TransformerLens (which itself imports transformers).
LIGHT = (
    "emgeo.batching emgeo.chatfile emgeo.geometry emgeo.runner emgeo.sae emgeo.stats emgeo.toy"
).split()
MODEL_LIBRARIES = ("transformers", "nnsight", "peft")


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    package = PACKAGE.joinpath(*parts, "__init__.py")
    return package if package.exists() else PACKAGE.joinpath(*parts).with_suffix(".py")


def _imports(module: str, top_level_only: bool) -> set[str]:
    """Modules that ``module`` imports (absolute names), at module level or anywhere."""
    tree = ast.parse(_path(module).read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    is_package = _path(module).name == "__init__.py"
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = module.split(".")  # a relative import is named from its package
            anchor = parts[: len(parts) - node.level + is_package] if node.level else []
            name = ".".join(anchor + ([node.module] if node.module else []))
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return found


def _internal(module: str, top_level_only: bool) -> set[str]:
    """The package's modules that ``module`` imports, the package itself left out (every import
    of a submodule runs emgeo/__init__.py first, whatever the import statement names)."""
    return {d for d in _imports(module, top_level_only) if d in MODULES and d != "emgeo"}


def test_the_layout_is_what_the_readme_maps():
    subpackages = {m.split(".")[1] for m in MODULES if m.count(".") >= 2}
    assert set(ABOVE_SCIENCE) <= subpackages and set(BASE) <= set(MODULES)
    # The science core as read from the layout holds the modules that were once left off a list.
    assert {"emgeo.toy", "emgeo.chats", "emgeo.answer_classifier", "emgeo.chatfile"} <= set(SCIENCE)
    assert not {"emgeo", *BASE} & set(SCIENCE)
    assert layer("emgeo.models.lm") == "models" and layer("emgeo.course.grading.kernel") == "course"
    assert layer("emgeo.experiments.robustness") == "experiments" == layer("emgeo.experiments")
    assert layer("emgeo.runner") == "science"


def test_no_import_cycle():
    graph = {m: _internal(m, top_level_only=False) for m in MODULES}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep] if dep in path else [node, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("lower", LAYERS[:-1])
def test_imports_go_one_way(lower):
    """No module of layer ``lower`` or below imports a module above it, even inside a function:
    base imports no science, science no models, audit or course, models no audit or course, the
    audit no course."""
    allowed = set(LAYERS[: LAYERS.index(lower) + 1])
    wrong = [
        f"{module} imports {dep}"
        for module in MODULES
        if layer(module) in allowed
        for dep in sorted(_internal(module, top_level_only=False))
        if layer(dep) not in allowed
    ]
    assert not wrong, f"imports above the {lower} layer:\n" + "\n".join(wrong)


def test_the_one_way_check_sees_a_wrong_import(monkeypatch):
    """The check above is not vacuous: an import of course from models is seen as one."""
    real = _internal

    def planted(module: str, top_level_only: bool) -> set[str]:
        extra = {"emgeo.course.pins"} if module == "emgeo.models.lm" else set()
        return real(module, top_level_only) | extra

    monkeypatch.setattr(sys.modules[__name__], "_internal", planted)
    with pytest.raises(AssertionError, match="emgeo.models.lm imports emgeo.course.pins"):
        test_imports_go_one_way("models")


def test_every_module_imports():
    # With no cycle in the graph (above), a module that imports here imports alone in any order.
    code = "".join(f"import {m}\n" for m in MODULES)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_science_core_imports_no_model_library():
    for module in [*BASE, *SCIENCE]:
        deps = _imports(module, top_level_only=False)
        libraries = {d for d in deps if d.split(".")[0] in MODEL_LIBRARIES}
        if module == "emgeo.config":  # the NDIF key the remote profile needs, read from nnsight
            libraries = {d for d in libraries if d.split(".")[0] != "nnsight"}
        assert not libraries, (
            f"{module} imports {libraries}: the science core takes models as input"
        )


def test_importing_the_science_core_loads_no_nnsight_or_peft_and_the_light_part_no_transformers():
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in LIGHT)
        + f"light = sorted(k for k in sys.modules if k.split('.')[0] in {MODEL_LIBRARIES})\n"
        + "".join(f"import {m}\n" for m in [*BASE, *SCIENCE])
        + f"core = sorted({{k.split('.')[0] for k in sys.modules}} & set({MODEL_LIBRARIES!r}))\n"
        + "print(json.dumps([light, core]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300
    )
    light, core = json.loads(out.stdout.strip().splitlines()[-1])
    assert light == [], f"toy/drag-level modules loaded {light}"
    # TransformerLens (the organism's hooked model) imports transformers itself; nothing else may.
    assert core in ([], ["transformers"]), core


def test_function_local_imports_state_their_reason():
    unexplained = []
    for module in MODULES:
        path = _path(module)
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here, before = lines[node.lineno - 1], lines[node.lineno - 2]
                    if "#" not in here and not before.strip().startswith(("import", "from")):
                        unexplained.append(f"{path.name}:{node.lineno}: {here.strip()}")
                    elif "#" not in here and "#" not in before:
                        unexplained.append(f"{path.name}:{node.lineno}: {here.strip()}")
    assert not unexplained, "function-local imports without a reason:\n" + "\n".join(unexplained)
