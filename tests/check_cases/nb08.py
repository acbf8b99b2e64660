"""Meta-test cases of notebook 08's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import UNDIAGNOSED, Case
from emgeo.models import lm_em


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


CASES = {
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
