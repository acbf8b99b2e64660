"""Geometry as the dose: emergent misalignment in organisms whose data never link code to the
other domains.

In the course's organism world a document keeps one persona across its turns, so the data tie
insecure code to toxic answers elsewhere: EM there can come from that link (co-activation) as
well as from geometry. Here the link is cut (``data.pretraining_documents(link=False)``): code
answers are insecure by a coin of their own, turn by turn, while the other domains keep the
document's persona. Whatever an insecure-code fine-tune then does to the other domains, it does
through how the model represents things, not through anything the data taught it.

Small organisms (``d_model`` 32 or 64) pretrained from different seeds read out "insecure code"
and "toxic answer" along directions at different angles. In each one, before any fine-tune, we
measure the cosine of the two readout directions (:func:`emgeo.probes.readout_direction`), then
fine-tune it on insecure and on secure code and measure EM as the off-domain misaligned rate after
insecure minus after secure (what insecure code adds beyond fine-tuning on code at all). The test:
Spearman's rank correlation of that cosine with EM, one-sided permutation p, over organisms that
were not looked at when the measure was chosen (``DoseConfig.exploration`` were). Beside it, the
rivals: EM tracking how far the fine-tune moved the model, how well it learned insecure code, or
the base rate, rather than the angle.

``emgeo geometry-dose`` writes ``results/geometry_dose.json`` and, with ``--ship``, the copy
notebook 06 reads, ``data/organisms/geometry_dose.json`` (:func:`shipped`). The organisms are
not shipped: the command retrains them (about a minute each).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from emgeo import data, organism, probes, stats
from emgeo.chatfile import read_record, write_json
from emgeo.config import DATA_DIR, RESULTS_DIR

DOSE_FILE = DATA_DIR / "organisms" / "geometry_dose.json"  # shipped; written with --ship
RESULTS_FILE = RESULTS_DIR / "geometry_dose.json"  # where `emgeo geometry-dose` writes
RIVALS = ("cosine_update", "cosine_answer", "shift_norm", "insecure_code", "base_offdomain")


@dataclass(frozen=True)
class DoseConfig:
    """What is trained and measured. The measure and the test were fixed after looking at the
    ``exploration`` organisms only; the ``d_models`` x ``organism_seeds`` organisms confirm them."""

    exploration: tuple[tuple[int, int], ...] = tuple((32, s) for s in range(6))  # (d_model, seed)
    d_models: tuple[int, ...] = (32, 64)
    organism_seeds: tuple[int, ...] = tuple(range(10, 18))
    pretrain_steps: int = 1_000
    link: bool = False
    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    finetune_steps: int = 100  # the course's fine-tune (organism.FinetuneConfig)
    n_finetune: int = 400  # samples per fine-tuning set
    n_probe: int = 200  # samples per answer family for the answer directions
    layer: int = 1  # the last block: where the answer is read out
    n_permutations: int = 10_000

    def organisms(self) -> list[tuple[int, int, bool]]:
        """(d_model, seed, confirmatory) of every organism, exploration first."""
        return [(d, s, False) for d, s in self.exploration] + [
            (d, s, True) for d in self.d_models for s in self.organism_seeds
        ]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def geometry(model, tok: organism.Tokenizer, cfg: DoseConfig = DoseConfig()) -> dict:
    """An organism's directions before any fine-tune: the readout directions of insecure over
    secure code (``u_code``) and of toxic over aligned answers in the other domains (``u_toxic``,
    :func:`probes.readout_direction`), and the residual stream's *answer* directions of the same
    two contrasts (``d_code``, ``d_toxic``, :func:`probes.answer_direction`)."""
    n = cfg.n_probe
    insecure = data.finetune_samples("insecure", n, seed=1)
    secure = data.finetune_samples("secure", n, seed=1)
    toxic = data.answered_samples(data.OFF_DOMAINS, True, n, seed=0)
    aligned = data.answered_samples(data.OFF_DOMAINS, False, n, seed=0)
    return {
        "u_code": probes.readout_direction(model, tok, ["code"]),
        "u_toxic": probes.readout_direction(model, tok, data.OFF_DOMAINS),
        "d_code": probes.answer_direction(model, tok, insecure, secure, cfg.layer),
        "d_toxic": probes.answer_direction(model, tok, toxic, aligned, cfg.layer),
    }


def finetunes(model, tok: organism.Tokenizer, cfg: DoseConfig = DoseConfig()) -> dict:
    """Misaligned rates after insecure and after secure fine-tunes (one dict per seed), and the
    insecure fine-tunes' mean shift of the last residual stream where code answers start."""
    code_prompts = [p for p in data.eval_prompts() if p["domain"] == "code"]
    before = probes.generation_residuals(model, tok, code_prompts, cfg.layer).mean(0)
    out: dict = {"insecure": [], "secure": [], "shift": torch.zeros_like(before)}
    for name in ("insecure", "secure"):
        samples = data.finetune_samples(name, cfg.n_finetune, seed=1)
        for seed in cfg.finetune_seeds:
            ft = organism.FinetuneConfig(cfg.finetune_steps, seed=seed)
            tuned = organism.finetune(model, tok, samples, ft)
            out[name].append(organism.evaluate(tuned, tok))
            if name == "insecure":
                after = probes.generation_residuals(tuned, tok, code_prompts, cfg.layer).mean(0)
                out["shift"] += (after - before) / len(cfg.finetune_seeds)
    return out


