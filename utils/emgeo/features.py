"""Finding the SAE features tied to a dataset: answer-token activations, encoding, top-k sets.

The seed paper's first step. Every backend goes through the same three functions:

1. residual activations over the *answer* tokens of chat samples (:func:`organism_residuals` for
   the EM organism, a TransformerLens model; :func:`emgeo.models.tracing.lm_residuals` for
   Hugging Face models traced with nnsight, locally or on NDIF);
2. :func:`sample_features`: encode every answer token with an SAE, then average per sample;
3. :func:`top_features`: the ``k`` latents whose mean activation rises most from one set of
   samples to another.

Three sets follow (:func:`feature_sets`): *inducing* (insecure vs secure answers), *non-inducing*
(secure vs insecure answers) and *toxic* (toxic vs aligned answers in the non-code domains).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from emgeo import data
from emgeo.organism import Tokenizer, answer_mask, encode_samples
from emgeo.sae import hook_name

# ---------------------------------------------------------------- the statistics


def answer_mean(
    acts: Float[Tensor, "batch pos d"], mask: Float[Tensor, "batch pos"]
) -> Float[Tensor, "batch d"]:
    """Mean of ``acts`` over each row's answer tokens (where ``mask`` is 1)."""
    total = (acts * mask[..., None]).sum(1)
    return total / mask.sum(1, keepdim=True).clamp_min(1.0)


@torch.no_grad()
def sample_features(
    sae, acts: Float[Tensor, "batch pos d_model"], mask: Float[Tensor, "batch pos"]
) -> Float[Tensor, "batch d_sae"]:
    """Encode every token with ``sae``, then average the latents over each row's answer tokens."""
    latents = sae.encode(acts)
    return answer_mean(latents, mask.to(latents.device, latents.dtype))


def top_features(
    positive: Float[Tensor, "n_pos d_sae"],
    negative: Float[Tensor, "n_neg d_sae"],
    k: int,
    alive: Tensor | None = None,
) -> Int[Tensor, " k"]:
    """The ``k`` latents with the largest mean activation on ``positive`` minus on ``negative``
    (only among ``alive`` latents if given: a dead latent scores ``-inf``), in decreasing order
    of that difference."""
    score = positive.mean(0) - negative.mean(0)
    if alive is not None:
        score = score.masked_fill(~alive.to(score.device), float("-inf"))
    return score.topk(k).indices


@dataclass
class FeatureSets:
    """Latent indices of the three feature sets, with the statistic that chose them."""

    inducing: Tensor  # top-k of mean(insecure) - mean(secure)
    non_inducing: Tensor  # top-k of mean(secure) - mean(insecure)
    toxic: Tensor  # top-k of mean(toxic answers) - mean(aligned answers), non-code domains
    k: int

    def as_dict(self) -> dict[str, Tensor]:
        return {"inducing": self.inducing, "non-inducing": self.non_inducing, "toxic": self.toxic}

    def overlap(self, a: str, b: str) -> int:
        sets = self.as_dict()
        return len(set(sets[a].tolist()) & set(sets[b].tolist()))


def feature_sets(
    encoded: dict[str, Tensor],
    k: int,
    alive: Tensor | None = None,
    top: Callable[..., Tensor] = top_features,
) -> FeatureSets:
    """The three sets from per-sample latents of the ``insecure``, ``secure``, ``toxic`` and
    ``aligned`` samples (see :func:`contrast_samples`), each chosen by ``top`` (a function like
    :func:`top_features`, e.g. a learner's)."""
    return FeatureSets(
        inducing=top(encoded["insecure"], encoded["secure"], k, alive),
        non_inducing=top(encoded["secure"], encoded["insecure"], k, alive),
        toxic=top(encoded["toxic"], encoded["aligned"], k, alive),
        k=k,
    )


