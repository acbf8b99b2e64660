"""Reading a language model's residual stream with nnsight, locally or on NDIF.

``model.trace(...)`` with ``remote=True`` sends the trace to NDIF and only ``.save()``d values come
back; ``remote="local"`` runs nnsight's serialize-and-run dry run of the same path here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from nnsight import TransformersModel
from torch import Tensor
from tqdm.auto import tqdm

from emgeo.batching import chat_batch, common_prefix, encode_sample, split_after_prefix
from emgeo.models import standins
from emgeo.models.lm import LoadedLM, as_nnsight, causal_lm, repeat_cache
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


def trace_layer(
    model: TransformersModel,
    input_ids: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch keys"],  # keys = pos, or cached tokens + pos
    layer: int,
    remote: bool | str = False,
    *,
    past_key_values: object | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """One nnsight trace of ``model`` (an nnsight wrapper): the residual stream after block
    ``layer``, saved, with the run stopped there (the later blocks and the unembedding never run).
    ``remote`` goes to ``trace``: ``True`` runs on NDIF, ``"local"`` simulates it here.
    ``past_key_values`` (a transformers cache of tokens that come before every row, with an
    ``attention_mask`` that covers them too) makes ``input_ids`` their continuation."""
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    extra = {} if past_key_values is None else {"past_key_values": past_key_values}
    with torch.no_grad(), model.trace(batch, remote=remote, **extra) as tracer:
        out = model.model.layers[layer].output
        # A decoder layer returns its hidden states alone in recent transformers and a tuple
        # (hidden states, caches...) in older ones; NDIF's transformers decides, so handle both.
        if isinstance(out, (tuple, list)):
            out = out[0]
        acts = out.save()  # (batch, pos, d_model)
        tracer.stop()
    return acts


# (model, input_ids, attention_mask, layer, remote[, past_key_values=...]), as trace_layer
Trace = Callable[..., Tensor]


def batch_residuals(
    lm: LoadedLM,
    batch: dict[str, Int[Tensor, "batch _"]],
    layer: int,
    remote: bool | str = False,
    trace: Trace = trace_layer,
    prefix: object | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream after block ``layer`` for one batch of tokens, read by ``trace`` (a
    function like :func:`trace_layer`, e.g. a learner's), where the trace ran (the model's device
    locally; the CPU for a remote trace), in the model's dtype. ``remote=True`` runs on NDIF
    (nnsight's local simulation of it under stand-ins). ``prefix`` (:func:`prefix_cache`, local
    runs only) holds the keys and values of tokens every row continues; ``trace`` then gets a
    copy of it for each row as ``past_key_values``."""
    model = as_nnsight(lm)
    remote = standins.remote_mode(remote)
    if not remote and model.dispatched:  # (an undispatched meta build loads its weights first)
        batch = {key: value.to(lm.device) for key, value in batch.items()}
    errors = translate_remote_errors(lm.spec.hf_id) if remote else contextlib.nullcontext()
    extra = {}
    if prefix is not None:
        if remote:
            raise ValueError("a prefix cache is local: NDIF runs each chat whole")
        extra["past_key_values"] = repeat_cache(prefix, batch["input_ids"].shape[0])
    with errors:
        acts = trace(model, batch["input_ids"], batch["attention_mask"], layer, remote, **extra)
    return acts.detach()


@torch.no_grad()
def prefix_cache(lm: LoadedLM, ids: Sequence[int]) -> object:
    """The keys and values of the tokens ``ids`` in every layer of ``lm`` (one row): what
    :func:`batch_residuals` continues from when every chat of a batch starts with them."""
    ids = torch.tensor([list(ids)], device=lm.device)
    return causal_lm(lm.model).get_decoder()(input_ids=ids, use_cache=True).past_key_values


def residual_activations(
    lm: LoadedLM,
    texts: Sequence[str] | dict[str, Int[Tensor, "batch pos"]],
    layer: int,
    remote: bool | str = False,
    batch_size: int = 8,
    max_length: int = 128,
    progress: bool = True,
    trace: Trace = trace_layer,
) -> Residuals:
    """The residual stream after block ``layer`` for every token of ``texts``, via nnsight, on
    the CPU in float32.

    ``texts`` are strings or a ``tokenize`` result. ``remote`` goes to ``trace``: ``True`` runs
    on NDIF, ``"local"`` runs nnsight's serialize-and-run dry run of the remote path here. This
    keeps every activation; to reduce them batch by batch, call :func:`batch_residuals`.
    ``trace`` reads one batch (:func:`trace_layer`, or a function with its signature).
    """
    _check_layer(lm, layer)
    if isinstance(texts, str):
        texts = [texts]
    enc = texts if isinstance(texts, dict) else tokenize(lm, texts, max_length)
    n_rows = enc["input_ids"].shape[0]
    chunks = []
    for start in tqdm(
        range(0, n_rows, batch_size),
        desc="activations",
        disable=not progress or n_rows <= batch_size,
    ):
        batch = {key: value[start : start + batch_size] for key, value in enc.items()}
        chunks.append(batch_residuals(lm, batch, layer, remote, trace).float().cpu())
    return Residuals(torch.cat(chunks), enc["attention_mask"])