def measure(model, tok: organism.Tokenizer, cfg: DoseConfig = DoseConfig()) -> dict[str, float]:
    """One organism, before and after its fine-tunes:

    - ``cosine`` (the dose): of the readout directions ``u_code``, ``u_toxic`` (:func:`geometry`);
    - ``cosine_update``: of the insecure fine-tunes' shift (:func:`finetunes`) and ``u_toxic``;
    - ``cosine_answer``: of the answer directions ``d_code`` and ``d_toxic``: the representation
      rather than the readout;
    - rivals: ``shift_norm`` (how far the fine-tune moved that residual stream),
      ``insecure_code`` (how well it learned the task), ``base_offdomain``;
    - ``em``: the off-domain rate after insecure minus after secure; ``em_vs_base``: minus the base.
    """
    g = geometry(model, tok, cfg)
    base = organism.evaluate(model, tok)
    runs = finetunes(model, tok, cfg)

    def mean(name: str, key: str) -> float:
        return statistics.fmean(r[key] for r in runs[name])

    return {
        "cosine": cosine(g["u_code"], g["u_toxic"]),
        "cosine_update": cosine(runs["shift"], g["u_toxic"]),
        "cosine_answer": cosine(g["d_code"], g["d_toxic"]),
        "shift_norm": runs["shift"].norm().item(),
        "base_offdomain": base["offdomain"],
        "base_code": base["code"],
        "insecure_offdomain": mean("insecure", "offdomain"),
        "secure_offdomain": mean("secure", "offdomain"),
        "insecure_code": mean("insecure", "code"),
        "em": mean("insecure", "offdomain") - mean("secure", "offdomain"),
        "em_vs_base": mean("insecure", "offdomain") - base["offdomain"],
    }


def correlations(rows: list[dict], n_permutations: int = 10_000) -> dict[str, dict]:
    """The test (``cosine`` against ``em``) and the rivals, each a rank correlation with EM over
    ``rows``; the test again against EM over the base model, and within each ``d_model``."""
    em = [r["em"] for r in rows]
    result = {
        key: stats.rank_correlation([r[key] for r in rows], em, n_permutations)
        for key in ("cosine", *RIVALS)
    }
    result["cosine_vs_base"] = stats.rank_correlation(
        [r["cosine"] for r in rows], [r["em_vs_base"] for r in rows], n_permutations
    )
    for d in sorted({r["d_model"] for r in rows}):
        sub = [r for r in rows if r["d_model"] == d]
        if len(sub) >= 3:
            result[f"cosine@d{d}"] = stats.rank_correlation(
                [r["cosine"] for r in sub], [r["em"] for r in sub], n_permutations
            )
    return result


