"""The central claims of notebooks 04, 06 and 07 over independently pretrained organisms.

A fine-tuning seed only reorders batches; it cannot say whether a claim belongs to the organism
world or to one draw of it. Here each organism is pretrained from its own seed (its own
initialisation and its own stream of pretraining documents), gets its own SAE, and every claim is
measured again in it, the same way the notebooks measure it:

- 04: the off-domain misaligned rate of the base model and after each fine-tune (insecure,
  secure, educational), and the in-domain insecure-code rate;
- 06: how many inducing latents are toxic latents, and the permutation test of the inducing
  latents *outside* the toxic set against the non-inducing ones outside it (p, Cohen's d), beside
  the confounded test that counts the shared latents;
- 07: the geometric (max) filter and its two parts (membership only, neighbours only): the
  reduction of EM vs no filter and vs random removal of the same budget, and its selectivity.

``emgeo robustness`` writes the per-organism values and their mean, spread and range to
``results/robustness.json`` and, with ``--ship``, the copy the notebooks read to
``data/organisms/robustness.json`` (:func:`shipped`). Organism 0 is the shipped one
(``data/organism``); the others live in ``data/organisms/seed{N}`` (model and a layer-0 SAE),
trained by the same command when missing.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from scipy.stats import combine_pvalues
from torch import Tensor
from tqdm.auto import tqdm

from emgeo import chatfile, data, features, filtering, geometry, organism, runner
from emgeo.config import DATA_DIR, RESULTS_DIR
from emgeo.experiments import organisms
from emgeo.models import saes

ORGANISM_SEEDS: tuple[int, ...] = (0, 1, 2)
ORGANISMS_DIR = DATA_DIR / "organisms"
RESULTS_FILE = RESULTS_DIR / "robustness.json"  # where `emgeo robustness` writes
CONDITIONS = ("base", "insecure", "secure", "educational")


@dataclass(frozen=True)
class RobustnessConfig:
    """What is measured in each organism: the notebooks' pre-stated settings (layer 0, k = 20,
    50% removal), with three fine-tuning seeds per condition and filter, as notebook 07 uses."""

    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    layer: int = 0
    k: int = 20
    fraction: float = 0.5
    n_samples: int = 512
    n_permutations: int = 10_000


def organism_dir(seed: int) -> Path:
    """Where organism ``seed`` lives: the shipped one for seed 0."""
    return organism.ORGANISM_DIR if seed == 0 else ORGANISMS_DIR / f"seed{seed}"


def train(seed: int, directory: Path, steps: int | None = None, layer: int = 0) -> None:
    """Pretrain organism ``seed`` and the SAE of ``layer`` on it (about 4.5 minutes on 2 cores)."""
    organisms.pretrain(seed, directory, steps)
    organisms.train_saes(directory, (layer,), (0,))


def claims(
    model,
    tok: organism.Tokenizer,
    sae,
    cfg: RobustnessConfig = RobustnessConfig(),
    progress: bool = True,
) -> dict[str, float | int]:
    """Every claim of 04, 06 and 07 measured on one organism and its SAE, as flat dotted keys."""
    out: dict[str, float | int] = {**em_claims(model, tok, cfg, progress)}
    fsets, alive = features.organism_feature_sets(sae, model, tok, layer=cfg.layer, k=cfg.k)
    out |= geometry_claims(sae.W_dec.detach(), fsets, alive, cfg)
    return out | filter_claims(model, tok, sae, fsets, cfg, progress)


def em_claims(
    model, tok: organism.Tokenizer, cfg: RobustnessConfig, progress: bool = True
) -> dict[str, float]:
    """04: the off-domain and in-domain rates per condition, and insecure minus each other."""
    out: dict[str, float] = {}
    sets = {
        kind: chatfile.read_chats(organism.ORGANISM_DIR / f"{kind}.jsonl")
        for kind in data.FINETUNE_SETS
    }
    runs = organism.run_conditions(model, tok, sets, list(cfg.finetune_seeds), progress=progress)
    for c in CONDITIONS:
        rows = [r for r in runs if r["condition"] == c]
        out[f"em.{c}"] = statistics.mean(r["offdomain"] for r in rows)
        out[f"code.{c}"] = statistics.mean(r["code"] for r in rows)
    out["em.insecure_minus_base"] = out["em.insecure"] - out["em.base"]
    out["em.insecure_minus_secure"] = out["em.insecure"] - out["em.secure"]
    out["em.insecure_minus_educational"] = out["em.insecure"] - out["em.educational"]
    return out


def geometry_claims(
    W_dec: Tensor, fsets: features.FeatureSets, alive: Tensor, cfg: RobustnessConfig
) -> dict[str, float | int]:
    """06: the permutation tests of the inducing latents outside the toxic set (and counting
    the shared ones) among the ``alive`` latents, and how many are shared."""
    out: dict[str, float | int] = {}
    candidates = alive.nonzero()[:, 0]
    for name, outside in (("disjoint", True), ("confounded", False)):
        r = geometry.compare_sets(
            W_dec,
            fsets.inducing,
            fsets.non_inducing,
            fsets.toxic,
            candidates,
            n_permutations=cfg.n_permutations,
            outside_toxic=outside,
        )
        out[f"geometry.{name}.p_value"] = r["p_value"]
        out[f"geometry.{name}.effect_size"] = r["effect_size"]
    out["geometry.n_shared"] = fsets.overlap("inducing", "toxic")
    out["geometry.disjoint.n_inducing"] = cfg.k - out["geometry.n_shared"]
    return out


def filter_claims(
    model,
    tok: organism.Tokenizer,
    sae,
    fsets: features.FeatureSets,
    cfg: RobustnessConfig,
    progress: bool = True,
) -> dict[str, float]:
    """07: the geometric filter and its two parts against no filter and random removal (paired
    by seed), with the in-domain task rate and selectivity, in two cases: ``filter.paper.*``,
    the paper's protocol (the inducing set itself, plain insecure code, ranked and its top
    ``fraction`` removed), and ``filter.mixed.*``, screening a set of mixed provenance (half
    insecure, a quarter each educational and secure)."""
    proximity = filtering.feature_proximity(sae.W_dec.detach(), fsets.toxic, "max")
    cases = {
        "paper": data.finetune_samples("insecure", cfg.n_samples, seed=0),
        "mixed": filtering.mixed_provenance_set(cfg.n_samples, seed=0),
    }
    out: dict[str, float] = {}
    for case, samples in cases.items():
        latents = features.sample_features(
            sae, *features.organism_residuals(model, tok, samples, cfg.layer)
        )
        scores = filtering.ablation_filters(latents, proximity, fsets.toxic)
        rows = filtering.evaluate_filters(
            model,
            tok,
            samples,
            runner.with_controls(scores),
            cfg.fraction,
            cfg.finetune_seeds,
            progress=progress,
        )
        out |= {f"filter.{case}.{k}": v for k, v in filter_summary(rows).items()}
    return out


def filter_summary(rows: list[dict]) -> dict[str, float]:
    """:func:`filtering.ablation_summary` as flat keys (``full.reduction_vs_random``, ...),
    the intervals left out."""
    return {
        f"{key}.{name}": value
        for key, entry in filtering.ablation_summary(rows).items()
        for name, value in entry.items()
        if not name.startswith("ci_")
    }


# A claim "holds" in an organism when its value passes the test beside it: the sentence each
# notebook says, as a yes or no per organism.
HOLDS = {
    "em.insecure_minus_base": (
        "insecure fine-tune raises off-domain EM over the base model",
        lambda v: v > 0,
    ),
    "em.insecure_minus_secure": ("insecure raises EM more than secure", lambda v: v > 0),
    "em.insecure_minus_educational": ("insecure raises EM more than educational", lambda v: v > 0),
    "geometry.disjoint.p_value": (
        "inducing latents outside the toxic set lie nearer it than non-inducing ones (p < 0.05)",
        lambda v: v < 0.05,
    ),
    "geometry.confounded.p_value": (
        "the same, counting shared latents (p < 0.05)",
        lambda v: v < 0.05,
    ),
    **{
        f"filter.{case}.{key}": (f"{sentence} ({where})", test)
        for case, where in (
            ("paper", "the paper's protocol: the inducing set ranked, half removed"),
            ("mixed", "screening a set of mixed provenance"),
        )
        for key, (sentence, test) in {
            "full.reduction_vs_random": (
                "the geometric filter cuts EM more than random removal",
                lambda v: v > 0,
            ),
            "membership_only.reduction_vs_random": (
                "membership alone beats random removal",
                lambda v: v > 0,
            ),
            "neighbours_only.reduction_vs_random": (
                "neighbours alone (geometry) beat random removal",
                lambda v: v > 0,
            ),
            "full.selectivity": (
                "the filter cuts EM more than the in-domain task (selectivity > 1)",
                lambda v: v > 1,
            ),
        }.items()
    },
}


def aggregate(per_organism: dict[int, dict[str, float | int]]) -> dict:
    """Per claim: the value in each organism, mean, sample standard deviation, min and max; for
    the claims in :data:`HOLDS`, in how many organisms the sentence holds; and for p-values, the
    p-value of all organisms' tests together (Fisher's method: the organisms are pretrained
    independently, so their tests are independent). An undefined value (NaN: a selectivity where
    the filter left the task as it was) is listed as None and left out of the statistics, and
    never counts as holding."""
    keys = sorted(set().union(*(v.keys() for v in per_organism.values())))
    out = {}
    for key in keys:
        every = [
            float(per_organism[s][key]) for s in sorted(per_organism) if key in per_organism[s]
        ]
        values = [v for v in every if not math.isnan(v)]
        entry = {
            "values": [None if math.isnan(v) else round(v, 4) for v in every],
            "mean": round(statistics.mean(values), 4) if values else None,
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "min": round(min(values), 4) if values else None,
            "max": round(max(values), 4) if values else None,
        }
        if key.endswith("p_value") and len(values) > 1:  # independent organisms: Fisher's method
            entry["combined_p"] = float(f"{combine_pvalues(values).pvalue:.3g}")
        if key in HOLDS:
            sentence, test = HOLDS[key]
            entry["claim"] = sentence
            entry["holds_in"] = sum(bool(test(v)) for v in values)
            entry["of"] = len(every)
        out[key] = entry
    return out


def run(
    seeds: Sequence[int] = ORGANISM_SEEDS,
    cfg: RobustnessConfig = RobustnessConfig(),
    out: Path = RESULTS_FILE,
    train_missing: bool = True,
    pretrain_steps: int | None = None,
    ship: bool = False,
    progress: bool = True,
) -> dict:
    """Measure :func:`claims` in every organism (training missing ones), write ``out`` (and,
    with ``ship``, the copy in ``data/organisms`` the notebooks read).

    Each organism's claims are saved as it ends, beside ``out`` (:func:`partial_path`), under
    the settings that made them: a stopped run, started again, measures only the organisms it
    had not finished."""
    config = json.loads(json.dumps({**asdict(cfg), "organism_seeds": list(seeds)}))
    done = _load_partial(partial_path(out), config)
    for seed in tqdm(seeds, desc="organisms", disable=not progress):
        if str(seed) in done["per_organism"]:
            continue
        start = time.perf_counter()
        directory = organism_dir(seed)
        if not (directory / "model.json").exists():
            if not train_missing:
                raise FileNotFoundError(
                    f"no organism {seed} in {directory}: run "
                    f"`emgeo robustness --seeds {seed}` to train it"
                )
            train(seed, directory, pretrain_steps, cfg.layer)
        model, tok = organism.load(directory)
        sae = saes.load_organism_sae(cfg.layer, directory)
        measured = claims(model, tok, sae, cfg, progress)
        done["per_organism"][str(seed)] = {k: round(float(v), 5) for k, v in measured.items()}
        done["seconds"][str(seed)] = round(time.perf_counter() - start, 1)
        chatfile.write_json(done, partial_path(out))
    per_organism = {s: done["per_organism"][str(s)] for s in seeds}
    result = {
        "config": config,
        "claims": aggregate(per_organism),
        "per_organism": {str(s): per_organism[s] for s in seeds},
        "seconds": {str(s): done["seconds"][str(s)] for s in seeds},
    }
    chatfile.write_json(result, out)
    if ship:
        chatfile.write_json(result, ORGANISMS_DIR / "robustness.json")
    partial_path(out).unlink()
    return result


def partial_path(out: Path) -> Path:
    """Where :func:`run` keeps the organisms measured so far."""
    return out.with_name(out.stem + ".partial.json")


def _load_partial(path: Path, config: dict) -> dict:
    """The organisms measured so far under ``config`` (none if the settings changed)."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("config") != config:
        return {"config": config, "per_organism": {}, "seconds": {}}
    return saved


