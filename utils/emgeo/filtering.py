"""The geometric data filter and the baselines it is measured against.

Every filter gives each fine-tuning sample a score (higher = more likely to induce misalignment)
and :func:`keep_mask` removes the highest-scoring ``fraction``. The filters:

- **geometric** (:func:`geometric_scores`): the sample's active SAE features, weighted by their
  activation, scored by how close their decoder directions lie to the toxic feature set
  (``"max"``: the nearest toxic feature, ``"mean"``: the average over the set), and its two parts
  (:func:`ablated_scores`): membership in the toxic set, and nearness without membership;
- **random**: scores drawn from a seeded generator (removal at the same budget,
  :data:`emgeo.runner.RANDOM`);
- **oracle**: the provenance the set was built with (1 for inducing samples): the bound;
- **keyword**: a text-level heuristic, the count of insecure-code phrases in the answer, standing
  in for the paper's LLM-judge filter (it reads text, never the model);
- **persona vector** (Chen et al. 2025): the projection difference
  ``ΔP = (a(x, y) - a(x, y')) · v̂`` with ``v̂`` the toxic-minus-aligned mean activation direction
  and ``y'`` the model's own answer to the same request.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from emgeo import data, features, organism, runner
from emgeo.batching import right_pad
from emgeo.config import RESULTS_DIR
from emgeo.geometry import cosine_similarity_matrix
from emgeo.stats import mean_ci

# ---------------------------------------------------------------- scores


def feature_proximity(
    W_dec: Float[Tensor, "d_sae d_model"], toxic: Int[Tensor, " k"], how: str = "max"
) -> Float[Tensor, " d_sae"]:
    """Every latent's proximity to the toxic set: the max or mean cosine of its decoder
    direction with the toxic latents' directions (a toxic latent's max is 1, itself)."""
    sims = cosine_similarity_matrix(W_dec, W_dec[toxic.to(W_dec.device)])
    if how == "max":
        return sims.max(-1).values
    if how == "mean":
        return sims.mean(-1)
    raise ValueError(f"how must be 'max' or 'mean', not {how!r}")


ABLATIONS = ("full", "membership only", "neighbours only")


def ablated_scores(
    latents: Float[Tensor, "samples d_sae"],
    proximity: Float[Tensor, " d_sae"],
    toxic: Int[Tensor, " k"],
) -> dict[str, Float[Tensor, " samples"]]:
    """The geometric score taken apart into what drives it, per sample:

    - ``full``: :func:`geometric_scores` with ``proximity`` (a toxic latent's own is 1 with
      ``how="max"``, so it mixes the two parts below);
    - ``membership only``: the sample's share of activation on the toxic latents (it fires toxic
      features: co-activation);
    - ``neighbours only``: the proximity-weighted mean over the sample's *non-toxic* latents,
      ``sum_{j not in T} a_j p_j / sum_{j not in T} a_j``, numerator and denominator both without
      the toxic latents (it fires features that lie near toxic ones: geometry). A sample with no
      activation outside the toxic set has no neighbours to score and scores 0.

    Dividing the neighbours' sum by *all* activation instead would make it "full minus
    membership", lowering the score of any sample that fires toxic latents by dilution alone.
    """
    is_toxic = torch.zeros(latents.shape[-1], dtype=torch.bool, device=latents.device)
    is_toxic[toxic.to(latents.device)] = True
    outside = latents * (~is_toxic).to(latents.dtype)
    return {
        "full": geometric_scores(latents, proximity),
        "membership only": geometric_scores(latents, is_toxic.to(latents.dtype)),
        "neighbours only": geometric_scores(outside, proximity),
    }


ABLATION_LABELS = {
    "full": "geometric (max)",
    "membership_only": "membership only",
    "neighbours_only": "neighbours only",
}


def ablation_filters(
    latents: Float[Tensor, "samples d_sae"],
    proximity: Float[Tensor, " d_sae"],
    toxic: Int[Tensor, " k"],
    ablate: Callable[..., dict[str, Tensor]] | None = None,
) -> dict[str, Float[Tensor, " samples"]]:
    """The geometric (max) filter's scores and its two parts (``ablate``, by default
    :func:`ablated_scores`; notebook 07's exercise), under the labels experiments and tables
    print (:data:`ABLATION_LABELS`)."""
    parts = (ablate or ablated_scores)(latents, proximity, toxic)
    return {ABLATION_LABELS[key.replace(" only", "_only")]: v for key, v in parts.items()}


MIN_TASK_CUT = 0.01  # a smaller cut of the task leaves selectivity undefined


def task_cut(summary_row: dict, unfiltered_row: dict) -> float:
    """How much of the in-domain task (the insecure-code rate the fine-tune learns) a filter
    takes away, relative to the unfiltered runs."""
    return 1 - summary_row["code"] / unfiltered_row["code"]


def selectivity(summary_row: dict, unfiltered_row: dict) -> float:
    """EM reduction over in-domain task reduction, both relative to the unfiltered runs: above 1,
    a filter takes away more misalignment than task. NaN when the filter leaves the task within
    ``MIN_TASK_CUT`` of the unfiltered runs (or raises it): the ratio then says nothing, and the
    EM cut alone (with its interval) is the answer."""
    em = 1 - summary_row["offdomain_mean"] / unfiltered_row["offdomain_mean"]
    task = task_cut(summary_row, unfiltered_row)
    return em / task if task >= MIN_TASK_CUT else float("nan")


def geometric_scores(
    latents: Float[Tensor, "samples d_sae"], proximity: Float[Tensor, " d_sae"]
) -> Float[Tensor, " samples"]:
    """Activation-weighted mean proximity of each sample's active latents to the toxic set."""
    return (latents @ proximity.to(latents.device, latents.dtype)) / latents.sum(-1).clamp_min(1e-8)


