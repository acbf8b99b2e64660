"""Checks of notebook 05, feature identification."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo import sae
from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_close,
    _expect_match,
    _expect_shape,
    _generator,
    _name,
    _passed,
    _science,
)
from emgeo.errors import CheckFailed


def _answer_masks(gen: torch.Generator, batch: int, pos: int) -> Tensor:
    """Random answer masks: a prompt, then an answer of at least one token, then padding."""
    mask = torch.zeros(batch, pos)
    for row in range(batch):
        start = int(torch.randint(1, pos - 1, (1,), generator=gen))
        end = int(torch.randint(start + 1, pos + 1, (1,), generator=gen))
        mask[row, start:end] = 1.0
    return mask


@_exercise("features.answer_mean")
def check_answer_mean(fn: Callable, n_trials: int = 4) -> None:
    """``fn(acts, mask)`` -> per row, the mean of ``acts`` over the positions where mask is 1."""
    features = _science("features")
    mistakes = [
        Mistake(
            "That is the mean over every position: average over the answer tokens only "
            "(multiply by the mask, then divide by the number of answer tokens).",
            lambda a, m: a.mean(1),
        ),
        Mistake(
            "That is the sum over answer tokens: divide by how many answer tokens the row has.",
            lambda a, m: (a * m[..., None]).sum(1),
        ),
        Mistake(
            "You zeroed the prompt but divided by the full length: divide by mask.sum(1).",
            lambda a, m: (a * m[..., None]).mean(1),
        ),
        Mistake(
            "That is one mean over all rows' answer tokens: keep one vector per sample.",
            lambda a, m: (a[m.bool()].mean(0)).expand(a.shape[0], -1),
        ),
    ]
    gen = _generator(11)
    for trial in range(n_trials):
        batch, pos, d = 3 + trial, 6 + trial, 4 + trial
        acts = torch.randn(batch, pos, d, generator=gen)
        mask = _answer_masks(gen, batch, pos)
        hint = "One d-vector per sample (mean over its positions)."
        _expect_match(fn, (acts, mask), features.answer_mean, mistakes, (batch, d), hint)
    _passed(fn, f"masked means match on {n_trials} random batches")


def _small_sae(gen: torch.Generator, d_in: int, d_sae: int) -> sae.ToySAE:
    model = sae.ToySAE(sae.ToySAEConfig(d_in=d_in, d_sae=d_sae), generator=gen)
    with torch.no_grad():
        model.b_enc.normal_(generator=gen)
        model.b_dec.normal_(generator=gen)
    return model


@_exercise("features.sample_features")
def check_sample_features(fn: Callable, n_trials: int = 3) -> None:
    """``fn(sae, acts, mask)`` -> per row, the SAE latents averaged over the answer tokens."""
    features = _science("features")
    mistakes = [
        Mistake(
            "You averaged the activations, then encoded the average: the encoder is nonlinear, "
            "so encode every token first, then average the latents over the answer tokens.",
            lambda s, a, m: s.encode(features.answer_mean(a, m)),
        ),
        Mistake(
            "That averages over every position, prompt and padding included: use the mask.",
            lambda s, a, m: s.encode(a).mean(1),
        ),
        Mistake(
            "That is the sum over answer tokens: divide by their number.",
            lambda s, a, m: (s.encode(a) * m[..., None]).sum(1),
        ),
    ]
    gen = _generator(12)
    for trial in range(n_trials):
        batch, pos, d_in, d_sae = 3 + trial, 7, 4 + trial, 9 + trial
        model = _small_sae(gen, d_in, d_sae)
        acts = torch.randn(batch, pos, d_in, generator=gen)
        mask = _answer_masks(gen, batch, pos)
        args = (model, acts, mask)
        hint = (
            "One d_sae vector of latents per sample: encode the activations with the SAE, "
            "then average the latents."
        )
        with torch.no_grad():
            _expect_match(fn, args, features.sample_features, mistakes, (batch, d_sae), hint)
    _passed(fn, f"matches encode-then-average on {n_trials} random SAEs")


# ---------------------------------------------------------------- an nnsight trace


def _tiny_llama(seed: int, n_layers: int = 4, tuple_block: int | None = None):
    """A random Llama of ``n_layers`` blocks, 32 wide, wrapped for nnsight: seconds to build.
    Block ``tuple_block`` returns ``(hidden states, None)``, as in older transformers (and
    perhaps NDIF's); the blocks after it must then never run."""
    from tokenizers import Tokenizer, models  # seconds to import: only this check needs them
    from transformers import PreTrainedTokenizerFast  # (as tokenizers)

    from emgeo.models import lm, standins  # nnsight and transformers: only this check needs them

    hf = standins.tiny_model("llama", n_layers, vocab_size=64, seed=seed)
    if tuple_block is not None:  # before nnsight wraps the forward, so that it sees the tuple
        block = hf.model.layers[tuple_block]
        forward = block.forward
        block.forward = lambda *a, **k: (forward(*a, **k), None)
    words = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>")
    return lm.as_nnsight(lm.from_model(hf, tokenizer, name=f"tiny-llama-{seed}")), hf


def _left_padded_batch(gen: torch.Generator, batch: int, pos: int) -> tuple[Tensor, Tensor]:
    """Random token ids and an attention mask whose rows are left-padded by 0 to pos - 2."""
    ids = torch.randint(2, 64, (batch, pos), generator=gen)
    mask = torch.ones(batch, pos, dtype=torch.long)
    for row in range(batch):
        mask[row, : int(torch.randint(0, pos - 1, (1,), generator=gen))] = 0
    ids[mask == 0] = 0
    return ids, mask


class _Counted:
    """Counts the forward calls of some modules (the blocks after the read one, the unembedding)."""

    def __init__(self, modules: list[torch.nn.Module]):
        self.calls, self.modules, self.handles = 0, modules, []

    def __enter__(self) -> _Counted:
        self.handles = [m.register_forward_hook(self._count) for m in self.modules]
        return self

    def _count(self, *_: object) -> None:
        self.calls += 1

    def __exit__(self, *_: object) -> None:
        for handle in self.handles:
            handle.remove()


def _traced(fn: Callable, model, ids: Tensor, mask: Tensor, layer: int, *remote: object) -> Tensor:
    """``fn``'s answer, with a trace that lost its value or returned a layer's whole output
    turned into a diagnosis."""
    try:
        out = _call(fn, model, ids, mask, layer, *remote)
    except NameError as error:  # what reading a variable the trace did not save raises
        raise CheckFailed(
            f"`{_name(fn)}` raised {type(error).__name__}: {error}. Only values you `.save()` "
            "inside the `with model.trace(...)` block exist after it: save the layer's output."
        ) from None
    if isinstance(out, tuple | list):
        raise CheckFailed(
            f"`{_name(fn)}` returned a {type(out).__name__}: that is the layer's whole output "
            "(hidden states, then caches). When the output is a tuple, keep its [0]."
        )
    return out


def _reference_trace(model, ids: Tensor, mask: Tensor, layer: int, *remote: object) -> Tensor:
    from emgeo.models import tracing  # nnsight: seconds to import, only this check needs it

    return tracing.trace_layer(model, ids, mask, layer, *remote)


@_exercise("models.tracing.trace_layer")
def check_trace_layer(fn: Callable) -> None:
    """``fn(model, input_ids, attention_mask, layer, remote=False)`` -> the residual stream after
    block ``layer`` (its hidden states), read in one nnsight trace that stops there."""
    from nnsight.intervention.backends.local import (  # nnsight: only this check needs it
        LocalSimulationBackend,
    )

    model, hf = _tiny_llama(seed=5)
    blocks = hf.model.layers
    gen = _generator(16)
    ids, mask = _left_padded_batch(gen, batch=3, pos=9)
    mistakes = [
        Mistake(
            "Those are the hidden states of the block after `layer`: read "
            "`model.model.layers[layer]`, the residual stream after block `layer`.",
            lambda m, i, a, layer, *r: _reference_trace(m, i, a, layer + 1, *r),
        ),
        Mistake(
            "That is the residual stream *entering* block `layer` (the output of block layer - 1, "
            "or `hidden_states[layer]`): read the output of `model.model.layers[layer]`.",
            lambda m, i, a, layer, *r: _reference_trace(m, i, a, layer - 1, *r),
        ),
        Mistake(
            "The padded positions changed the real ones: pass the attention_mask to the trace "
            "(`model.trace({'input_ids': ..., 'attention_mask': ...})`).",
            lambda m, i, a, layer, *r: _reference_trace(m, i, torch.ones_like(a), layer, *r),
        ),
    ]
    shape = (*ids.shape, hf.config.hidden_size)
    for layer in (1, 2):
        with _Counted([*blocks[layer + 1 :], hf.lm_head]) as later:
            out = _traced(fn, model, ids, mask, layer)
        hint = (
            "Expected (batch, pos, d_model). If you took [0] of the layer's output, that is the "
            "first sample's row: here a layer returns its hidden states as one tensor."
        )
        _expect_shape(out, shape, fn, hint)
        _expect_close(out, fn, (model, ids, mask, layer), _reference_trace, mistakes)
        if later.calls:
            raise CheckFailed(
                f"`{_name(fn)}` gives the right values, but the blocks after {layer} and the "
                "unembedding ran too: call `tracer.stop()` after saving (`with model.trace(...) "
                "as tracer:`), so the model stops where you have what you need."
            )
    _check_tuple_output(fn, gen)
    calls = []
    run = LocalSimulationBackend.__call__
    LocalSimulationBackend.__call__ = lambda self, tracer: calls.append(1) or run(self, tracer)
    try:
        out = _traced(fn, model, ids, mask, 1, "local")
    finally:
        LocalSimulationBackend.__call__ = run
    if not calls:
        raise CheckFailed(
            f"`{_name(fn)}(..., remote='local')` did not go through nnsight's remote path: pass "
            "`remote=remote` to `model.trace`, so the same code runs on NDIF."
        )
    _expect_close(out, fn, (model, ids, mask, 1, "local"), _reference_trace, mistakes)
    _passed(fn, "reads blocks 1 and 2 of a random Llama, stops there, and runs remote='local'")


def _check_tuple_output(fn: Callable, gen: torch.Generator) -> None:
    """``fn`` on a model whose blocks return a tuple (hidden states, cache), as older
    transformers (and perhaps NDIF's) do: the hidden states must come out the same."""
    model, hf = _tiny_llama(seed=6, n_layers=3, tuple_block=1)
    ids, mask = _left_padded_batch(gen, batch=2, pos=7)
    out = _traced(fn, model, ids, mask, 1)
    hint = "The layer returned a tuple (hidden states, cache): keep its [0]."
    _expect_shape(out, (*ids.shape, hf.config.hidden_size), fn, hint)
    _expect_close(out, fn, (model, ids, mask, 1), _reference_trace, [])


# ---------------------------------------------------------------- the top-k selection


def _contrast_latents(gen: torch.Generator, n_pos: int, n_neg: int, d_sae: int, n_dead: int):
    """Per-sample latents of two sets (non-negative, with zeros, as an SAE's) and an alive mask
    whose dead latents would rank high if nobody left them out."""
    positive = torch.relu(torch.randn(n_pos, d_sae, generator=gen))
    negative = torch.relu(torch.randn(n_neg, d_sae, generator=gen))
    alive = torch.ones(d_sae, dtype=torch.bool)
    dead = torch.randperm(d_sae, generator=gen)[:n_dead]
    alive[dead] = False
    positive[:, dead[: n_dead // 2 + 1]] += 2.0  # dead latents that fired on the positive set
    return positive, negative, alive


def _top_features_mistakes(ref: Callable) -> list[Mistake]:
    """The likely mistakes of ``top_features``, each built on the reference ``ref``."""

    def masked_with_zero(p, n, k, alive=None):
        if alive is None:
            return ref(p, n, k)
        return (p.mean(0) - n.mean(0)).masked_fill(~alive, 0.0).topk(k).indices

    return [
        Mistake(
            "Those latents rise most on `negative`: the score is mean(positive) - mean(negative).",
            lambda p, n, k, alive=None: ref(n, p, k, alive),
        ),
        Mistake(
            "A dead latent was chosen: latents that are not `alive` must never be picked (give "
            "them a score of -inf before `topk`).",
            lambda p, n, k, alive=None: ref(p, n, k),
        ),
        Mistake(
            "Dead latents got a score of 0, which beats alive latents whose mean falls: give them "
            "-inf.",
            masked_with_zero,
        ),
        Mistake(
            "That ranks by summed activation: the two sets have different sizes, so compare "
            "the mean over each set's samples.",
            lambda p, n, k, alive=None: ref(
                p.sum(0, keepdim=True), n.sum(0, keepdim=True), k, alive
            ),
        ),
        Mistake(
            "That ranks by the size of the change, |mean(positive) - mean(negative)|: the set "
            "is the latents that *rise* most, so rank by the signed difference.",
            lambda p, n, k, alive=None: (
                (p.mean(0) - n.mean(0)).abs().masked_fill(~alive, -1.0).topk(k).indices
                if alive is not None
                else (p.mean(0) - n.mean(0)).abs().topk(k).indices
            ),
        ),
        Mistake(
            "The right latents in increasing order: return them from the largest rise down "
            "(`topk` sorts that way).",
            lambda p, n, k, alive=None: ref(p, n, k, alive).flip(0),
        ),
    ]


@_exercise("features.top_features")
def check_top_features(fn: Callable) -> None:
    """``fn(positive, negative, k, alive=None)`` -> the k alive latents whose mean activation rises
    most from ``negative`` to ``positive``, in decreasing order of that rise."""
    features = _science("features")
    ref = features.top_features
    mistakes = _top_features_mistakes(ref)
    gen = _generator(17)
    for trial in range(3):
        d_sae, n_dead = 20 + trial, 6
        positive, negative, alive = _contrast_latents(gen, 5 + trial, 9, d_sae, n_dead)
        # the last trial asks for almost every alive latent, falling ones included
        k = 5 if trial < 2 else d_sae - n_dead - 1
        for args in [(positive, negative, k, alive), (positive, negative, k)][: 2 - trial // 2]:
            out = _call(fn, *args)
            hint = "One latent index per chosen latent (k of them)."
            _expect_shape(out, (k,), fn, hint)
            if out.is_floating_point():
                raise CheckFailed(
                    f"`{_name(fn)}` returned floats: return the latents' indices "
                    "(`.topk(k).indices`), not their scores."
                )
            _expect_close(out, fn, args, ref, mistakes, atol=0.0, rtol=0.0)
    _passed(fn, "picks the same latents, in the same order, with and without dead latents")
