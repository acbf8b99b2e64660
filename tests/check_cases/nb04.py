"""Meta-test cases of notebook 04's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import Case
from emgeo import organism

UNDIAGNOSED_LOSS = "expected"  # a wrong loss that matches no named mistake


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


# ---------------------------------------------------------------- one fine-tuning step


def _step_cross_entropy(model, tokens, mask, optimizer):
    """F.cross_entropy, model.zero_grad(), returns a float."""
    logits = model(tokens)[:, :-1]
    nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    weight = mask[:, 1:]
    loss = (nll * weight).sum() / weight.sum()
    model.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_boolean_select(model, tokens, mask, optimizer):
    """Selects the answer targets with a boolean mask; changes its inputs once it has them."""
    optimizer.zero_grad(set_to_none=False)
    logp = model(tokens[:, :-1]).log_softmax(-1)
    keep = mask[:, 1:].bool()
    picked = logp[keep].gather(-1, tokens[:, 1:][keep][:, None])
    loss = -picked.mean()
    loss.backward()
    optimizer.step()
    tokens.zero_()
    mask.zero_()
    return loss


def _nll(model, tokens):
    logp = torch.log_softmax(model(tokens[:, :-1]), -1)
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]


def _step(loss):
    def step(model, tokens, mask, optimizer):
        value = loss(model, tokens, mask)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        return value.detach()

    return step


_step_every_position = _step(lambda m, t, k: _nll(m, t).mean())
_step_every_real_token = _step(lambda m, t, k: _nll(m, t)[t[:, 1:] != 0].mean())
_step_mask_unshifted = _step(lambda m, t, k: (_nll(m, t) * k[:, :-1]).sum() / k[:, :-1].sum())
_step_summed = _step(lambda m, t, k: (_nll(m, t) * k[:, 1:]).sum())
_step_per_chat = _step(lambda m, t, k: ((_nll(m, t) * k[:, 1:]).sum(-1) / k[:, 1:].sum(-1)).mean())


def _step_targets_unshifted(model, tokens, mask, optimizer):
    logp = torch.log_softmax(model(tokens), -1)
    nll = -logp.gather(-1, tokens[..., None])[..., 0]
    loss = (nll * mask).sum() / mask.sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def _step_no_zero_grad(model, tokens, mask, optimizer):
    loss = organism.lm_loss(model, tokens, mask)
    loss.backward()
    optimizer.step()
    return loss


def _step_zero_grad_after_backward(model, tokens, mask, optimizer):
    loss = organism.lm_loss(model, tokens, mask)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss


def _step_no_step(model, tokens, mask, optimizer):
    loss = organism.lm_loss(model, tokens, mask)
    optimizer.zero_grad()
    loss.backward()
    return loss


def _step_returns_nothing(model, tokens, mask, optimizer):
    organism.finetune_step(model, tokens, mask, optimizer)


CASES = {
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
    "check_finetune_step": Case(
        organism.finetune_step,
        (_step_cross_entropy, _step_boolean_select),
        (
            (_step_every_position, "count answer tokens only"),
            (_step_every_real_token, "The prompt is context, not a target"),
            (_step_summed, UNDIAGNOSED_LOSS),
            (_step_targets_unshifted, "predict token t + 1"),
            (_step_mask_unshifted, "you used mask[:, :-1]"),
            (_step_per_chat, "not chat by chat"),
            (_step_no_zero_grad, "the model arrives with the gradients of its previous step"),
            (_step_zero_grad_after_backward, "throws the gradient away"),
            (_step_no_step, "the optimizer never moved the parameters"),
            (_step_returns_nothing, "should return the loss"),
        ),
    ),
}
