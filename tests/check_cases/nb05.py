"""Meta-test cases of notebook 05's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import features


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
}
