"""SAELens SAEs: trained here on a model's activations (the organism, SmolLM2) or loaded
pretrained (Gemma Scope, Llama Scope), with the activations they are trained on.

Everything that needs SAELens lives here; the science modules take an SAE as an argument and use
only its ``encode``, ``decode`` and ``W_dec``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.metadata
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
from sae_lens.training import sae_trainer
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor
from tqdm.auto import tqdm

from emgeo import batching, config, data, features
from emgeo.errors import ModelUnavailableError, first_line
from emgeo.models import corpus, standins, tracing
from emgeo.organism import ORGANISM_DIR, Tokenizer
from emgeo.sae import TokenActivations, saelens_stats

# -- activations and training ------------------------------------------------------------------


def collect_activations(
    lm,
    texts: list[str],
    layer: int,
    max_length: int = 64,
    batch_size: int = 4,
    sink_factor: float = 10.0,
    progress: bool = True,
    skip_first: int = 0,
) -> TokenActivations:
    """Residual activations after block ``layer`` for every real token of ``texts`` (via nnsight),
    but the first ``skip_first`` of each text (e.g. a system prompt that every text shares, whose
    activations would be the same in every text).

    Texts are traced in batches of similar length, each cut to its own longest text, so padding
    costs little; tokens come back in text order. Tokens whose activation norm is over
    ``sink_factor`` times the median are dropped: in most LMs the first token is an *attention
    sink* with a norm hundreds of times larger, which would dominate an SAE's reconstruction loss.
    """
    enc = tracing.tokenize(lm, texts, max_length)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    order = mask.sum(1).argsort(descending=True, stable=True)
    acts, text_index, position = [], [], []
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="activations", disable=not progress or len(starts) < 2):
        rows = order[start : start + batch_size]
        used = mask[rows].any(0).nonzero().flatten()  # the columns some text of the batch uses
        cols = slice(int(used[0]), int(used[-1]) + 1)
        batch = {"input_ids": ids[rows, cols], "attention_mask": mask[rows, cols]}
        res = tracing.batch_residuals(lm, batch, layer).float().cpu()
        real = batch["attention_mask"].bool() & (batch["attention_mask"].cumsum(1) > skip_first)
        row, pos = real.nonzero(as_tuple=True)
        acts.append(res[row, pos])
        text_index.append(rows[row])
        position.append(pos + cols.start)
    text_index, position = torch.cat(text_index), torch.cat(position)
    in_order = torch.argsort(text_index * ids.shape[1] + position)
    text_index, position = text_index[in_order], position[in_order]
    acts = torch.cat(acts)[in_order]
    norms = acts.norm(dim=-1)
    keep = norms < sink_factor * norms.median()
    return TokenActivations(
        acts=acts[keep],
        token_ids=ids[text_index, position][keep],
        text_index=text_index[keep],
        position=position[keep],
        input_ids=ids,
        n_sink=int((~keep).sum()),
    )


@dataclass(frozen=True)
class SAETrainingConfig:
    """How a SAELens TopK SAE is trained on in-memory activations."""

    expansion: int = 4  # d_sae = expansion * d_in
    k: int = 32  # active latents per token
    steps: int = 400
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0


def train_saelens_topk(
    acts: Float[Tensor, "tokens d_model"], cfg: SAETrainingConfig = SAETrainingConfig()
) -> TopKTrainingSAE:
    """Train a SAELens TopK SAE with SAELens's own trainer on in-memory activations."""
    torch.manual_seed(cfg.seed)  # SAELens initializes its weights from the global generator
    d_in = acts.shape[1]
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=cfg.expansion * d_in, k=cfg.k))
    gen = torch.Generator().manual_seed(cfg.seed)

    def batches():
        while True:
            yield acts[torch.randint(len(acts), (cfg.batch_size,), generator=gen)]

    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr,
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
    )
    return SAETrainer(trainer_cfg, sae, batches()).fit()


# -- the organism's SAEs (shipped in data/organism) --------------------------------------------

# SAELens TopK SAEs, 8 x 128 latents, k = 8, trained on the residual stream of 3,000 pretraining
# documents (seed 1, unseen in pretraining's first steps) for 1,500 steps.
ORGANISM_SAE = SAETrainingConfig(expansion=8, k=8, steps=1_500, batch_size=512, lr=1e-3, seed=0)
ORGANISM_SAE_DOCS = 3_000
# Independently trained SAEs per layer (initialisation and batch order): a geometric finding must
# hold across them, not only in one SAE's dictionary. Seed 0 is the one the notebooks read first.
ORGANISM_SAE_SEEDS: tuple[int, ...] = (0, 1, 2)


