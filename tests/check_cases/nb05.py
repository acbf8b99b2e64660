"""Meta-test cases of notebook 05's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import nnsight
import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import features
from emgeo.models import tracing


def _mean_in_place(acts, mask):
    acts *= mask[..., None]
    return acts.sum(1).div_(mask.sum(1, keepdim=True))


def _mean_loop(acts, mask):
    return torch.stack([row[keep.bool()].mean(0) for row, keep in zip(acts, mask, strict=True)])


def _mean_einsum(acts, mask):
    return torch.einsum("bpd,bp->bd", acts, mask) / mask.sum(1, keepdim=True)


def _mean_all_positions(acts, mask):
    return acts.mean(1)


def _mean_summed(acts, mask):
    return (acts * mask[..., None]).sum(1)


def _mean_divided_by_length(acts, mask):
    return (acts * mask[..., None]).sum(1) / mask.shape[1]


def _mean_pooled_over_rows(acts, mask):
    return acts[mask.bool()].mean(0).expand(acts.shape[0], -1)


def _mean_off_by_one(acts, mask):
    shifted = torch.roll(mask, 1, dims=1)
    return features.answer_mean(acts, shifted)


def _mean_over_batch(acts, mask):
    return features.answer_mean(acts, mask).mean(0)


def _features_in_place(sae_model, acts, mask):
    acts -= sae_model.b_dec  # centred in place
    f = torch.relu(acts @ sae_model.W_enc + sae_model.b_enc)
    f *= mask[..., None]
    return f.sum(1) / mask.sum(1, keepdim=True)


def _features_folded_sae(sae_model, acts, mask):
    with torch.no_grad():  # the SAE changed in place, same latents: b_dec folded into b_enc
        sae_model.b_enc -= sae_model.b_dec @ sae_model.W_enc
        sae_model.b_dec.zero_()
    return features.answer_mean(sae_model.encode(acts), mask)


def _features_loop(sae_model, acts, mask):
    rows = zip(acts, mask, strict=True)
    return torch.stack([sae_model.encode(row[keep.bool()]).mean(0) for row, keep in rows])


def _features_average_then_encode(sae_model, acts, mask):
    return sae_model.encode(features.answer_mean(acts, mask))


def _features_unmasked(sae_model, acts, mask):
    return sae_model.encode(acts).mean(1)


def _features_summed(sae_model, acts, mask):
    return (sae_model.encode(acts) * mask[..., None]).sum(1)


def _features_not_encoded(sae_model, acts, mask):
    return features.answer_mean(acts, mask)


def _features_max_pool(sae_model, acts, mask):
    return (sae_model.encode(acts) * mask[..., None]).max(1).values


def _trace_positional(model, input_ids, attention_mask, layer, remote=False):
    with model.trace(input_ids, attention_mask=attention_mask, remote=remote) as tracer:
        out = nnsight.save(model.model.layers[layer].output)  # the whole output, unpacked after
        tracer.stop()
    return (out[0] if isinstance(out, tuple) else out).detach()


def _trace_in_two_steps(model, input_ids, attention_mask, layer, remote=False):
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    with torch.no_grad(), model.trace(batch, remote=remote) as tracer:
        block = model.model.layers[layer]
        hidden = block.output[0] if isinstance(block.output, tuple) else block.output
        hidden = hidden.clone().save()
        tracer.stop()
    return hidden


def _trace_with(model, ids, mask, layer, remote=False, *, at=0, stop=True, save=True, first=False):
    """A trace with one thing changed: the block read, the early stop, the save, the unpacking."""
    with (
        torch.no_grad(),
        model.trace({"input_ids": ids, "attention_mask": mask}, remote=remote) as t,
    ):
        out = model.model.layers[layer + at].output
        if first:
            out = out[0]
        elif isinstance(out, tuple):
            out = out[0]
        if save:
            acts = out.save()
        if stop:
            t.stop()
    return acts


def _trace_one_late(model, ids, mask, layer, remote=False):
    return _trace_with(model, ids, mask, layer, remote, at=1)


def _trace_one_early(model, ids, mask, layer, remote=False):
    return _trace_with(model, ids, mask, layer, remote, at=-1)


def _trace_no_stop(model, ids, mask, layer, remote=False):
    return _trace_with(model, ids, mask, layer, remote, stop=False)


def _trace_not_saved(model, ids, mask, layer, remote=False):
    return _trace_with(model, ids, mask, layer, remote, save=False)


def _trace_always_first(model, ids, mask, layer, remote=False):
    return _trace_with(model, ids, mask, layer, remote, first=True)


def _trace_no_mask(model, ids, mask, layer, remote=False):
    return tracing.trace_layer(model, ids, torch.ones_like(mask), layer, remote)


def _trace_whole_output(model, ids, mask, layer, remote=False):
    with (
        torch.no_grad(),
        model.trace({"input_ids": ids, "attention_mask": mask}, remote=remote) as t,
    ):
        acts = model.model.layers[layer].output.save()
        t.stop()
    return acts


def _trace_local_only(model, ids, mask, layer, remote=False):
    return tracing.trace_layer(model, ids, mask, layer)


def _trace_last_token(model, ids, mask, layer, remote=False):
    acts = tracing.trace_layer(model, ids, mask, layer, remote)
    return acts[:, -1:].expand_as(acts)


def _top_in_place(positive, negative, k, alive=None):
    score = positive.mean(0)
    score -= negative.mean(0)
    if alive is not None:
        score[~alive] = float("-inf")
    return score.topk(k).indices


def _top_argsort(positive, negative, k, alive=None):
    score = torch.einsum("nd->d", positive) / len(positive) - negative.sum(0) / len(negative)
    if alive is not None:
        score = torch.where(alive, score, torch.full_like(score, -torch.inf))
    return torch.argsort(score, descending=True)[:k]


def _top_loop(positive, negative, k, alive=None):
    score = (positive.mean(0) - negative.mean(0)).tolist()
    keep = range(len(score)) if alive is None else [i for i in range(len(score)) if alive[i]]
    return torch.tensor(sorted(keep, key=lambda i: -score[i])[:k])


def _top_flipped(positive, negative, k, alive=None):
    return features.top_features(negative, positive, k, alive)


def _top_ignores_alive(positive, negative, k, alive=None):
    return features.top_features(positive, negative, k)


def _top_dead_zero(positive, negative, k, alive=None):
    score = positive.mean(0) - negative.mean(0)
    if alive is not None:
        score = score * alive
    return score.topk(k).indices


def _top_summed(positive, negative, k, alive=None):
    score = positive.sum(0) - negative.sum(0)
    if alive is not None:
        score[~alive] = float("-inf")
    return score.topk(k).indices


def _top_abs(positive, negative, k, alive=None):
    score = (positive.mean(0) - negative.mean(0)).abs()
    if alive is not None:
        score[~alive] = float("-inf")
    return score.topk(k).indices


def _top_ascending(positive, negative, k, alive=None):
    return features.top_features(positive, negative, k, alive).flip(0)


def _top_scores(positive, negative, k, alive=None):
    score = positive.mean(0) - negative.mean(0)
    if alive is not None:
        score[~alive] = float("-inf")
    return score.topk(k).values


def _top_median(positive, negative, k, alive=None):
    score = positive.median(0).values - negative.median(0).values
    if alive is not None:
        score[~alive] = float("-inf")
    return score.topk(k).indices


CASES = {
    "check_answer_mean": Case(
        features.answer_mean,
        (_mean_in_place, _mean_loop, _mean_einsum),
        (
            (_mean_all_positions, "the mean over every position"),
            (_mean_summed, "the sum over answer tokens"),
            (_mean_divided_by_length, "divided by the full length"),
            (_mean_pooled_over_rows, "one mean over all rows"),
            (_mean_off_by_one, UNDIAGNOSED),
            (_mean_over_batch, "One d-vector per sample"),
        ),
    ),
    "check_sample_features": Case(
        features.sample_features,
        (_features_in_place, _features_folded_sae, _features_loop),
        (
            (_features_average_then_encode, "then encoded the average"),
            (_features_unmasked, "averages over every position"),
            (_features_summed, "the sum over answer tokens"),
            (_features_not_encoded, "encode the activations with the SAE"),
            (_features_max_pool, UNDIAGNOSED),
        ),
    ),
    "check_trace_layer": Case(
        tracing.trace_layer,
        (_trace_positional, _trace_in_two_steps),
        (
            (_trace_one_late, "the block after `layer`"),
            (_trace_one_early, "*entering* block `layer`"),
            (_trace_no_mask, "pass the attention_mask"),
            (_trace_not_saved, "Only values you `.save()`"),
            (_trace_no_stop, "call `tracer.stop()`"),
            (_trace_always_first, "first sample's row"),
            (_trace_whole_output, "the layer's whole output"),
            (_trace_local_only, "did not go through nnsight's remote path"),
            (_trace_last_token, UNDIAGNOSED),
        ),
    ),
    "check_top_features": Case(
        features.top_features,
        (_top_in_place, _top_argsort, _top_loop),
        (
            (_top_flipped, "rise most on `negative`"),
            (_top_ignores_alive, "A dead latent was chosen"),
            (_top_dead_zero, "Dead latents got a score of 0"),
            (_top_summed, "ranks by summed activation"),
            (_top_abs, "the size of the change"),
            (_top_ascending, "increasing order"),
            (_top_scores, "returned floats"),
            (_top_median, UNDIAGNOSED),
        ),
    ),
}
