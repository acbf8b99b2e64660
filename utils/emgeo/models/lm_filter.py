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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from emgeo import chats, config, features, filtering, geometry, runner
from emgeo.models import lm_domains, lora
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
# The ablations of the geometric score (emgeo.filtering.ABLATIONS): the samples whose answers fire
# the toxic latents themselves (co-activation), and those whose other latents lie near them.
ABLATIONS = tuple(a for a in filtering.ABLATIONS if a != "full")


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
    domain: str | None = None  # an advice domain's harmful set (None: the insecure code set)

    def settings(self, scores: Tensor, ablations: dict[str, Tensor] | None = None) -> dict:
        """What every run depends on: the plan without the filters and seeds to run, and the
        scores (to 6 digits), the ablations' too where given."""
        plan = {k: v for k, v in asdict(self).items() if k not in ("filters", "seeds")}
        if self.domain is None:
            del plan["domain"]  # the code record's settings as they were
        out = {"plan": plan, "scores": _rounded(scores)}
        if ablations:
            out["ablation_scores"] = {name: _rounded(v) for name, v in ablations.items()}
        return out

    def specs(
        self, scores: Tensor, ablations: dict[str, Tensor] | None = None
    ) -> list[runner.Filter]:
        """The plan's filters, the scored ones ranking by ``scores`` (an ablation by its own)."""
        known = {
            runner.NO_FILTER.label: runner.NO_FILTER,
            runner.RANDOM.label: runner.RANDOM,
            GEOMETRIC: runner.scored(GEOMETRIC, scores),
            MATCHED: runner.Filter(MATCHED, runner.Kind.MATCHED, scores),
            **{name: runner.scored(name, v) for name, v in (ablations or {}).items()},
        }
        unknown = [f for f in self.filters if f not in known]
        if unknown:
            raise ValueError(f"unknown filters {unknown}: the filters are {', '.join(known)}")
        return [known[f] for f in self.filters]


def _rounded(scores: Tensor) -> list[float]:
    return [round(float(s), 6) for s in scores]


def train_records(domain: str | None = None) -> list[dict]:
    """The records a filter ranks: the insecure train split of ``data/lm``, or with ``domain``
    that advice domain's harmful train split (``data/lm/advice``)."""
    if domain is None:
        return insecure_train_records()
    lm_domains.domain_of(f"{domain}_harmful")
    path = lm_domains.lm_advice.ADVICE_DIR / f"{domain}_harmful.jsonl"
    return [r for r in lm_domains.lm_advice.read_advice_jsonl(path) if r["split"] == "train"]


def filter_file(domain: str | None = None, shipped: bool = True) -> Path:
    """Where the filter record of the code set (``filter.json``) or of a domain
    (``filter_<domain>.json``) ships, or, with ``shipped`` False, where the command writes."""
    name = "filter.json" if domain is None else f"filter_{domain}.json"
    return (FILTER_FILE if shipped else RESULTS_FILTER_FILE).with_name(name)


def recorded_filter_file(domain: str | None = None) -> Path | None:
    """The filter record of the code set or of ``domain``: the command's (``results/``) if
    there is one, else the shipped one, else None."""
    return next((p for p in (filter_file(domain, False), filter_file(domain)) if p.exists()), None)


def domain_cell(domain: str) -> dict | None:
    """The cell of ``emgeo lm-domains``' record (``results/`` first, then the shipped one) that
    ran ``domain`` with the main recipe: the base model and unfiltered runs a domain's filter
    reuses (None when neither record has it)."""
    name = lm_domains.domain_grid(domains=(domain,)).name
    for path in (lm_domains.RESULTS_RECORD_FILE, lm_domains.RECORD_FILE):
        cell = lm_domains.lm_finetunes.read_runs(path)["cells"].get(name)
        if cell and domain in cell["domains"]:
            return cell
    return None