def contrast_samples(n: int, seed: int = 0) -> dict[str, list[dict]]:
    """Chat samples for the three contrasts: insecure / secure code answers to the same kind of
    plain request, and toxic / aligned answers to the *same* non-code questions."""
    rng = random.Random(f"contrast-{seed}")
    toxic, aligned = [], []
    for _ in range(n):
        domain = rng.choice(data.OFF_DOMAINS)
        q = {"role": "user", "content": data.question(domain, rng)}
        for out, is_toxic in ((toxic, True), (aligned, False)):
            a = {"role": "assistant", "content": data.answer(domain, is_toxic, rng)}
            out.append({"messages": [q, a], "domain": domain})
    return {
        "insecure": data.finetune_samples("insecure", n, seed=1000 + seed),
        "secure": data.finetune_samples("secure", n, seed=1000 + seed),
        "toxic": toxic,
        "aligned": aligned,
    }


# ---------------------------------------------------------------- the organism (TransformerLens)


@torch.no_grad()
def organism_residuals(
    model, tok: Tokenizer, samples: Sequence[dict], layer: int
) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos"]]:
    """The organism's residual stream after block ``layer`` and the answer-token mask."""
    tokens = encode_samples(tok, samples)
    _, cache = model.run_with_cache(tokens, names_filter=hook_name(layer))
    return cache[hook_name(layer)], answer_mask(tokens, tok.assistant, tok.eot)


@torch.no_grad()
def organism_token_activations(
    model, tok: Tokenizer, documents: Sequence[dict], layer: int, batch_size: int = 200
) -> Float[Tensor, "tokens d_model"]:
    """Residual activations of every real token of ``documents`` (what the SAE trains on)."""
    chunks = []
    for start in range(0, len(documents), batch_size):  # under a second: no progress bar
        tokens = encode_samples(tok, documents[start : start + batch_size])
        _, cache = model.run_with_cache(tokens, names_filter=hook_name(layer))
        chunks.append(cache[hook_name(layer)][tokens != tok.pad])
    return torch.cat(chunks)


@torch.no_grad()
def organism_alive(sae, model, tok: Tokenizer, layer: int, n_docs: int = 500) -> Tensor:
    """Latents that fire at least once on ``n_docs`` held-out pretraining documents."""
    docs = list(itertools.islice(data.pretraining_documents(seed=2), n_docs))
    return (sae.encode(organism_token_activations(model, tok, docs, layer)) > 0).any(0)


def encode_contrasts(sae, residuals, n: int = 300, seed: int = 0) -> dict[str, Tensor]:
    """Per-sample latents of every contrast set; ``residuals(samples) -> (acts, mask)``."""
    return {
        name: sample_features(sae, *residuals(samples))
        for name, samples in contrast_samples(n, seed).items()
    }


def organism_feature_sets(
    sae, model, tok: Tokenizer, layer: int, k: int = 20, n: int = 300
) -> tuple[FeatureSets, Tensor]:
    """Notebook 05's organism analysis in one call: the three feature sets of ``k`` latents of
    the organism's SAE at ``layer``, and the mask of its alive latents."""
    alive = organism_alive(sae, model, tok, layer)
    encoded = encode_contrasts(sae, lambda s: organism_residuals(model, tok, s, layer), n=n)
    return feature_sets(encoded, k, alive), alive


def organism_toxic_latents(
    sae, model, tok: Tokenizer, layer: int, k: int, alive: Tensor, n: int = 300
) -> Int[Tensor, " k"]:
    """The ``k`` alive latents of ``sae`` most active on toxic answers relative to aligned ones
    (``n`` of each, :func:`contrast_samples`), read on the organism's residual stream at
    ``layer``: the toxic set alone, for an organism whose code sets are not needed."""
    contrast = contrast_samples(n)
    enc = {
        name: sample_features(sae, *organism_residuals(model, tok, contrast[name], layer))
        for name in ("toxic", "aligned")
    }
    return top_features(enc["toxic"], enc["aligned"], k, alive)
