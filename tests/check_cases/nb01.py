"""Meta-test cases of notebook 01's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import Case
from emgeo import toy


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


CASES = {
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
}
