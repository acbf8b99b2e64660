"""Meta-test cases of notebook 01's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import math

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import toy


def _batch_in_place(n_batch, feature_probability, n_features, generator=None):
    p = feature_probability.unsqueeze_(-1)  # (inst, 1), in place on the input
    x = torch.rand(n_batch, len(p), n_features, generator=generator)
    x[torch.rand(x.shape, generator=generator) >= p] = 0.0
    return x


def _batch_one_draw(n_batch, feature_probability, n_features, generator=None):
    values, draws = torch.rand(
        2, n_batch, len(feature_probability), n_features, generator=generator
    )
    return values * (draws < feature_probability[:, None])


def _batch_mask_first(n_batch, p, n_features, generator=None):
    on = torch.rand(n_batch, len(p), n_features, generator=generator) < p[:, None]
    return on * torch.rand(n_batch, len(p), n_features, generator=generator)


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


def _train_loop_per_instance(model, steps, batch_size, lr, generator=None, progress=False):
    """Correct, written differently: einsum forward, the loss summed as a sum of per-instance
    terms, zero_grad after the step (the same thing: zeroed before the next backward)."""
    optimizer = torch.optim.Adam([model.W, model.b_final], lr=lr)
    n_features = model.cfg.n_features
    for _ in range(steps):
        x = toy.generate_batch(batch_size, model.feature_probability, n_features, generator)
        x_hat = torch.relu(torch.einsum("idf,idg,big->bif", model.W, model.W, x) + model.b_final)
        losses = [
            (model.importance[i] * (x[:, i] - x_hat[:, i]) ** 2).sum(-1).mean()
            for i in range(model.cfg.n_instances)
        ]
        sum(losses).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        x = model.generate_batch(8 * batch_size, generator)
        return toy.importance_loss(x, model(x), model.importance)


def _train_mean_over_instances(model, steps, batch_size, lr, generator=None, progress=False):
    """Correct with Adam: averaging over instances instead of summing scales every instance's
    gradient by the same constant, which Adam's normalisation removes."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = model.generate_batch(batch_size, generator)
        loss = toy.importance_loss(x, model(x), model.importance).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x = model.generate_batch(8 * batch_size, generator)
        return toy.importance_loss(x, model(x), model.importance)


def _train_variant(**change):
    def train(model, steps, batch_size, lr, generator=None, progress=False):
        if change.get("sgd"):
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        elif change.get("default_lr"):
            optimizer = torch.optim.Adam(model.parameters())
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        importance = 1.0 if change.get("no_importance") else model.importance
        for _ in range(steps):
            gen = None if change.get("no_generator") else generator
            x = model.generate_batch(batch_size, gen)
            loss = toy.importance_loss(x, model(x), importance * torch.ones_like(x[0]))
            if not change.get("no_zero_grad"):
                optimizer.zero_grad()
            loss.sum().backward()
            optimizer.step()
        if change.get("last_batch"):
            return loss.detach()
        with torch.no_grad():
            x = model.generate_batch(8 * batch_size, generator)
            out = toy.importance_loss(x, model(x), model.importance)
        return out.sum() if change.get("scalar") else out

    train.__name__ = "train_" + "_".join(k for k, v in change.items() if v)
    return train