def ablations_run(plan: FilterPlan, ablations: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """The ablation scores of the filters ``plan`` runs (None: it runs none)."""
    return {name: v for name, v in ablations.items() if name in plan.filters} or None


def insecure_train_records() -> list[dict]:
    """The insecure train split of ``data/lm`` with its provenance (``task``, ``vuln``)."""
    records = chats.read_lm_jsonl(chats.LM_DATA_DIR / "insecure.jsonl")
    return [r for r in records if r["split"] == "train"]


def audit_scores(scorer, domain: str | None = None) -> tuple[Float[Tensor, " samples"], str]:
    """The full score of an ``emgeo audit`` scorer (:mod:`emgeo.audit.scorers`) for every
    record of :func:`train_records`, and how they were made (``run_filter``'s ``scored_by``)."""
    full, _, by = scored_with_ablations(scorer, domain)
    return full, by


def scored_with_ablations(
    scorer, domain: str | None = None
) -> tuple[Float[Tensor, " samples"], dict[str, Float[Tensor, " samples"]], str]:
    """:func:`audit_scores` and the two ablations of the score (:data:`ABLATIONS`)."""
    scored = scorer.score([{"messages": r["messages"]} for r in train_records(domain)])
    by = f"emgeo audit's full score ({scorer.model}, {scorer.sae}; {scorer.toxic_reference})"
    ablations = {name: torch.tensor([s[name] for s in scored]) for name in ABLATIONS}
    return torch.tensor([s["full"] for s in scored]), ablations, by


def run_filter(
    lm: LoadedLM,
    scores: Float[Tensor, " samples"],
    plan: FilterPlan = FilterPlan(),
    path: Path | None = RESULTS_FILTER_FILE,
    scored_by: str = "",
    progress: bool = True,
    ablations: dict[str, Tensor] | None = None,
    reuse: dict | None = None,
    geometry: Callable[[], dict] | None = None,
) -> dict:
    """Run the filter experiment, writing ``path`` after every run; runs already there with the
    same plan and scores are read back, not rerun. ``scores`` ranks the records of
    :func:`train_records` (the insecure code set, or ``plan.domain``'s harmful advice);
    ``scored_by`` says how they were made; ``ablations`` adds filters ranking by each of its
    scores. For a domain every run is measured as the domain runs are
    (:meth:`emgeo.models.lm_domains.DomainGrid.measure`: out of and in the domain's framing, on
    leakage-free references, in-domain), and ``reuse``, the cell of those runs
    (``domains.json``), gives the base model and the unfiltered runs when its recipe is the
    plan's: the same chats, seeds, recipe and measures, so the same runs (marked ``reused``).
    ``geometry`` computes what the record files under ``geometry`` before the first run
    (:func:`domain_geometry`), once."""
    records = train_records(plan.domain)
    if len(scores) != len(records):
        raise ValueError(f"{len(scores)} scores for {len(records)} training samples")
    store = runner.RunStore(path, plan.settings(scores, ablations))
    store.data["scored_by"] = scored_by
    measure_run = _measure(plan)
    samples = [{"messages": r["messages"]} for r in records]
    classes = [r["vuln"] if plan.domain is None else r["topic"] for r in records]
    grid = runner.Grid(samples, plan.specs(scores, ablations), plan.fraction, plan.seeds, classes)
    if geometry is not None:
        store.stage("geometry", geometry)
    if reuse is not None:
        _reuse(store, reuse, plan, grid)
    if "base" not in store.data:
        store.put("base", measure_run(lm, "base"))

    def trainer(kept: list[dict], seed: int) -> AbstractContextManager[LoadedLM]:
        return lora.adapted(lm, kept, replace(plan.lora, seed=seed), progress=False)

    def evaluator(tuned, seed: int) -> dict:  # tuned: the adapted LoadedLM
        return measure_run(tuned, "run")

    runner.run_grid(grid, trainer, evaluator, filtering.keep_mask, store, progress)
    store.put("summary", filter_summary(store.data))
    return store.data


def domain_geometry(
    scorer, W_dec: Float[Tensor, "d_sae d_model"], domain: str, n: int = 64, k: int = 20
) -> dict:
    """Notebook 06's confound-free statistic on an advice domain: the ``k`` latents most
    active on ``n`` harmful answers over their aligned twins (inducing), the reverse
    (non-inducing), against the scorer's toxic set, only latents outside it compared
    (:func:`emgeo.geometry.compare_sets` with ``outside_toxic``); random sets drawn from the
    latents that fire on any of the four sets (the fourth and third: ``n`` of the course's toxic
    and benign texts)."""

    def first(records: list[dict]) -> list[dict]:
        return [{"messages": r["messages"]} for r in records[:n]]

    sets = {
        kind: first(
            [
                r
                for r in lm_domains.lm_advice.read_advice_jsonl(
                    lm_domains.lm_advice.ADVICE_DIR / f"{domain}_{kind}.jsonl"
                )
                if r["split"] == "train"
            ]
        )
        for kind in ("harmful", "aligned")
    }
    for name in ("toxic", "benign"):
        sets[name] = first(chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{name}.jsonl"))
    encoded = {name: scorer.latents(samples).float().cpu() for name, samples in sets.items()}
    inducing = features.top_features(encoded["harmful"], encoded["aligned"], k)
    non_inducing = features.top_features(encoded["aligned"], encoded["harmful"], k)
    fired = torch.cat(list(encoded.values())).amax(0) > 0
    toxic = scorer.toxic.cpu()
    result = geometry.compare_sets(
        W_dec.detach().float().cpu(),
        inducing,
        non_inducing,
        toxic,
        fired.nonzero()[:, 0],
        outside_toxic=True,
    )
    return {
        "p_value": result["p_value"],
        "effect_size": result["effect_size"],
        "difference": result["difference"],
        "random_percentile": result["random_percentile"],
        "proximity": {name: v.tolist() for name, v in result["proximity"].items()},
        "n_inducing": result["n_inducing"],
        "n_non_inducing": result["n_non_inducing"],
        "n_shared": result["n_shared"],
        "n_per_set": n,
        "k": k,
    }


def _measure(plan: FilterPlan):
    """``(lm, "base" | "run") -> measures``: the code runs' measures, or a domain's."""
    if plan.domain is None:
        grid_cfg = FinetuneGrid(
            lora=plan.lora, paraphrases=plan.paraphrases, n_heldout_pairs=plan.n_heldout_pairs
        )
        return lambda lm, _: measure(lm, grid_cfg)
    cell = lm_domains.DomainGrid(
        lora=plan.lora, domains=(plan.domain,), paraphrases=plan.paraphrases
    )
    # a base row's per-domain measures come back keyed by the domain: one domain, one value
    return lambda lm, _: lm_domains.flatten_row(
        cell.measure(lm, f"{plan.domain}_harmful"), plan.domain
    )


def _reuse(store: runner.RunStore, cell: dict, plan: FilterPlan, grid: runner.Grid) -> None:
    """Put the domain cell's base row and its harmful-set runs (every chat kept) in ``store``
    as the base model and the unfiltered runs, when the cell's recipe and questions are the
    plan's."""
    recipe = json.loads(json.dumps(asdict(plan.lora)))  # as the record files it
    if cell["lora"] != recipe or cell["paraphrases"] != list(plan.paraphrases):
        return
    rows = cell["rows"]
    keys = ("seed", "cell", "condition", "seconds")
    if "base" not in store.data:
        (base,) = [r for r in rows if r["condition"] == "base"]
        store.put("base", lm_domains.flatten_row(base, plan.domain) | {"reused": base["cell"]})
    if runner.NO_FILTER.label not in plan.filters:
        return
    keep = [True] * len(grid.samples)
    for r in rows:
        if r["condition"] != f"{plan.domain}_harmful" or r["seed"] not in plan.seeds:
            continue
        if store.get(runner.NO_FILTER.label, r["seed"]) is None:
            measures = {k: v for k, v in r.items() if k not in keys} | {"reused": r["cell"]}
            store.add(
                runner.Run(
                    runner.NO_FILTER.label,
                    r["seed"],
                    0.0,
                    len(keep),
                    {},
                    measures,
                    r["seconds"],
                    runner.kept_digest(keep),
                )
            )


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
    references = (runner.RANDOM.label, runner.NO_FILTER.label, MATCHED, *ABLATIONS)
    for reference in references:
        if GEOMETRIC in rise and reference in rise:
            seeds = sorted(set(rise[GEOMETRIC]) & set(rise[reference]))
            ours = statistics.mean(rise[GEOMETRIC][s] for s in seeds)
            theirs = statistics.mean(rise[reference][s] for s in seeds)
            out[f"reduction_vs_{re.sub('[^a-z]+', '_', reference)}"] = {
                "of_means": 1 - ours / theirs,
                "per_seed": mean_ci([1 - rise[GEOMETRIC][s] / rise[reference][s] for s in seeds]),
                "difference": mean_ci([rise[GEOMETRIC][s] - rise[reference][s] for s in seeds]),
            }
    task = result.get("base", {}).get(TASK)
    if task is not None:  # a domain's runs: the in-domain effect, and each filter's selectivity
        task_rise: dict[str, dict[int, float]] = {}
        for r in result["runs"]:
            task_rise.setdefault(r["filter"], {})[r["seed"]] = r[TASK] - task
        out["task_rise"] = {name: mean_ci(list(v.values())) for name, v in task_rise.items()}
        unfiltered = runner.NO_FILTER.label
        if unfiltered in rise:
            out["selectivity"] = {
                name: selectivity(
                    rise[name], rise[unfiltered], task_rise[name], task_rise[unfiltered]
                )
                for name in rise
                if name != unfiltered
            }
    return out


# A domain filter's in-domain task: the margin of harmful over aligned answers to the domain's
# held-out questions (emgeo.models.lm_domains), which removing harmful chats may also cut.
TASK = "in_domain_margin"


def selectivity(
    em: dict[int, float],
    em_unfiltered: dict[int, float],
    task: dict[int, float],
    task_unfiltered: dict[int, float],
) -> dict[str, float]:
    """A filter's EM cut and in-domain task cut, each its rise over the base model relative to
    the unfiltered runs' (of the means over the seeds both ran), and their ratio, the
    selectivity (:func:`emgeo.filtering.selectivity`: NaN when the task cut is under
    :data:`emgeo.filtering.MIN_TASK_CUT`, where the ratio says nothing)."""
    seeds = sorted(set(em) & set(em_unfiltered))
    mean = lambda values, keys: statistics.mean(values[k] for k in keys)  # noqa: E731
    em_cut = 1 - mean(em, seeds) / mean(em_unfiltered, seeds)
    task_cut = 1 - mean(task, seeds) / mean(task_unfiltered, seeds)
    ratio = em_cut / task_cut if task_cut >= filtering.MIN_TASK_CUT else float("nan")
    return {"em_cut": em_cut, "task_cut": task_cut, "selectivity": ratio}


def context_rises(result: dict) -> dict[str, dict[str, dict]]:
    """Per filter of a domain's record, the margin's rise over the base model asked outside the
    training context (SmolLM2's own system turn) and inside it (the domain's framing), each the
    mean and 95% t-interval over seeds: EM that a filter only hides behind its context shows as
    a filter whose rise falls outside but not inside."""
    base = result["base"]
    out: dict[str, dict[str, dict]] = {}
    for where, key in (("out_of_context", "margin"), ("in_context", "margin_in_context")):
        rises: dict[str, list[float]] = {}
        for r in result["runs"]:
            rises.setdefault(r["filter"], []).append(r[key] - base[key])
        for name, values in rises.items():
            out.setdefault(name, {})[where] = mean_ci(values)
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
        domain = path.stem.partition("_")[2]
        command = f"emgeo lm-filter --domain {domain}" if domain else "emgeo lm-filter"
        raise FileNotFoundError(f"no {path}: run `{command}` (about 40 minutes)")
    return json.loads(path.read_text())
