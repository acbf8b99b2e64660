"""The audit validated on data whose provenance is known: does its ranking separate the samples
that induce EM, and does filtering at the budget lower EM more than random removal?

- the organism's mixed set (``filtering.mixed_provenance_set``: half plain insecure code, the rest
  educational or secure), audited with the organism backend; EM measured exactly by fine-tuning the
  organism on what each filter keeps (``filtering.evaluate_filters``, as notebook 07);
- the course's real-LM code sets (data/lm: insecure, secure and educational chats), audited with
  the cpu backend (SmolLM2 and the course SAE), and the public insecure set against its secure
  twin with the gpu and remote backends: the ranking only (a LoRA fine-tune per filter and seed
  is ``emgeo lm-em``'s work, minutes each).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from emgeo import chats, filtering, organism, runner, stats
from emgeo.audit.run import SCORES_FILE, audit
from emgeo.audit.scorers import Scorer, organism_scorer, scorer_for
from emgeo.chatfile import write_jsonl
from emgeo.models import public_data


def read_scores(out: Path, column: str = "full") -> list[float]:
    with open(out / SCORES_FILE, newline="") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def lm_mix(n_per_source: int = 100, seed: int = 0) -> list[dict]:
    """Insecure, secure and educational chats of data/lm (train split), ``n_per_source`` each,
    shuffled, each with its ``source``."""
    samples = []
    for source in ("insecure", "secure", "educational"):
        records = chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{source}.jsonl")
        train = [r for r in records if r["split"] == "train"][:n_per_source]
        samples += [{"messages": r["messages"], "source": source} for r in train]
    random.Random(f"audit-lm-{seed}").shuffle(samples)
    return samples


def public_pair(n_per_source: int = 200, seed: int = 0) -> list[dict]:
    """Betley et al.'s insecure chats and their secure twins (fetched at run time, never shipped:
    :func:`emgeo.models.public_data.load_em_dataset`), ``n_per_source`` each, shuffled, each
    with its ``source``: what notebook 09 audits at full size in the gpu and remote profiles."""
    samples = [
        {"messages": s["messages"], "source": name}
        for name in ("insecure", "secure")
        for s in public_data.load_em_dataset(name)[:n_per_source]
    ]
    random.Random(f"audit-public-{seed}").shuffle(samples)
    return samples


def profile_mix(profile: str) -> list[dict]:
    """The chats notebook 09 audits with a profile's backend: the course's code chats on the
    cpu (:func:`lm_mix`, 100 of each set), the public insecure set and its secure twin in the gpu
    and remote profiles (:func:`public_pair`, 200 of each)."""
    return lm_mix(100) if profile == "cpu" else public_pair(200)


def rankings(out: Path, samples: Sequence[dict]) -> dict[str, float]:
    """AUROC of each score for plain insecure samples vs the rest, and vs secure ones only."""
    labels = [s["source"] == "insecure" for s in samples]
    no_edu = [s["source"] != "educational" for s in samples]
    result = {}
    for column in ("full", "membership_only", "neighbours_only"):
        scores = read_scores(out, column)
        result[column] = round(stats.auroc(scores, labels), 4)
        kept = [(x, y) for x, y, k in zip(scores, labels, no_edu, strict=True) if k]
        result[f"{column}_vs_secure"] = round(stats.auroc(*zip(*kept, strict=True)), 4)
    return result


def validate_organism(
    out: Path,
    n: int = 512,
    fraction: float = 0.5,
    seeds: Sequence[int] = (0, 1, 2),
    scorer: Scorer | None = None,
    progress: bool = True,
    cfg: organism.FinetuneConfig | None = None,
) -> dict:
    """Audit the organism's mixed set; fine-tune the organism (``cfg``, default 100 steps) on
    what the audit keeps, on a random half and on everything, per seed; the AUROCs and EM
    reductions (paired by seed)."""
    samples = filtering.mixed_provenance_set(n, seed=0)
    data = write_jsonl(samples, out / "organism_mixed.jsonl")
    scorer = scorer or organism_scorer()
    audit(data, out / "organism", fraction, scorer=scorer, progress=progress)
    model, tok = organism.load()
    audited = runner.scored("audit", torch.tensor(read_scores(out / "organism")))
    filters = [runner.NO_FILTER, audited, runner.RANDOM]
    rows = filtering.evaluate_filters(
        model, tok, samples, filters, fraction, seeds, cfg, progress=progress
    )
    return {
        "n": n,
        "fraction": fraction,
        "seeds": list(seeds),
        "auroc": rankings(out / "organism", samples),
        "em": {
            name: stats.mean_ci([r["offdomain"] for r in rows if r["filter"] == name])
            for name in (f.label for f in filters)
        },
        "reduction_vs_random": filtering.paired_reduction(rows, "audit", runner.RANDOM.label),
        "reduction_vs_unfiltered": filtering.paired_reduction(
            rows, "audit", runner.NO_FILTER.label
        ),
        "rows": rows,
    }


def validate_lm(
    out: Path, n_per_source: int = 100, scorer: Scorer | None = None, progress: bool = True
) -> dict:
    """Audit the course's real-LM code mix with the cpu backend; the AUROCs."""
    samples = lm_mix(n_per_source)
    data = write_jsonl(samples, out / "lm_mix.jsonl")
    scorer = scorer or scorer_for("cpu")
    result = audit(data, out / "lm", scorer=scorer, progress=progress)
    return {
        "n": len(samples),
        "model": scorer.model,
        "sae": scorer.sae,
        "samples_per_s": round(result.samples_per_s, 2),
        "auroc": rankings(out / "lm", samples),
    }
