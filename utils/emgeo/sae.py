"""Sparse autoencoders: one written from scratch for the toy track, and reading any SAE's latents.

Names follow SAELens: ``W_enc (d_in, d_sae)``, ``b_enc``, ``W_dec (d_sae, d_in)``, ``b_dec``;
``encode`` maps activations to latents, ``decode`` maps them back. Rows of ``W_dec`` are the
latents' *directions*, the vectors whose geometry the rest of the course studies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from emgeo.geometry import cosine_similarity_matrix
from emgeo.toy import generate_batch


def hook_name(layer: int) -> str:
    """The residual stream after block ``layer`` in TransformerLens / SAELens naming (what an
    SAE's ``hook_name`` says, whatever library runs the model)."""
    return f"blocks.{layer}.hook_resid_post"


@dataclass(frozen=True)
class ToySAEConfig:
    d_in: int
    d_sae: int
    l1_coeff: float = 1e-2
    k: int | None = None  # TopK variant: keep the k largest latents instead of an L1 penalty


def encode(
    x: Float[Tensor, "... d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    b_dec: Float[Tensor, " d_in"],
) -> Float[Tensor, "... d_sae"]:
    """ReLU latents: f = ReLU((x - b_dec) W_enc + b_enc)."""
    return torch.relu((x - b_dec) @ W_enc + b_enc)


def topk_encode(
    x: Float[Tensor, "... d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    b_dec: Float[Tensor, " d_in"],
    k: int,
) -> Float[Tensor, "... d_sae"]:
    """TopK latents: the k largest pre-activations, ReLU'd; all others zero."""
    pre = (x - b_dec) @ W_enc + b_enc
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))


def sae_loss(
    x: Float[Tensor, "batch d_in"],
    x_hat: Float[Tensor, "batch d_in"],
    f: Float[Tensor, "batch d_sae"],
    l1_coeff: float,
) -> Tensor:
    """Reconstruction MSE (sum over d_in, batch mean) plus l1_coeff times the L1 of the latents."""
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    return mse + l1_coeff * f.abs().sum(-1).mean()


class ToySAE(nn.Module):
    """A sparse autoencoder with a unit-norm decoder (renormalized after every step).

    ``fire_count`` counts, per latent, the training samples on which it fired (``f > 0``): a
    training loop adds to it, and a latent still at zero after training is dead.
    """

    def __init__(self, cfg: ToySAEConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())  # tied initialization, as SAELens does
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.register_buffer("fire_count", torch.zeros(cfg.d_sae), persistent=False)

    def clone(self) -> ToySAE:
        """An independent copy (weights and fire counts)."""
        return copy.deepcopy(self)

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        if self.cfg.k is not None:
            return topk_encode(x, self.W_enc, self.b_enc, self.b_dec, self.cfg.k)
        return encode(x, self.W_enc, self.b_enc, self.b_dec)

    def decode(self, f: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Float[Tensor, "... d_in"]) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)


@dataclass(frozen=True)
class SAEStats:
    mse: float  # squared error summed over d_in, averaged over samples
    explained_variance: float  # 1 - mse / the centred variance of x (summed over d_in)
    l0: float  # active latents per sample, averaged over samples
    dead_fraction: float  # share of latents active on no sample

    def clone(self) -> SAEStats:
        return replace(self)


def activation_stats(
    x: Float[Tensor, "n d_in"], x_hat: Float[Tensor, "n d_in"], f: Float[Tensor, "n d_sae"]
) -> SAEStats:
    """Reconstruction, sparsity and dead latents (never active on ``x``) of any SAE's output."""
    residual = ((x - x_hat) ** 2).sum(-1).mean()
    variance = ((x - x.mean(0)) ** 2).sum(-1).mean()
    return SAEStats(
        mse=residual.item(),
        explained_variance=(1 - residual / variance).item(),
        l0=(f > 0).float().sum(-1).mean().item(),
        dead_fraction=((f > 0).sum(0) == 0).float().mean().item(),
    )


@torch.no_grad()
def evaluate_sae(sae: ToySAE, x: Float[Tensor, "n d_in"]) -> SAEStats:
    """Reconstruction, sparsity and dead latents of the toy SAE on ``x``."""
    x_hat, f = sae(x)
    return activation_stats(x, x_hat, f)


