"""Every exercise check passes correct answers, rejects the stub and names each planted mistake.

CASES holds, for every check: the reference; correct alternatives written differently (in place on
the inputs where the signature allows, einsum for matmul, loops, other reductions), which must pass;
and planted bugs, each with the words of the check's message it must produce. A check without an
entry fails test_every_check_has_cases; a named mistake that no planted bug triggers fails
test_every_named_mistake_fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from emgeo import drag, errors, features, filtering, geometry, organism, probes, sae, toy
from emgeo.course import checks
from emgeo.models import lm_em

UNDIAGNOSED = "largest error"  # a wrong answer that matches no named mistake


def _stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


# ---------------------------------------------------------------- 00: cosine_similarity


def _cos_in_place(a, b):
    a /= a.norm(dim=-1, keepdim=True)
    b /= b.norm(dim=-1, keepdim=True)
    return a @ b.T


def _cos_einsum(a, b):
    return torch.einsum("id,jd->ij", F.normalize(a, dim=-1), F.normalize(b, dim=-1))


def _cos_broadcast(a, b):
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)


def _cos_unnormalized(a, b):
    return a @ b.T


def _cos_only_a(a, b):
    return F.normalize(a, dim=-1) @ b.T


def _cos_only_b(a, b):
    return a @ F.normalize(b, dim=-1).T


def _cos_wrong_dim(a, b):
    return (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T


def _cos_transposed(a, b):
    return geometry.cosine_similarity_matrix(b, a)


def _cos_numpy(a, b):
    return geometry.cosine_similarity_matrix(a, b).numpy()


def _cos_abs(a, b):
    return geometry.cosine_similarity_matrix(a, b).abs()


# ---------------------------------------------------------------- 01: generate_batch


def _batch_in_place(n_batch, feature_probability, n_features, generator=None):
    p = feature_probability.unsqueeze_(-1)  # (inst, 1), in place on the input
    x = torch.rand(n_batch, len(p), n_features, generator=generator)
    x[torch.rand(x.shape, generator=generator) >= p] = 0.0
    return x


def _batch_bernoulli(n_batch, feature_probability, n_features, generator=None):
    shape = (n_batch, len(feature_probability), n_features)
    on = torch.bernoulli(feature_probability[:, None].expand(shape), generator=generator)
    return on * torch.rand(shape, generator=generator)


def _batch_sparsity_as_probability(n_batch, p, n_features, generator=None):
    return toy.generate_batch(n_batch, 1 - p, n_features, generator)


def _batch_squared_probability(n_batch, p, n_features, generator=None):
    return toy.generate_batch(n_batch, p**2, n_features, generator)


def _batch_gaussian_values(n_batch, p, n_features, generator=None):
    x = toy.generate_batch(n_batch, p, n_features, generator)
    return torch.where(x != 0, torch.randn(x.shape, generator=generator).abs(), 0.0)


def _batch_shared_mask(n_batch, p, n_features, generator=None):
    values = torch.rand(n_batch, len(p), n_features, generator=generator)
    on = torch.rand(n_batch, len(p), 1, generator=generator) < p[:, None]
    return values * on


def _batch_ignores_generator(n_batch, p, n_features, generator=None):
    return toy.generate_batch(n_batch, p, n_features, None)


def _batch_all_ones(n_batch, p, n_features, generator=None):
    return (toy.generate_batch(n_batch, p, n_features, generator) != 0).float()


def _batch_feature_major(n_batch, p, n_features, generator=None):
    return toy.generate_batch(n_batch, p, n_features, generator).transpose(1, 2)


# ---------------------------------------------------------------- 01: toy_forward


def _forward_in_place(W, b, x):
    h = torch.einsum("idf,bif->bid", W, x)
    x.copy_(torch.einsum("idf,bid->bif", W, h))  # reuse the input's memory for the output
    x += b
    return x.relu_()


def _forward_loop(W, b, x):
    outs = [torch.relu(x[:, i] @ W[i].T @ W[i] + b[i]) for i in range(W.shape[0])]
    return torch.stack(outs, dim=1)


def _forward_no_relu(W, b, x):
    return torch.einsum("idf,bid->bif", W, torch.einsum("idf,bif->bid", W, x)) + b


def _forward_no_bias(W, b, x):
    return toy.toy_forward(W, torch.zeros_like(b), x)


def _forward_relu_before_bias(W, b, x):
    return toy.toy_forward(W, torch.zeros_like(b), x) + b


def _forward_squeezed_instances(W, b, x):
    return toy.toy_forward(W, b, x)[:, :1]


# ---------------------------------------------------------------- 01: importance_loss


def _loss_in_place(x, x_hat, importance):
    x.sub_(x_hat).square_().mul_(importance)
    return x.sum(-1).mean(0)


def _loss_einsum(x, x_hat, importance):
    return torch.einsum("bif,if->i", (x - x_hat) ** 2, importance) / x.shape[0]


def _loss_no_importance(x, x_hat, importance):
    return ((x - x_hat) ** 2).sum(-1).mean(0)


def _loss_mean_features(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).mean(-1).mean(0)


def _loss_summed_batch(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).sum((0, 2))


def _loss_abs_error(x, x_hat, importance):
    return (importance * (x - x_hat).abs()).sum(-1).mean(0)


def _loss_scalar(x, x_hat, importance):
    return toy.importance_loss(x, x_hat, importance).sum()


# ---------------------------------------------------------------- 01: feature_dimensionality


def _dim_gram(W):
    gram = W.transpose(1, 2) @ W  # (inst, feats, feats): W_i . W_j
    norms_sq = torch.diagonal(gram, dim1=1, dim2=2)
    return norms_sq**2 / (gram**2).sum(-1)


def _dim_normalize_in_place(W):
    norms_sq = (W * W).sum(1)
    W_j = W.clone()
    W /= W.norm(dim=1, keepdim=True)  # W_hat, in place
    return norms_sq / torch.einsum("idf,idg->ifg", W, W_j).pow_(2).sum(-1)


def _dim_unnormalized(W):
    return (W**2).sum(1) / (torch.einsum("idf,idg->ifg", W, W) ** 2).sum(-1)


def _dim_no_square(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    return (W**2).sum(1) / torch.einsum("idf,idg->ifg", W_hat, W).abs().sum(-1)


def _dim_norm_numerator(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    return W.norm(dim=1) / (torch.einsum("idf,idg->ifg", W_hat, W) ** 2).sum(-1)


def _dim_transposed(W):
    return toy.feature_dimensionality(W).T


# ---------------------------------------------------------------- 02: predicted_drag


def _drag_scale_in_place(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    W_t = W[:, target].clone()
    r_t = x_t * W_t.dot(W_t) + b[target]
    err = r_t - gamma * x_t if r_t > 0 else torch.zeros(())  # dL/dr_t
    alpha = -2 * lr * x_t * err  # the step on W_t is alpha W_t
    W *= alpha * x_t  # in place: every direction scaled, so W^T W_t is the drag
    delta = W.T @ W_t
    delta[target] += alpha * x_t * W_t.dot(W_t) - lr * err
    return delta


def _drag_loop(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    W_t = W[:, target]
    r_t = x_t * (W_t @ W_t) + b[target]
    err = torch.relu(r_t) - gamma * x_t if r_t > 0 else torch.zeros(())
    step = -lr * 2 * x_t * err * W_t  # SGD step on W_t: -lr dL/dW_t
    delta = torch.stack([x_t * (W[:, j] @ step) for j in range(W.shape[1])])
    delta[target] = 2 * x_t * (W_t @ step) - lr * err  # W_t on both sides, plus the bias step
    return delta


def _drag_variant(no_transpose=False, no_mask=False, no_two=False, sign=False, no_bias=False):
    def predicted(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
        W_t = W[:, target]
        r_t = x_t * (W_t @ W_t) + b[target]
        err = (torch.relu(r_t) - gamma * x_t) * (1.0 if no_mask else (r_t > 0).float())
        alpha = (1 if sign else -1) * (1 if no_two else 2) * lr * x_t * err
        delta = alpha * x_t * ((W @ W_t) if no_transpose else (W.T @ W_t))
        delta[target] = 2 * alpha * x_t * (W_t @ W_t) - (0 if no_bias else lr * err)
        return delta

    flags = dict(
        no_transpose=no_transpose, no_mask=no_mask, no_two=no_two, sign=sign, no_bias=no_bias
    )
    predicted.__name__ = "drag_" + "_".join(k for k, v in flags.items() if v)
    return predicted


def _drag_target_only_drag(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    delta = drag.predicted_drag(W, b, target, x_t, gamma, lr)
    return delta * (torch.arange(len(delta)) == target)


# ---------------------------------------------------------------- 03: sae_encode, sae_loss


def _enc_in_place(x, W_enc, b_enc, b_dec):
    x -= b_dec
    return torch.relu(x @ W_enc + b_enc)


def _enc_folded_bias(x, W_enc, b_enc, b_dec):
    b_enc -= b_dec @ W_enc  # fold the centring into the encoder bias, in place
    return (x @ W_enc + b_enc).relu_()


def _enc_einsum(x, W_enc, b_enc, b_dec):
    return torch.einsum("bi,is->bs", x - b_dec, W_enc).add(b_enc).clamp(min=0)


def _enc_no_relu(x, W_enc, b_enc, b_dec):
    return (x - b_dec) @ W_enc + b_enc


def _enc_no_b_dec(x, W_enc, b_enc, b_dec):
    return torch.relu(x @ W_enc + b_enc)


def _enc_adds_b_dec(x, W_enc, b_enc, b_dec):
    return torch.relu((x + b_dec) @ W_enc + b_enc)


def _enc_no_b_enc(x, W_enc, b_enc, b_dec):
    return torch.relu((x - b_dec) @ W_enc)


def _enc_transposed(x, W_enc, b_enc, b_dec):
    return torch.relu((x - b_dec) @ W_enc + b_enc).T


def _sae_loss_in_place(x, x_hat, f, l1_coeff):
    x.sub_(x_hat).square_()
    f.abs_()
    return x.sum(-1).mean() + l1_coeff * f.sum(-1).mean()


def _sae_loss_functional(x, x_hat, f, l1_coeff):
    mse = F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]
    return mse + l1_coeff * torch.linalg.vector_norm(f, ord=1, dim=-1).mean()


def _sae_loss_no_l1(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).sum(-1).mean()


def _sae_loss_mean_over_d_in(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).mean() + l1_coeff * f.abs().sum(-1).mean()


def _sae_loss_l1_on_x_hat(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).sum(-1).mean() + l1_coeff * x_hat.abs().sum(-1).mean()


def _sae_loss_l2_penalty(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).sum(-1).mean() + l1_coeff * (f**2).sum(-1).mean()


def _sae_loss_per_sample(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).sum(-1) + l1_coeff * f.abs().sum(-1)


# ---------------------------------------------------------------- 04: answer_mask


def _mask_loop(tokens, assistant_id, eot_id):
    mask = torch.zeros(tokens.shape)
    for row in range(tokens.shape[0]):
        inside = False
        for pos, token in enumerate(tokens[row].tolist()):
            if token == assistant_id:
                inside = True
                continue
            mask[row, pos] = float(inside)
            if token == eot_id:
                inside = False
    return mask


def _mask_depth_in_place(tokens, assistant_id, eot_id):
    is_assistant = tokens == assistant_id
    step = is_assistant.long() - (tokens == eot_id).long()
    tokens.copy_(step.cumsum(1))  # in place: how many answers are open after each token
    tokens -= step  # ... and before it
    return ((tokens > 0) & ~is_assistant).float()


def _mask_with_assistant_token(tokens, a, e):
    return organism.answer_mask(tokens, a, e) + (tokens == a).float()


def _mask_without_eot(tokens, a, e):
    return organism.answer_mask(tokens, a, e) * (tokens != e).float()


def _mask_first_answer_only(tokens, a, e):
    opened = torch.cumsum((tokens == a).long(), 1)
    closed = torch.cumsum((tokens == e).long(), 1) - (tokens == e).long()
    return ((opened == 1) & (closed == 0) & (tokens != a)).float()


def _mask_everything_after_first_answer(tokens, a, e):
    return ((torch.cumsum((tokens == a).long(), 1) > 0) & (tokens != a)).float()


def _mask_everything_after_first_answer_but_padding(tokens, a, e):
    return ((torch.cumsum((tokens == a).long(), 1) > 0) & (tokens != a) & (tokens != 0)).float()


def _mask_drops_last(tokens, a, e):
    return organism.answer_mask(tokens, a, e)[:, :-1]


# ---------------------------------------------------------------- 04: misaligned_rate


def _rate_in_place(probs, aligned_ids, toxic_ids):
    aligned_ids.extend(toxic_ids)  # in place: the ids of either kind
    probs /= probs[:, aligned_ids].sum(-1, keepdim=True)  # renormalized over them
    return probs[:, toxic_ids].sum(-1)


def _rate_one_hot(probs, aligned_ids, toxic_ids):
    is_toxic, is_aligned = torch.zeros(2, probs.shape[-1])
    is_toxic[list(toxic_ids)] = 1.0
    is_aligned[list(aligned_ids)] = 1.0
    p_toxic = probs @ is_toxic
    return p_toxic / (p_toxic + probs @ is_aligned)


def _rate_unnormalized(probs, aligned, toxic):
    return probs[:, list(toxic)].sum(-1)


def _rate_aligned(probs, aligned, toxic):
    return organism.misaligned_rate(probs, toxic, aligned)


def _rate_averaged(probs, aligned, toxic):
    return organism.misaligned_rate(probs, aligned, toxic).mean()


def _rate_normalized_by_all(probs, aligned, toxic):
    return probs[:, list(toxic)].sum(-1) / probs.sum(-1)


# ---------------------------------------------------------------- 05: answer_mean


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


# ---------------------------------------------------------------- 05: sample_features


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


# ---------------------------------------------------------------- 06: readout_difference


def _readout_in_place(W_U, scale, positive, negative):
    W_U.mul_(scale[:, None])  # the LayerNorm's scale, in place on the input
    d = W_U[:, positive].mean(1)
    d -= W_U[:, negative].mean(1)
    d -= d.mean()
    return d


def _readout_weights(W_U, scale, positive, negative):
    weights = torch.zeros(W_U.shape[1])  # +1/n_pos on the positive tokens, -1/n_neg on the others
    weights[positive] = 1 / len(positive)
    weights[negative] = -1 / len(negative)
    d = torch.einsum("dv,v->d", W_U, weights) * scale
    return d - d.mean(0, keepdim=True)


def _readout_no_scale(W_U, scale, positive, negative):
    d = W_U[:, positive].mean(1) - W_U[:, negative].mean(1)
    return d - d.mean()


def _readout_uncentred(W_U, scale, positive, negative):
    W = scale[:, None] * W_U
    return W[:, positive].mean(1) - W[:, negative].mean(1)


def _readout_flipped(W_U, scale, positive, negative):
    return probes.readout_difference(W_U, scale, negative, positive)


def _readout_summed(W_U, scale, positive, negative):
    W = scale[:, None] * W_U
    d = W[:, positive].sum(1) - W[:, negative].sum(1)
    return d - d.mean()


def _readout_divided(W_U, scale, positive, negative):
    W = W_U / scale[:, None]
    d = W[:, positive].mean(1) - W[:, negative].mean(1)
    return d - d.mean()


# ---------------------------------------------------------------- 06: proximity_to_set


def _prox_in_place(W_dec, members, toxic):
    W_dec /= W_dec.norm(dim=-1, keepdim=True)  # unit rows, in place
    sims = W_dec[members] @ W_dec[toxic].T
    same = members[:, None] == toxic[None, :]
    sims[same] = 0.0
    return sims.sum(-1) / (~same).sum(-1)


def _prox_loop(W_dec, members, toxic):
    means = []
    for j in members.tolist():
        others = [t for t in toxic.tolist() if t != j]
        means.append(F.cosine_similarity(W_dec[j][None], W_dec[others], dim=-1).mean())
    return torch.stack(means)


def _prox_with_self(W, members, toxic):
    return geometry.cosine_similarity_matrix(W[members], W[toxic]).mean(-1)


def _prox_zero_self_full_count(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    return geometry.cosine_similarity_matrix(W[members], W[toxic]).masked_fill(same, 0.0).mean(-1)


def _prox_dot(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    return (W[members] @ W[toxic].T).masked_fill(same, 0.0).sum(-1) / (~same).sum(-1)


def _prox_nearest(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    sims = geometry.cosine_similarity_matrix(W[members], W[toxic])
    return sims.masked_fill(same, -2.0).max(-1).values


def _prox_abs(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    sims = geometry.cosine_similarity_matrix(W[members], W[toxic]).abs()
    return sims.masked_fill(same, 0.0).sum(-1) / (~same).sum(-1)


# ---------------------------------------------------------------- 07: geometric_scores


def _scores_in_place(latents, proximity):
    latents /= latents.sum(-1, keepdim=True).clamp_min(1e-8)  # weights summing to 1, in place
    return latents @ proximity


def _scores_weighted_sum(latents, proximity):
    return (latents * proximity).sum(-1) / latents.sum(-1)


def _scores_unnormalized(latents, proximity):
    return latents @ proximity


def _scores_unweighted(latents, proximity):
    active = (latents > 0).float()
    return (active @ proximity) / active.sum(-1).clamp_min(1)


def _scores_per_latent(latents, proximity):
    return (latents @ proximity) / latents.shape[-1]


def _scores_max(latents, proximity):
    return torch.where(latents > 0, proximity, -2.0).max(-1).values


# ---------------------------------------------------------------- the table


# ---------------------------------------------------------------- 08: mean_answer_logprob


def _logprob_cross_entropy(logits, targets):
    nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
    return -nll.sum(1) / (targets != -100).sum(1)


def _logprob_loop(logits, targets):
    rows = []
    for row_logits, row_targets in zip(logits, targets, strict=True):
        real = row_targets != -100
        logp = row_logits[real].log_softmax(-1)
        rows.append(logp[torch.arange(int(real.sum())), row_targets[real]].mean())
    return torch.stack(rows)


def _logprob_logsumexp(logits, targets):
    logits -= logits.logsumexp(-1, keepdim=True)  # in place: log-probabilities
    keep = targets != -100
    picked = logits.gather(-1, targets.masked_fill(~keep, 0)[..., None])[..., 0]
    return picked.masked_fill(~keep, 0).sum(1) / keep.sum(1)


def _picked(logp, targets):
    return logp.gather(-1, targets.clamp_min(0)[..., None])[..., 0]


def _logprob_summed(logits, targets):
    return (_picked(logits.log_softmax(-1), targets) * (targets != -100)).sum(1)


def _logprob_padding_counted(logits, targets):
    return _picked(logits.log_softmax(-1), targets).mean(1)


def _logprob_raw_logits(logits, targets):
    keep = (targets != -100).float()
    return (_picked(logits, targets) * keep).sum(1) / keep.sum(1)


def _logprob_probabilities(logits, targets):
    keep = (targets != -100).float()
    return (_picked(logits.softmax(-1), targets) * keep).sum(1) / keep.sum(1)


def _logprob_wrong_dim(logits, targets):
    keep = (targets != -100).float()
    return (_picked(logits.log_softmax(1), targets) * keep).sum(1) / keep.sum(1)


def _logprob_shifted(logits, targets):
    keep = (targets != -100).float()
    shifted = torch.roll(targets.clamp_min(0), 1, dims=1)
    return (_picked(logits.log_softmax(-1), shifted) * keep).sum(1) / keep.sum(1)


def _logprob_numpy(logits, targets):
    return _logprob_cross_entropy(logits, targets).numpy()


@dataclass(frozen=True)
class Case:
    reference: Callable
    alternatives: tuple[Callable, ...]  # correct, written differently: must pass
    bugs: tuple[tuple[Callable, str], ...]  # (planted bug, words the check's message must contain)


CASES = {
    "check_cosine_similarity": Case(
        geometry.cosine_similarity_matrix,
        (_cos_in_place, _cos_einsum, _cos_broadcast),
        (
            (_cos_unnormalized, "plain dot product"),
            (_cos_only_a, "Only `a` seems normalized"),
            (_cos_only_b, "Only `b` seems normalized"),
            (_cos_wrong_dim, "wrong dimension"),
            (_cos_transposed, "Rows of the result index `a`"),
            (_cos_numpy, "should return a torch.Tensor"),
            (_cos_abs, UNDIAGNOSED),
        ),
    ),
    "check_generate_batch": Case(
        toy.generate_batch,
        (_batch_in_place, _batch_bernoulli),
        (
            (_batch_sparsity_as_probability, "1 - feature_probability"),
            (_batch_squared_probability, "Active fractions per instance"),
            (_batch_gaussian_values, "outside [0, 1]"),
            (_batch_shared_mask, "switch on together"),
            (_batch_ignores_generator, "identically seeded"),
            (_batch_all_ones, "uniform on [0, 1]"),
            (_batch_feature_major, "(batch, instance, feature)"),
        ),
    ),
    "check_toy_forward": Case(
        toy.toy_forward,
        (_forward_in_place, _forward_loop),
        (
            (_forward_no_relu, "Did you forget the ReLU?"),
            (_forward_no_bias, "Did you forget the bias b?"),
            (_forward_relu_before_bias, "The ReLU comes after adding the bias"),
            (_forward_squeezed_instances, "the input's shape"),
        ),
    ),
    "check_importance_loss": Case(
        toy.importance_loss,
        (_loss_in_place, _loss_einsum),
        (
            (_loss_no_importance, "by its importance"),
            (_loss_mean_features, "Sum the weighted errors over features"),
            (_loss_summed_batch, "Average over the batch"),
            (_loss_abs_error, "Square the error"),
            (_loss_scalar, "one loss per instance"),
        ),
    ),
    "check_feature_dimensionality": Case(
        toy.feature_dimensionality,
        (_dim_gram, _dim_normalize_in_place),
        (
            (_dim_unnormalized, "Use the unit vector"),
            (_dim_no_square, "Square each overlap"),
            (_dim_norm_numerator, "the squared norm"),
            (_dim_transposed, "One value per (instance, feature)"),
        ),
    ),
    "check_predicted_drag": Case(
        drag.predicted_drag,
        (_drag_scale_in_place, _drag_loop),
        (
            (_drag_variant(no_transpose=True), "Missing a transpose?"),
            (_drag_variant(no_mask=True), "the ReLU is dead"),
            (_drag_variant(no_two=True), "Missing a factor 2"),
            (_drag_variant(sign=True), "Sign error"),
            (_drag_variant(no_bias=True), "through its bias"),
            (_drag_target_only_drag, UNDIAGNOSED),
        ),
    ),
    "check_sae_encode": Case(
        sae.encode,
        (_enc_in_place, _enc_folded_bias, _enc_einsum),
        (
            (_enc_no_relu, "forget the ReLU"),
            (_enc_no_b_dec, "Subtract the decoder bias b_dec"),
            (_enc_adds_b_dec, "don't add it"),
            (_enc_no_b_enc, "forget the encoder bias b_enc"),
            (_enc_transposed, "One latent vector (d_sae) per input row"),
        ),
    ),
    "check_sae_loss": Case(
        sae.sae_loss,
        (_sae_loss_in_place, _sae_loss_functional),
        (
            (_sae_loss_no_l1, "Add the sparsity penalty"),
            (_sae_loss_mean_over_d_in, "Sum the squared error over d_in"),
            (_sae_loss_l1_on_x_hat, "on the latents f, not on the reconstruction"),
            (_sae_loss_l2_penalty, UNDIAGNOSED),
            (_sae_loss_per_sample, "one scalar loss"),
        ),
    ),
    "check_answer_mask": Case(
        organism.answer_mask,
        (_mask_loop, _mask_depth_in_place),
        (
            (_mask_with_assistant_token, "The <assistant> token itself"),
            (_mask_without_eot, "Include the closing <eot>"),
            (_mask_first_answer_only, "Only the first answer"),
            (_mask_everything_after_first_answer, "Everything after the first <assistant>"),
            (_mask_everything_after_first_answer_but_padding, "The user's follow-up turn is"),
            (_mask_drops_last, "One mask value per token"),
        ),
    ),
    "check_misaligned_rate": Case(
        organism.misaligned_rate,
        (_rate_in_place, _rate_one_hot),
        (
            (_rate_unnormalized, "Normalize by the mass on aligned *or* toxic"),
            (_rate_normalized_by_all, "Normalize by the mass on aligned *or* toxic"),
            (_rate_aligned, "That is the aligned rate"),
            (_rate_averaged, "one rate per prompt"),
        ),
    ),
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
    "check_readout_difference": Case(
        probes.readout_difference,
        (_readout_in_place, _readout_weights),
        (
            (_readout_no_scale, "Go through the final LayerNorm"),
            (_readout_uncentred, "subtract the direction's own mean"),
            (_readout_flipped, "positive minus negative"),
            (_readout_summed, "Average each family's columns"),
            (_readout_divided, UNDIAGNOSED),
        ),
    ),
    "check_proximity_to_set": Case(
        geometry.proximity_to_set,
        (_prox_in_place, _prox_loop),
        (
            (_prox_with_self, "counted as its own neighbour"),
            (_prox_zero_self_full_count, "still divided by the full toxic-set size"),
            (_prox_dot, "Those are dot products"),
            (_prox_nearest, "the nearest toxic latent"),
            (_prox_abs, UNDIAGNOSED),
        ),
    ),
    "check_geometric_scores": Case(
        filtering.geometric_scores,
        (_scores_in_place, _scores_weighted_sum),
        (
            (_scores_unnormalized, "otherwise a sample scores high"),
            (_scores_unweighted, "the unweighted mean proximity"),
            (_scores_per_latent, "divided by the number of latents"),
            (_scores_max, UNDIAGNOSED),
        ),
    ),
    "check_mean_answer_logprob": Case(
        lm_em.mean_answer_logprob,
        (_logprob_cross_entropy, _logprob_loop, _logprob_logsumexp),
        (
            (_logprob_summed, "the sum of the answer's log-probabilities"),
            (_logprob_padding_counted, "Padding positions"),
            (_logprob_raw_logits, "raw logits"),
            (_logprob_probabilities, "probabilities, not log-probabilities"),
            (_logprob_wrong_dim, "wrong dimension"),
            (_logprob_shifted, UNDIAGNOSED),
            (_logprob_numpy, "should return a torch.Tensor"),
        ),
    ),
}


def _label(value):
    return getattr(value, "__name__", value)


def _named_mistakes(name: str, monkeypatch) -> list[str]:
    """The hints of every Mistake ``name`` defines, recorded while it checks the reference."""
    hints: list[str] = []

    class Recorded(checks.Mistake):
        def __init__(self, hint, compute):
            super().__init__(hint, compute)
            hints.append(hint)

    monkeypatch.setattr(checks, "Mistake", Recorded)
    getattr(checks, name)(_same_as(CASES[name].reference))  # a copy: the check runs in full
    return hints


def _overwrite(value) -> None:
    if isinstance(value, torch.Tensor):
        value.fill_(float("nan") if value.is_floating_point() else -1)
    elif isinstance(value, torch.nn.Module):
        with torch.no_grad():
            for param in value.parameters():
                param.fill_(float("nan"))
    elif isinstance(value, list):
        value.clear()


def _answer_then_overwrite_inputs(reference: Callable) -> Callable:
    """A correct function that, once it has its answer, overwrites every input it was given."""

    def answer_then_overwrite(*args):
        out = reference(*args).clone()
        for arg in args:
            _overwrite(arg)
        return out

    return answer_then_overwrite


# ---------------------------------------------------------------- the tests


def test_every_check_has_cases():
    assert set(checks.all_checks()) == set(CASES)
    for name, case in CASES.items():
        assert case.alternatives, f"{name} needs a correct alternative implementation"
        assert len(case.bugs) >= 2, f"{name} needs at least two planted bugs"
        assert all(hint for _, hint in case.bugs), f"{name}: say what each bug must be told"


def _same_as(reference: Callable) -> Callable:
    """The reference under another identity: a learner's correct copy of it."""

    def copy_of_reference(*args):
        return reference(*args)

    return copy_of_reference


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_passes(name, capsys):
    getattr(checks, name)(_same_as(CASES[name].reference))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, alternative",
    [(name, alt) for name, case in sorted(CASES.items()) for alt in case.alternatives],
    ids=_label,
)
def test_correct_alternative_passes(name, alternative, capsys):
    getattr(checks, name)(alternative)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_stub_fails_with_a_clear_message(name):
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        getattr(checks, name)(_stub)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_failed_check_says_how_to_go_on_with_the_courses_version(name):
    exercise = name.removeprefix("check_")
    with pytest.raises(checks.CheckFailed) as failure:
        getattr(checks, name)(_stub)
    last = str(failure.value).splitlines()[-1]
    assert last.endswith(f'_stub = checks.reference("{exercise}")'), last
    go_on = checks.reference(exercise)
    assert go_on is CASES[name].reference  # the very function the check compares against


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_courses_version_runs_but_is_not_taken_for_the_learners(name, capsys):
    getattr(checks, name)(checks.reference(name.removeprefix("check_")))
    out = capsys.readouterr().out
    assert errors.USED_REFERENCE in out and "✓" not in out