def organism_sae_activations(
    model, tok: Tokenizer, layer: int, n_docs: int | None = None
) -> Float[Tensor, "tokens d_model"]:
    """What the organism's SAEs of ``layer`` train on: the residual stream at ``layer`` over
    ``n_docs`` pretraining documents (default :data:`ORGANISM_SAE_DOCS`; the same for every
    SAE seed)."""
    n_docs = n_docs or ORGANISM_SAE_DOCS
    docs = list(itertools.islice(data.pretraining_documents(seed=1), n_docs))
    return features.organism_token_activations(model, tok, docs, layer)


def train_organism_sae(
    model,
    tok: Tokenizer,
    layer: int,
    cfg: SAETrainingConfig = ORGANISM_SAE,
    acts: Float[Tensor, "tokens d_model"] | None = None,
) -> TopKTrainingSAE:
    """Train the organism's SAE for ``layer`` (about 30 s on 2 cores): deterministic, its
    initialisation and batch order set by ``cfg.seed``. ``acts`` (from
    :func:`organism_sae_activations`, which is the same for every seed) is computed when not
    given."""
    if acts is None:
        acts = organism_sae_activations(model, tok, layer)
    return train_saelens_topk(acts, cfg)


def organism_sae_dir(layer: int, directory: Path = ORGANISM_DIR, seed: int = 0) -> Path:
    """``sae_layer{layer}`` for seed 0, ``sae_layer{layer}_seed{seed}`` for the others."""
    return directory / (f"sae_layer{layer}" if seed == 0 else f"sae_layer{layer}_seed{seed}")


def save_organism_sae(sae, layer: int, directory: Path = ORGANISM_DIR, seed: int = 0) -> Path:
    """Save with SAELens's own format (inference SAE: weights + cfg.json)."""
    path = organism_sae_dir(layer, directory, seed)
    sae.save_inference_model(str(path))
    return path


def load_organism_sae(layer: int, directory: Path = ORGANISM_DIR, seed: int = 0) -> SAE:
    """The shipped SAE of the organism's residual stream after block ``layer`` (trained with
    ``seed``, one of :data:`ORGANISM_SAE_SEEDS`)."""
    path = organism_sae_dir(layer, directory, seed)
    if not path.exists():
        raise FileNotFoundError(f"no SAE in {path}: run `emgeo train-organism --sae-only`")
    return SAE.load_from_disk(str(path), device="cpu").eval()


# -- pretrained SAEs (gpu and remote profiles) --------------------------------------------------


@dataclass(frozen=True)
class PretrainedSAE:
    """A SAELens release and the pattern of its per-layer sae_id (``{layer}`` is filled in)."""

    release: str
    sae_id_pattern: str

    def sae_id(self, layer: int) -> str:
        return self.sae_id_pattern.format(layer=layer)


# The residual stream the gpu and remote profiles read: after block 12 of Gemma-2-2B's 26 and
# Llama-3.1-8B's 32, in the middle of the network, where the paper reads features.
PRETRAINED_LAYER = 12
PRETRAINED: dict[str, PretrainedSAE] = {  # the SAE family each larger profile loads
    "gpu": PretrainedSAE("gemma-scope-2b-pt-res-canonical", "layer_{layer}/width_16k/canonical"),
    "remote": PretrainedSAE("llama_scope_lxr_8x", "l{layer}r_8x"),
}


def check_pretrained_id(release: str, sae_id: str) -> None:
    """Raise a one-sentence ValueError if SAELens's directory of pretrained SAEs (the
    ``pretrained_saes.yaml`` it ships, read without a network) has no such release or sae_id."""
    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise ValueError(
            f"SAELens {sae_lens_version()} knows no SAE release {release!r}"
            f"{_did_you_mean(release, directory)}: check the name (emgeo.models.saes.PRETRAINED "
            "lists the course's)."
        )
    ids = directory[release].saes_map
    if sae_id not in ids:
        raise ValueError(
            f"the SAELens release {release} has no sae_id {sae_id!r}{_did_you_mean(sae_id, ids)}: "
            "check the id (for a layer, PRETRAINED[profile].sae_id(layer) builds it)."
        )


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def sae_lens_version() -> str:
    return importlib.metadata.version("sae-lens")


def load_pretrained(release: str, sae_id: str, device: str = "cpu") -> SAE:
    """``SAE.from_pretrained`` (SAELens 6 returns the SAE alone), with one-line errors: an id
    SAELens does not know (checked offline first), and a download that fails.

    Under stand-ins (``EMGEO_STANDINS=tiny``) the ids are checked the same way and a small
    random JumpReLU SAE as wide as the stand-in models comes back instead.
    """
    check_pretrained_id(release, sae_id)
    if standins.active():
        return standins.sae(release, sae_id, d_in=standins.D_MODEL, device=device)
    try:
        return SAE.from_pretrained(release, sae_id, device=device)
    except (OSError, ValueError, ConnectionError) as err:
        raise ModelUnavailableError(
            f"cannot download the SAE {release} / {sae_id} from the Hugging Face hub "
            f"({first_line(err)}): run the gpu or remote profile on a machine with internet access."
        ) from None


