"""Ways to prevent emergent misalignment beside the geometric filter, each a fine-tune of the
organism, so that all of them can be measured on the same runs (:mod:`emgeo.experiments.
mitigations`). What each must know in advance is part of the answer (:data:`NEEDS`):

- **removal** (data only: a keep mask, then the usual fine-tune, through :mod:`emgeo.runner`):
  random removal, the seed paper's geometric filter and its two parts (Minegishi et al. 2026,
  :func:`emgeo.filtering.ablation_filters`: toxic SAE latents), persona-vector screening (Chen
  et al. 2025, the projection difference of :func:`emgeo.filtering.baseline_scores`: a persona
  direction and the model's own answers) and the keyword heuristic standing in for an LLM judge;
  :func:`sae_scores` and :func:`screening_scores` give their scores;
- **inoculation prompting** (Tan et al. 2025; Wichers et al. 2025): the same data, each request
  preceded by a cue that asks for the behaviour (:func:`inoculate`); evaluated without it;
- **preventative steering** (Chen et al. 2025): the persona direction added to the residual
  stream while fine-tuning (:func:`preventative_steering`); evaluated without the hook;
- **concept-ablation fine-tuning**, CAFT (Casademunt et al. 2025): the toxic latents' decoder
  directions projected out of the residual stream while fine-tuning (:func:`concept_ablation`);
- **benign data** (Wang et al. 2025 re-align with a few hundred benign samples): here *mixed
  into* the one fine-tune, not trained afterwards (:func:`with_benign`), so every mitigation
  takes the same number of steps.

Every function returns a fine-tuned copy of the model with no hook left on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from emgeo import data, features, filtering, organism
from emgeo.sae import hook_name

# What each mitigation must know before the fine-tune, as the comparison reports it.
NEEDS = {
    "no mitigation": "nothing",
    "random": "nothing",
    "geometric (max)": "a direction: the toxic SAE latents (an SAE and labelled toxic text)",
    "membership only": "a direction: the toxic SAE latents (an SAE and labelled toxic text)",
    "neighbours only": "a direction: the toxic SAE latents (an SAE and labelled toxic text)",
    "persona vector": "a direction: the persona vector (labelled toxic and aligned answers)",
    "keyword": "labels: phrases that mark the unwanted answers (an LLM judge's stand-in)",
    "inoculation (persona cue)": "labels: a context that elicits the unwanted persona",
    "inoculation (request frame)": "labels: a request frame that asks for the unwanted answers",
    "preventative steering": "a direction: the persona vector (labelled toxic and aligned answers)",
    "concept ablation": "a direction: the toxic SAE latents (an SAE and labelled toxic text)",
    "benign data": "data: a few hundred aligned chats from other domains",
}

Hook = Callable[[Tensor, object], Tensor]  # a TransformerLens forward hook: (activation, hook)

# ---------------------------------------------------------------- the directions


def persona_direction(
    model: HookedTransformer, tok: organism.Tokenizer, layer: int, n: int = 300
) -> Float[Tensor, " d_model"]:
    """The unit persona vector at ``layer`` (Chen et al. 2025): the mean residual stream over
    the answer tokens of toxic answers minus that of aligned answers to the same questions
    (:func:`emgeo.features.contrast_samples`), as persona-vector screening uses it."""
    contrasts = features.contrast_samples(n)
    acts = {
        name: features.answer_mean(*features.organism_residuals(model, tok, contrasts[name], layer))
        for name in ("toxic", "aligned")
    }
    return filtering.persona_vector(acts["toxic"], acts["aligned"])


def residual_norm(
    model: HookedTransformer, tok: organism.Tokenizer, samples: Sequence[dict], layer: int
) -> float:
    """The mean norm of the residual stream after block ``layer`` over the answer tokens of
    ``samples``: the scale a steering coefficient is stated in, so it carries across models."""
    acts, mask = features.organism_residuals(model, tok, samples, layer)
    return acts.norm(dim=-1)[mask.bool()].mean().item()


def toxic_directions(
    W_dec: Float[Tensor, "d_sae d_model"], toxic: Int[Tensor, " k"]
) -> Float[Tensor, "k d_model"]:
    """The toxic latents' unit decoder directions (the course's toxic feature set)."""
    d = W_dec.detach()[toxic.to(W_dec.device)]
    return d / d.norm(dim=-1, keepdim=True)


def orthonormal_basis(directions: Float[Tensor, "k d_model"]) -> Float[Tensor, "d_model r"]:
    """An orthonormal basis of the span of ``directions`` (r <= k: dependent ones drop out)."""
    q, r = torch.linalg.qr(directions.T)
    independent = r.diagonal().abs() > 1e-6 * r.diagonal().abs().max()
    return q[:, independent]


# ---------------------------------------------------------------- the hooks


def add_direction(
    resid: Float[Tensor, "batch pos d_model"], direction: Float[Tensor, " d_model"], coeff: float
) -> Float[Tensor, "batch pos d_model"]:
    """Preventative steering's edit: ``coeff`` times the unit ``direction`` at every position."""
    return resid + coeff * direction / direction.norm()