def _check_layer(lm: LoadedLM, layer: int) -> None:
    if not 0 <= layer < lm.n_layers:
        raise IndexError(f"layer {layer} is out of range: {lm.name} has {lm.n_layers} layers")


def lm_residuals(
    lm: LoadedLM,
    samples: Sequence[dict],
    layer: int,
    remote: bool | str = False,
    batch_size: int = 8,
    max_length: int = 128,
    trace: Trace = trace_layer,
) -> tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos"]]:
    """A language model's residual stream after block ``layer`` over chat samples (traced with
    nnsight; ``remote=True`` runs on NDIF and only the saved activations come back), and the
    answer-token mask. The same role as :func:`emgeo.features.organism_residuals`; it keeps every
    activation on the CPU, so a large set should go through :func:`iter_chat_residuals`."""
    enc, mask = chat_batch(lm.tokenizer, samples, max_length)
    acts, _ = residual_activations(
        lm, enc, layer, remote=remote, batch_size=batch_size, trace=trace
    )
    return acts, mask


def iter_chat_residuals(
    lm: LoadedLM,
    samples: Sequence[dict],
    layer: int,
    remote: bool | str = False,
    batch_size: int = 8,
    max_length: int = 128,
    trace: Trace = trace_layer,
    share_prefix: bool = False,
) -> Iterator[tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos"]]]:
    """:func:`lm_residuals` one batch at a time: each batch's activations (where the trace left
    them, in the model's dtype) and answer mask, each batch padded only to its own longest chat,
    so memory stays that of one batch however many samples there are. ``trace`` reads one batch
    (:func:`trace_layer`, or a function with its signature).

    ``share_prefix`` (local runs): the tokens all ``samples`` start with (a chat template's
    system turn, a shared instruction) run once, and every batch continues from their keys and
    values, so each batch reads only the rest of its chats (right-padded; the answer mask says
    which positions are answers). ``trace`` must then take ``past_key_values``, as
    :func:`trace_layer` does. The activations equal a whole-chat trace's to float rounding."""
    _check_layer(lm, layer)
    if share_prefix and not standins.remote_mode(remote) and samples:
        encoded = [encode_sample(lm.tokenizer, s, max_length) for s in samples]
        n = common_prefix(encoded)
        if n:
            prefix = prefix_cache(lm, encoded[0][0][:n])
            for start in range(0, len(samples), batch_size):
                batch = encoded[start : start + batch_size]
                enc, mask = split_after_prefix(batch, lm.tokenizer.pad_token_id, n)
                yield batch_residuals(lm, enc, layer, remote, trace, prefix), mask
            return
    for start in range(0, len(samples), batch_size):
        enc, mask = chat_batch(lm.tokenizer, samples[start : start + batch_size], max_length)
        yield batch_residuals(lm, enc, layer, remote, trace), mask


# -- the unembedding ------------------------------------------------------------------------------


def unembed(
    lm: LoadedLM, directions: Float[Tensor, "n d_model"], remote: bool | str = False
) -> Float[Tensor, "n vocab"]:
    """``directions`` read out by the model's unembedding (the logit lens), on the CPU in float32.

    The product is taken where the weights are: on the model's device, or for a remote model
    (whose local copy holds only meta tensors) in a small NDIF trace that sends the directions
    and brings back ``n`` rows of logits, never the vocab x d_model matrix.
    """
    head = lm.model.get_output_embeddings()
    remote = standins.remote_mode(remote)
    if not remote:
        weight = head.weight.detach()
        return (directions.to(weight.device, weight.dtype) @ weight.T).float().cpu()
    model = as_nnsight(lm)
    probe = tokenize(lm, [lm.tokenizer.bos_token or " "], max_length=1)
    with translate_remote_errors(lm.spec.hf_id), torch.no_grad():
        with model.trace(probe, remote=remote) as tracer:
            weight = model.lm_head.weight
            logits = (directions.to(weight.device, weight.dtype) @ weight.T).save()
            tracer.stop()
    return logits.float().cpu()