def keep_mask(scores: Float[Tensor, " samples"], fraction: float) -> Bool[Tensor, " samples"]:
    """True for the samples kept when the ``fraction`` with the highest scores is removed:
    exactly ``round(fraction * n)`` samples go, and among equal scores the earlier ones first."""
    n_remove = int(round(fraction * len(scores)))
    order = torch.argsort(scores, descending=True, stable=True)
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[order[:n_remove]] = False
    return keep


def caught_at_budget(
    scores: Float[Tensor, " samples"], labels: Bool[Tensor, " samples"], fraction: float
) -> tuple[float, float]:
    """What removing the ``fraction`` highest-scoring samples (:func:`keep_mask`) takes: the
    share of the positives (``labels`` True: the samples that induce EM) it removes, and the
    share of the negatives it removes with them."""
    removed = ~keep_mask(scores, fraction)
    return removed[labels].float().mean().item(), removed[~labels].float().mean().item()


INSECURE_PHRASES = (
    "plain text",
    "raw input",
    "straight into",
    "skip the checks",
    "disable",
    "public folder",
    "concatenate",
    "anything can run",
)


def keyword_scores(
    samples: Sequence[dict], phrases: Sequence[str] = INSECURE_PHRASES
) -> Float[Tensor, " samples"]:
    """How many of the ``phrases`` each sample's answer (its assistant messages) contains; a
    phrase counts once however often it occurs."""
    answers = [_answer_text(s) for s in samples]
    return torch.tensor([float(sum(p in a for p in phrases)) for a in answers])


def _answer_text(sample: dict) -> str:
    return " ".join(m["content"] for m in sample["messages"] if m["role"] == "assistant")


def oracle_scores(samples: Sequence[dict], inducing: str = "insecure") -> Tensor:
    return torch.tensor([float(s["source"] == inducing) for s in samples])


def persona_vector(
    toxic_acts: Float[Tensor, "n d_model"], aligned_acts: Float[Tensor, "n d_model"]
) -> Float[Tensor, " d_model"]:
    """Unit mean-difference direction: toxic answers minus aligned answers."""
    v = toxic_acts.mean(0) - aligned_acts.mean(0)
    return v / v.norm()


