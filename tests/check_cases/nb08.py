"""Meta-test cases of notebook 08's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from check_cases import UNDIAGNOSED, Case
from emgeo.models import lm_em, lm_finetunes, lora


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


# -- the adapters' config -----------------------------------------------------------------------


def _peft_kwargs(cfg):
    from peft import LoraConfig, TaskType

    kwargs = {
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "use_rslora": cfg.use_rslora,
        "target_modules": set(cfg.target_modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "task_type": TaskType.CAUSAL_LM,
    }
    return LoraConfig(**kwargs)


def _peft_attention_only(cfg):
    from dataclasses import replace

    attention = ("q_proj", "k_proj", "v_proj", "o_proj")
    attention = tuple(m for m in cfg.target_modules if m in attention)
    return lora.peft_config(replace(cfg, target_modules=attention))


def _peft_scaled_alpha(cfg):
    from dataclasses import replace

    return lora.peft_config(replace(cfg, alpha=cfg.alpha / cfg.rank))


def _peft_dropout(cfg):
    config = lora.peft_config(cfg)
    config.lora_dropout = 0.05
    return config


def _peft_no_rslora(cfg):
    from dataclasses import replace

    return lora.peft_config(replace(cfg, use_rslora=False))


def _peft_no_task(cfg):
    config = lora.peft_config(cfg)
    config.task_type = None
    return config


def _peft_fixed_rank(cfg):
    from dataclasses import replace

    return lora.peft_config(replace(cfg, rank=8))


def _peft_dict(cfg):
    return lora.peft_config(cfg).to_dict()


# -- contrasts over seeds -----------------------------------------------------------------------


def _contrast_loop(rows, a, b):
    from emgeo import stats

    after = {}
    for row in rows:
        after.setdefault(row["condition"], {})[row["seed"]] = row["margin"]
    if b == "base":
        base = next(iter(after["base"].values()))
        return stats.mean_ci([m - base for m in after[a].values()])
    return stats.mean_ci([after[a][s] - after[b][s] for s in after[a] if s in after[b]])


def _contrast_pandas(rows, a, b):
    import pandas as pd

    from emgeo import stats

    table = pd.DataFrame(rows)
    if b == "base":
        base = table.loc[table.condition == "base", "margin"].item()
        return stats.mean_ci((table.loc[table.condition == a, "margin"] - base).tolist())
    both = table[table.condition.isin([a, b])]
    wide = both.pivot(index="seed", columns="condition", values="margin")
    return stats.mean_ci((wide[a] - wide[b]).dropna().tolist())


def _contrast_unpaired(rows, a, b):
    from emgeo import stats

    ra = [r["margin"] for r in rows if r["condition"] == a]
    rb = [r["margin"] for r in rows if r["condition"] == b]
    return stats.mean_ci([x - sum(rb) / len(rb) for x in ra])


def _contrast_by_position(rows, a, b):
    from emgeo import stats

    ra = [r["margin"] for r in rows if r["condition"] == a]
    rb = [r["margin"] for r in rows if r["condition"] == b]
    return stats.mean_ci([x - y for x, y in zip(ra, rb, strict=False)])


def _contrast_reversed(rows, a, b):
    out = lm_finetunes.contrast(rows, a, b)
    return out | {"mean": -out["mean"], "ci_low": -out["ci_high"], "ci_high": -out["ci_low"]}


def _contrast_tuple(rows, a, b):
    out = lm_finetunes.contrast(rows, a, b)
    return out["mean"], out["ci_low"], out["ci_high"]


def _contrast_z(rows, a, b):
    out = dict(lm_finetunes.contrast(rows, a, b))
    half = (out["ci_high"] - out["mean"]) / 4.303 * 1.96
    return out | {"ci_low": out["mean"] - half, "ci_high": out["mean"] + half}


CASES |= {
    "check_peft_config": Case(
        lora.peft_config,
        (_peft_kwargs,),
        (
            (_peft_attention_only, "leaves out the MLP projections"),
            (_peft_scaled_alpha, "lora_alpha is cfg.alpha itself"),
            (_peft_dropout, "lora_dropout is 0"),
            (_peft_no_rslora, "use_rslora follows"),
            (_peft_no_task, "task_type"),
            (_peft_fixed_rank, "r is the adapters' rank"),
            (_peft_dict, "should return a peft.LoraConfig"),
        ),
    ),
    "check_contrast": Case(
        lm_finetunes.contrast,
        (_contrast_loop, _contrast_pandas),
        (
            (_contrast_unpaired, "Pair the runs by seed: each seed's"),
            (_contrast_by_position, "not by their order in the list"),
            (_contrast_reversed, "a minus b"),
            (_contrast_tuple, "should return a dict"),
            (_contrast_z, "gives wrong values for"),
        ),
    ),
}
