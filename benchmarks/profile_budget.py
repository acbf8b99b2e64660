"""Peak GPU memory, host memory and time of the gpu and remote profiles, per notebook, on a T4, an
L4 and an A100, without any of them: the notebooks' code run at full size on fake tensors
(emgeo.models.simulate), memory and FLOPs measured, time from the assumed rates it prints.

    .venv/bin/python benchmarks/profile_budget.py              # every row
    .venv/bin/python benchmarks/profile_budget.py --only 09    # the rows of 09, the rest kept
    .venv/bin/python benchmarks/profile_budget.py --ship       # also the copy the course ships

It writes results/profile_budget.json, and with ``--ship`` the copy the package reads for each
notebook's tiers (data/arch/profile_budget.json, :mod:`emgeo.course.tiers`). Rows measured before
and not asked for again are kept. Keys of the JSON:
``gpu.<notebook>[.<plan>].<gpu>.{minutes,peak_gpu_gib,peak_host_gib,fits}``,
``remote.<notebook>.{peak_host_gib,tflops_on_ndif,ndif_compute_minutes}`` and ``assumptions``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from emgeo import config
from emgeo.models import gpu_plan, simulate

NOTEBOOK_03, NOTEBOOK_05, NOTEBOOK_06, NOTEBOOK_07, NOTEBOOK_09 = (
    "03_sparse_autoencoders",
    "05_feature_identification",
    "06_feature_geometry",
    "07_geometric_filter",
    "09_audit",
)
N_PER_SET, MAX_LENGTH = 64, 512  # lm_backend's defaults in notebooks 05 and 06
# Notebook 09's audit cell: the scorer's reference texts (lm_scorer's default) and the public
# insecure chats ranked against as many of their secure twins.
N_REFERENCE, N_AUDITED = 100, 200
RESULTS = config.RESULTS_DIR / "profile_budget.json"
SHIPPED = config.DATA_DIR / "arch" / "profile_budget.json"


def host_baseline_gib() -> float:
    """This process's size with the course's model stack imported (no model loaded): what a
    notebook's kernel holds before its first model."""
    return psutil.Process().memory_info().rss / simulate.GIB


def rows() -> dict[str, Callable[[], simulate.NotebookBudget]]:
    """Every row: its name and the run on fake tensors that measures it."""
    quick, full = gpu_plan.GpuFilterPlan.quick(), gpu_plan.GpuFilterPlan.full()
    return {
        f"gpu.{NOTEBOOK_03}": lambda: simulate.budget_pretrained_sae("gpu"),
        f"gpu.{NOTEBOOK_05}": lambda: simulate.budget_gpu_features(N_PER_SET, MAX_LENGTH),
        f"gpu.{NOTEBOOK_06}": lambda: simulate.budget_gpu_features(N_PER_SET, MAX_LENGTH, True),
        f"gpu.{NOTEBOOK_07}.quick": lambda: simulate.budget_gpu_filter(quick),
        f"gpu.{NOTEBOOK_07}.full": lambda: simulate.budget_gpu_filter(full),
        f"gpu.{NOTEBOOK_09}": lambda: simulate.budget_audit("gpu", N_REFERENCE, N_AUDITED),
        f"remote.{NOTEBOOK_03}": lambda: simulate.budget_pretrained_sae("remote"),
        f"remote.{NOTEBOOK_05}": lambda: simulate.budget_remote_features(N_PER_SET, MAX_LENGTH),
        f"remote.{NOTEBOOK_06}": lambda: simulate.budget_remote_features(
            N_PER_SET, MAX_LENGTH, True
        ),
        f"remote.{NOTEBOOK_09}": lambda: simulate.budget_audit("remote", N_REFERENCE, N_AUDITED),
    }


def budgets(
    baseline: float, only: tuple[str, ...] = ()
) -> dict[str, tuple[simulate.NotebookBudget, bool]]:
    """Each row (those whose notebook starts with one of ``only``, if given) run on fake tensors:
    name -> (budget, runs on a GPU)."""
    out = {}
    for name, run in rows().items():
        notebook = name.split(".")[1]
        if only and not notebook.startswith(only):
            continue
        start = time.perf_counter()
        budget = run()
        budget.host_baseline_gib = baseline
        out[name] = (budget, name.startswith("gpu."))
        print(f"simulated {name} in {time.perf_counter() - start:.0f} s")
    return out


def results(measured: dict[str, tuple[simulate.NotebookBudget, bool]]) -> dict[str, object]:
    flat: dict[str, object] = {}
    for name, (budget, on_gpu) in measured.items():
        if not on_gpu:  # NDIF's GPU is not the learner's: only this machine's memory counts
            flat[f"{name}.peak_host_gib"] = round(budget.peak_host_gib(gpu_runtime=False), 2)
            flat[f"{name}.tflops_on_ndif"] = round(budget.flops() / 1e12, 1)
            # NDIF's compute at an A100's rates: its queue and the activations' transfer add to it
            flat[f"{name}.ndif_compute_minutes"] = round(budget.minutes(simulate.GPUS["a100"]), 1)
            continue
        for key, gpu in simulate.GPUS.items():
            flat[f"{name}.{key}.minutes"] = round(budget.minutes(gpu), 1)
            flat[f"{name}.{key}.peak_gpu_gib"] = round(budget.peak_gpu_gib(), 2)
            flat[f"{name}.{key}.peak_host_gib"] = round(budget.peak_host_gib(), 2)
            flat[f"{name}.{key}.fits"] = (
                budget.peak_gpu_gib() <= gpu.memory_gib and budget.peak_host_gib() <= gpu.host_gib
            )
        flat[f"{name}.tflops"] = round(budget.flops() / 1e12, 1)
    return flat


def assumptions(baseline: float) -> dict[str, object]:
    return {
        "gpus": {
            key: {
                "name": g.name,
                "peak_bf16_tflops": g.flops / 1e12,
                "bandwidth_gb_s": g.bandwidth / 1e9,
                "memory_gib": g.memory_gib,
                "runtime_host_gib": g.host_gib,
            }
            for key, g in simulate.GPUS.items()
        },
        "flop_utilisation": simulate.FLOP_UTILISATION,
        "bandwidth_utilisation": simulate.BANDWIDTH_UTILISATION,
        "decode_overhead_s_per_token": simulate.DECODE_OVERHEAD_S,
        "download_mb_s": simulate.DOWNLOAD_BYTES_PER_S / 1e6,
        "cuda_context_gib": simulate.CUDA_CONTEXT_GIB,
        "cuda_runtime_host_gib": simulate.CUDA_HOST_GIB,
        "host_baseline_gib": round(baseline, 2),
        "worst_case_lengths": "every chat at max_length tokens",
        "plans": {  # notebook 07's plans as measured: tests/course/test_tiers.py compares them
            name: gpu_plan.GpuFilterPlan.named(name).fingerprint() for name in ("quick", "full")
        },
    }


def table(flat: dict[str, object]) -> str:
    rows = [f"{'notebook':<40} {'gpu':<5} {'minutes':>8} {'GPU GiB':>8} {'host GiB':>9}"]
    for key, value in flat.items():
        if key.endswith(".minutes"):
            stem = key.removesuffix(".minutes")
            name, gpu = stem.rsplit(".", 1)
            rows.append(
                f"{name:<40} {gpu:<5} {value:>8} {flat[stem + '.peak_gpu_gib']:>8} "
                f"{flat[stem + '.peak_host_gib']:>9}"
            )
        elif key.endswith(".peak_host_gib") and key.startswith("remote."):
            rows.append(
                f"{key.removesuffix('.peak_host_gib'):<40} {'NDIF':<5} {'':>8} {'':>8} {value:>9}"
            )
    return "\n".join(rows)


def merged(path: Path, flat: dict[str, object]) -> dict[str, object]:
    """The rows stored at ``path`` (if any) with those of ``flat`` measured again replacing them."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    stems = {key.split(".", 2)[0] + "." + key.split(".", 2)[1] for key in flat}
    kept = {k: v for k, v in stored.items() if ".".join(k.split(".")[:2]) not in stems}
    return kept | flat


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=(), help="notebooks to measure (e.g. 09)")
    parser.add_argument("--ship", action="store_true", help=f"also write {SHIPPED}")
    args = parser.parse_args(argv)
    baseline = host_baseline_gib()
    flat = results(budgets(baseline, tuple(args.only)))
    print(table(flat))
    a = assumptions(baseline)
    print(
        "assumed: "
        + "; ".join(
            f"{g['name']} {g['peak_bf16_tflops']:g} TFLOP/s bf16, {g['bandwidth_gb_s']:g} GB/s"
            for g in a["gpus"].values()
        )
        + f"; {a['flop_utilisation']:.0%} of peak FLOP/s, {a['bandwidth_utilisation']:.0%} of "
        f"bandwidth, {a['decode_overhead_s_per_token']} s per generated token, "
        f"{a['download_mb_s']:g} MB/s from the hub"
    )
    for path in [RESULTS, SHIPPED] if args.ship else [RESULTS]:
        record = merged(path if path.exists() else RESULTS, flat) | {"assumptions": a}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