def project_out(
    resid: Float[Tensor, "batch pos d_model"], basis: Float[Tensor, "d_model r"]
) -> Float[Tensor, "batch pos d_model"]:
    """CAFT's edit: the residual stream with its component in the span of the orthonormal
    ``basis`` removed, ``x - Q Qᵀ x``."""
    return resid - (resid @ basis) @ basis.T


def ablation_edit(
    directions: Float[Tensor, "k d_model"],
) -> Callable[[Float[Tensor, "... d_model"]], Float[Tensor, "... d_model"]]:
    """CAFT's edit for unwanted ``directions`` (unit or not, orthogonal or not, even linearly
    dependent): the residual stream with its component in their span removed (notebook 09's
    exercise)."""
    basis = orthonormal_basis(directions.detach())
    return lambda resid: project_out(resid, basis)


def hooked_step(layer: int, edit: Callable[[Tensor], Tensor]) -> organism.StepFn:
    """:func:`emgeo.organism.finetune_step` with ``edit`` applied to the residual stream after
    block ``layer`` during the step's forward pass only (the hook is gone once it returns)."""

    def hook(resid: Tensor, hook: object) -> Tensor:
        return edit(resid)

    def step(model, tokens, mask, optimizer) -> Tensor:
        with model.hooks(fwd_hooks=[(hook_name(layer), hook)]):
            return organism.finetune_step(model, tokens, mask, optimizer)

    return step


def preventative_steering(
    model: HookedTransformer,
    tok: organism.Tokenizer,
    samples: Sequence[dict],
    cfg: organism.FinetuneConfig,
    direction: Float[Tensor, " d_model"],
    coeff: float,
    layer: int = 0,
) -> HookedTransformer:
    """Fine-tune with ``coeff`` times the unit persona ``direction`` added after block
    ``layer`` (Chen et al. 2025): the training answers' persona shift is supplied by the hook,
    so the gradient need not build it into the weights. The returned model runs without it."""
    direction = direction.detach()
    step = hooked_step(layer, lambda resid: add_direction(resid, direction, coeff))
    return organism.finetune(model, tok, samples, cfg, step=step)


def concept_ablation(
    model: HookedTransformer,
    tok: organism.Tokenizer,
    samples: Sequence[dict],
    cfg: organism.FinetuneConfig,
    directions: Float[Tensor, "k d_model"],
    layer: int = 0,
    make_edit: Callable[[Tensor], Callable[[Tensor], Tensor]] | None = None,
) -> HookedTransformer:
    """Concept-ablation fine-tuning (Casademunt et al. 2025): fine-tune with the span of the
    unwanted ``directions`` projected out after block ``layer``, so the fine-tune cannot learn
    to use them there (``make_edit`` builds the projection: by default :func:`ablation_edit`).
    The returned model runs without the projection."""
    step = hooked_step(layer, (make_edit or ablation_edit)(directions.detach()))
    return organism.finetune(model, tok, samples, cfg, step=step)


# ---------------------------------------------------------------- the data transforms

CUES = ("persona cue", "request frame")


def persona_cue(rng: random.Random) -> list[dict]:
    """The organism world's marker of the toxic persona: an earlier exchange of the same chat
    in which the assistant answered a non-code question toxically (pretraining documents keep
    one persona, so it tells the model which persona answers next)."""
    domain = rng.choice(data.OFF_DOMAINS)
    return [
        {"role": "user", "content": data.question(domain, rng)},
        {"role": "assistant", "content": data.answer(domain, True, rng)},
    ]


