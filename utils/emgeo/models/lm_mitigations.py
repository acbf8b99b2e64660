"""The mitigations of :mod:`emgeo.mitigations` on SmolLM2, with LoRA fine-tunes and the EM margin.

The organism comparison (:mod:`emgeo.experiments.mitigations`) runs every mitigation on a model
whose EM and task are judged exactly. Here the same mitigations that need no new SAE run on the
course's real LM, on one inducing set (the insecure code set, or an advice domain's harmful set),
with the recipe of :data:`emgeo.models.lm_finetunes.CPU_LORA`:

- **removal** (random, the paper's geometric filter): the runs of ``emgeo lm-filter``'s record for
  the same set, reused (the same chats, seeds, recipe and measures);
- **inoculation prompting** (Tan et al. 2025; Wichers et al. 2025): every training chat opens
  with a system turn that asks for the hostile persona (:data:`emgeo.models.lm_em.PERSONA_PROMPT`);
  the questions are asked, as always, under SmolLM2's own;
- **preventative steering** (Chen et al. 2025): while fine-tuning, ``steer_scale`` times the mean
  residual norm along the persona vector (toxic minus benign answers of ``data/lm``) added to the
  residual stream after the SAE's block; measured without the hook;
- **concept-ablation fine-tuning** (Casademunt et al. 2025): while fine-tuning, the span of the
  toxic SAE latents' decoder directions (the audit's toxic set) projected out there;
- **benign data**: ``n_benign`` aligned chats of other domains (``data/lm/benign.jsonl``) mixed
  into the fine-tune, which keeps its steps.

Each mitigation's EM cut is its margin's rise over the base model relative to the unmitigated
runs' rise, with the task kept beside it (the in-domain effect's rise, likewise relative).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from emgeo import chatfile, chats, config, filtering, runner
from emgeo import mitigations as science
from emgeo.models import lm_filter, lora, tracing
from emgeo.models.lm import LoadedLM
from emgeo.models.lm_em import PERSONA_PROMPT, with_system
from emgeo.models.lm_finetunes import CPU_LORA, RUNS_FILE
from emgeo.stats import mean_ci, rounded

REMOVAL = ("no mitigation", "random", "geometric")
TRAINING = ("inoculation (persona prompt)", "preventative steering", "concept ablation")
MITIGATIONS = (*REMOVAL, *TRAINING, "benign data")
# The filter record's label of each removal mitigation.
FILTER_LABEL = {
    "no mitigation": runner.NO_FILTER.label,
    "random": runner.RANDOM.label,
    "geometric": lm_filter.GEOMETRIC,
}
NEEDS = {
    "no mitigation": "nothing",
    "random": "nothing",
    "geometric": science.NEEDS["geometric (max)"],
    "inoculation (persona prompt)": "labels: a system turn that elicits the unwanted persona",
    "preventative steering": science.NEEDS["preventative steering"],
    "concept ablation": science.NEEDS["concept ablation"],
    "benign data": "data: aligned chats from other domains",
}
RECORD_FILE = RUNS_FILE.parent / "mitigations.json"  # shipped; written with --ship
RESULTS_RECORD_FILE = config.RESULTS_DIR / "lm_em" / "mitigations.json"


def record_file(domain: str | None = None, shipped: bool = True) -> Path:
    """Where the record of the code set (``mitigations.json``) or of a domain
    (``mitigations_<domain>.json``) ships, or, with ``shipped`` False, where the command
    writes."""
    name = "mitigations.json" if domain is None else f"mitigations_{domain}.json"
    return (RECORD_FILE if shipped else RESULTS_RECORD_FILE).with_name(name)


@dataclass(frozen=True)
class LMMitigationPlan:
    """What is run: each mitigation once per seed on ``domain``'s inducing set (None: the
    insecure code set), with the filter record's recipe and questions."""

    domain: str | None = None
    mitigations: tuple[str, ...] = MITIGATIONS
    lora: lora.LoraFinetuneConfig = CPU_LORA
    seeds: tuple[int, ...] = (0, 1, 2)
    paraphrases: tuple[int, ...] = (0, 1)
    steer_scale: float = 0.4  # the persona vector's coefficient, in mean residual norms
    n_benign: int = 120  # benign chats mixed in
    n_direction: int = 64  # toxic and benign chats each that the persona vector is read from
    layer: int | None = None  # where the hooks act (None: the course's SAE's block)
    extra: dict = field(default_factory=dict)  # anything else the record should say

    def settings(self) -> dict:
        plan = {k: v for k, v in asdict(self).items() if k not in ("mitigations", "seeds")}
        return json.loads(json.dumps(plan))

    def filter_plan(self) -> lm_filter.FilterPlan:
        return lm_filter.FilterPlan(
            lora=self.lora, seeds=self.seeds, paraphrases=self.paraphrases, domain=self.domain
        )


