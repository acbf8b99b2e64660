"""Checks of notebook 08, EM in a real LM."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor

from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_match,
    _generator,
    _name,
    _passed,
)
from emgeo.errors import CheckFailed

IGNORE_TARGET = -100  # the padding target of emgeo.batching.IGNORE


def _answer_targets(gen: torch.Generator, batch: int, n: int, vocab: int) -> Tensor:
    """Targets with a different number of answer tokens per row, the rest padding (-100)."""
    targets = torch.randint(0, vocab, (batch, n), generator=gen)
    for row in range(batch):
        length = 1 + (row * 2 + n // 2) % n
        targets[row, length:] = IGNORE_TARGET
    return targets


@_exercise("models.lm_em.mean_answer_logprob")
def check_mean_answer_logprob(fn: Callable, n_trials: int = 4) -> None:
    """``fn(logits, targets)`` -> per row, the mean log-probability of its answer tokens, padding
    (target -100) left out."""
    lm_em = importlib.import_module("emgeo.models.lm_em")  # transformers: only when checked

    def keep(t: Tensor) -> Tensor:
        return (t != IGNORE_TARGET).float()

    def picked(logp: Tensor, t: Tensor) -> Tensor:
        return logp.gather(-1, t.clamp_min(0)[..., None])[..., 0]

    mistakes = [
        Mistake(
            "That is the sum of the answer's log-probabilities: divide by how many answer tokens "
            "the row has, so that long and short answers compare.",
            lambda x, t: (picked(x.log_softmax(-1), t) * keep(t)).sum(1),
        ),
        Mistake(
            "Padding positions (target -100) were counted: average over the real answer tokens "
            "only (mask with targets != -100).",
            lambda x, t: picked(x.log_softmax(-1), t).mean(1),
        ),
        Mistake(
            "Those are raw logits: turn them into log-probabilities over the vocabulary first "
            "(log_softmax on the last dimension).",
            lambda x, t: (picked(x, t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
        Mistake(
            "Those are probabilities, not log-probabilities: use log_softmax, not softmax.",
            lambda x, t: (picked(x.softmax(-1), t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
        Mistake(
            "The softmax ran over the wrong dimension: normalise over the vocabulary (the last).",
            lambda x, t: (picked(x.log_softmax(1), t) * keep(t)).sum(1) / keep(t).sum(1),
        ),
    ]
    gen = _generator(15)
    for trial in range(n_trials):
        batch, n, vocab = 3 + trial, 5 + trial, 11 + 3 * trial
        logits = torch.randn(batch, n, vocab, generator=gen) * 3
        targets = _answer_targets(gen, batch, n, vocab)
        hint = "One score per row (a mean over its answer tokens)."
        args = (logits, targets)
        _expect_match(fn, args, lm_em.mean_answer_logprob, mistakes, (batch,), hint)
    _passed(fn, f"matches on {n_trials} random batches with padded answers")


# -- the adapters' config -----------------------------------------------------------------------

_LORA_CASES = (  # (rank, alpha, rank-stabilized, target modules): the course's recipes and others
    (8, 16.0, True, None),
    (1, 2.0, True, None),
    (32, 64.0, False, None),
    (4, 4.0, True, ("q_proj", "v_proj")),
)
_MLP = {"gate_proj", "up_proj", "down_proj"}


def _lora_field_hints(got, want) -> list[str]:
    """Why ``got`` (a LoraConfig) differs from ``want``, one sentence per field."""
    hints = []
    targets, wanted = set(got.target_modules or ()), set(want.target_modules)
    if targets != wanted:
        if wanted - targets == _MLP & wanted:
            hints.append(
                "target_modules leaves out the MLP projections (gate_proj, up_proj, down_proj): "
                "adapt every projection in cfg.target_modules."
            )
        else:
            hints.append(
                f"target_modules should be cfg.target_modules ({sorted(wanted)}), "
                f"got {sorted(targets)}."
            )
    if got.r != want.r:
        hints.append(f"r is the adapters' rank, cfg.rank ({want.r}); got {got.r}.")
    if got.lora_alpha != want.lora_alpha:
        hints.append(
            f"lora_alpha is cfg.alpha itself ({want.lora_alpha}), got {got.lora_alpha}: peft "
            "divides it by the rank (or by its square root with use_rslora) on its own."
        )
    if bool(got.use_rslora) != bool(want.use_rslora):
        hints.append("use_rslora follows cfg.use_rslora (scale alpha / sqrt(rank)).")
    if got.lora_dropout != want.lora_dropout:
        hints.append("lora_dropout is 0: a seeded run must give the same adapters every time.")
    if got.bias != want.bias:
        hints.append('bias="none": the adapters train no bias terms.')
    if _task(got.task_type) != _task(want.task_type):
        hints.append('task_type="CAUSAL_LM": peft wraps the model for next-token prediction.')
    return hints


def _task(task_type: object) -> str:
    """A task type as peft's enum or its string: ``TaskType.CAUSAL_LM`` == ``"CAUSAL_LM"``."""
    return str(getattr(task_type, "value", task_type))