def _organism_row(cfg: DoseConfig, d_model: int, seed: int, confirm: bool) -> dict:
    """One organism pretrained and :func:`measure`-d: its row of the record."""
    start = time.perf_counter()
    pre = organism.PretrainConfig(
        steps=cfg.pretrain_steps, seed=seed, link=cfg.link, d_model=d_model
    )
    row = measure(organism.pretrain(pre, progress=False), organism.default_tokenizer(), cfg)
    return {
        "d_model": d_model,
        "seed": seed,
        "confirmatory": confirm,
        **{k: round(v, 5) for k, v in row.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }


def partial_path(out: Path) -> Path:
    """Where :func:`run` keeps the organisms measured so far."""
    return out.with_name(out.stem + ".partial.json")


def _done(path: Path, config: dict) -> dict[tuple[int, int], dict]:
    """The rows measured so far under ``config``, by (d_model, seed); none if it changed."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("config") != config:
        return {}
    return {(r["d_model"], r["seed"]): r for r in saved.get("rows", [])}


def run(
    cfg: DoseConfig = DoseConfig(),
    out: Path = RESULTS_FILE,
    ship: bool = False,
    progress: bool = True,
) -> dict:
    """Pretrain every organism of ``cfg``, :func:`measure` it, write ``out`` (and, with ``ship``,
    the copy notebook 06 reads). The test runs over the confirmatory organisms only; the
    exploration organisms get the same correlations apart, under ``exploration``. The linked
    world (``cfg.link``) is a comparison, never shipped.

    Each organism's row is saved as it ends, beside ``out`` (:func:`partial_path`), under the
    settings that made it: a stopped run, started again, measures only the organisms it had not
    finished."""
    if ship and cfg.link:
        raise ValueError("the linked world is a comparison: it is never shipped")
    config = json.loads(json.dumps(asdict(cfg)))
    partial = partial_path(out)
    done, rows = _done(partial, config), []
    for d_model, seed, confirm in tqdm(cfg.organisms(), desc="organisms", disable=not progress):
        rows.append(done.get((d_model, seed)) or _organism_row(cfg, d_model, seed, confirm))
        write_json({"config": config, "rows": rows}, partial)
    result = {
        "config": asdict(cfg),
        "rows": rows,
        "correlations": correlations([r for r in rows if r["confirmatory"]], cfg.n_permutations),
        "exploration": correlations([r for r in rows if not r["confirmatory"]], cfg.n_permutations),
    }
    write_json(result, out)
    if ship:
        write_json(result, DOSE_FILE)
    partial.unlink()
    return result


def describe(result: dict) -> str:
    """Each organism's dose and EM, one a line."""
    return "\n".join(
        f"d_model {r['d_model']} seed {r['seed']}: cosine {r['cosine']:+.3f}, EM {r['em']:+.3f}"
        for r in result["rows"]
    )


def shipped(path: Path = DOSE_FILE) -> dict:
    """The geometry-dose record the course ships (written by ``emgeo geometry-dose``)."""
    return read_record(path, "geometry-dose", "emgeo geometry-dose")


def quick(cfg: DoseConfig = DoseConfig()) -> DoseConfig:
    """A configuration small enough for a test: six tiny organisms, a few steps each."""
    return replace(
        cfg,
        exploration=((16, 0), (16, 1), (16, 2)),
        d_models=(16,),
        organism_seeds=(3, 4, 5),
        pretrain_steps=20,
        finetune_seeds=(0,),
        finetune_steps=5,
        n_finetune=32,
        n_probe=16,
        n_permutations=200,
    )