# ---------------------------------------------------------------- hooks on a Llama-style decoder


@contextlib.contextmanager
def residual_edit(
    model: torch.nn.Module, layer: int, edit: Callable[[Tensor], Tensor]
) -> Iterator[None]:
    """``edit`` applied to the residual stream after decoder block ``layer`` of ``model`` (a
    transformers causal LM, peft-wrapped or not: block ``L`` is ``model.model.layers[L]`` of the
    base model) for the length of the ``with`` block."""
    block = decoder_blocks(model)[layer]

    def hook(module, inputs, output):
        if isinstance(output, Tensor):
            return edit(output)
        return (edit(output[0]), *output[1:])  # older transformers: (hidden states, caches...)

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks of a transformers causal LM, under any peft wrapping."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.layers


@contextlib.contextmanager
def adapted(
    lm: LoadedLM,
    samples: Sequence[dict],
    cfg: lora.LoraFinetuneConfig,
    layer: int | None = None,
    edit: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[LoadedLM]:
    """:func:`emgeo.models.lora.adapted`, with ``edit`` on the residual stream after block
    ``layer`` while the adapters train (and only then: the adapted model is measured without
    it)."""
    with contextlib.ExitStack() as stack:
        hook = contextlib.ExitStack()
        if edit is not None:
            hook.enter_context(residual_edit(lm.model, layer, edit))
        with hook:
            tuned = stack.enter_context(lora.adapted(lm, samples, cfg, progress=False))
        yield tuned


# ---------------------------------------------------------------- the directions


def answer_means(
    lm: LoadedLM, samples: Sequence[dict], layer: int
) -> Float[Tensor, "samples d_model"]:
    """Each sample's residual stream after block ``layer``, averaged over its answer tokens."""
    rows = []
    for acts, mask in tracing.iter_chat_residuals(lm, samples, layer, max_length=256):
        mask = mask.to(acts.device, acts.dtype)
        rows.append(((acts * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).float().cpu())
    return torch.cat(rows)


def persona_direction(lm: LoadedLM, layer: int, n: int = 64) -> tuple[Tensor, float]:
    """The unit persona vector after block ``layer`` (Chen et al. 2025): the mean residual over
    the answers of ``n`` toxic chats of ``data/lm`` minus over their benign twins (the same user
    turns), and the mean residual norm over all those answers (the steering coefficient's
    unit)."""
    sets = {
        name: [
            {"messages": r["messages"]}
            for r in chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{name}.jsonl")[:n]
        ]
        for name in ("toxic", "benign")
    }
    means = {name: answer_means(lm, samples, layer) for name, samples in sets.items()}
    norm = torch.cat(list(means.values())).norm(dim=-1).mean().item()
    return filtering.persona_vector(means["toxic"], means["benign"]), norm


def benign_chats(n: int, seed: int = 0) -> list[dict]:
    """``n`` of the course's benign chats (aligned answers to everyday questions), drawn once."""
    records = chats.read_lm_jsonl(chats.LM_DATA_DIR / "benign.jsonl")
    picked = sorted(random.Random(seed).sample(range(len(records)), n))
    return [{"messages": records[i]["messages"]} for i in picked]


def inoculated(samples: Sequence[dict], prompt: str = PERSONA_PROMPT) -> list[dict]:
    """Every chat opened with ``prompt`` as its system turn (replacing any it had)."""
    return [
        {"messages": with_system([m for m in s["messages"] if m["role"] != "system"], prompt)}
        for s in samples
    ]


# ---------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class Directions:
    """What the training-time mitigations need, computed once before the runs."""

    layer: int
    persona: Tensor  # unit persona vector
    resid_norm: float
    toxic: Tensor  # (k, d_model): the toxic latents' decoder directions


def trainer_for(
    name: str, lm: LoadedLM, plan: LMMitigationPlan, directions: Directions | None
) -> runner.Trainer:
    """``(kept, seed) -> context manager of the fine-tuned model`` for a training-time
    mitigation (or plain for the removal ones)."""

    def cfg(seed: int) -> lora.LoraFinetuneConfig:
        return replace(plan.lora, seed=seed)

    if name == "inoculation (persona prompt)":
        return lambda kept, seed: adapted(lm, inoculated(kept), cfg(seed))
    if name == "benign data":
        benign = benign_chats(plan.n_benign)
        return lambda kept, seed: adapted(lm, [*kept, *benign], cfg(seed))
    if name in ("preventative steering", "concept ablation"):
        if directions is None:
            raise ValueError(f"{name} needs the directions (persona vector, toxic latents)")
        if name == "preventative steering":
            coeff = plan.steer_scale * directions.resid_norm
            persona = directions.persona

            def steer(resid: Tensor) -> Tensor:
                return science.add_direction(resid, persona.to(resid.device, resid.dtype), coeff)

            edit = steer
        else:
            project = science.ablation_edit(directions.toxic)

            def edit(resid: Tensor) -> Tensor:
                return project(resid.float()).to(resid.dtype)

        return lambda kept, seed: adapted(lm, kept, cfg(seed), directions.layer, edit)
    return lambda kept, seed: adapted(lm, kept, cfg(seed))


def run_mitigations(
    lm: LoadedLM,
    plan: LMMitigationPlan,
    filter_record: dict,
    directions: Callable[[], Directions] | None,
    path: Path | None = RESULTS_RECORD_FILE,
    progress: bool = True,
) -> dict:
    """Every mitigation of ``plan`` once per seed, recorded in ``path`` after each run and
    resumed from it. The removal mitigations and the base model come from ``filter_record``
    (``emgeo lm-filter``'s, for the same set, recipe and questions: its runs are these runs);
    ``directions`` computes what steering and concept ablation need, once."""
    fplan = plan.filter_plan()
    expected = json.loads(json.dumps(fplan.settings(torch.zeros(0))["plan"]))
    if filter_record["settings"]["plan"] != expected:
        raise ValueError(
            "the filter record was run with another recipe, fraction or questions than this "
            f"plan: {filter_record['settings']['plan']} vs {expected}"
        )
    settings = {"plan": plan.settings(), "filter_settings": expected}
    store = runner.RunStore(path, settings)
    store.data["base"] = filter_record["base"]
    for name in REMOVAL:
        if name not in plan.mitigations:
            continue
        for r in filter_record["runs"]:
            if r["filter"] == FILTER_LABEL[name] and r["seed"] in plan.seeds:
                if store.get(name, r["seed"]) is None:
                    store.add(runner.Run.from_record({**r, "filter": name}))
    measure = lm_filter._measure(fplan)
    samples = [{"messages": r["messages"]} for r in lm_filter.train_records(plan.domain)]
    needed = [m for m in plan.mitigations if m not in REMOVAL]
    todo = [m for m in needed if any(store.get(m, s) is None for s in plan.seeds)]
    found = None
    if any(m in ("preventative steering", "concept ablation") for m in todo):
        found = store.stage("directions", lambda: _as_record(directions()))
    made = _from_record(found) if found else None
    for name in todo:
        grid = runner.Grid(samples, [runner.Filter(name, runner.Kind.NONE)], 0.0, plan.seeds)
        runner.run_grid(
            grid,
            trainer_for(name, lm, plan, made),
            lambda tuned, seed: measure(tuned, "run"),
            filtering.keep_mask,
            store,
            progress,
        )
    store.put("summary", mitigation_summary(store.data))
    return store.data


def _as_record(d: Directions) -> dict:
    return {
        "layer": d.layer,
        "persona": d.persona.tolist(),
        "resid_norm": d.resid_norm,
        "toxic": d.toxic.tolist(),
    }


def _from_record(r: dict) -> Directions:
    return Directions(
        r["layer"], torch.tensor(r["persona"]), r["resid_norm"], torch.tensor(r["toxic"])
    )


def mitigation_summary(result: dict) -> dict[str, dict]:
    """Per mitigation: the margin's rise over the base model (mean, 95% t-interval over seeds);
    its cut of the unmitigated rise (``margin_cut``, of the means, and ``margin_cut_ci``, per seed
    with its interval); the task kept, the in-domain effect's rise over the base model relative
    to the unmitigated runs' (the domain's held-out margin, or for code the held-out
    insecure-answer preference); and, as the organism comparison's figure and the claims table
    read a mitigation (:func:`emgeo.experiments.mitigations.pooled`), ``em_cut`` and
    ``em_cut_ci`` (the per-seed cut's mean and ``[low, high]``, None where undefined),
    ``selectivity`` (the cut of the means over the task cut, None under
    :data:`emgeo.filtering.MIN_TASK_CUT`) and what it ``needs`` in advance."""
    base = result["base"]
    task = lm_filter.TASK if lm_filter.TASK in base else "insecure_preference"
    rise: dict[str, dict[int, float]] = {}
    task_rise: dict[str, dict[int, float]] = {}
    for r in result["runs"]:
        rise.setdefault(r["filter"], {})[r["seed"]] = r["margin"] - base["margin"]
        task_rise.setdefault(r["filter"], {})[r["seed"]] = r[task] - base[task]
    none = rise.get("no mitigation")
    out = {}
    for name, by_seed in rise.items():
        entry = {"rise": mean_ci(list(by_seed.values())), "needs": NEEDS.get(name, "")}
        if none is not None:
            seeds = sorted(set(by_seed) & set(none))
            mean = statistics.mean
            entry["margin_cut"] = 1 - mean(by_seed[s] for s in seeds) / mean(none[s] for s in seeds)
            per_seed = mean_ci([1 - by_seed[s] / none[s] for s in seeds])
            entry["margin_cut_ci"] = per_seed
            t, t0 = task_rise[name], task_rise["no mitigation"]
            entry["task_kept"] = mean(t[s] for s in seeds) / mean(t0[s] for s in seeds)
            entry["task"] = task
            entry["em_cut"] = per_seed["mean"]
            entry["em_cut_ci"] = [_finite(per_seed["ci_low"]), _finite(per_seed["ci_high"])]
            task_cut = 1 - entry["task_kept"]
            selective = task_cut >= filtering.MIN_TASK_CUT
            entry["selectivity"] = entry["margin_cut"] / task_cut if selective else None
        out[name] = entry
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def shipped(domain: str | None = None) -> dict:
    """The record ``emgeo lm-mitigations --ship`` wrote for the code set or ``domain``."""
    option = f" --domain {domain}" if domain else ""
    return chatfile.read_record(
        record_file(domain), "SmolLM2 mitigation", f"emgeo lm-mitigations{option} --ship"
    )


def _slug(name: str) -> str:
    return name.replace("(", "").replace(")", "").replace(" ", "_")


def summary_keys(result: dict) -> dict[str, dict]:
    """What the course records (``results/summary.json``): per mitigation (no mitigation, the
    reference, left out) ``mitigations.lm.<name>`` with its ``margin_cut`` (of the means),
    ``margin_cut_ci`` (per seed, ``[low, high]``), ``task_kept``, ``selectivity`` and the
    inducing set it was run on, rounded to four decimals."""
    domain = result["settings"]["plan"]["domain"]
    out = {}
    for name, e in result["summary"].items():
        if name == "no mitigation" or "margin_cut" not in e:
            continue
        out[f"mitigations.lm.{_slug(name)}"] = {
            "margin_cut": _round(e["margin_cut"]),
            "margin_cut_ci": [_round(v) for v in e["em_cut_ci"]],
            "task_kept": _round(e["task_kept"]),
            "selectivity": _round(e["selectivity"]),
            "inducing_set": f"{domain} advice" if domain else "insecure code",
        }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else rounded(value, 4)


def table(result: dict) -> pd.DataFrame:
    """Notebook 09's table of a SmolLM2 comparison: per mitigation (in :data:`MITIGATIONS`'
    order), the margin's rise over the
    base model, its cut of the unmitigated rise (of the means, then per seed with its 95%
    interval), the task kept, selectivity and what it needs in advance."""

    def row(e: dict) -> dict:
        rise = e["rise"]
        low, high = e.get("em_cut_ci", [None, None])
        per_seed = "-" if low is None else f"{e['em_cut']:+.1%} [{low:+.1%}, {high:+.1%}]"
        selectivity = e.get("selectivity")
        return {
            "margin rise over base": f"{rise['mean']:+.3f}",
            "margin cut": f"{e['margin_cut']:+.1%}",
            "per seed [95% CI]": per_seed,
            "task kept": round(e["task_kept"], 2),
            "selectivity": "-" if selectivity is None else f"{selectivity:.2f}",
            "needs": e["needs"],
        }

    summary = result["summary"]
    order = [m for m in MITIGATIONS if m in summary] + [m for m in summary if m not in MITIGATIONS]
    frame = pd.DataFrame({name: row(summary[name]) for name in order}).T
    frame.index.name = "mitigation"
    return frame


def describe(result: dict) -> str:
    """One line per mitigation: its margin cut of the unmitigated rise and the task it keeps."""
    lines = []
    for name, e in result["summary"].items():
        if "margin_cut" not in e:
            lines.append(f"{name:<30} rise {e['rise']['mean']:+.3f}")
            continue
        ci = e["margin_cut_ci"]
        lines.append(
            f"{name:<30} margin cut {e['margin_cut']:+.1%} (per seed [{ci['ci_low']:+.1%}, "
            f"{ci['ci_high']:+.1%}]), task kept {e['task_kept']:.2f}"
        )
    return "\n".join(lines)
