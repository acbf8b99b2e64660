"""What each notebook costs where it runs: the cpu profile, a free Colab T4, an L4 or A100, NDIF.

The figures are the full-size cells measured on fake tensors (``benchmarks/profile_budget.py
--ship`` writes them to ``data/arch/profile_budget.json``; :mod:`emgeo.models.simulate` says how).
:func:`header` renders a notebook's tiers for the top of the notebook; :func:`preflight`, called
by a notebook's first profile cell, picks the row of the GPU it is on, says the estimate and
refuses, in one sentence, a run that will not fit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from emgeo import config
from emgeo.course.plan import NOTEBOOK_PLAN
from emgeo.errors import ProfileError

BUDGET_FILE = config.DATA_DIR / "arch" / "profile_budget.json"
GIB = 2**30
GPU_NAMES = {"t4": "T4 (free Colab)", "l4": "L4", "a100": "A100"}
PLANS = ("full", "quick")  # a notebook's plans, the larger first (notebook 07)
CPU_LIMITS = "3 min, 1.8 GB"  # every notebook's cpu run, as `emgeo reproduce` checks it
HEADER_START, HEADER_END = "<!-- emgeo:tiers -->", "<!-- /emgeo:tiers -->"


@dataclass(frozen=True)
class Limits:
    """What a tier holds: GPU and host memory (GiB) and, for a free runtime, minutes."""

    gpu_gib: float
    host_gib: float
    minutes: float | None = None


LIMITS = {
    "t4": Limits(14.0, 10.0, 30.0),  # free Colab: a 15 GiB T4, 12.7 GiB of RAM, sessions cut short
    "l4": Limits(22.0, 50.0),
    "a100": Limits(39.0, 80.0),
}


@dataclass(frozen=True)
class Estimate:
    """One notebook (and plan) on one tier: minutes, peak GPU and host GiB, and whether it fits."""

    notebook: str
    tier: str  # t4 | l4 | a100 | ndif
    plan: str | None
    minutes: float
    gpu_gib: float | None  # None on NDIF: the GPU is the service's
    host_gib: float
    fits: bool

    def __str__(self) -> str:
        where = "NDIF" if self.tier == "ndif" else f"a {GPU_NAMES[self.tier]}"
        plan = f" ({self.plan} plan)" if self.plan else ""
        gpu = "" if self.gpu_gib is None else f", {self.gpu_gib:.1f} GiB of GPU memory"
        time = "NDIF's compute" if self.tier == "ndif" else "minutes"
        return (
            f"{self.notebook}{plan} on {where}: about {_minutes(self.minutes)} {time}{gpu}, "
            f"{self.host_gib:.1f} GiB of host memory"
        )

    def _repr_pretty_(self, p, cycle) -> None:  # IPython display
        p.text(str(self))


def _minutes(value: float) -> str:
    return "< 1" if value < 1 else f"{value:.0f}"


def load_budget(path: Path = BUDGET_FILE) -> dict[str, object]:
    """The shipped record of ``benchmarks/profile_budget.py``: flat dotted keys."""
    return json.loads(path.read_text())


def plans(notebook: str, budget: dict[str, object]) -> list[str | None]:
    """The plans a notebook's gpu rows have (``[None]`` for a notebook of one run)."""
    found = [p for p in PLANS if f"gpu.{notebook}.{p}.t4.minutes" in budget]
    return found or [None]


def estimate(
    notebook: str, tier: str, plan: str | None = None, budget: dict | None = None
) -> Estimate | None:
    """``notebook`` (and ``plan``) on ``tier`` (t4 | l4 | a100 | ndif); None when the notebook
    has no full-size cell there (it runs its cpu work)."""
    budget = load_budget() if budget is None else budget
    if tier == "ndif":
        stem = f"remote.{notebook}"
        if f"{stem}.peak_host_gib" not in budget:
            return None
        host = float(budget[f"{stem}.peak_host_gib"])
        minutes = float(budget[f"{stem}.ndif_compute_minutes"])
        return Estimate(notebook, tier, None, minutes, None, host, True)
    stem = f"gpu.{notebook}{f'.{plan}' if plan else ''}.{tier}"
    if f"{stem}.minutes" not in budget:
        return None
    minutes, gpu, host = (
        float(budget[f"{stem}.{k}"]) for k in ("minutes", "peak_gpu_gib", "peak_host_gib")
    )
    limit = LIMITS[tier]
    fits = gpu <= limit.gpu_gib and host <= limit.host_gib
    fits = fits and (limit.minutes is None or minutes <= limit.minutes)
    return Estimate(notebook, tier, plan, minutes, gpu, host, fits)


