"""Meta-test cases of notebook 03's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import UNDIAGNOSED, Case
from emgeo import sae


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


# ---------------------------------------------------------------- the training loop


def _train(
    model,
    acts,
    steps,
    batch_size,
    lr,
    l1_coeff,
    generator,
    *,
    zero_grad=True,
    renorm=-1,
    renorm_first=False,
    l1=None,
    count="samples",
):
    """A learner's loop (encoder and loss written out), with one thing changeable."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = acts[torch.randint(len(acts), (batch_size,), generator=generator)]
        f = sae.encode(x, model.W_enc, model.b_enc, model.b_dec)
        x_hat = model.decode(f)
        loss = sae.sae_loss(x, x_hat, f, l1_coeff if l1 is None else l1)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        if renorm_first:
            model.normalize_decoder()
        opt.step()
        if renorm is not None and not renorm_first:
            with torch.no_grad():
                model.W_dec /= model.W_dec.norm(dim=renorm, keepdim=True)
        if count == "samples":
            model.fire_count += (f > 0).sum(0)
        elif count == "batches":
            model.fire_count += (f > 0).any(0)
    return model


def _train_written_out(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator)


def _train_own_adam_order(model, acts, steps, batch_size, lr, l1_coeff, generator):
    """zero_grad(set_to_none=False) at the end of the step, normalize_decoder(), a float count."""
    opt = torch.optim.Adam([model.W_enc, model.b_enc, model.W_dec, model.b_dec], lr=lr)
    n = acts.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=generator)
        x = acts[idx]
        x_hat, f = model(x)
        sae.sae_loss(x, x_hat, f, l1_coeff).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        model.normalize_decoder()
        model.fire_count.add_((f.detach() > 0).float().sum(dim=0))
    return model


def _train_no_renorm(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, renorm=None)


def _train_renorm_columns(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, renorm=0)


def _train_no_zero_grad(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, zero_grad=False)


def _train_renorm_before_step(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, renorm_first=True)


def _train_config_l1(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, l1=model.cfg.l1_coeff)


def _train_counts_batches(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, count="batches")


def _train_no_counts(model, acts, steps, batch_size, lr, l1_coeff, generator):
    return _train(model, acts, steps, batch_size, lr, l1_coeff, generator, count=None)


def _train_global_rng(model, acts, steps, batch_size, lr, l1_coeff, generator):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = acts[torch.randint(len(acts), (batch_size,))]  # the global RNG
        x_hat, f = model(x)
        loss = sae.sae_loss(x, x_hat, f, l1_coeff)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.normalize_decoder()
        model.fire_count += (f > 0).sum(0)
    return model


def _train_no_return(model, acts, steps, batch_size, lr, l1_coeff, generator):
    _train(model, acts, steps, batch_size, lr, l1_coeff, generator)


def _train_sgd(model, acts, steps, batch_size, lr, l1_coeff, generator):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        x = acts[torch.randint(len(acts), (batch_size,), generator=generator)]
        x_hat, f = model(x)
        loss = sae.sae_loss(x, x_hat, f, l1_coeff)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.normalize_decoder()
        model.fire_count += (f > 0).sum(0)
    return model


# ---------------------------------------------------------------- the held-out evaluation


@torch.no_grad()
def _eval_written_out(model, x):
    f = torch.relu((x - model.b_dec) @ model.W_enc + model.b_enc)
    x_hat = f @ model.W_dec + model.b_dec
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    total = ((x - x.mean(0)) ** 2).sum(-1).mean()
    active = f > 0
    return sae.SAEStats(
        mse=mse.item(),
        explained_variance=(1 - mse / total).item(),
        l0=active.sum(-1).float().mean().item(),
        dead_fraction=(~active.any(0)).float().mean().item(),
    )


def _eval_in_place_tensors(model, x):
    """Computes with 0-d tensors until the end; changes x in place; variance via torch.var."""
    x_hat, f = model(x)
    mse = (x - x_hat).pow(2).sum(-1).mean()
    total = x.var(0, unbiased=False).sum()
    x.zero_()
    return sae.SAEStats(
        mse=mse.item(),
        explained_variance=(1 - mse / total).item(),
        l0=torch.count_nonzero(f, dim=-1).float().mean().item(),
        dead_fraction=(f.amax(0) <= 0).float().mean().item(),
    )


def _eval_change(**fields):
    def evaluate(model, x):
        right = sae.evaluate_sae(model, x)
        with torch.no_grad():
            x_hat, f = model(x)
        values = {k: float(fields[k](x, x_hat, f)) for k in fields}
        return sae.SAEStats(**{**right.__dict__, **values})

    return evaluate


_eval_uncentred = _eval_change(
    explained_variance=lambda x, xh, f: 1 - ((x - xh) ** 2).sum(-1).mean() / (x**2).sum(-1).mean()
)
_eval_l0_total = _eval_change(l0=lambda x, xh, f: (f > 0).sum())
_eval_l0_any = _eval_change(l0=lambda x, xh, f: (f > 0).any(0).sum())
_eval_l0_fraction = _eval_change(l0=lambda x, xh, f: (f > 0).float().mean())
_eval_dead_entries = _eval_change(dead_fraction=lambda x, xh, f: (f == 0).float().mean())
_eval_dead_count = _eval_change(dead_fraction=lambda x, xh, f: ((f > 0).sum(0) == 0).sum())
_eval_mse_mean = _eval_change(mse=lambda x, xh, f: ((x - xh) ** 2).mean())
_eval_r2_per_dim = _eval_change(
    explained_variance=lambda x, xh, f: (1 - ((x - xh) ** 2).mean(0) / x.var(0)).mean()
)


def _eval_dict(model, x):
    return sae.evaluate_sae(model, x).__dict__


CASES = {
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
    "check_train_sae_loop": Case(
        sae.train_sae,
        (_train_written_out, _train_own_adam_order),
        (
            (_train_no_renorm, "forget to renormalise the decoder"),
            (_train_renorm_columns, "normalised the columns of W_dec"),
            (_train_no_zero_grad, "Call optimizer.zero_grad() every step"),
            (_train_renorm_before_step, "Renormalise *after* optimizer.step()"),
            (_train_config_l1, "Use the l1_coeff argument"),
            (_train_counts_batches, "not whether it fired in the batch"),
            (_train_no_counts, "model.fire_count is still zero"),
            (_train_global_rng, "is not reproducible"),
            (_train_no_return, "return the trained SAE"),
            (_train_sgd, "trains a different SAE (largest weight error"),
        ),
    ),
    "check_evaluate_sae": Case(
        sae.evaluate_sae,
        (_eval_written_out, _eval_in_place_tensors),
        (
            (_eval_uncentred, "centre x"),
            (_eval_l0_total, "you gave the total over the batch"),
            (_eval_l0_any, "active anywhere in the batch"),
            (_eval_l0_fraction, "you averaged over the latents too"),
            (_eval_dead_entries, "share of zero entries"),
            (_eval_dead_count, "not a count of latents"),
            (_eval_mse_mean, "mse sums the squared error over d_in"),
            (_eval_r2_per_dim, "gives explained_variance"),
            (_eval_dict, "return sae.SAEStats"),
        ),
    ),
}
