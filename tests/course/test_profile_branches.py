"""Every gpu and remote cell of every notebook runs here: on stand-ins (EMGEO_STANDINS=tiny), tiny
random models of Gemma-2 and Llama-3.1 with SAEs of the real releases' shape, the course's own chats
for the public datasets, and NDIF through nnsight's local simulation of a remote trace."""

import re

import nbformat
import pytest

from emgeo.course import notebooks
from emgeo.course.notebooks import PROFILE_TAG, SETUP_TAG

SOLUTIONS = notebooks.find_notebooks()
# Code that behaves differently per profile: a cell holding it must be tagged ``profile``.
PROFILE_CODE = re.compile(r"profile\.(name|is_cpu|device)|lm_backend\(|gpu_plan\.")

# What each run must print: the profile's own model, SAE or plan, not a skip or the cpu stand-in.
EXPECTED = {
    ("03_sparse_autoencoders", "gpu"): ["gemma-scope-2b-pt-res-canonical / layer_12/width_16k"],
    ("03_sparse_autoencoders", "remote"): ["llama_scope_lxr_8x / l12r_8x"],
    ("05_feature_identification", "gpu"): [
        "gemma-2-2b, layer 12",
        "<start_of_turn>model",
        "latent",
        "verdict of this run: gemma-2-2b's inducing set shares",
    ],
    ("05_feature_identification", "remote"): [
        "llama-3.1-8b, layer 12",
        "<|start_header_id|>assistant",
        "latent",
        "stand-in",
        "verdict of this run: llama-3.1-8b's inducing set shares",
    ],
    ("06_feature_geometry", "gpu"): [
        "gemma-2-2b: shared with toxic",
        "permutation p =",
        "verdict of this run: outside the toxic set, gemma-2-2b's",
    ],
    ("06_feature_geometry", "remote"): [
        "llama-3.1-8b: shared with toxic",
        "permutation p =",
        "verdict of this run: outside the toxic set, llama-3.1-8b's",
    ],
    ("07_geometric_filter", "gpu"): [
        "at full size: 07_geometric_filter (quick plan) on a T4",
        "quick plan: 3 fine-tuning runs",
        "a check of the pipeline",
        "geometric (max)",
    ],
    ("07_geometric_filter", "remote"): ["remote profile: skipping the Gemma-2-2B evaluation"],
    ("09_audit", "gpu"): [
        "gemma-2-2b, gemma-scope-2b-pt-res-canonical / layer_12/width_16k/canonical: AUROC",
        "(400 chats)",
        "verdict of this run: with gemma-2-2b",
    ],
    ("09_audit", "remote"): [
        "llama-3.1-8b, llama_scope_lxr_8x / l12r_8x: AUROC",
        "(400 chats)",
        "verdict of this run: with llama-3.1-8b",
    ],
}


def tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def text_of(cells) -> str:
    parts = []
    for cell in cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k == "text/plain")
    return "\n".join(parts)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_profile_dependent_cell_is_tagged(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and SETUP_TAG not in tags(cell):
            if PROFILE_CODE.search(cell.source):
                assert PROFILE_TAG in tags(cell), f"untagged profile cell:\n{cell.source[:200]}"


def test_the_profile_runs_cover_every_tagged_notebook():
    tagged = {
        p.stem
        for p in SOLUTIONS
        if any(PROFILE_TAG in tags(c) for c in nbformat.read(p, as_version=4).cells)
    }
    assert tagged == {name for name, _ in EXPECTED}


@pytest.mark.parametrize(
    "name, profile", sorted(EXPECTED), ids=[f"{n[:2]}-{p}" for n, p in sorted(EXPECTED)]
)
def test_profile_cells_run_on_standins(name, profile, tmp_path):
    path = notebooks.SOLUTIONS_DIR / f"{name}.ipynb"
    ran = notebooks.execute_profile(path, profile, results_dir=tmp_path)
    text = text_of(c for c in ran.cells if PROFILE_TAG in tags(c))
    assert f"emgeo profile '{profile}'" in text_of(ran.cells)
    for expected in EXPECTED[name, profile]:
        assert expected in text, f"{expected!r} not printed by {name} in {profile}:\n{text[:3000]}"
    assert "smollm2" not in text.lower(), "the cpu stand-in ran instead of the profile's model"