def best(notebook: str, tier: str, budget: dict | None = None) -> Estimate | None:
    """The largest plan of ``notebook`` that fits ``tier`` (else its smallest, which does not)."""
    budget = load_budget() if budget is None else budget
    found = [estimate(notebook, tier, plan, budget) for plan in plans(notebook, budget)]
    found = [e for e in found if e is not None]
    return next((e for e in found if e.fits), found[-1] if found else None)


def gpu_tier(device_name: str) -> str | None:
    """The tier of a CUDA device name (``torch.cuda.get_device_name()``): ``Tesla T4`` -> t4,
    ``NVIDIA L4`` -> l4, ``NVIDIA A100-SXM4-40GB`` -> a100; None for any other GPU."""
    for tier, pattern in (("t4", r"\bT4\b"), ("l4", r"\bL4\b"), ("a100", r"\bA100\b")):
        if re.search(pattern, device_name, re.IGNORECASE):
            return tier
    return None


# -- a notebook's header ------------------------------------------------------------------------


def _cell(found: Estimate | None, profile: str, notebook: str) -> str:
    """One tier's row of the header table: runs, minutes, GPU and host memory."""
    if found is None:
        return f"{NOTEBOOK_PLAN[notebook][profile]} | | | "
    runs = (f"{found.plan} plan" if found.plan else "yes") if found.fits else "no"
    if not found.fits:
        runs += f" ({_why_not(found)})"
    if found.tier == "ndif":
        minutes, gpu = f"{_minutes(found.minutes)} + NDIF's queue", "on NDIF"
    else:
        minutes, gpu = _minutes(found.minutes), f"{found.gpu_gib:.1f} GiB"
    return f"{runs} | {minutes} | {gpu} | {found.host_gib:.1f} GiB"


def _why_not(found: Estimate) -> str:
    limit = LIMITS[found.tier]
    if found.gpu_gib is not None and found.gpu_gib > limit.gpu_gib:
        return f"{found.gpu_gib:.1f} GiB of GPU memory, over {limit.gpu_gib:g}"
    if found.host_gib > limit.host_gib:
        return f"{found.host_gib:.1f} GiB of host memory, over {limit.host_gib:g}"
    return f"about {_minutes(found.minutes)} min, over the {limit.minutes:g} of a free session"


def header(notebook: str, budget: dict | None = None) -> str:
    """The tiers of ``notebook`` as the markdown its first cell carries, between
    :data:`HEADER_START` and :data:`HEADER_END` (so it can be found and rewritten)."""
    budget = load_budget() if budget is None else budget
    rows = {
        "free Colab T4 (gpu)": ("gpu", best(notebook, "t4", budget)),
        "L4 (gpu)": ("gpu", best(notebook, "l4", budget)),
        "A100 (gpu)": ("gpu", best(notebook, "a100", budget)),
        "NDIF (remote)": ("remote", estimate(notebook, "ndif", budget=budget)),
    }
    if all(found is None for _, found in rows.values()):
        body = (
            "**Where it runs**: the same work on every tier (cpu, free Colab T4, L4 or A100, "
            f"NDIF), no GPU part: within the cpu profile's {CPU_LIMITS}."
        )
    else:
        lines = [
            "**Where it runs** (the profile's cells at full size, estimated on fake tensors by "
            "`benchmarks/profile_budget.py`):",
            "",
            "| tier | runs | minutes | GPU memory | host memory |",
            "|---|---|---|---|---|",
            "| cpu (laptop, Binder) | yes | ≤ 3 | none | ≤ 1.8 GB |",
        ]
        lines += [f"| {name} | {_cell(found, p, notebook)} |" for name, (p, found) in rows.items()]
        body = "\n".join(lines)
    return f"{HEADER_START}\n{body}\n{HEADER_END}"


def with_header(source: str, notebook: str, budget: dict | None = None) -> str:
    """A first markdown cell's ``source`` with the tiers of ``notebook`` in it: replaced where a
    header is already, else inserted after the badges' line (or at the end)."""
    block = header(notebook, budget)
    if HEADER_START in source and HEADER_END in source:
        start, end = source.index(HEADER_START), source.index(HEADER_END) + len(HEADER_END)
        return source[:start] + block + source[end:]
    lines = source.split("\n")
    at = next((i + 1 for i, line in enumerate(lines) if "colab-badge.svg" in line), len(lines))
    return "\n".join(lines[:at] + ["", block] + lines[at:])


# -- before a profile cell ----------------------------------------------------------------------


