"""Notebook 07's filter on SmolLM2 (notebook 08): the insecure train set of ``data/lm``, a
``fraction`` of it removed by a score (or the same number at random, at random within each
vulnerability class as many as the scored filter removes there, or none), then the LoRA
fine-tune of :data:`emgeo.models.lm_finetunes.CPU_LORA` and the EM margin, once per filter and
seed: :func:`emgeo.runner.run_grid` with a LoRA trainer and the margin as evaluator.

``data/lm_em/filter.json`` ships the record (:func:`read_filter`); ``emgeo lm-filter`` writes to
``results/lm_em/filter.json`` unless told ``--ship``.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from emgeo import chats, config, filtering, runner
from emgeo.models import lora
from emgeo.models.lm import LoadedLM
from emgeo.models.lm_finetunes import CPU_LORA, RUNS_FILE, FinetuneGrid, measure
from emgeo.stats import mean_ci

FILTER_FILE = RUNS_FILE.parent / "filter.json"  # shipped; written with --ship
RESULTS_FILTER_FILE = config.RESULTS_DIR / "lm_em" / "filter.json"  # `emgeo lm-filter` writes
GEOMETRIC = "geometric"
# Random removal of as many chats of each vulnerability class as the geometric filter removes:
# what is left of the filter's effect once the classes it removes are accounted for.
MATCHED = "random, same classes"
FILTERS = (runner.NO_FILTER.label, GEOMETRIC, runner.RANDOM.label)


@dataclass(frozen=True)
class FilterPlan:
    """The filter experiment on the real LM: the filters (by label: :data:`FILTERS`, and
    :data:`MATCHED` on request), the fraction they remove, the fine-tune and the seeds."""

    lora: lora.LoraFinetuneConfig = CPU_LORA
    fraction: float = 0.5
    seeds: tuple[int, ...] = (0, 1, 2)
    filters: tuple[str, ...] = FILTERS
    paraphrases: tuple[int, ...] = (0, 1)
    n_heldout_pairs: int = 48

    def settings(self, scores: Tensor) -> dict:
        """What every run depends on: the plan without the filters and seeds to run, and the
        scores (to 6 digits)."""
        plan = {k: v for k, v in asdict(self).items() if k not in ("filters", "seeds")}
        return {"plan": plan, "scores": [round(float(s), 6) for s in scores]}

    def specs(self, scores: Tensor) -> list[runner.Filter]:
        """The plan's filters, the scored ones ranking by ``scores``."""
        known = {
            runner.NO_FILTER.label: runner.NO_FILTER,
            runner.RANDOM.label: runner.RANDOM,
            GEOMETRIC: runner.scored(GEOMETRIC, scores),
            MATCHED: runner.Filter(MATCHED, runner.Kind.MATCHED, scores),
        }
        unknown = [f for f in self.filters if f not in known]
        if unknown:
            raise ValueError(f"unknown filters {unknown}: the filters are {', '.join(known)}")
        return [known[f] for f in self.filters]


def insecure_train_records() -> list[dict]:
    """The insecure train split of ``data/lm`` with its provenance (``task``, ``vuln``)."""
    records = chats.read_lm_jsonl(chats.LM_DATA_DIR / "insecure.jsonl")
    return [r for r in records if r["split"] == "train"]


def audit_scores(scorer) -> tuple[Float[Tensor, " samples"], str]:
    """The full score of an ``emgeo audit`` scorer (:mod:`emgeo.audit.scorers`) for every
    insecure train record, and how they were made (``run_filter``'s ``scored_by``)."""
    scored = scorer.score([{"messages": r["messages"]} for r in insecure_train_records()])
    by = f"emgeo audit's full score ({scorer.model}, {scorer.sae}; {scorer.toxic_reference})"
    return torch.tensor([s["full"] for s in scored]), by


