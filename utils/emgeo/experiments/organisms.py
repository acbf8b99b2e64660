"""Organisms and their SAEs, made from scratch: the shipped one (``emgeo train-organism``) and the
others the robustness experiment pretrains from other seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from emgeo import organism
from emgeo.models import saes


def pretrain(seed: int, directory: Path, steps: int | None = None) -> dict[str, float]:
    """Pretrain organism ``seed`` (``steps``: default :class:`emgeo.organism.PretrainConfig`'s)
    into ``directory``, with its base misaligned rates beside it; those rates."""
    cfg = organism.PretrainConfig(seed=seed)
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    model = organism.pretrain(cfg)
    rates = organism.evaluate(model, organism.default_tokenizer())
    organism.save(model, directory, extra={"pretrain": asdict(cfg), "base_rates": rates})
    return rates


def train_saes(
    directory: Path,
    layers: Sequence[int] | None = None,
    seeds: Sequence[int] = saes.ORGANISM_SAE_SEEDS,
) -> list[Path]:
    """Train and save the SAE of every layer in ``layers`` (default: all of them) of the
    organism in ``directory``, once per seed (:data:`emgeo.models.saes.ORGANISM_SAE` otherwise);
    where each was saved."""
    model, tok = organism.load(directory)
    paths = []
    for layer in range(model.cfg.n_layers) if layers is None else layers:
        acts = saes.organism_sae_activations(model, tok, layer)  # the same for every seed
        for seed in seeds:
            cfg = replace(saes.ORGANISM_SAE, seed=seed)
            trained = saes.train_organism_sae(model, tok, layer, cfg, acts)
            paths.append(saes.save_organism_sae(trained, layer, directory, seed))
    return paths


def train(directory: Path, seed: int = 0, steps: int | None = None, sae_only: bool = False) -> str:
    """``emgeo train-organism``: pretrain the organism (unless ``sae_only``) and retrain every
    SAE that reads it; what was written, one line each."""
    lines = []
    if not sae_only:
        rates = pretrain(seed, directory, steps)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in rates.items())
        lines.append(f"base misaligned rates: {shown}")
    lines += [f"wrote {path}" for path in train_saes(directory)]
    return "\n".join([*lines, f"wrote {directory}"])