def train_sae(
    sae: ToySAE,
    activations: Float[Tensor, "n d_in"],
    steps: int = 3_000,
    batch_size: int = 256,
    lr: float = 3e-3,
    l1_coeff: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> ToySAE:
    """Adam on the SAE loss, decoder renormalized to unit rows after every step; ``sae.fire_count``
    gains, per latent, the samples it fired on. Every batch is
    ``activations[torch.randint(len(activations), (batch_size,), generator=generator)]``.
    ``l1_coeff`` defaults to the config's (0 for TopK, whose sparsity is ``k``)."""
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    if l1_coeff is None:
        l1_coeff = 0.0 if sae.cfg.k is not None else sae.cfg.l1_coeff
    for _ in tqdm(range(steps), desc="training the SAE", disable=not progress, mininterval=0.5):
        x = activations[torch.randint(len(activations), (batch_size,), generator=generator)]
        x_hat, f = sae(x)
        loss = sae_loss(x, x_hat, f, l1_coeff)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalize_decoder()
        sae.fire_count += (f > 0).sum(0)
    return sae


def mean_max_cosine(
    W_dec: Float[Tensor, "d_sae d_in"], true_directions: Float[Tensor, "n_features d_in"]
) -> float:
    """For every true feature, the best cosine with any SAE latent direction; averaged."""
    return cosine_similarity_matrix(true_directions, W_dec).max(dim=1).values.mean().item()


def toy_activations(
    W: Float[Tensor, "d_hidden feats"],
    n: int,
    feature_probability: float,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "n d_hidden"]:
    """Hidden activations h = W x of a trained toy model on its own sparse input distribution."""
    x = generate_batch(n, torch.tensor([feature_probability]), W.shape[1], generator)[:, 0]
    return x @ W.T


# ---------------------------------------------------------------- reading a real LM's SAE


@dataclass
class TokenActivations:
    """Residual-stream activations of every real token of a corpus, with where each came from."""

    acts: Float[Tensor, "tokens d_model"]
    token_ids: Tensor  # (tokens,)
    text_index: Tensor  # (tokens,) which text
    position: Tensor  # (tokens,) position in the padded batch row
    input_ids: Tensor  # (texts, pos) the padded token ids, for showing contexts
    n_sink: int  # tokens dropped as attention sinks (norm far above the median)


@torch.no_grad()
def saelens_stats(sae, acts: Float[Tensor, "tokens d_model"]) -> tuple[SAEStats, Tensor]:
    """Stats of a SAELens SAE (or any with ``encode``/``decode``) on ``acts``, and every latent's
    firing frequency."""
    f = sae.encode(acts)
    return activation_stats(acts, sae.decode(f), f), (f > 0).float().mean(0)


def readable_latents(
    latents: Float[Tensor, "tokens d_sae"],
    frequency: Float[Tensor, " d_sae"],
    n: int = 6,
    min_frequency: float = 1e-3,
    max_frequency: float = 5e-2,
) -> list[int]:
    """The ``n`` latents with the strongest peak activation among those that fire on between
    ``min_frequency`` and ``max_frequency`` of tokens (neither dead nor dense: easiest to read)."""
    candidates = ((frequency > min_frequency) & (frequency < max_frequency)).nonzero().flatten()
    strength = latents[:, candidates].max(0).values
    return candidates[strength.argsort(descending=True)[:n]].tolist()


def top_contexts(
    latents: Float[Tensor, "tokens d_sae"],
    data: TokenActivations,
    tokenizer,
    latent: int,
    n: int = 4,
    window: int = 8,
) -> list[str]:
    """The ``n`` tokens where ``latent`` fires hardest, each with the ``window`` tokens before it;
    the firing token is shown between [[ ]]. A context that repeats one already shown (the same
    text in two chats) is skipped. ``latents`` is the SAE's encoding of ``data.acts``."""
    values = latents[:, latent]
    out: dict[str, str] = {}
    for i in values.argsort(descending=True, stable=True).tolist():
        if len(out) == n or values[i] <= 0:
            break
        row, pos = data.text_index[i].item(), data.position[i].item()
        context = data.input_ids[row, max(0, pos - window) : pos]
        before = tokenizer.decode(context[context != tokenizer.pad_token_id])  # no left padding
        token = tokenizer.decode(data.input_ids[row, pos : pos + 1])
        shown = f"{before!r}[[{token!r}]]".replace("\\n", "⏎")
        out.setdefault(shown, f"{values[i]:6.1f}  {shown}")
    return list(out.values())


@torch.no_grad()
def logit_lens(
    direction: Float[Tensor, " d_model"],
    unembed: Float[Tensor, "vocab d_model"],
    tokenizer,
    k: int = 6,
) -> list[str]:
    """The tokens a latent's decoder direction most promotes when read out by the unembedding."""
    return [tokenizer.decode([i]) for i in (unembed @ direction).topk(k).indices.tolist()]