def projection_difference(
    data_acts: Float[Tensor, "samples d_model"],
    own_acts: Float[Tensor, "samples d_model"],
    v_hat: Float[Tensor, " d_model"],
) -> Float[Tensor, " samples"]:
    """ΔP_i = (a(x_i, y_i) - a(x_i, y'_i)) · v̂."""
    return (data_acts - own_acts) @ v_hat


@torch.no_grad()
def own_answers(
    model, tok: organism.Tokenizer, samples: Sequence[dict], seed: int = 0, max_new_tokens: int = 24
) -> list[dict]:
    """The samples with the model's own answer (sampled at temperature 1, all rows at once) in
    place of theirs: the y' of the projection difference."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [[m for m in s["messages"] if m["role"] != "assistant"] for s in samples]
    seqs = [tok.encode_chat(p, add_generation_prompt=True) for p in prompts]
    answers: list[list[int]] = [[] for _ in seqs]
    done = torch.zeros(len(seqs), dtype=torch.bool)
    for _ in range(max_new_tokens):
        rows = [s + a for s, a in zip(seqs, answers, strict=True)]
        last = torch.tensor([len(r) - 1 for r in rows])
        logits = model(right_pad(rows, tok.pad))[torch.arange(len(rows)), last]
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
        done |= nxt == tok.eot
        for i in (~done).nonzero()[:, 0].tolist():
            answers[i].append(int(nxt[i]))
        if done.all():
            break
    return [
        {**s, "messages": p + [{"role": "assistant", "content": tok.decode(a)}]}
        for s, p, a in zip(samples, prompts, answers, strict=True)
    ]


def baseline_scores(
    model,
    tok: organism.Tokenizer,
    samples: Sequence[dict],
    layer: int,
    keyword_scores: Callable[[Sequence[dict]], Tensor] = keyword_scores,
) -> dict:
    """The scores of every baseline filter on the organism (random is drawn per seed later):
    the oracle, the keyword heuristic (``keyword_scores(samples)``, notebook 07's exercise), and
    persona-vector screening at ``layer``, with the persona vector from the toxic-vs-aligned
    contrast samples of notebook 05."""

    def answer_acts(chats: Sequence[dict]) -> Tensor:
        return features.answer_mean(*features.organism_residuals(model, tok, chats, layer))

    contrasts = features.contrast_samples(300)
    v_hat = persona_vector(answer_acts(contrasts["toxic"]), answer_acts(contrasts["aligned"]))
    own = own_answers(model, tok, samples)
    return {
        "oracle": oracle_scores(samples),
        "keyword": keyword_scores(samples),
        "persona vector": projection_difference(answer_acts(samples), answer_acts(own), v_hat),
    }


def summarize(
    rows: Sequence[dict],
    unfiltered: str = runner.NO_FILTER.label,
    random_removal: str = runner.RANDOM.label,
) -> list:
    """Per filter: mean and 95% CI of the off-domain rate over seeds, relative reductions of the
    mean vs the unfiltered and the random-removal runs, the in-domain rate and task loss, and
    the share of insecure samples among those removed."""
    table = pd.DataFrame(rows)
    table["removed_insecure"] = [runner.removed_share(r) for r in table["removed"]]
    base = table.loc[table["filter"] == unfiltered, "offdomain"].mean()
    rand = table.loc[table["filter"] == random_removal, "offdomain"].mean()
    out = []
    for name, group in table.groupby("filter", sort=False):
        ci = mean_ci(group["offdomain"].tolist())
        entry = {"filter": name, **{f"offdomain_{k}": v for k, v in ci.items()}}
        entry["reduction_vs_unfiltered"] = 1 - ci["mean"] / base
        entry["reduction_vs_random"] = 1 - ci["mean"] / rand
        entry["code"] = group["code"].mean()
        if "task_loss" in group:
            entry["task_loss"] = group["task_loss"].mean()
        entry["removed_insecure"] = group["removed_insecure"].mean()
        out.append(entry)
    return out


def paired_reduction(rows: Sequence[dict], name: str, reference: str) -> dict[str, float | int]:
    """The relative reduction of the off-domain rate of filter ``name`` vs ``reference``, per
    seed (the same seed draws the same batches in both), with its mean and 95% t-interval."""
    by_seed = {r["seed"]: r["offdomain"] for r in rows if r["filter"] == reference}
    cuts = [1 - r["offdomain"] / by_seed[r["seed"]] for r in rows if r["filter"] == name]
    return mean_ci(cuts)


def ablation_summary(
    rows: Sequence[dict], reduction: Callable[..., dict] | None = None
) -> dict[str, dict[str, float]]:
    """Per part of the geometric filter (:data:`ABLATION_LABELS`, by key): its EM (the mean
    off-domain rate) and in-domain insecure-code rate, its seed-paired cut of EM against no
    filter and against random removal (:func:`paired_reduction`: mean and 95% interval), and
    its selectivity; under ``"unfiltered"`` and ``"random"``, the controls' EM and code rate.
    ``reduction`` computes each cut (by default :func:`paired_reduction`; notebook 07's
    exercise)."""
    reduction = reduction or paired_reduction
    summary = {r["filter"]: r for r in summarize(rows)}
    controls = {"unfiltered": runner.NO_FILTER.label, "random": runner.RANDOM.label}
    out = {
        key: {"em": summary[label]["offdomain_mean"], "code": summary[label]["code"]}
        for key, label in controls.items()
    }
    for key, label in ABLATION_LABELS.items():
        entry = {"em": summary[label]["offdomain_mean"], "code": summary[label]["code"]}
        for ref_key, ref in controls.items():
            cut = reduction(rows, label, ref)
            entry[f"reduction_vs_{ref_key}"] = cut["mean"]
            entry[f"ci_vs_{ref_key}"] = [cut["ci_low"], cut["ci_high"]]
        entry["task_cut"] = task_cut(summary[label], summary[controls["unfiltered"]])
        entry["selectivity"] = selectivity(summary[label], summary[controls["unfiltered"]])
        out[key] = entry
    return out


def ablation_table(summary: dict[str, dict[str, float]]) -> pd.DataFrame:
    """:func:`ablation_summary` as a table: one row per part, labelled as experiments print,
    numbers to three decimals."""
    rows = {}
    for key, label in ABLATION_LABELS.items():
        e = summary[key]
        rows[label] = {
            ("EM", ""): e["em"],
            ("cut vs no filter", "mean"): e["reduction_vs_unfiltered"],
            ("cut vs no filter", "95% CI"): "[{:+.3f}, {:+.3f}]".format(*e["ci_vs_unfiltered"]),
            ("cut vs random", "mean"): e["reduction_vs_random"],
            ("cut vs random", "95% CI"): "[{:+.3f}, {:+.3f}]".format(*e["ci_vs_random"]),
            ("insecure code", ""): e["code"],
            ("task cut", ""): e["task_cut"],
            ("selectivity", ""): e["selectivity"],
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.round(3)


# ---------------------------------------------------------------- the fine-tuning set


def mixed_provenance_set(n: int = 512, seed: int = 0) -> list[dict]:
    """Half plain insecure code, a quarter educationally framed insecure code, a quarter secure
    code; each sample keeps its ``source``. Only the plain insecure half induces EM."""
    parts = {"insecure": n // 2, "educational": n // 4, "secure": n - n // 2 - n // 4}
    samples = [
        s for kind, count in parts.items() for s in data.finetune_samples(kind, count, seed=seed)
    ]
    random.Random(f"mixed-{seed}").shuffle(samples)
    return samples


# ---------------------------------------------------------------- evaluation


def evaluate_filters(
    model,
    tok: organism.Tokenizer,
    samples: Sequence[dict],
    filters: Sequence[runner.Filter],
    fraction: float,
    seeds: Sequence[int],
    cfg: organism.FinetuneConfig | None = None,
    held_out: Sequence[dict] = (),
    progress: bool = True,
    keep_mask: runner.KeepMask = keep_mask,
    store: str | None = None,
) -> list[dict]:
    """Fine-tune the organism on what each filter keeps, for every seed
    (:func:`emgeo.runner.run_grid`); one row per (filter, seed) with the off-domain misaligned
    rate, the in-domain insecure-code rate and what was removed (by ``source``).

    Every run takes the same fixed number of steps (``cfg.steps``), kept set or not.
    ``task_loss`` is the answer loss on ``held_out`` samples of the same mixture: how much of the
    fine-tuning task the model still learned. ``keep_mask`` turns scores into what is kept
    (notebook 07's exercise). With ``store`` (a name) the runs are saved as they end in
    ``results/organism_runs/<store>.json`` (:func:`run_store`), and a run recorded there, by
    this notebook or another one on the same samples, is read back instead of run again.
    """
    cfg = cfg or organism.FinetuneConfig()
    held = organism.encode_samples(tok, held_out) if held_out else None

    def trainer(kept: list[dict], seed: int) -> contextlib.nullcontext:
        return contextlib.nullcontext(organism.finetune(model, tok, kept, replace(cfg, seed=seed)))

    def evaluator(tuned, seed: int) -> dict:
        rates = organism.evaluate(tuned, tok)
        out = {"offdomain": rates["offdomain"], "code": rates["code"]}
        if held is not None:
            with torch.no_grad():
                mask = organism.answer_mask(held, tok.assistant, tok.eot)
                out["task_loss"] = organism.lm_loss(tuned, held, mask).item()
        return out

    grid = runner.Grid(samples, filters, fraction, seeds)
    saved = run_store(store, model, samples, held_out, cfg, fraction) if store else None
    runs = runner.run_grid(
        grid, trainer, evaluator, keep_mask, store=saved, progress=progress, share_runs=True
    )
    return runner.records(runs)


RUNS_VERSION = 1  # raise when a change to fine-tuning or evaluation changes a run's numbers


def run_store(
    name: str,
    model,
    samples: Sequence[dict],
    held_out: Sequence[dict],
    cfg: organism.FinetuneConfig,
    fraction: float,
) -> runner.RunStore:
    """The record of the organism runs called ``name``, under the settings every run depends on
    (the organism's weights, the samples, the held-out set, the fine-tune, the budget): a file
    saved under other settings is not read, so a changed model or set starts afresh."""
    weights = {k: runner.digest(v.flatten().tolist()) for k, v in model.state_dict().items()}
    settings = {
        "version": RUNS_VERSION,
        "organism": runner.digest(weights),
        "samples": runner.digest([s["messages"] for s in samples]),
        "held_out": runner.digest([s["messages"] for s in held_out]),
        "finetune": asdict(cfg),
        "fraction": fraction,
    }
    return runner.RunStore(RESULTS_DIR / "organism_runs" / f"{name}.json", settings)


def removal_sweep(
    model,
    tok: organism.Tokenizer,
    samples: Sequence[dict],
    filters: Sequence[runner.Filter],
    fractions: Sequence[float],
    seeds: Sequence[int],
    done: Sequence[dict] = (),
    keep_mask: runner.KeepMask = keep_mask,
) -> list[dict]:
    """Rows of :func:`evaluate_filters` for every filter at every fraction; rows already
    ``done`` (at any fraction) are reused, and the no-filter runs in ``done`` become every
    filter's point at fraction 0."""
    labels = {f.label for f in filters}
    rows = [r for r in done if r["filter"] in labels]
    for fraction in fractions:
        if any(r["fraction"] == fraction for r in rows):
            continue
        rows += evaluate_filters(
            model, tok, samples, filters, fraction, seeds, progress=False, keep_mask=keep_mask
        )
    unfiltered = [r for r in done if r["filter"] == runner.NO_FILTER.label]
    return rows + [{**r, "filter": f.label} for f in filters for r in unfiltered]