def _train_bias_frozen(model, steps, batch_size, lr, generator=None, progress=False):
    model.b_final.requires_grad_(False)
    optimizer = torch.optim.Adam([model.W], lr=lr)
    for _ in range(steps):
        x = model.generate_batch(batch_size, generator)
        loss = toy.importance_loss(x, model(x), model.importance)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        x = model.generate_batch(8 * batch_size, generator)
        return toy.importance_loss(x, model(x), model.importance)


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
        (_batch_in_place, _batch_one_draw),
        (
            (_batch_sparsity_as_probability, "1 - feature_probability"),
            (_batch_squared_probability, "Active fractions per instance"),
            (_batch_gaussian_values, "outside [0, 1]"),
            (_batch_shared_mask, "switch on together"),
            (_batch_ignores_generator, "identically seeded"),
            (_batch_all_ones, "uniform on [0, 1]"),
            (_batch_feature_major, "(batch, instance, feature)"),
            (_batch_mask_first, "another draw order"),
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
    "check_train_toy": Case(
        toy.train,
        (_train_loop_per_instance, _train_mean_over_instances),
        (
            (_train_variant(no_zero_grad=True), "zero_grad()"),
            (_train_variant(no_importance=True), "model.importance"),
            (_train_variant(sgd=True), "not SGD"),
            (_train_variant(default_lr=True), "Pass the learning rate on"),
            (_train_variant(last_batch=True), "fresh batch of 8 * batch_size"),
            (_train_variant(no_generator=True), "identically seeded"),
            (_train_variant(scalar=True), "one final loss per instance"),
            (_train_bias_frozen, UNDIAGNOSED),
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


# ---------------------------------------------------------------- 01: ToyModel


class _ToyModelEinsum(torch.nn.Module):
    """Correct: the same draw, written differently, forward with einsum."""

    def __init__(self, cfg, feature_probability, importance, generator=None):
        super().__init__()
        shape = (cfg.n_instances, cfg.d_hidden, cfg.n_features)
        w = torch.randn(shape, generator=generator)
        self.W = torch.nn.Parameter(w.mul_(math.sqrt(2 / (cfg.d_hidden + cfg.n_features))))
        self.b_final = torch.nn.Parameter(w.new_zeros(cfg.n_instances, cfg.n_features))
        self.register_buffer("feature_probability", feature_probability.float())
        self.register_buffer("importance", importance.float())

    def forward(self, x):
        h = torch.einsum("idf,bif->bid", self.W, x)
        return torch.relu(torch.einsum("idf,bid->bif", self.W, h) + self.b_final)


def _toy_model_variant(**bug):
    class Variant(_ToyModelEinsum):
        def __init__(self, cfg, feature_probability, importance, generator=None):
            super().__init__(cfg, feature_probability, importance, generator)
            with torch.no_grad():
                if bug.get("kaiming"):
                    self.W.mul_(
                        math.sqrt(1 / cfg.d_hidden)
                        / math.sqrt(2 / (cfg.d_hidden + cfg.n_features))
                        * 3
                    )
                if bug.get("random_bias"):
                    self.b_final.normal_(generator=torch.Generator().manual_seed(0))
            if bug.get("transposed"):
                self.W = torch.nn.Parameter(self.W.detach().transpose(1, 2).contiguous())
            if bug.get("no_buffers"):
                del self.importance
                self.importance_values = importance

        def forward(self, x):
            if bug.get("no_relu"):
                h = torch.einsum("idf,bif->bid", self.W, x)
                return torch.einsum("idf,bid->bif", self.W, h) + self.b_final
            return super().forward(x)

    return Variant


class _ToyModelExtraParameter(_ToyModelEinsum):
    def __init__(self, cfg, feature_probability, importance, generator=None):
        super().__init__(cfg, feature_probability, importance, generator)
        self.importance_param = torch.nn.Parameter(importance.float())


class _ToyModelOtherDraw(_ToyModelEinsum):
    def __init__(self, cfg, feature_probability, importance, generator=None):
        torch.rand(1, generator=generator)  # draws something before W
        super().__init__(cfg, feature_probability, importance, generator)


CASES["check_toy_model"] = Case(
    toy.ToyModel,
    (_ToyModelEinsum,),
    (
        (_toy_model_variant(kaiming=True), "W's scale is off"),
        (_toy_model_variant(random_bias=True), "b_final starts at zeros"),
        (_toy_model_variant(transposed=True), "W is (inst, d_hidden, feats)"),
        (_toy_model_variant(no_buffers=True), "register_buffer"),
        (_toy_model_variant(no_relu=True), "ReLU(W^T W x + b_final)"),
        (_ToyModelExtraParameter, "exactly `W` and `b_final`"),
        (_ToyModelOtherDraw, "not the draw the course expects"),
    ),
)