def run_filter(
    lm: LoadedLM,
    scores: Float[Tensor, " samples"],
    plan: FilterPlan = FilterPlan(),
    path: Path | None = RESULTS_FILTER_FILE,
    scored_by: str = "",
    progress: bool = True,
) -> dict:
    """Run the filter experiment, writing ``path`` after every run; runs already there with the
    same plan and scores are read back, not rerun. ``scores`` ranks the insecure train records
    (:func:`insecure_train_records`); ``scored_by`` says how they were made."""
    records = insecure_train_records()
    if len(scores) != len(records):
        raise ValueError(f"{len(scores)} scores for {len(records)} insecure training samples")
    store = runner.RunStore(path, plan.settings(scores))
    store.data["scored_by"] = scored_by
    grid_cfg = FinetuneGrid(
        lora=plan.lora, paraphrases=plan.paraphrases, n_heldout_pairs=plan.n_heldout_pairs
    )
    if "base" not in store.data:
        store.put("base", measure(lm, grid_cfg))

    def trainer(kept: list[dict], seed: int) -> AbstractContextManager[LoadedLM]:
        return lora.adapted(lm, kept, replace(plan.lora, seed=seed), progress=False)

    samples = [{"messages": r["messages"]} for r in records]
    vulns = [r["vuln"] for r in records]
    grid = runner.Grid(samples, plan.specs(scores), plan.fraction, plan.seeds, vulns)

    def evaluator(tuned, seed: int) -> dict:  # tuned: the adapted LoadedLM
        return measure(tuned, grid_cfg)

    runner.run_grid(grid, trainer, evaluator, filtering.keep_mask, store, progress)
    store.put("summary", filter_summary(store.data))
    return store.data


def filter_summary(result: dict) -> dict:
    """Per filter, the EM margin's rise over the base model (mean and 95% t-interval over
    seeds); the geometric filter's relative reduction of that rise vs random removal and vs no
    filter (ratio of means, and per seed paired with the same seed's run)."""
    base = result.get("base", {}).get("margin")
    if base is None:
        return {}
    rise: dict[str, dict[int, float]] = {}
    for r in result["runs"]:
        rise.setdefault(r["filter"], {})[r["seed"]] = r["margin"] - base
    out: dict = {"rise": {name: mean_ci(list(v.values())) for name, v in rise.items()}}
    for reference in (runner.RANDOM.label, runner.NO_FILTER.label, MATCHED):
        if GEOMETRIC in rise and reference in rise:
            seeds = sorted(set(rise[GEOMETRIC]) & set(rise[reference]))
            ours = statistics.mean(rise[GEOMETRIC][s] for s in seeds)
            theirs = statistics.mean(rise[reference][s] for s in seeds)
            out[f"reduction_vs_{re.sub('[^a-z]+', '_', reference)}"] = {
                "of_means": 1 - ours / theirs,
                "per_seed": mean_ci([1 - rise[GEOMETRIC][s] / rise[reference][s] for s in seeds]),
                "difference": mean_ci([rise[GEOMETRIC][s] - rise[reference][s] for s in seeds]),
            }
    return out


def describe(result: dict) -> str:
    """The summary of :func:`run_filter`'s result, one entry after another."""
    return "\n".join(
        f"{key} {json.dumps(value, indent=1)}" for key, value in result["summary"].items()
    )


def removed_by_class(
    result: dict, filters: Sequence[str] = (GEOMETRIC, runner.RANDOM.label)
) -> dict:
    """Per filter, the chats it removed of each vulnerability class, mean over its seeds (a class
    a seed removed none of counts as 0); classes ordered by the first filter's removals, most
    first."""
    runs = {f: [r["removed"] for r in result["runs"] if r["filter"] == f] for f in filters}
    classes = sorted({v for rows in runs.values() for row in rows for v in row})
    out = {
        f: {v: statistics.mean(row.get(v, 0) for row in rows) for v in classes}
        for f, rows in runs.items()
        if rows
    }
    if out:
        first = next(iter(out.values()))
        order = sorted(classes, key=lambda v: (-first[v], v))
        out = {f: {v: means[v] for v in order} for f, means in out.items()}
    return out


def read_filter(path: Path = FILTER_FILE) -> dict:
    """What ``emgeo lm-filter`` recorded (see :func:`run_filter`)."""
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run `emgeo lm-filter` (about 40 minutes)")
    return json.loads(path.read_text())