def preflight(notebook: str, profile, plan: str | None = None) -> str:
    """What a notebook's first profile cell says before it starts: the estimate of the tier it is
    on (a GPU's from ``torch.cuda.get_device_name()``, NDIF's for remote), and the plan chosen
    when the notebook has plans (the largest that fits, unless ``plan`` is given). Raises
    ProfileError, in one sentence, when the run will not fit here."""
    name = getattr(profile, "name", profile)
    if name == "cpu":
        return f"cpu profile: {NOTEBOOK_PLAN[notebook]['cpu']} (the header lists the other tiers)"
    budget = load_budget()
    tier = "ndif" if name == "remote" else None
    device = None
    if tier is None and torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
        tier = gpu_tier(device)
    if getattr(profile, "standins", False) or (tier is None and device is None):
        t4 = best(notebook, "ndif" if name == "remote" else "t4", budget)
        full = f"; at full size: {t4}" if t4 else ""
        return f"{name} profile on this machine's CPU (stand-ins or no GPU){full}"
    if tier is None:
        return _unknown_gpu(notebook, device, budget)
    found = estimate(notebook, tier, plan, budget) if plan else best(notebook, tier, budget)
    if found is None:
        return f"{name} profile: {NOTEBOOK_PLAN[notebook][name]}"
    _refuse_unless_it_fits(found, device)
    return str(found)


def plan_for(notebook: str, profile) -> str | None:
    """The plan a gpu profile cell of ``notebook`` runs, as :func:`preflight` chooses it: the
    largest that fits this GPU's tier (a free T4's on stand-ins or a GPU of no known tier);
    None for a notebook without plans or outside the gpu profile."""
    if getattr(profile, "name", profile) != "gpu":
        return None
    tier = None
    if torch.cuda.is_available() and not getattr(profile, "standins", False):
        tier = gpu_tier(torch.cuda.get_device_name(0))
    found = best(notebook, tier or "t4")
    return found.plan if found else None


def _refuse_unless_it_fits(found: Estimate, device: str | None) -> None:
    if found.tier == "ndif":
        total = psutil.virtual_memory().total / GIB
        if found.host_gib > total:
            raise ProfileError(
                f"{found}, more than this machine's {total:.1f} GiB: use a runtime with more "
                f"memory, or {config.CPU_CHOICE}."
            )
        return
    if not found.fits:
        others = [GPU_NAMES[t] for t in LIMITS if (e := best(found.notebook, t)) and e.fits]
        elsewhere = f"run it on an {' or an '.join(others)}" if others else "no tier holds it"
        raise ProfileError(
            f"{found} will not fit this {device} ({_why_not(found)}): {elsewhere} (Runtime > "
            f"Change runtime type), or {config.CPU_CHOICE}."
        )


def _unknown_gpu(notebook: str, device: str, budget: dict) -> str:
    """A GPU with no row: the T4 row's memory against this GPU's, time unknown."""
    t4 = best(notebook, "t4", budget)
    if t4 is None:
        return f"{device}: {NOTEBOOK_PLAN[notebook]['gpu']}"
    total = torch.cuda.get_device_properties(0).total_memory / GIB
    if t4.gpu_gib > total:
        raise ProfileError(
            f"{notebook} needs about {t4.gpu_gib:.1f} GiB of GPU memory and this {device} has "
            f"{total:.1f}: pick a T4, L4 or A100 (Runtime > Change runtime type), or "
            f"{config.CPU_CHOICE}."
        )
    return (
        f"{device} is none of the course's tiers (T4, L4, A100): its {total:.1f} GiB hold the "
        f"{t4.gpu_gib:.1f} GiB this needs; on a T4 it takes about {_minutes(t4.minutes)} min"
    )


# -- the notebooks' copies ----------------------------------------------------------------------

PREFLIGHT_CELL = 'from emgeo.course import tiers\n\nprint(tiers.preflight("{notebook}", profile))'


def preflight_cell(notebook: str) -> str:
    """The code cell in front of a notebook's first profile cell: its :func:`preflight`."""
    return PREFLIGHT_CELL.format(notebook=notebook)


def write_notebook_tiers(root: Path = config.SOLUTIONS_DIR) -> list[Path]:
    """Put each notebook's :func:`header` in its first markdown cell and, in a notebook with
    profile cells, :func:`preflight_cell` (tagged ``profile``) in front of the first of them;
    rewrite them where they are already. Return the notebooks that changed."""
    import nbformat  # notebook files: only when writing them

    from emgeo.course.notebooks import PROFILE_TAG  # nbclient: only when writing notebooks

    budget, changed = load_budget(), []
    for path in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        first.source = with_header(first.source, path.stem, budget)
        profile_cells = [
            i
            for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and PROFILE_TAG in c.metadata.get("tags", [])
        ]
        done = [c for c in nb.cells if c.cell_type == "code" and "tiers.preflight(" in c.source]
        if done:
            done[0].source = preflight_cell(path.stem)
        elif profile_cells:
            cell = nbformat.v4.new_code_cell(preflight_cell(path.stem))
            cell.metadata["tags"] = [PROFILE_TAG]
            nb.cells.insert(profile_cells[0], cell)
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed
