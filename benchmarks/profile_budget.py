"""Peak GPU memory, host memory and time of the gpu and remote profiles, per notebook, on a T4, an
L4 and an A100, without any of them: the notebooks' code run at full size on fake tensors
(emgeo.models.simulate), memory and FLOPs measured, time from the assumed rates it prints.

    .venv/bin/python benchmarks/profile_budget.py   # a table, and results/profile_budget.json

Keys of the JSON: ``gpu.<notebook>[.<plan>].<gpu>.{minutes,peak_gpu_gib,peak_host_gib}``,
``remote.<notebook>.peak_host_gib``, and ``assumptions``.
"""

from __future__ import annotations

import json
import time

import psutil

from emgeo import config
from emgeo.models import gpu_plan, simulate

NOTEBOOK_05, NOTEBOOK_06, NOTEBOOK_07 = (
    "05_feature_identification",
    "06_feature_geometry",
    "07_geometric_filter",
)
N_PER_SET, MAX_LENGTH = 64, 512  # lm_backend's defaults in notebooks 05 and 06


def host_baseline_gib() -> float:
    """This process's size with the course's model stack imported (no model loaded): what a
    notebook's kernel holds before its first model."""
    return psutil.Process().memory_info().rss / simulate.GIB


def budgets(baseline: float) -> dict[str, tuple[simulate.NotebookBudget, bool]]:
    """Each notebook run on fake tensors: name -> (budget, runs on a GPU)."""
    quick, full = gpu_plan.GpuFilterPlan.quick(), gpu_plan.GpuFilterPlan.full()
    runs = {
        f"gpu.{NOTEBOOK_05}": lambda: simulate.budget_gpu_features(N_PER_SET, MAX_LENGTH),
        f"gpu.{NOTEBOOK_06}": lambda: simulate.budget_gpu_features(N_PER_SET, MAX_LENGTH, True),
        f"gpu.{NOTEBOOK_07}.quick": lambda: simulate.budget_gpu_filter(quick),
        f"gpu.{NOTEBOOK_07}.full": lambda: simulate.budget_gpu_filter(full),
        f"remote.{NOTEBOOK_05}": lambda: simulate.budget_remote_features(N_PER_SET, MAX_LENGTH),
        f"remote.{NOTEBOOK_06}": lambda: simulate.budget_remote_features(
            N_PER_SET, MAX_LENGTH, True
        ),
    }
    out = {}
    for name, run in runs.items():
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


def main() -> None:
    baseline = host_baseline_gib()
    flat = results(budgets(baseline))
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
    path = config.RESULTS_DIR / "profile_budget.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(flat | {"assumptions": a}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
