"""What scores a sample: a model, an SAE at one layer, a toxic set of SAE latents, and the
proximity of every latent to that set (:func:`emgeo.filtering.feature_proximity`, ``max``).

A sample's latents are the SAE's latents averaged over its assistant tokens; its three scores
(:func:`emgeo.filtering.ablated_scores`) are ``full``, the activation-weighted mean proximity of
its latents (the seed paper's score); ``membership only``, its share of activation on the toxic
latents themselves (co-activation); and ``neighbours only``, the activation-weighted mean
proximity of its *non-toxic* latents alone (latents near the toxic set: geometry).

A backend also says which chats it cannot score (:attr:`Scorer.problem`: a word outside the
organism's vocabulary, a chat longer than the model's context, a chat its template cannot
render): the audit reads those as bad lines.

Backends by profile: ``cpu`` SmolLM2-135M-Instruct with the course's SAE, ``gpu`` Gemma-2-2B
with Gemma Scope, ``remote`` Llama-3.1-8B on NDIF with Llama Scope applied here (only residuals of
the read layer come back, the trace stopped there); the toxic set of the cpu backend comes from
the course's toxic and benign texts (data/lm), of the others from RealToxicityPrompts.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from jinja2 import TemplateError
from torch import Tensor

from emgeo import chats, features, filtering
from emgeo.batching import encode_sample
from emgeo.errors import first_line

SCORES = filtering.ABLATIONS  # ("full", "membership only", "neighbours only")
# Bumped when a score's formula changes, so cached scores of an earlier formula are not reused
# (2: neighbours only averages over the non-toxic latents alone).
SCORES_VERSION = 2
K_TOXIC = 20  # latents in the toxic set, as in notebooks 05-07
N_TOP_LATENTS = 5  # latents kept per sample for the report
NEURONPEDIA = "https://www.neuronpedia.org/{id}/{latent}"

Latents = Callable[[Sequence[dict]], Float[Tensor, "n d_sae"]]
Problem = Callable[[dict], "str | None"]  # why a chat cannot be scored (None: it can)


@dataclass
class Scorer:
    """A backend's way of scoring chats, with what the report must say about it."""

    model: str
    sae: str
    layer: int
    toxic: Int[Tensor, " k"]
    toxic_reference: str
    proximity: Float[Tensor, " d_sae"]  # every latent's nearness to the toxic set
    latents: Latents = field(repr=False)  # takes any number of chats, batches them itself
    batch_size: int = 8  # chats per model run
    max_length: int = 512
    neuronpedia_id: str | None = None  # e.g. "gemma-2-2b/20-gemmascope-res-16k"
    # how long a chat is for the model (its tokens); None: its characters
    size: Callable[[dict], int] | None = field(default=None, repr=False)
    # why a chat (one the audit reads) cannot be scored here; None: every chat can be
    problem: Problem | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """Everything a sample's scores depend on besides the sample."""
        what = {
            "model": self.model,
            "sae": self.sae,
            "layer": self.layer,
            "toxic": self.toxic.tolist(),
            "max_length": self.max_length,
            "scores": SCORES_VERSION,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def latent_url(self, latent: int) -> str | None:
        if self.neuronpedia_id is None:
            return None
        return NEURONPEDIA.format(id=self.neuronpedia_id, latent=latent)

    def score(self, samples: Sequence[dict]) -> list[dict]:
        """One record per sample: its three scores and its top latents by contribution to the
        full score (``[latent, mean activation, proximity]``)."""
        latents = self.latents(samples).float().cpu()
        return score_latents(latents, self.proximity, self.toxic)


def score_latents(
    latents: Float[Tensor, "n d_sae"], proximity: Float[Tensor, " d_sae"], toxic: Int[Tensor, " k"]
) -> list[dict]:
    """The records of :meth:`Scorer.score` from per-sample latents."""
    full = proximity.cpu().float()
    scores = filtering.ablated_scores(latents, full, toxic.cpu())
    contribution = latents * full / latents.sum(-1, keepdim=True).clamp_min(1e-8)
    top = contribution.topk(min(N_TOP_LATENTS, latents.shape[1]), dim=-1).indices
    records = []
    for i in range(latents.shape[0]):
        tops = [
            [int(j), round(float(latents[i, j]), 4), round(float(full[j]), 3)]
            for j in top[i].tolist()
            if latents[i, j] > 0
        ]
        record = {name: float(scores[name][i]) for name in SCORES}
        record.update(top_latents=tops, n_active=int((latents[i] > 0).sum()))
        records.append(record)
    return records


def toxic_set(
    toxic_latents: Float[Tensor, "n_t d_sae"], benign_latents: Float[Tensor, "n_b d_sae"], k: int
) -> Int[Tensor, " k"]:
    """The ``k`` latents most active on toxic text relative to benign text (notebook 05's rule)."""
    return features.top_features(toxic_latents, benign_latents, k)


def proximity(W_dec: Float[Tensor, "d_sae d_model"], toxic: Tensor) -> Float[Tensor, " d_sae"]:
    """Every latent's proximity to the toxic set: its largest decoder cosine with a toxic
    latent (1 for a toxic latent itself)."""
    return filtering.feature_proximity(W_dec.detach().float(), toxic, "max").float().cpu()


# ---------------------------------------------------------------- backends


def lm_scorer(
    profile: str = "cpu",
    n_reference: int = 100,
    batch_size: int = 8,
    max_length: int = 512,
    progress: bool = True,
) -> Scorer:
    """The backend of ``profile`` (one-sentence errors when it cannot run here)."""
    from emgeo.models import pipeline  # transformers, nnsight: only when a model scores

    backend = pipeline.lm_backend(
        profile, n=n_reference, max_length=max_length, batch_size=batch_size
    )
    # Every chat starts with the chat template's system turn: it runs once per call (local runs).
    backend.share_prefix = True
    if profile == "cpu":
        texts = {
            name: chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{name}.jsonl")[:n_reference]
            for name in ("toxic", "benign")
        }
        reference = (
            f"the {K_TOXIC} SAE latents most active over the answers of the course's toxic "
            f"texts vs its benign ones (data/lm/toxic.jsonl and benign.jsonl, {n_reference} each)"
        )
    else:
        texts = {"toxic": backend.contrasts["toxic"], "benign": backend.contrasts["aligned"]}
        reference = (
            f"the {K_TOXIC} SAE latents most active over RealToxicityPrompts texts scored toxic vs "
            f"non-toxic ({n_reference} each), read as the assistant's answer"
        )
    encoded = {
        name: backend.sample_latents(samples, progress=progress) for name, samples in texts.items()
    }
    toxic = toxic_set(encoded["toxic"], encoded["benign"], K_TOXIC)
    metadata = getattr(getattr(backend.sae, "cfg", None), "metadata", None)
    return Scorer(
        model=backend.name,
        sae=_sae_name(backend, profile),
        layer=backend.layer,
        toxic=toxic.cpu(),
        toxic_reference=reference,
        proximity=proximity(backend.sae.W_dec, toxic),
        latents=backend.sample_latents,
        batch_size=batch_size,
        max_length=backend.max_length,
        neuronpedia_id=getattr(metadata, "neuronpedia_id", None),
        size=lambda chat: len(encode_sample(backend.lm.tokenizer, chat, backend.max_length)[0]),
        problem=lm_problem(
            backend.lm.tokenizer,
            backend.max_length,
            getattr(getattr(backend.lm.model, "config", None), "max_position_embeddings", None),
        ),
    )


def lm_problem(tokenizer, max_length: int, context: int | None) -> Problem:
    """Why a language model's backend cannot score a chat: it does not end in the assistant's
    answer (the answer read), its chat template refuses it, its tokens before the answer fill the
    ``max_length`` read (no answer token left), or what is read exceeds the model's ``context``."""

    def why(chat: dict) -> str | None:
        if chat["messages"][-1]["role"] != "assistant":
            return "the last message is not the assistant's (the scorer reads the final answer)"
        try:
            ids, n_prompt = encode_sample(tokenizer, chat, sys.maxsize)
        except (TemplateError, ValueError) as err:
            return f"the model's chat template cannot render it ({first_line(err, 120)})"
        n_read = min(len(ids), max_length)
        if context is not None and n_read > context:
            return f"{n_read} tokens, over the model's context of {context}"
        if n_prompt >= max_length:
            return (
                f"{n_prompt} tokens before its last answer, over the {max_length} tokens a chat "
                "the scorer reads: no answer token left to score"
            )
        return None

    return why


def organism_problem(tok, n_ctx: int) -> Problem:
    """Why the organism cannot score a chat: a word outside its vocabulary, or more tokens than
    its context of ``n_ctx``."""

    def why(chat: dict) -> str | None:
        try:
            n_tokens = len(tok.encode_chat(chat["messages"]))
        except ValueError as err:  # "word 'xyz' is not in the organism's vocabulary"
            return str(err)
        if n_tokens > n_ctx:
            return f"{n_tokens} tokens, over the model's context of {n_ctx}"
        return None

    return why


def _sae_name(backend, profile: str) -> str:
    from emgeo.models import saes  # SAELens: only when a model scores

    if profile == "cpu":
        return f"the course's SmolLM2 SAE (data/smollm2_sae), layer {backend.layer}"
    family = saes.PRETRAINED[profile]
    return f"{family.release} / {family.sae_id(backend.layer)}"


def organism_scorer(layer: int = 0, k: int = K_TOXIC) -> Scorer:
    """The course's EM model organism with its shipped SAE (notebooks 04-07): a backend whose
    ground truth is known, on which the audit is validated."""
    from emgeo import organism  # TransformerLens: only when the organism scores
    from emgeo.models import saes

    model, tok = organism.load()
    sae = saes.load_organism_sae(layer)
    sets, _ = features.organism_feature_sets(sae, model, tok, layer=layer, k=k)
    batch = 64

    @torch.no_grad()
    def latents(samples: Sequence[dict]) -> Tensor:
        rows = []
        for start in range(0, len(samples), batch):
            part = samples[start : start + batch]
            acts, mask = features.organism_residuals(model, tok, part, layer)
            rows.append(features.sample_features(sae, acts, mask))
        return torch.cat(rows)

    return Scorer(
        model="the course's EM organism (data/organism)",
        sae=f"the organism's SAE, layer {layer}",
        layer=layer,
        toxic=sets.toxic,
        toxic_reference=f"the {k} SAE latents most active on toxic vs aligned answers (as in 05)",
        proximity=proximity(sae.W_dec, sets.toxic),
        latents=latents,
        batch_size=batch,
        max_length=model.cfg.n_ctx,  # chats are read whole: up to the model's context
        problem=organism_problem(tok, model.cfg.n_ctx),
    )


def scorer_for(profile: str, **kwargs) -> Scorer:
    """``cpu``, ``gpu``, ``remote``: a language model (:func:`lm_scorer`); ``organism``: the
    course's model organism (:func:`organism_scorer`)."""
    if profile == "organism":
        return organism_scorer()
    if profile not in ("cpu", "gpu", "remote"):
        raise ValueError(f"unknown profile {profile!r}: use cpu, gpu, remote or organism")
    return lm_scorer(profile, **kwargs)
