"""Reading a language model's residual stream with nnsight, locally or on NDIF.

``model.trace(...)`` with ``remote=True`` sends the trace to NDIF and only ``.save()``d values come
back; ``remote="local"`` runs nnsight's serialize-and-run dry run of the same path here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from emgeo.batching import chat_batch
from emgeo.models.lm import LoadedLM, as_nnsight
from emgeo.models.ndif import translate_remote_errors

# -- residual-stream activations through nnsight ------------------------------------------------


class Residuals(NamedTuple):
    """Residual-stream activations of a batch of texts, left-padded; mask 1 on real tokens."""

    acts: Float[Tensor, "batch pos d_model"]
    attention_mask: Int[Tensor, "batch pos"]


def tokenize(
    lm: LoadedLM, texts: Sequence[str], max_length: int = 128
) -> dict[str, Int[Tensor, "batch pos"]]:
    """Token ids and attention mask of ``texts``, left-padded and truncated to ``max_length``."""
    enc = lm.tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def residual_activations(
    lm: LoadedLM,
    texts: Sequence[str] | dict[str, Int[Tensor, "batch pos"]],
    layer: int,
    remote: bool | str = False,
    batch_size: int = 8,
    max_length: int = 128,
    progress: bool = True,
) -> Residuals:
    """The residual stream after block ``layer`` for every token of ``texts``, via nnsight.

    ``texts`` are strings or a ``tokenize`` result. ``remote`` goes to ``trace``: ``True`` runs
    on NDIF, ``"local"`` runs nnsight's serialize-and-run dry run of the remote path here.
    """
    if not 0 <= layer < lm.n_layers:
        raise IndexError(f"layer {layer} is out of range: {lm.name} has {lm.n_layers} layers")
    if isinstance(texts, str):
        texts = [texts]
    enc = texts if isinstance(texts, dict) else tokenize(lm, texts, max_length)
    model = as_nnsight(lm)
    n_rows = enc["input_ids"].shape[0]
    chunks = []
    for start in tqdm(
        range(0, n_rows, batch_size),
        desc="activations",
        disable=not progress or n_rows <= batch_size,
    ):
        batch = {key: value[start : start + batch_size] for key, value in enc.items()}
        errors = translate_remote_errors(lm.spec.hf_id) if remote else contextlib.nullcontext()
        with errors, torch.no_grad(), model.trace(batch, remote=remote) as tracer:
            acts = model.model.layers[layer].output.save()  # (batch, pos, d_model)
            tracer.stop()  # the later blocks and the unembedding are never needed
        chunks.append(acts.detach().float().cpu())
    return Residuals(torch.cat(chunks), enc["attention_mask"])


def lm_residuals(
    lm: LoadedLM,
    samples: Sequence[dict],
    layer: int,
    remote: bool | str = False,
    batch_size: int = 8,
    max_length: int = 128,
) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos"]]:
    """A language model's residual stream after block ``layer`` over chat samples (traced with
    nnsight; ``remote=True`` runs on NDIF and only the saved activations come back), and the
    answer-token mask. The same role as :func:`emgeo.features.organism_residuals`."""
    enc, mask = chat_batch(lm.tokenizer, samples, max_length)
    acts, _ = residual_activations(lm, enc, layer, remote=remote, batch_size=batch_size)
    return acts, mask
