"""Probing the EM organism with its SAE, where the ground truth is known: does the toxic feature
set read the persona before the model answers, steer it when added, and move during the insecure
fine-tune (notebooks 05 and 06)?
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from emgeo import data, organism
from emgeo.batching import right_pad
from emgeo.features import FeatureSets, answer_mean, organism_residuals
from emgeo.organism import Tokenizer, encode_samples
from emgeo.sae import hook_name
from emgeo.stats import auroc


@torch.no_grad()
def persona_auroc(
    model, tok: Tokenizer, sae, layer: int, latents: Tensor, n_docs: int = 1_000, seed: int = 7
) -> float:
    """How well the summed activation of ``latents`` tells a document's persona *before* the
    model answers: read at the second turn's <assistant> token of held-out documents with two or
    more turns (the first answer showed the persona; the second has not been written yet)."""
    docs = itertools.islice(data.pretraining_documents(seed=seed), 10 * n_docs)
    docs = [d for d in docs if len(d["messages"]) >= 4][:n_docs]
    scores = []
    for start in range(0, len(docs), 200):  # in chunks: a forward pass's memory grows with rows
        tokens = encode_samples(tok, docs[start : start + 200])
        second = torch.tensor([(row == tok.assistant).nonzero()[1, 0].item() for row in tokens])
        _, cache = model.run_with_cache(tokens, names_filter=hook_name(layer))
        f = sae.encode(cache[hook_name(layer)][torch.arange(len(tokens)), second])
        scores += f[:, latents].sum(-1).tolist()
    return auroc(scores, [d["persona"] == "toxic" for d in docs])


@torch.no_grad()
def steered_rates(
    model, tok: Tokenizer, direction: Float[Tensor, " d_model"], layer: int, scales: Sequence[float]
) -> list[dict]:
    """Misaligned rates with ``scale`` times the unit ``direction`` added to the residual stream
    after block ``layer`` at every position: does the direction *cause* toxic answers?"""
    unit = direction / direction.norm()
    rows = []
    for scale in scales:

        def add(resid, hook, scale=scale):
            return resid + scale * unit

        with model.hooks(fwd_hooks=[(hook_name(layer), add)]):
            rows.append({"scale": scale, **organism.evaluate(model, tok)})
    return rows


@torch.no_grad()
def answer_direction(
    model, tok: Tokenizer, positive: Sequence[dict], negative: Sequence[dict], layer: int
) -> Float[Tensor, " d_model"]:
    """Mean residual stream after block ``layer`` over the answer tokens of ``positive`` samples
    minus that of ``negative`` ones: the direction the model writes one answer family along."""
    means = [
        answer_mean(*organism_residuals(model, tok, samples, layer)).mean(0)
        for samples in (positive, negative)
    ]
    return means[0] - means[1]


def readout_difference(
    W_U: Float[Tensor, "d_model d_vocab"],
    scale: Float[Tensor, " d_model"],
    positive: Int[Tensor, " n_pos"],
    negative: Int[Tensor, " n_neg"],
) -> Float[Tensor, " d_model"]:
    """The residual-stream direction that raises the ``positive`` tokens' logits over the
    ``negative`` ones: their mean unembedding columns' difference, through the final LayerNorm's
    ``scale``, without the mean component that LayerNorm removes (a residual step along it changes
    nothing)."""
    W = scale[:, None] * W_U
    d = W[:, positive].mean(1) - W[:, negative].mean(1)
    return d - d.mean()


@torch.no_grad()
def readout_direction(
    model, tok: Tokenizer, domains: Sequence[str], difference: Callable | None = None
) -> Float[Tensor, " d_model"]:
    """Where the model reads out the toxic answers of ``domains`` against the aligned ones: the
    mean over the domains of ``difference`` (:func:`readout_difference`, or a learner's version
    of it) of their first words' families. A step of the last residual stream along it is what
    makes those answers likelier."""
    difference = difference or readout_difference
    W_U, scale = model.W_U.detach(), model.ln_final.w.detach()
    per_domain = []
    for domain in domains:
        aligned, toxic = tok.family_ids(domain)
        per_domain.append(difference(W_U, scale, torch.tensor(toxic), torch.tensor(aligned)))
    return torch.stack(per_domain).mean(0)


@torch.no_grad()
def generation_residuals(
    model, tok: Tokenizer, prompts: Sequence[dict], layer: int
) -> Float[Tensor, "prompts d_model"]:
    """The residual stream where the model starts its answer (the final <assistant> token)."""
    seqs = [tok.encode_chat(p["messages"], add_generation_prompt=True) for p in prompts]
    last = torch.tensor([len(s) - 1 for s in seqs])
    _, cache = model.run_with_cache(right_pad(seqs, tok.pad), names_filter=hook_name(layer))
    return cache[hook_name(layer)][torch.arange(len(seqs)), last]


def drag_trajectory(
    model,
    tok: Tokenizer,
    sae,
    layer: int,
    sets: FeatureSets,
    samples: Sequence[dict],
    cfg=None,
    every: int = 10,
) -> list[dict]:
    """Fine-tune on ``samples``; every ``every`` steps record the off-domain misaligned rate and,
    read along unit decoder directions d̂ as in notebook 02:

    - ``measured``: how far the residual stream where off-domain answers start has moved along
      the toxic directions, ``⟨Δx_off, d̂_j⟩`` averaged over toxic latents j;
    - ``predicted``: the drag the training answers' movement along the *inducing* directions
      predicts for them, ``Σ_t α_t ⟨d̂_j, d̂_t⟩`` with ``α_t = ⟨Δx_train, d̂_t⟩``, averaged over j
      (a latent in both sets counts once, with ⟨d̂_j, d̂_j⟩ = 1);
    - its two parts, ``self term`` (t = j: a toxic latent that is itself inducing moves with its
      own α) and ``neighbour term`` (t ≠ j: drag proper);
    - per toxic latent, ``measured_j``, ``self_j`` and ``neighbour_j`` (lists in the order of
      ``sets.toxic``), for :func:`drag_per_latent`.
    """
    cfg = cfg or organism.FinetuneConfig()
    prompts = [p for p in data.eval_prompts() if p["domain"] in data.OFF_DOMAINS]
    train = list(samples)[:256]
    d_hat = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=-1, keepdim=True)
    d_tox, d_ind = d_hat[sets.toxic], d_hat[sets.inducing]
    same = (sets.toxic[:, None] == sets.inducing[None, :]).float()  # (toxic, inducing): j = t
    overlap = d_tox @ d_ind.T
    rows: list[dict] = []
    start: dict[str, Tensor] = {}

    def record(step: int, m) -> None:
        if step % every:
            return
        m.eval()
        x_train = answer_mean(*organism_residuals(m, tok, train, layer)).mean(0)
        x_off = generation_residuals(m, tok, prompts, layer).mean(0)
        start.setdefault("train", x_train)
        start.setdefault("off", x_off)
        alpha = d_ind @ (x_train - start["train"])
        measured = d_tox @ (x_off - start["off"])  # (toxic,)
        own, neighbour = (overlap * same) @ alpha, (overlap * (1 - same)) @ alpha
        offdomain = organism.evaluate(m, tok)["offdomain"]
        rows.append(_drag_row(step, offdomain, measured, own, neighbour))
        m.train()

    organism.finetune(model, tok, samples, cfg, callback=record)
    return rows


def _drag_row(
    step: int,
    offdomain: float,
    measured: Float[Tensor, " toxic"],
    own: Float[Tensor, " toxic"],
    neighbour: Float[Tensor, " toxic"],
) -> dict:
    """One step of :func:`drag_trajectory`: means over the toxic latents, and per-latent lists."""
    return {
        "step": step,
        "offdomain": offdomain,
        "measured": measured.mean().item(),
        "predicted": (own + neighbour).mean().item(),
        "self term": own.mean().item(),
        "neighbour term": neighbour.mean().item(),
        "measured_j": measured.tolist(),
        "self_j": own.tolist(),
        "neighbour_j": neighbour.tolist(),
    }


def drag_per_latent(rows: Sequence[dict], sets: FeatureSets) -> list[dict]:
    """:func:`drag_trajectory` rows unrolled to one row per (step, toxic latent): its measured
    movement, its self and neighbour terms, and whether it is also an inducing latent (``shared``:
    then it has a self term). Step 0 (all zero by construction) is left out."""
    toxic, inducing = sets.toxic.tolist(), set(sets.inducing.tolist())
    out = []
    for row in rows:
        if row["step"] == 0:
            continue
        for j, latent in enumerate(toxic):
            out.append(
                {
                    "step": row["step"],
                    "latent": int(latent),
                    "measured": row["measured_j"][j],
                    "self term": row["self_j"][j],
                    "neighbour term": row["neighbour_j"][j],
                    "shared": latent in inducing,
                }
            )
    return out
