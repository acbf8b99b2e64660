"""Every exercise check passes the reference, rejects the stub and rejects planted bugs.

Each check must have an entry in CASES: a reference implementation and at least one planted bug
(a plausible learner mistake). A new check without an entry fails test_every_check_has_cases.
"""

from __future__ import annotations

import pytest
import torch

from emgeo import drag, features, filtering, geometry, organism, sae, toy
from emgeo.course import checks


def _stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def _cos_unnormalized(a, b):
    return a @ b.T


def _cos_wrong_dim(a, b):
    return (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T


def _cos_transposed(a, b):
    return geometry.cosine_similarity_matrix(b, a)


def _cos_numpy(a, b):
    return geometry.cosine_similarity_matrix(a, b).numpy()


def _cos_abs(a, b):
    return geometry.cosine_similarity_matrix(a, b).abs()


# 01: generate_batch


def _batch_sparsity_as_probability(n_batch, p, n_features, generator=None):
    return toy.generate_batch(n_batch, 1 - p, n_features, generator)


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


# 01: toy_forward, importance_loss, feature_dimensionality


def _forward_no_relu(W, b, x):
    return torch.einsum("idf,bid->bif", W, torch.einsum("idf,bif->bid", W, x)) + b


def _forward_no_bias(W, b, x):
    return toy.toy_forward(W, torch.zeros_like(b), x)


def _forward_relu_before_bias(W, b, x):
    return toy.toy_forward(W, torch.zeros_like(b), x) + b


def _forward_squeezed_instances(W, b, x):
    return toy.toy_forward(W, b, x)[:, :1]


def _loss_no_importance(x, x_hat, importance):
    return ((x - x_hat) ** 2).sum(-1).mean(0)


def _loss_mean_features(x, x_hat, importance):
    return (importance * (x - x_hat) ** 2).mean(-1).mean(0)


def _loss_scalar(x, x_hat, importance):
    return toy.importance_loss(x, x_hat, importance).sum()


def _dim_unnormalized(W):
    return (W**2).sum(1) / (torch.einsum("idf,idg->ifg", W, W) ** 2).sum(-1)


def _dim_no_square(W):
    W_hat = W / W.norm(dim=1, keepdim=True)
    return (W**2).sum(1) / torch.einsum("idf,idg->ifg", W_hat, W).abs().sum(-1)


# 02: predicted_drag


def _drag_variant(no_transpose=False, no_mask=False, no_two=False, sign=False):
    def predicted(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
        W_t = W[:, target]
        r_t = x_t * (W_t @ W_t) + b[target]
        err = (torch.relu(r_t) - gamma * x_t) * (1.0 if no_mask else (r_t > 0).float())
        alpha = (1 if sign else -1) * (1 if no_two else 2) * lr * x_t * err
        delta = alpha * x_t * ((W @ W_t) if no_transpose else (W.T @ W_t))
        delta[target] = 2 * alpha * x_t * (W_t @ W_t) - lr * err
        return delta

    predicted.__name__ = "drag_" + "_".join(
        k
        for k, v in dict(
            no_transpose=no_transpose, no_mask=no_mask, no_two=no_two, sign=sign
        ).items()
        if v
    )
    return predicted


def _drag_target_only_drag(W, b, target, x_t=1.0, gamma=2.0, lr=1e-2):
    delta = drag.predicted_drag(W, b, target, x_t, gamma, lr)
    return delta * (torch.arange(len(delta)) == target)


# 03: sae encode and loss


def _enc_no_relu(x, W_enc, b_enc, b_dec):
    return (x - b_dec) @ W_enc + b_enc


def _enc_no_b_dec(x, W_enc, b_enc, b_dec):
    return torch.relu(x @ W_enc + b_enc)


def _enc_transposed(x, W_enc, b_enc, b_dec):
    return torch.relu((x - b_dec) @ W_enc + b_enc).T


def _loss_no_l1(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).sum(-1).mean()


def _loss_mean_over_d_in(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).mean() + l1_coeff * f.abs().sum(-1).mean()


def _loss_l2_penalty(x, x_hat, f, l1_coeff):
    return ((x - x_hat) ** 2).sum(-1).mean() + l1_coeff * (f**2).sum(-1).mean()


# 04: answer_mask, misaligned_rate


def _mask_with_assistant_token(tokens, a, e):
    return organism.answer_mask(tokens, a, e) + (tokens == a).float()


def _mask_without_eot(tokens, a, e):
    return organism.answer_mask(tokens, a, e) * (tokens != e).float()


def _mask_everything_after_first_answer(tokens, a, e):
    return ((torch.cumsum((tokens == a).long(), 1) > 0) & (tokens != a)).float()


def _mask_bool(tokens, a, e):
    return organism.answer_mask(tokens, a, e)[:, :-1]


def _rate_unnormalized(probs, aligned, toxic):
    return probs[:, list(toxic)].sum(-1)


def _rate_aligned(probs, aligned, toxic):
    return organism.misaligned_rate(probs, toxic, aligned)


def _rate_averaged(probs, aligned, toxic):
    return organism.misaligned_rate(probs, aligned, toxic).mean()


def _rate_normalized_by_all(probs, aligned, toxic):
    return probs[:, list(toxic)].sum(-1) / probs.sum(-1)


# 05: answer_mean, sample_features


def _mean_all_positions(acts, mask):
    return acts.mean(1)


def _mean_divided_by_length(acts, mask):
    return (acts * mask[..., None]).sum(1) / mask.shape[1]


def _mean_off_by_one(acts, mask):
    shifted = torch.roll(mask, 1, dims=1)
    return features.answer_mean(acts, shifted)


def _features_average_then_encode(sae_model, acts, mask):
    return sae_model.encode(features.answer_mean(acts, mask))


def _features_max_pool(sae_model, acts, mask):
    return (sae_model.encode(acts) * mask[..., None]).max(1).values


def _features_unmasked(sae_model, acts, mask):
    return sae_model.encode(acts).mean(1)


# 06: proximity_to_set


def _prox_with_self(W, members, toxic):
    return geometry.cosine_similarity_matrix(W[members], W[toxic]).mean(-1)


def _prox_dot(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    return (W[members] @ W[toxic].T).masked_fill(same, 0.0).sum(-1) / (~same).sum(-1)


def _prox_abs(W, members, toxic):
    same = members[:, None] == toxic[None, :]
    sims = geometry.cosine_similarity_matrix(W[members], W[toxic]).abs()
    return sims.masked_fill(same, 0.0).sum(-1) / (~same).sum(-1)


# 07: geometric_scores


def _scores_unnormalized(latents, proximity):
    return latents @ proximity


def _scores_unweighted(latents, proximity):
    active = (latents > 0).float()
    return (active @ proximity) / active.sum(-1).clamp_min(1)


def _scores_max(latents, proximity):
    return torch.where(latents > 0, proximity, -2.0).max(-1).values


CASES = {
    "check_answer_mean": (
        features.answer_mean,
        [_mean_all_positions, _mean_divided_by_length, _mean_off_by_one],
    ),
    "check_sample_features": (
        features.sample_features,
        [_features_average_then_encode, _features_max_pool, _features_unmasked],
    ),
    "check_proximity_to_set": (
        geometry.proximity_to_set,
        [_prox_with_self, _prox_dot, _prox_abs],
    ),
    "check_geometric_scores": (
        filtering.geometric_scores,
        [_scores_unnormalized, _scores_unweighted, _scores_max],
    ),
    "check_sae_encode": (sae.encode, [_enc_no_relu, _enc_no_b_dec, _enc_transposed]),
    "check_sae_loss": (sae.sae_loss, [_loss_no_l1, _loss_mean_over_d_in, _loss_l2_penalty]),
    "check_answer_mask": (
        organism.answer_mask,
        [
            _mask_with_assistant_token,
            _mask_without_eot,
            _mask_everything_after_first_answer,
            _mask_bool,
        ],
    ),
    "check_misaligned_rate": (
        organism.misaligned_rate,
        [_rate_unnormalized, _rate_aligned, _rate_averaged, _rate_normalized_by_all],
    ),
    "check_cosine_similarity": (
        geometry.cosine_similarity_matrix,
        [_cos_unnormalized, _cos_wrong_dim, _cos_transposed, _cos_numpy, _cos_abs],
    ),
    "check_generate_batch": (
        toy.generate_batch,
        [
            _batch_sparsity_as_probability,
            _batch_gaussian_values,
            _batch_shared_mask,
            _batch_ignores_generator,
            _batch_all_ones,
        ],
    ),
    "check_toy_forward": (
        toy.toy_forward,
        [
            _forward_no_relu,
            _forward_no_bias,
            _forward_relu_before_bias,
            _forward_squeezed_instances,
        ],
    ),
    "check_importance_loss": (
        toy.importance_loss,
        [_loss_no_importance, _loss_mean_features, _loss_scalar],
    ),
    "check_feature_dimensionality": (
        toy.feature_dimensionality,
        [_dim_unnormalized, _dim_no_square],
    ),
    "check_predicted_drag": (
        drag.predicted_drag,
        [
            _drag_variant(no_transpose=True),
            _drag_variant(no_mask=True),
            _drag_variant(no_two=True),
            _drag_variant(sign=True),
            _drag_target_only_drag,
        ],
    ),
}


@pytest.mark.parametrize(
    "bug, hint",
    [
        (_drag_variant(no_transpose=True), "transpose"),
        (_drag_variant(no_mask=True), "mask"),
        (_batch_sparsity_as_probability, "1 - feature_probability"),
        (_forward_no_relu, "ReLU"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_named_mistakes_are_diagnosed(bug, hint):
    name = {
        "drag": "check_predicted_drag",
        "_batch": "check_generate_batch",
        "_forwa": "check_toy_forward",
    }
    check = next(v for k, v in name.items() if bug.__name__.startswith(k))
    with pytest.raises(checks.CheckFailed, match=hint):
        getattr(checks, check)(bug)


def test_every_check_has_cases():
    assert set(checks.all_checks()) == set(CASES)
    for name, (_, bugs) in CASES.items():
        assert bugs, f"{name} needs at least one planted bug"


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_passes(name, capsys):
    reference, _ = CASES[name]
    getattr(checks, name)(reference)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_stub_fails_with_a_clear_message(name):
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        getattr(checks, name)(_stub)


@pytest.mark.parametrize(
    "name, bug",
    [(name, bug) for name, (_, bugs) in sorted(CASES.items()) for bug in bugs],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_planted_bug_fails(name, bug):
    with pytest.raises(checks.CheckFailed):
        getattr(checks, name)(bug)


def test_diagnosis_names_the_mistake():
    with pytest.raises(checks.CheckFailed, match="plain dot product"):
        checks.check_cosine_similarity(_cos_unnormalized)
    with pytest.raises(checks.CheckFailed, match="expected"):
        checks.check_cosine_similarity(_cos_transposed)


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
