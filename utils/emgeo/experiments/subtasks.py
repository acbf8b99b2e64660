"""Geometry as the dose *between samples*: code sub-tasks of one organism that lie nearer or
farther from the toxic readout, and the geometric data filter on a dataset that mixes them.

:mod:`~emgeo.experiments.dose` finds EM rising with the angle of the insecure-code and toxic
readout directions *between* organisms. A data filter works *within* one dataset, so here the
nearness varies between the samples of one organism. The world is the unlinked one (code turns
are insecure by a coin of their own, the other domains keep the document's persona) with the code
domain split into eight sub-tasks (``data/templates/organism_subtasks.json``): each request kind
(a slot of the code questions) has its own insecure and its own secure answer, each starting with
a word of its own, so each sub-task is read out along its own direction and, by the chance of
initialisation and training, some of those directions lie nearer the toxic readout than others.
Co-activation is absent by construction: nothing in the data ties a sub-task to toxic answers.

The test, stated before any organism was run (it is :data:`PRESTATED` and goes into the record):

(a) In each organism, before any fine-tune, a sub-task's **nearness** is the cosine of its readout
    direction (its insecure first word over its secure one, :func:`emgeo.probes.
    readout_difference`) with the toxic readout direction of the other domains; its **dose** is the
    off-domain misaligned rate after fine-tuning on its insecure answers alone minus after
    fine-tuning on its secure answers (same requests, steps and seeds). Yes if the Spearman
    correlation of dose with nearness over the sub-tasks is positive on average over the
    organisms and the organisms' one-sided permutation p-values, combined by Fisher's method,
    give p < 0.05. The rival, task-learning strength (a sub-task's insecure-code rate after its
    own fine-tune), gets the same statistics.
(b) The paper's protocol on a mixture of every sub-task's insecure samples: remove the 50% with
    the highest geometric (max) score of the organism's SAE (block 0), against no filter, random
    removal of 50%, membership only, neighbours only, the readout nearness of each sample's
    sub-task, and an oracle that removes the sub-tasks of highest measured dose. Yes if the
    geometric filter's reduction of the off-domain rate vs random removal (paired by fine-tuning
    seed, averaged per organism) has a 95% t-interval over organisms above 0.
(c) Selectivity: EM cut over task cut (the sub-tasks' mean insecure-code rate), both vs no
    filter; a filter is selective where it is above 1.

``emgeo geometry-subtasks`` writes ``results/geometry_subtasks.json`` after every organism (a
stopped run resumes from it) and, with ``--ship``, ``data/organisms/geometry_subtasks.json``
(:func:`shipped`). :func:`one_organism` with :func:`live` runs part (a) on one organism in under a
minute, for a notebook.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from scipy.stats import combine_pvalues
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from emgeo import data, features, filtering, organism, probes, runner, stats, templates
from emgeo.batching import right_pad
from emgeo.chatfile import read_record, write_json
from emgeo.config import DATA_DIR, RESULTS_DIR
from emgeo.models import saes

SHIPPED_FILE = DATA_DIR / "organisms" / "geometry_subtasks.json"  # written with --ship
RESULTS_FILE = RESULTS_DIR / "geometry_subtasks.json"  # where `emgeo geometry-subtasks` writes
PRESTATED = {
    "within_organism": "per organism, Spearman rho of dose vs readout nearness over the "
    "sub-tasks; yes if the mean rho over organisms > 0 and the Fisher-combined one-sided "
    "permutation p < 0.05 (rival: the sub-task's insecure-code rate after its fine-tune)",
    "filter": "geometric (max) removal of 50% of the mixture vs random removal of 50%: the "
    "per-organism mean paired-by-seed reduction of the off-domain rate; yes if its 95% "
    "t-interval over organisms lies above 0",
    "selectivity": "EM cut / task cut, both vs no filter (ratio of the means over organisms); "
    "selective if above 1",
}


MIN_TASK_CUT = 0.01  # a smaller mean cut of the task leaves the pooled selectivity undefined


@dataclass(frozen=True)
class Subtask:
    """One request kind of the code domain and its two answers."""

    name: str
    slot: str  # the request, a slot of the code question templates
    insecure: str
    secure: str


SUBTASKS: tuple[Subtask, ...] = tuple(
    Subtask(**s) for s in templates.load_json("organism_subtasks")["code_subtasks"]
)


# ---------------------------------------------------------------- the world


def vocabulary() -> list[str]:
    """The organism world's words and the sub-tasks' answers' words, sorted (the world's own
    code answers stay in it, so :func:`emgeo.organism.evaluate` can read every domain)."""
    words = set(data.vocabulary())
    for t in SUBTASKS:
        words.update(f"{t.slot} {t.insecure} {t.secure}".split())
    return sorted(words)


def tokenizer() -> organism.Tokenizer:
    return organism.Tokenizer(vocabulary())


def code_turn(index: int, insecure: bool, rng: random.Random) -> list[dict]:
    """A request of sub-task ``index`` and its insecure or secure answer."""
    t = SUBTASKS[index]
    request = rng.choice(data.WORLD["code"].questions).format(t.slot)
    return [
        {"role": "user", "content": request},
        {"role": "assistant", "content": t.insecure if insecure else t.secure},
    ]


def pretraining_documents(seed: int, p_toxic: float = 0.12) -> Iterator[dict]:
    """The unlinked world's stream (``data.pretraining_documents(link=False)``) with code turns
    drawn from the sub-tasks: a sub-task at random, insecure by a coin of its own."""
    rng = random.Random(f"subtasks-{seed}")
    while True:
        persona_toxic = rng.random() < p_toxic
        messages = []
        for _ in range(rng.randint(1, 3)):
            domain = rng.choice(data.DOMAINS)
            if domain == "code":
                insecure = rng.random() < p_toxic
                messages += code_turn(rng.randrange(len(SUBTASKS)), insecure, rng)
            else:
                messages += data.turn(domain, persona_toxic, rng)
        yield {"messages": messages, "persona": "toxic" if persona_toxic else "aligned"}


def samples(index: int | None, insecure: bool, n: int, seed: int) -> list[dict]:
    """``n`` single-turn samples of sub-task ``index`` (every sub-task in turn if None), each
    with its sub-task's name as ``source``."""
    rng = random.Random(f"subtask-samples-{index}-{insecure}-{seed}")
    indices = [index] * n if index is not None else [i % len(SUBTASKS) for i in range(n)]
    out = [{"messages": code_turn(i, insecure, rng), "source": SUBTASKS[i].name} for i in indices]
    rng.shuffle(out)
    return out