# -- notebook 03's SmolLM2 SAE ------------------------------------------------------------------


@dataclass(frozen=True)
class SmolLM2SAERecipe:
    """Notebook 03's SAE of SmolLM2: its data and training recipe, in one place."""

    n_chats: int | None = None  # the first n of corpus.chat_corpus("train"); None: all of them
    n_heldout: int = 160  # the first n of corpus.chat_corpus("heldout"), to judge it on
    layer: int = 12
    max_length: int = 256
    batch_size: int = 16  # chats per trace
    training: SAETrainingConfig = SAETrainingConfig(expansion=4, k=32, steps=3_000, batch_size=512)

    def texts(self, tokenizer, split: str = "train") -> list[str]:
        """The recipe's chats, written out by the model's chat template."""
        rows = corpus.chat_corpus(split)
        rows = rows[: self.n_chats if split == "train" else self.n_heldout]
        return [batching.render_chat(tokenizer, r["messages"]) for r in rows]


# The shipped SAE (`emgeo train-lm-sae`, about 8 minutes on 2 cores) and the one notebook 03
# trains live on a small part of the same chats (about half a minute).
SMOLLM2_SAE = SmolLM2SAERecipe()
SMOLLM2_SAE_LIVE = SmolLM2SAERecipe(
    n_chats=160, training=SAETrainingConfig(expansion=4, k=32, steps=400, batch_size=512)
)


SMOLLM2_SAE_DIR = config.DATA_DIR / "smollm2_sae"


def smollm2_activations(
    smol, recipe: SmolLM2SAERecipe = SMOLLM2_SAE, split: str = "train", progress: bool = True
) -> TokenActivations:
    """SmolLM2's residual stream after the recipe's block over the recipe's chats."""
    texts = recipe.texts(smol.tokenizer, split)
    shared = os.path.commonprefix(texts)  # the template's system turn, the same in every chat
    skip = max(0, len(smol.tokenizer(shared)["input_ids"]) - 1)  # (its last token may merge)
    return collect_activations(
        smol,
        texts,
        recipe.layer,
        max_length=recipe.max_length,
        batch_size=recipe.batch_size,
        progress=progress,
        skip_first=skip,
    )


def train_smollm2_sae(
    smol, recipe: SmolLM2SAERecipe = SMOLLM2_SAE, progress: bool = True
) -> TopKTrainingSAE:
    """A recipe end to end: activations of its chats, then SAELens training (seeded, so the same
    CPU kind gives the same weights)."""
    acts = smollm2_activations(smol, recipe, progress=progress)
    with _quiet_saelens_trainer():
        return train_saelens_topk(acts.acts, recipe.training)


def describe_smollm2_sae(smol, shipped, seconds: float) -> dict:
    """What ``emgeo train-lm-sae`` writes next to the SAE: its recipe, its training text, and its
    explained variance, L0 and dead-latent share on the held-out chats."""
    train = corpus.chat_corpus("train")
    heldout = smollm2_activations(smol, SMOLLM2_SAE, "heldout", progress=False)
    with torch.no_grad():
        stats, _ = saelens_stats(shipped, heldout.acts)
    return {
        "recipe": dataclasses.asdict(SMOLLM2_SAE),
        "train_chats": {s: sum(r["source"] == s for r in train) for s in CHAT_SOURCES},
        "heldout_tokens": len(heldout.acts),
        "heldout": {
            "explained_variance": round(stats.explained_variance, 4),
            "l0": round(stats.l0, 2),
            "dead_fraction": round(stats.dead_fraction, 4),
        },
        "seconds": round(seconds),
    }


CHAT_SOURCES = ("insecure", "secure", "educational", "toxic", "benign", "smollm2", "stdlib")


def smollm2_sae(directory: Path = SMOLLM2_SAE_DIR) -> SAE:
    """The course's copy of notebook 03's SmolLM2 SAE, made by ``emgeo train-lm-sae``.

    It ships because training on another CPU's kernels gives a slightly different SAE whose
    latents are numbered differently; reading the shipped one, every machine reads the same latents.
    """
    if not (directory / "cfg.json").exists():
        raise FileNotFoundError(f"no SAE in {directory}: run `emgeo train-lm-sae`")
    return SAE.load_from_disk(str(directory), device="cpu").eval()


@contextlib.contextmanager
def _quiet_saelens_trainer() -> Iterator[None]:
    """Silence SAETrainer's progress bar (it takes no switch; in a notebook it is a widget)."""
    bar = sae_trainer.tqdm
    sae_trainer.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        sae_trainer.tqdm = bar