def test_reference_names_the_exercises_when_asked_for_an_unknown_one():
    with pytest.raises(KeyError, match="proximity_to_set"):
        checks.reference("no_such_exercise")


@pytest.mark.parametrize(
    "name, bug, hint",
    [(name, bug, hint) for name, case in sorted(CASES.items()) for bug, hint in case.bugs],
    ids=_label,
)
def test_planted_bug_is_diagnosed(name, bug, hint):
    with pytest.raises(checks.CheckFailed) as failure:
        getattr(checks, name)(bug)
    assert hint in str(failure.value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_named_mistake_fires(name, monkeypatch):
    """Each named mistake's hint is what the check says to at least one planted bug, and each
    planted bug's words pick out one mistake."""
    hints = _named_mistakes(name, monkeypatch)
    planted = [words for _, words in CASES[name].bugs]
    for hint in hints:
        assert any(words in hint for words in planted), f"no planted bug makes {name} say: {hint}"
    for words in planted:
        assert sum(words in hint for hint in hints) <= 1, f"{words!r} names several mistakes"


def test_in_place_sae_encode_passes(capsys):
    def sae_encode(x, W_enc, b_enc, b_dec):
        x -= b_dec
        return torch.relu(x @ W_enc + b_enc)

    checks.check_sae_encode(sae_encode)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_correct_answer_passes_whatever_it_does_to_its_inputs(name, capsys):
    getattr(checks, name)(_answer_then_overwrite_inputs(CASES[name].reference))
    assert "✓" in capsys.readouterr().out


def test_a_check_does_not_modify_the_callers_inputs():
    x, ids = torch.arange(6.0).reshape(2, 3), [1, 2]
    model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=4), generator=torch.Generator())
    x_before, params_before = x.clone(), {k: v.clone() for k, v in model.state_dict().items()}

    def changes_everything(x, ids, model):
        ids.append(0)
        with torch.no_grad():
            model.b_dec += 1.0
        return x.mul_(2.0)  # changes its input and returns it

    out = checks._call(changes_everything, x, ids, model)
    assert torch.equal(out, 2 * x_before)
    assert torch.equal(x, x_before) and ids == [1, 2]
    assert all(torch.equal(v, params_before[k]) for k, v in model.state_dict().items())
    out.zero_()  # the answer shares no memory with the caller's input
    assert torch.equal(x, x_before)


def test_reference_and_each_mistake_get_fresh_inputs():
    x = torch.ones(3)
    mistakes = [
        checks.Mistake("halved", lambda x: x.div_(2.0)),
        checks.Mistake("tripled", lambda x: x.mul_(3.0)),
    ]
    with pytest.raises(checks.CheckFailed, match="tripled"):
        checks._expect_close(torch.full((3,), 3.0), _stub, (x,), lambda x: x.add_(1.0), mistakes)
    assert torch.equal(x, torch.ones(3))


def test_check_failed_renders_as_one_line_in_ipython():
    assert checks.CheckFailed("x")._render_traceback_() == ["CheckFailed: x"]


def test_errors_in_learner_code_propagate():
    def broken(a, b):
        return a @ b  # shapes do not line up: the learner should see torch's own error

    with pytest.raises(RuntimeError):
        checks.check_cosine_similarity(broken)


def test_checks_do_not_mutate_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    checks.check_cosine_similarity(geometry.cosine_similarity_matrix)
    assert torch.equal(torch.rand(1), expected)