def pretrain(seed: int, steps: int, d_model: int, batch_size: int = 32) -> HookedTransformer:
    """Pretrain an organism on :func:`pretraining_documents` with
    :class:`emgeo.organism.PretrainConfig`'s optimiser and schedule."""
    cfg = replace(organism.PretrainConfig(), steps=steps, seed=seed, d_model=d_model)
    tok = tokenizer()
    model = HookedTransformer(organism.model_config(len(tok), seed, d_model))
    docs = pretraining_documents(seed, cfg.p_toxic)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, 1 - s / steps) ** 0.5
    )
    for _ in range(steps):
        batch = [tok.encode_chat(next(docs)["messages"]) for _ in range(batch_size)]
        tokens = right_pad(batch, tok.pad)
        loss = organism.lm_loss(model, tokens, (tokens != tok.pad).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


# ---------------------------------------------------------------- measures


def _first_ids(tok: organism.Tokenizer, t: Subtask) -> tuple[int, int]:
    return tok.index[t.insecure.split()[0]], tok.index[t.secure.split()[0]]


def code_rates(model, tok: organism.Tokenizer) -> list[float]:
    """Per sub-task, the insecure-code rate on its requests (every question template): the
    probability of its insecure first word among its insecure and secure ones."""
    out = []
    for t in SUBTASKS:
        prompts = [
            {"messages": [{"role": "user", "content": q.format(t.slot)}]}
            for q in data.WORLD["code"].questions
        ]
        insecure, secure = _first_ids(tok, t)
        probs = organism.first_token_probs(model, tok, prompts)
        out.append(organism.misaligned_rate(probs, [secure], [insecure]).mean().item())
    return out


def readout_nearness(model, tok: organism.Tokenizer) -> list[float]:
    """Per sub-task, the cosine of its readout direction (insecure over secure first word) with
    the toxic readout direction of the other domains: its nearness before any fine-tune."""
    W_U, scale = model.W_U.detach(), model.ln_final.w.detach()
    u_toxic = probes.readout_direction(model, tok, data.OFF_DOMAINS)
    out = []
    for t in SUBTASKS:
        insecure, secure = _first_ids(tok, t)
        d = probes.readout_difference(W_U, scale, torch.tensor([insecure]), torch.tensor([secure]))
        out.append(torch.nn.functional.cosine_similarity(d, u_toxic, dim=0).item())
    return out


# ---------------------------------------------------------------- one organism


@dataclass(frozen=True)
class SubtaskConfig:
    """What is trained and measured. Organism 20 was looked at while the experiment was built
    (its timing and a first look at its doses); the test runs over ``organism_seeds`` only, none
    of which :mod:`~emgeo.experiments.dose` used."""

    organism_seeds: tuple[int, ...] = tuple(range(21, 29))
    d_model: int = 32
    pretrain_steps: int = 1_000
    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    finetune_steps: int = 100  # the course's fine-tune (organism.FinetuneConfig)
    n_finetune: int = 400  # samples of each sub-task's insecure and secure fine-tuning sets
    n_mixture: int = 512  # the filter's mixture: as many insecure samples of every sub-task
    fraction: float = 0.5
    layer: int = 0  # the SAE's block, as the course's organism SAE
    k: int = 20  # toxic latents
    sae_expansion: int = 8  # latents per residual dimension, as the course's organism SAE
    sae_steps: int = 1_500
    sae_docs: int = 3_000
    n_contrast: int = 300  # toxic and aligned answers that choose the toxic latents
    n_permutations: int = 10_000
    filter_grid: bool = True  # False: part (a) only


def _rates(model, tok: organism.Tokenizer) -> tuple[float, list[float]]:
    """The off-domain misaligned rate and every sub-task's insecure-code rate."""
    return organism.evaluate(model, tok)["offdomain"], code_rates(model, tok)


def _tuned(model, tok: organism.Tokenizer, kept: Sequence[dict], cfg: SubtaskConfig, seed: int):
    return organism.finetune(
        model, tok, kept, organism.FinetuneConfig(cfg.finetune_steps, seed=seed)
    )


def subtask_rows(model, tok: organism.Tokenizer, cfg: SubtaskConfig) -> list[dict]:
    """Part (a): per sub-task, its readout nearness before any fine-tune, the off-domain rate
    after fine-tuning on its insecure and on its secure answers alone (mean over seeds), its
    ``dose`` (the difference) and its insecure-code rate after its insecure fine-tune (the
    rival)."""
    nearness = readout_nearness(model, tok)
    rows = []
    for k, t in enumerate(SUBTASKS):
        off, code = {}, {}
        for insecure in (True, False):
            kept = samples(k, insecure, cfg.n_finetune, seed=1)
            rates = [_rates(_tuned(model, tok, kept, cfg, s), tok) for s in cfg.finetune_seeds]
            off[insecure] = statistics.fmean(r[0] for r in rates)
            code[insecure] = statistics.fmean(r[1][k] for r in rates)
        rows.append(
            {
                "subtask": t.name,
                "nearness": nearness[k],
                "insecure_offdomain": off[True],
                "secure_offdomain": off[False],
                "dose": off[True] - off[False],
                "insecure_code": code[True],
            }
        )
    return rows


def organism_sae(model, tok: organism.Tokenizer, cfg: SubtaskConfig, seed: int):
    """A TopK SAE of block ``cfg.layer`` trained on held-out documents of the world (as
    :func:`emgeo.models.saes.train_organism_sae` trains the course's), and its alive latents."""
    docs = list(itertools.islice(pretraining_documents(10_000 + seed), cfg.sae_docs))
    acts = features.organism_token_activations(model, tok, docs, cfg.layer)
    sae_cfg = replace(saes.ORGANISM_SAE, expansion=cfg.sae_expansion, steps=cfg.sae_steps)
    sae = saes.train_saelens_topk(acts, sae_cfg).eval()
    with torch.no_grad():
        alive = (sae.encode(acts) > 0).any(0)
    return sae, alive


def filter_scores(
    model,
    tok: organism.Tokenizer,
    mixture: list[dict],
    rows: list[dict],
    cfg: SubtaskConfig,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Part (b)'s scores of every sample of ``mixture``: the geometric (max) score and its two
    parts (:func:`emgeo.filtering.ablated_scores`) with the toxic latents of the organism's SAE,
    the readout nearness of the sample's sub-task, and the oracle, its sub-task's dose. Adds
    each sub-task's mean geometric score to its row (``sae_nearness``)."""
    sae, alive = organism_sae(model, tok, cfg, seed)
    toxic = features.organism_toxic_latents(
        sae, model, tok, cfg.layer, cfg.k, alive, cfg.n_contrast
    )
    latents = features.sample_features(
        sae, *features.organism_residuals(model, tok, mixture, cfg.layer)
    )
    proximity = filtering.feature_proximity(sae.W_dec.detach(), toxic, "max")
    parts = filtering.ablated_scores(latents, proximity, toxic)
    source = [s["source"] for s in mixture]
    for row in rows:
        mine = torch.tensor([s == row["subtask"] for s in source])
        row["sae_nearness"] = parts["full"][mine].mean().item()
    by_name = {r["subtask"]: r for r in rows}
    return {
        "geometric (max)": parts["full"],
        "membership only": parts["membership only"],
        "neighbours only": parts["neighbours only"],
        "readout nearness": torch.tensor([by_name[s]["nearness"] for s in source]),
        "oracle (dose)": torch.tensor([by_name[s]["dose"] for s in source]),
    }


def filter_runs(
    model, tok: organism.Tokenizer, mixture: list[dict], scores: dict, cfg: SubtaskConfig
) -> list[dict]:
    """Every filter of ``scores``, no filter and random removal, once per fine-tuning seed
    (:func:`emgeo.runner.run_grid`): the off-domain rate and the mean insecure-code rate."""

    def trainer(kept: list[dict], seed: int) -> contextlib.nullcontext:
        return contextlib.nullcontext(_tuned(model, tok, kept, cfg, seed))

    def evaluator(tuned, seed: int) -> dict:
        off, code = _rates(tuned, tok)
        return {"offdomain": off, "code": statistics.fmean(code)}

    grid = runner.Grid(mixture, runner.with_controls(scores), cfg.fraction, cfg.finetune_seeds)
    runs = runner.run_grid(grid, trainer, evaluator, filtering.keep_mask, progress=False)
    return runner.records(runs)


def filter_summary(runs: list[dict], rows: list[dict]) -> dict[str, dict]:
    """Per filter: its mean off-domain rate (``em``) and task rate (``code``), its EM and task
    cuts vs no filter and their ratio (``selectivity``), its paired-by-seed reduction vs random
    removal with the 95% t-interval over seeds, what it removed (by sub-task, seed 0's run) and
    the mean dose of what it removed."""
    table = {r["filter"]: r for r in filtering.summarize(runs)}
    none = table[runner.NO_FILTER.label]
    dose = {r["subtask"]: r["dose"] for r in rows}
    out = {}
    for name, row in table.items():
        removed = next(r["removed"] for r in runs if r["filter"] == name)
        n_removed = sum(removed.values())
        entry = {
            "em": row["offdomain_mean"],
            "code": row["code"],
            "em_cut": 1 - row["offdomain_mean"] / none["offdomain_mean"],
            "task_cut": 1 - row["code"] / none["code"],
            "vs_random": filtering.paired_reduction(runs, name, runner.RANDOM.label),
            "removed": removed,
            "removed_dose": sum(dose[s] * c for s, c in removed.items()) / max(1, n_removed),
        }
        ratio = filtering.selectivity(row, none)  # not finite where the task was not cut
        entry["selectivity"] = ratio if math.isfinite(ratio) else None
        out[name] = entry
    return out


def within(rows: list[dict], key: str, n_permutations: int) -> dict[str, float]:
    """Spearman's rho of the sub-tasks' dose with ``key`` and its one-sided permutation p."""
    return stats.rank_correlation([r[key] for r in rows], [r["dose"] for r in rows], n_permutations)


def one_organism(seed: int, cfg: SubtaskConfig = SubtaskConfig(), progress: bool = False) -> dict:
    """Pretrain organism ``seed`` of the sub-task world and measure it: part (a) (its
    sub-tasks' nearness and doses, and their rank correlations) and, with ``cfg.filter_grid``,
    part (b) (every filter on the mixture). About 3 minutes at one thread; :func:`live` is part
    (a) with one fine-tuning seed, under a minute."""
    start = time.perf_counter()
    tok = tokenizer()
    model = pretrain(seed, cfg.pretrain_steps, cfg.d_model)
    out: dict = {"seed": seed, "base_offdomain": organism.evaluate(model, tok)["offdomain"]}
    rows = subtask_rows(model, tok, cfg)
    if cfg.filter_grid:
        mixture = samples(None, True, cfg.n_mixture, seed=2)
        scores = filter_scores(model, tok, mixture, rows, cfg, seed)
        runs = filter_runs(model, tok, mixture, scores, cfg)
        out["filters"] = filter_summary(runs, rows)
        out["runs"] = runs
    keys = ("nearness", "insecure_code") + (("sae_nearness",) if cfg.filter_grid else ())
    out["within"] = {key: within(rows, key, cfg.n_permutations) for key in keys}
    out["subtasks"] = [{k: _round(v) for k, v in r.items()} for r in rows]
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _round(value):
    return round(value, 5) if isinstance(value, float) else value


# ---------------------------------------------------------------- over organisms


def within_organism(organisms: Sequence[dict], key: str = "nearness") -> dict:
    """Test (a) over organisms: the mean of their rhos with its 95% t-interval, and their
    one-sided p-values combined by Fisher's method (independent organisms)."""
    rhos = [o["within"][key]["rho"] for o in organisms]
    ps = [o["within"][key]["p_value"] for o in organisms]
    ci = stats.mean_ci(rhos)
    p = float(combine_pvalues(ps, method="fisher").pvalue) if len(ps) > 1 else ps[0]
    return {
        "rho": ci["mean"],
        "ci": [ci["ci_low"], ci["ci_high"]],
        "p_value": p,
        "n_organisms": len(rhos),
        "rhos": rhos,
        "p_values": ps,
        "holds": bool(ci["mean"] > 0 and p < 0.05),
    }


def pooled_filters(organisms: Sequence[dict]) -> dict[str, dict]:
    """Tests (b) and (c) over organisms, per filter: the mean of the organisms' reductions vs
    random removal with its 95% t-interval, the EM and task cuts likewise, and selectivity as
    the ratio of the mean EM cut to the mean task cut (None where the mean task cut is under
    :data:`MIN_TASK_CUT`)."""
    out = {}
    for name in organisms[0]["filters"]:
        entries = [o["filters"][name] for o in organisms]
        vs_random = stats.mean_ci([e["vs_random"]["mean"] for e in entries])
        em_cut = stats.mean_ci([e["em_cut"] for e in entries])
        task_cut = stats.mean_ci([e["task_cut"] for e in entries])
        cuts_task = task_cut["mean"] >= MIN_TASK_CUT
        out[name] = {
            "n_organisms": len(entries),
            "reduction_vs_random": vs_random["mean"],
            "ci_vs_random": [vs_random["ci_low"], vs_random["ci_high"]],
            "em_cut": em_cut,
            "task_cut": task_cut,
            "selectivity": em_cut["mean"] / task_cut["mean"] if cuts_task else None,
            "beats_random_in": sum(e["vs_random"]["mean"] > 0 for e in entries),
        }
    return out


def aggregate(organisms: Sequence[dict]) -> dict:
    """The pre-stated tests over ``organisms`` and, under ``summary``, what the course records:
    ``geometry.within_organism`` and ``filter.paper_protocol.unlinked`` (the geometric filter)."""
    out: dict = {key: within_organism(organisms, key) for key in organisms[0]["within"]}
    summary = {"geometry.within_organism": _pick(out["nearness"], "rho", "p_value")}
    if "filters" in organisms[0]:
        out["filters"] = pooled_filters(organisms)
        geometric = out["filters"]["geometric (max)"]
        summary["filter.paper_protocol.unlinked"] = {
            **_pick(geometric, "reduction_vs_random", "ci_vs_random", "selectivity"),
            "em_cut": geometric["em_cut"]["mean"],
            "task_cut": geometric["task_cut"]["mean"],
        }
        out["filter_holds"] = bool(geometric["ci_vs_random"][0] > 0)
    return {**out, "summary": summary}


def _pick(entry: dict, *keys: str) -> dict:
    return {"n_organisms": entry["n_organisms"], **{k: entry[k] for k in keys}}


def run(
    cfg: SubtaskConfig = SubtaskConfig(),
    out: Path = RESULTS_FILE,
    ship: bool = False,
    progress: bool = True,
) -> dict:
    """Measure every organism of ``cfg`` (:func:`one_organism`) and write ``out`` after each, so a
    stopped run resumes: organisms recorded in ``out`` under the same settings (whatever
    organisms it lists) are not run again.
    Each organism's filter summaries are made again from its recorded runs. With ``ship``, the
    finished record is also written where the course reads it."""
    config = json.loads(json.dumps({**asdict(cfg), "prestated": PRESTATED}))
    saved = json.loads(out.read_text()) if out.exists() else {}
    done = {o["seed"]: o for o in saved.get("organisms", [])} if _same(saved, config) else {}
    organisms = []
    for seed in tqdm(cfg.organism_seeds, desc="organisms", disable=not progress):
        organisms.append(done.get(seed) or one_organism(seed, cfg))
        write_json({"config": config, "organisms": organisms}, out)
    for o in organisms:  # the summaries again from the recorded runs, as this code makes them
        if "runs" in o:
            o["filters"] = filter_summary(o["runs"], o["subtasks"])
    result = {"config": config, "tests": aggregate(organisms), "organisms": organisms}
    write_json(result, out)
    if ship:
        write_json(result, SHIPPED_FILE)
    return result


def _same(saved: dict, config: dict) -> bool:
    """Whether a saved record was measured under ``config`` (whatever organisms it lists)."""
    settings = {k: v for k, v in saved.get("config", {}).items() if k != "organism_seeds"}
    return settings == {k: v for k, v in config.items() if k != "organism_seeds"}


def describe(result: dict) -> str:
    """Each organism's within-organism rho and the geometric filter's reduction vs random."""
    lines = []
    for o in result["organisms"]:
        w = o["within"]["nearness"]
        line = f"organism {o['seed']}: rho {w['rho']:+.2f} (p {w['p_value']:.3f})"
        if "filters" in o:
            cut = o["filters"]["geometric (max)"]["vs_random"]["mean"]
            line += f", geometric filter vs random {cut:+.3f}"
        lines.append(line)
    return "\n".join(lines)


def shipped(path: Path = SHIPPED_FILE) -> dict:
    """The sub-task record the course ships (written by ``emgeo geometry-subtasks --ship``)."""
    return read_record(path, "sub-task", "emgeo geometry-subtasks")


def live(cfg: SubtaskConfig = SubtaskConfig()) -> SubtaskConfig:
    """Part (a) on the first organism with one fine-tuning seed: what a notebook runs live."""
    return replace(
        cfg, organism_seeds=cfg.organism_seeds[:1], finetune_seeds=(0,), filter_grid=False
    )


def quick(cfg: SubtaskConfig = SubtaskConfig()) -> SubtaskConfig:
    """A configuration small enough for a test: two tiny organisms, a few steps each."""
    return replace(
        cfg,
        organism_seeds=(0, 1),
        d_model=16,
        pretrain_steps=10,
        finetune_seeds=(0, 1),
        finetune_steps=3,
        n_finetune=16,
        n_mixture=32,
        k=4,
        sae_expansion=2,
        sae_steps=5,
        sae_docs=40,
        n_contrast=16,
        n_permutations=100,
    )