@_exercise("models.lora.peft_config")
def check_peft_config(fn: Callable) -> None:
    """``fn(cfg)`` -> the ``peft.LoraConfig`` of :func:`emgeo.models.lora.peft_config`."""
    lora = importlib.import_module("emgeo.models.lora")  # peft: only when checked
    from peft import LoraConfig  # peft: only when checked

    for rank, alpha, rslora, targets in _LORA_CASES:
        modules = {"target_modules": targets} if targets else {}
        cfg = lora.LoraFinetuneConfig(rank=rank, alpha=alpha, use_rslora=rslora, **modules)
        got = _call(fn, cfg)
        if not isinstance(got, LoraConfig):
            raise CheckFailed(
                f"`{_name(fn)}` should return a peft.LoraConfig, got {type(got).__name__}."
            )
        hints = _lora_field_hints(got, lora.peft_config(cfg))
        if hints:
            raise CheckFailed(f"`{_name(fn)}` for rank {rank}, alpha {alpha}: " + " ".join(hints))
    _passed(fn, f"matches on {len(_LORA_CASES)} configs (ranks 1 to 32, with and without rsLoRA)")


# -- contrasts between conditions over seeds ----------------------------------------------------


def _condition_rows(gen: torch.Generator, seeds: list[int]) -> list[dict]:
    """A base run and runs of three conditions over ``seeds`` (one seed missing from
    "educational"), shuffled, with a shared per-seed effect so pairing matters."""
    rows = [{"condition": "base", "seed": None, "margin": -0.3}]
    for seed in seeds:
        shared = 0.05 * torch.randn(1, generator=gen).item()
        for condition, shift in (("insecure", 0.08), ("secure", 0.05), ("educational", 0.03)):
            if condition == "educational" and seed == seeds[-1]:
                continue
            noise = 0.005 * torch.randn(1, generator=gen).item()
            margin = -0.3 + shift + shared + noise
            rows.append({"condition": condition, "seed": seed, "margin": margin})
    order = torch.randperm(len(rows), generator=gen).tolist()
    return [rows[i] for i in order]


def _contrast_mistakes(stats) -> list[tuple[str, Callable]]:
    def runs(rows, c):
        return {r["seed"]: r["margin"] for r in rows if r["condition"] == c}

    def unpaired(rows, a, b):
        ra, rb = runs(rows, a), runs(rows, b)
        mb = sum(rb.values()) / len(rb)
        return stats.mean_ci([v - mb for v in ra.values()])

    def by_position(rows, a, b):
        ra = [r["margin"] for r in rows if r["condition"] == a]
        rb = [r["margin"] for r in rows if r["condition"] == b]
        return stats.mean_ci([x - y for x, y in zip(ra, rb, strict=False)])

    def reversed_(rows, a, b):
        ra, rb = runs(rows, a), runs(rows, b)
        if b == "base":
            (base,) = rb.values()
            return stats.mean_ci([base - v for v in ra.values()])
        return stats.mean_ci([rb[s] - ra[s] for s in sorted(set(ra) & set(rb))])

    return [
        (
            "Pair the runs by seed: each seed's a minus the same seed's b. Subtracting b's mean "
            "keeps the seed-to-seed spread that pairing cancels, and the interval comes out wide.",
            unpaired,
        ),
        (
            "Pair the runs by their seed, not by their order in the list (and leave out seeds "
            "that only one condition ran).",
            by_position,
        ),
        ("The contrast is a minus b (after a, higher margin: positive).", reversed_),
    ]


@_exercise("models.lm_finetunes.contrast")
def check_contrast(fn: Callable, n_trials: int = 3) -> None:
    """``fn(rows, a, b)`` -> the margin after ``a`` minus after ``b`` over seeds (paired by seed,
    or minus the single base run): ``{"mean", "ci_low", "ci_high", "n"}``."""
    lm_finetunes = importlib.import_module("emgeo.models.lm_finetunes")
    stats = importlib.import_module("emgeo.stats")
    gen = _generator(31)
    for trial in range(n_trials):
        rows = _condition_rows(gen, list(range(3 + trial)))
        for a, b in (("insecure", "secure"), ("insecure", "educational"), ("secure", "base")):
            out = _call(fn, [dict(r) for r in rows], a, b)
            want = lm_finetunes.contrast(rows, a, b)
            if not isinstance(out, dict) or not {"mean", "ci_low", "ci_high", "n"} <= set(out):
                raise CheckFailed(
                    f"`{_name(fn)}` should return a dict with mean, ci_low, ci_high and n "
                    "(`stats.mean_ci` gives one)."
                )
            if _close(out, want):
                continue
            for hint, compute in _contrast_mistakes(stats):
                if _close(out, compute(rows, a, b)):
                    raise CheckFailed(f"`{_name(fn)}` gives wrong values for {a} - {b}. {hint}")
            raise CheckFailed(
                f"`{_name(fn)}` gives wrong values for {a} - {b}: mean {out['mean']:+.4f}, n "
                f"{out['n']}; expected {want['mean']:+.4f}, n {want['n']}."
            )
    _passed(fn, f"matches on {n_trials} shuffled sets of runs, against a control and the base")


def _close(out: dict, want: dict) -> bool:
    try:
        return out["n"] == want["n"] and all(
            abs(float(out[k]) - float(want[k])) < 1e-9 for k in ("mean", "ci_low", "ci_high")
        )
    except (TypeError, ValueError, KeyError):
        return False
