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
}
