"""Each notebook's tiers from the shipped fake-tensor budget: the free T4 cells fit it, the GPU
name picks the row, and a run that will not fit is refused in one sentence before it starts."""

import types

import nbformat
import pytest
import torch

from emgeo import errors
from emgeo.config import SOLUTIONS_DIR
from emgeo.course import tiers

BUDGET = tiers.load_budget()
GPU = types.SimpleNamespace(name="gpu", standins=False)
REMOTE = types.SimpleNamespace(name="remote", standins=False)


@pytest.mark.parametrize(
    "device, tier",
    [
        ("Tesla T4", "t4"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA A100-SXM4-40GB", "a100"),
        ("NVIDIA L40S", None),
        ("NVIDIA H100 80GB HBM3", None),
    ],
)
def test_the_gpu_name_picks_the_row(device, tier):
    assert tiers.gpu_tier(device) == tier


@pytest.mark.parametrize(
    "notebook",
    ["03_sparse_autoencoders", "05_feature_identification", "06_feature_geometry", "09_audit"],
)
def test_every_full_size_cell_fits_a_free_t4_and_ndif_fits_colabs_host(notebook):
    t4 = tiers.estimate(notebook, "t4", budget=BUDGET)
    assert t4.gpu_gib <= 14.0 and t4.host_gib <= 10.0 and t4.minutes <= 30.0 and t4.fits
    assert tiers.estimate(notebook, "ndif", budget=BUDGET).host_gib <= 10.0


def test_07_runs_its_quick_plan_on_a_t4_and_its_full_plan_on_an_l4_or_a100():
    assert tiers.best("07_geometric_filter", "t4", BUDGET).plan == "quick"
    full_t4 = tiers.estimate("07_geometric_filter", "t4", "full", BUDGET)
    assert not full_t4.fits and full_t4.minutes > 30
    for tier in ("l4", "a100"):
        assert tiers.best("07_geometric_filter", tier, BUDGET).plan == "full"
    assert tiers.estimate("07_geometric_filter", "ndif", budget=BUDGET) is None


def on_gpu(monkeypatch, device: str, total_gib: float = 15.0) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: device)
    props = types.SimpleNamespace(total_memory=int(total_gib * tiers.GIB))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: props)


def test_preflight_on_a_t4_says_its_estimate(monkeypatch):
    on_gpu(monkeypatch, "Tesla T4")
    said = tiers.preflight("09_audit", GPU)
    assert said.startswith("09_audit on a T4 (free Colab): about 6 minutes, 6.4 GiB of GPU memory")
    assert "quick plan" in tiers.preflight("07_geometric_filter", GPU)


def test_preflight_refuses_a_plan_that_will_not_fit_in_one_sentence(monkeypatch):
    on_gpu(monkeypatch, "Tesla T4")
    with pytest.raises(errors.ProfileError) as err:
        tiers.preflight("07_geometric_filter", GPU, plan="full")
    message = str(err.value)
    assert "\n" not in message and "will not fit this Tesla T4" in message
    assert "over the 30 of a free session" in message and "an L4 or an A100" in message


def test_preflight_on_an_unknown_gpu_compares_its_memory(monkeypatch):
    on_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", total_gib=80.0)
    assert "none of the course's tiers" in tiers.preflight("05_feature_identification", GPU)
    on_gpu(monkeypatch, "NVIDIA T1000", total_gib=4.0)
    with pytest.raises(errors.ProfileError, match="needs about 6.4 GiB of GPU memory"):
        tiers.preflight("05_feature_identification", GPU)


def test_preflight_on_ndif_checks_this_machines_memory(monkeypatch):
    assert "09_audit on NDIF" in tiers.preflight("09_audit", REMOTE)
    small = types.SimpleNamespace(total=1 * tiers.GIB)
    monkeypatch.setattr(tiers.psutil, "virtual_memory", lambda: small)
    with pytest.raises(errors.ProfileError, match="more than this machine's 1.0 GiB"):
        tiers.preflight("09_audit", REMOTE)


