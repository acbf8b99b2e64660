"""The package's shape: no import cycle, a science core that talks to no model library, and every
function-local import with its reason written next to it."""

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
# One module per notebook plus what they share; none of them imports emgeo.models/emgeo.course.
# (emgeo.config, the profile set-up every notebook calls, reads nnsight's stored NDIF key when the
# remote profile is asked for; it is checked at run time below, with the science core.)
SCIENCE = (
    "emgeo.batching emgeo.data emgeo.drag emgeo.errors emgeo.features "
    "emgeo.filtering emgeo.geometry emgeo.organism emgeo.plotting emgeo.probes emgeo.sae "
    "emgeo.stats emgeo.toy"
).split()
# Of those, the ones that do not build on TransformerLens (which itself imports transformers).
LIGHT = "emgeo.batching emgeo.errors emgeo.geometry emgeo.sae emgeo.stats emgeo.toy".split()
MODEL_LIBRARIES = ("transformers", "nnsight", "peft")


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    package = PACKAGE.joinpath(*parts, "__init__.py")
    return package if package.exists() else PACKAGE.joinpath(*parts).with_suffix(".py")


def _imports(module: str, top_level_only: bool) -> set[str]:
    """Modules that ``module`` imports (absolute names), at module level or anywhere."""
    tree = ast.parse(_path(module).read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _internal_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    return {m: {d for d in _imports(m, top_level_only) if d in MODULES} for m in MODULES}


def test_the_layout_is_what_the_readme_maps():
    assert {m.split(".")[1] for m in MODULES if m.count(".") >= 2} == {"models", "audit", "course"}
    assert set(SCIENCE) <= set(MODULES)


def test_no_import_cycle():
    graph = _internal_graph(top_level_only=False)
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


def test_the_audit_builds_on_models_and_science_and_the_course_builds_on_it():
    for module in (m for m in MODULES if m.startswith("emgeo.audit")):
        course = {d for d in _imports(module, top_level_only=False) if d.startswith("emgeo.course")}
        assert not course, f"{module} imports {course}: the audit stands without the course"


def test_every_module_imports():
    # With no cycle in the graph (above), a module that imports here imports alone in any order.
    code = "".join(f"import {m}\n" for m in MODULES)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_science_core_imports_no_model_library_and_nothing_outside_it():
    for module in SCIENCE:
        deps = _imports(module, top_level_only=False)
        outside = {d for d in deps if d.startswith(("emgeo.models", "emgeo.course"))}
        assert not outside, f"{module} imports {outside}: the science core takes models as input"
        libraries = {d for d in deps if d.split(".")[0] in MODEL_LIBRARIES}
        assert not libraries, f"{module} imports {libraries}"


def test_importing_the_science_core_loads_no_nnsight_or_peft_and_the_light_part_no_transformers():
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in LIGHT)
        + f"light = sorted(k for k in sys.modules if k.split('.')[0] in {MODEL_LIBRARIES})\n"
        + "".join(f"import {m}\n" for m in [*SCIENCE, "emgeo.config"])
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