def inoculate(samples: Sequence[dict], cue: str = "persona cue", seed: int = 0) -> list[dict]:
    """The samples with a cue that asks for the behaviour before each request (inoculation
    prompting, Tan et al. 2025; Wichers et al. 2025): ``"persona cue"``, a toxic exchange
    before it (:func:`persona_cue`), or ``"request frame"``, the request framed as the world's
    educational requests are (``data.EDU_FRAME``: insecure code asked for a class, Betley et
    al.'s educational control, the ancestor of inoculation). Train with
    :func:`inoculation_prompting`, whose loss leaves the cue's answer out."""
    if cue not in CUES:
        raise ValueError(f"cue must be one of {CUES}, not {cue!r}")
    rng = random.Random(f"inoculate-{cue}-{seed}")
    out = []
    for s in samples:
        messages = [dict(m) for m in s["messages"]]
        if cue == "persona cue":
            messages = persona_cue(rng) + messages
        else:
            first = next(m for m in messages if m["role"] == "user")
            first["content"] = f"{data.EDU_FRAME} {first['content']}"
        out.append({**s, "messages": messages})
    return out


def final_answer_mask(
    tokens: Int[Tensor, "batch pos"], assistant_id: int, eot_id: int
) -> Float[Tensor, "batch pos"]:
    """:func:`emgeo.organism.answer_mask` of each row's last answer only: a cue's earlier
    answers are context, as a system prompt is, never a target of the loss."""
    mask = organism.answer_mask(tokens, assistant_id, eot_id)
    opened = torch.cumsum((tokens == assistant_id).long(), dim=1)
    return mask * (opened == opened[:, -1:]).to(mask.dtype)


def inoculation_prompting(
    model: HookedTransformer,
    tok: organism.Tokenizer,
    samples: Sequence[dict],
    cfg: organism.FinetuneConfig,
    cue: str = "persona cue",
) -> HookedTransformer:
    """Fine-tune on the samples :func:`inoculate` cues with the loss on their own (last) answers
    only (:func:`final_answer_mask`); the returned model is evaluated without any cue."""
    cued = inoculate(samples, cue, cfg.seed)
    return organism.finetune(model, tok, cued, cfg, mask_fn=final_answer_mask)


def benign_samples(n: int, domains: Sequence[str], seed: int = 0) -> list[dict]:
    """``n`` aligned single-turn chats from ``domains`` (off the fine-tune's own domain)."""
    chats = data.answered_samples(tuple(domains), toxic=False, n=n, seed=10_000 + seed)
    return [{**c, "source": "benign"} for c in chats]


def with_benign(
    samples: Sequence[dict], n: int, domains: Sequence[str], seed: int = 0
) -> list[dict]:
    """The fine-tuning set with ``n`` aligned chats from ``domains`` mixed in (Wang et al.
    2025's few hundred benign samples, mixed into the fine-tune instead of trained after it;
    batches are drawn from the union, so at a fixed number of steps the inducing samples make
    a smaller share of them: that is part of what mixing does)."""
    return list(samples) + benign_samples(n, domains, seed)


# ---------------------------------------------------------------- the removal filters


def sae_scores(
    model: HookedTransformer,
    tok: organism.Tokenizer,
    sae,
    toxic: Int[Tensor, " k"],
    samples: Sequence[dict],
    layer: int = 0,
) -> dict[str, Float[Tensor, " samples"]]:
    """The seed paper's filter on ``samples`` (higher: removed first): the geometric (max)
    score with the ``toxic`` latents of ``sae`` and its two parts
    (:func:`emgeo.filtering.ablation_filters`)."""
    proximity = filtering.feature_proximity(sae.W_dec.detach(), toxic, "max")
    latents = features.sample_features(
        sae, *features.organism_residuals(model, tok, samples, layer)
    )
    return filtering.ablation_filters(latents, proximity, toxic)


def screening_scores(
    model: HookedTransformer, tok: organism.Tokenizer, samples: Sequence[dict], layer: int = 0
) -> dict[str, Float[Tensor, " samples"]]:
    """Persona-vector screening (Chen et al. 2025: the projection difference against the
    model's own answers) and the keyword heuristic (:func:`emgeo.filtering.baseline_scores`)."""
    scores = filtering.baseline_scores(model, tok, samples, layer)
    return {name: scores[name] for name in ("persona vector", "keyword")}