def describe(result: dict) -> str:
    """Each organism's values of the claims in :data:`HOLDS`, one organism a line."""
    return "\n".join(
        f"organism {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items() if k in HOLDS)
        for seed, values in result["per_organism"].items()
    )


def shipped(path: Path | None = None) -> dict:
    """The robustness record the course ships (written by ``emgeo robustness``)."""
    path = path or ORGANISMS_DIR / "robustness.json"
    return chatfile.read_record(path, "robustness", "emgeo robustness")


def summary(result: dict, key: str) -> dict:
    """One claim in brief, for a notebook to record: the per-organism values, mean, standard
    deviation, and (where they exist) in how many organisms it holds and the combined p-value."""
    entry = result["claims"][key]
    keep = ("values", "mean", "sd", "holds_in", "of", "combined_p")
    return {k: entry[k] for k in keep if k in entry}


def table(result: dict, prefix: str) -> pd.DataFrame:
    """The claims whose key starts with ``prefix``: one row each, a column per organism, the
    mean and standard deviation, and in how many organisms the claim's sentence holds."""
    seeds = [str(s) for s in result["config"]["organism_seeds"]]
    rows = []
    for key, entry in result["claims"].items():
        if not key.startswith(prefix):
            continue
        row = {
            "claim": key,
            **{f"organism {s}": v for s, v in zip(seeds, entry["values"], strict=True)},
        }
        row |= {"mean": entry["mean"], "sd": entry["sd"]}
        row["holds in"] = f"{entry['holds_in']} of {entry['of']}" if "holds_in" in entry else ""
        row["combined p"] = f"{entry['combined_p']:.2g}" if "combined_p" in entry else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("claim")