def test_preflight_in_the_cpu_profile_and_on_standins_never_refuses(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tiers.preflight("09_audit", "cpu").startswith("cpu profile: emgeo audit")
    standin = types.SimpleNamespace(name="gpu", standins=True)
    assert "at full size: 09_audit on a T4" in tiers.preflight("09_audit", standin)


def test_the_header_goes_after_the_badges_and_is_rewritten_in_place():
    source = "# 09 · Audit\n\n[![Open In Colab](https://x/colab-badge.svg)](u)\n\nProse."
    once = tiers.with_header(source, "09_audit", BUDGET)
    assert once.index("colab-badge") < once.index(tiers.HEADER_START) < once.index("Prose.")
    assert "| free Colab T4 (gpu) | yes | 6 | 6.4 GiB | 1.5 GiB |" in once
    assert tiers.with_header(once, "09_audit", BUDGET) == once
    assert "no GPU part" in tiers.header("01_toy_superposition", BUDGET)


def _without_tiers(path) -> nbformat.NotebookNode:
    """A notebook as it was before its tiers were written: no header block, no preflight cell."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "tiers.preflight(" not in c.source]
    first = nb.cells[0]
    if tiers.HEADER_START in first.source:
        before, rest = first.source.split(tiers.HEADER_START, 1)
        first.source = before.rstrip() + "\n\n" + rest.split(tiers.HEADER_END, 1)[1].lstrip()
    return nb


def test_writing_the_tiers_into_notebooks_is_idempotent_and_keeps_outputs(tmp_path):
    for name in ("01_toy_superposition", "09_audit"):
        nbformat.write(_without_tiers(SOLUTIONS_DIR / f"{name}.ipynb"), tmp_path / f"{name}.ipynb")
    assert len(tiers.write_notebook_tiers(tmp_path)) == 2
    assert tiers.write_notebook_tiers(tmp_path) == [], "a second run changes nothing"
    old = _without_tiers(SOLUTIONS_DIR / "09_audit.ipynb")
    new = nbformat.read(tmp_path / "09_audit.ipynb", as_version=4)
    at = next(i for i, c in enumerate(new.cells) if "tiers.preflight(" in c.source)
    assert new.cells[at].source == tiers.preflight_cell("09_audit")
    assert new.cells[at].metadata["tags"] == ["profile"]
    assert "profile" in new.cells[at + 1].metadata.get("tags", [])
    assert [c for i, c in enumerate(new.cells) if i not in (0, at)] == old.cells[1:]
    toy = nbformat.read(tmp_path / "01_toy_superposition.ipynb", as_version=4)
    assert not any("tiers.preflight(" in c.source for c in toy.cells), "no profile cell there"
    assert tiers.header("01_toy_superposition") in toy.cells[0].source


@pytest.mark.parametrize(
    "path", sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem
)
def test_every_notebook_header_states_its_tiers(path):
    nb = nbformat.read(path, as_version=4)
    assert tiers.header(path.stem) in nb.cells[0].source, (
        "the tiers drifted from data/arch/profile_budget.json: run tiers.write_notebook_tiers()"
    )
    profile_cells = [c for c in nb.cells if "profile" in c.metadata.get("tags", [])]
    if profile_cells:
        assert profile_cells[0].source == tiers.preflight_cell(path.stem), "preflight comes first"


def test_07s_gpu_cell_runs_the_plan_preflight_chooses(monkeypatch):
    on_gpu(monkeypatch, "Tesla T4")
    assert tiers.plan_for("07_geometric_filter", GPU) == "quick"
    on_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", 40.0)
    assert tiers.plan_for("07_geometric_filter", GPU) == "full"
    standins = types.SimpleNamespace(name="gpu", standins=True)
    assert tiers.plan_for("07_geometric_filter", standins) == "quick"  # a free T4's at full size
    assert tiers.plan_for("07_geometric_filter", REMOTE) is None


def test_the_shipped_budget_was_measured_for_the_plans_07_runs_today():
    from emgeo.models import gpu_plan

    measured = BUDGET["assumptions"]["plans"]
    for name in ("quick", "full"):
        assert measured[name] == gpu_plan.GpuFilterPlan.named(name).fingerprint(), (
            f"07's {name} plan changed since its budget was measured: run "
            "benchmarks/profile_budget.py --only 07 --ship"
        )
