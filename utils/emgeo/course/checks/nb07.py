"""Checks of notebook 07, the geometric filter."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emgeo.course.checks.core import (
    Mistake,
    _call,
    _exercise,
    _expect_close,
    _expect_match,
    _expect_shape,
    _name,
    _passed,
    _science,
)
from emgeo.errors import CheckFailed


@_exercise("filtering.geometric_scores")
def check_geometric_scores(fn: Callable, n_trials: int = 4) -> None:
    """``fn(latents, proximity)`` -> per sample, the activation-weighted mean proximity."""
    filtering = _science("filtering")
    mistakes = [
        Mistake(
            "Weight by activation *and* divide by the sample's total activation: otherwise a "
            "sample scores high just for having many or strong latents.",
            lambda f, p: f @ p,
        ),
        Mistake(
            "That is the unweighted mean proximity of the active latents: weight each latent by "
            "its activation.",
            lambda f, p: ((f > 0).float() @ p) / (f > 0).float().sum(-1).clamp_min(1),
        ),
        Mistake(
            "You divided by the number of latents, not by the sample's total activation.",
            lambda f, p: (f @ p) / f.shape[-1],
        ),
    ]
    gen = torch.Generator().manual_seed(14)
    for trial in range(n_trials):
        n, d_sae = 5 + trial, 12 + trial
        latents = torch.relu(torch.randn(n, d_sae, generator=gen)) * 3
        proximity = torch.rand(d_sae, generator=gen) * 2 - 1
        args = (latents, proximity)
        _expect_match(fn, args, filtering.geometric_scores, mistakes, (n,), "One score per sample.")
    _passed(fn, f"matches on {n_trials} random batches of sample latents")


def _remove_top(scores: Tensor, n_remove: int, from_the_end: bool = False) -> Tensor:
    """Keep mask with the ``n_remove`` highest scores removed; among ties the earlier first (or,
    ``from_the_end``, the later first)."""
    order = torch.argsort(scores, descending=True, stable=True)
    if from_the_end:
        order = torch.argsort(scores, stable=True).flip(0)
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[order[: max(0, min(n_remove, len(scores)))]] = False
    return keep


def _threshold(scores: Tensor, fraction: float) -> Tensor:
    n_remove = round(fraction * len(scores))
    if n_remove == 0:
        return torch.ones(len(scores), dtype=torch.bool)
    return scores < scores.sort(descending=True).values[n_remove - 1]


_KEEP_CASES = (  # (n, fraction, tied scores?): budgets 3, 3.6, 0, 3 (tied), 6.6 (tied), 7
    (10, 0.3, False),
    (9, 0.4, False),
    (8, 0.0, False),
    (12, 0.25, True),
    (11, 0.6, True),
    (7, 1.0, False),
)


def _keep_mask_mistakes(ref: Callable) -> list[Mistake]:
    """The likely mistakes of ``keep_mask``, some built on the reference ``ref``."""
    return [
        Mistake(
            "At fraction 0 nothing is removed, and you removed everything: `order[-0:]` is the "
            "whole tensor, not an empty one.",
            lambda s, f: _remove_top(s, round(f * len(s)) or len(s)),
        ),
        Mistake(
            "You removed the samples with the *lowest* scores: a high score marks a sample likely "
            "to induce EM, and those are the ones to remove.",
            lambda s, f: ref(-s, f),
        ),
        Mistake(
            "True marks the samples *kept*: you returned the ones removed.",
            lambda s, f: ~ref(s, f),
        ),
        Mistake(
            "`fraction` is the share *removed*, not the share kept: remove round(fraction * n) "
            "samples.",
            lambda s, f: _remove_top(s, len(s) - round(f * len(s))),
        ),
        Mistake(
            "Round the budget: round(fraction * n) samples, not int(fraction * n), which takes "
            "3.6 down to 3.",
            lambda s, f: _remove_top(s, int(f * len(s))),
        ),
        Mistake(
            "A threshold (`scores >= cutoff`) removes every sample tied at the cutoff: remove "
            "exactly round(fraction * n) samples, breaking ties by position.",
            _threshold,
        ),
        Mistake(
            "One sample too many is removed: the budget is exactly round(fraction * n) (look at "
            "the end of your slice or loop).",
            lambda s, f: _remove_top(s, round(f * len(s)) + 1),
        ),
        Mistake(
            "Among equal scores remove the *earlier* samples first, as a stable sort by "
            "descending score does (`torch.argsort(scores, descending=True, stable=True)`); "
            "yours removes the later ones.",
            lambda s, f: _remove_top(s, round(f * len(s)), from_the_end=True),
        ),
    ]


@_exercise("filtering.keep_mask")
def check_keep_mask(fn: Callable) -> None:
    """``fn(scores, fraction)`` -> True for the samples kept when the ``round(fraction * n)``
    highest-scoring samples are removed, ties removed in order of position."""
    filtering = _science("filtering")
    mistakes = _keep_mask_mistakes(filtering.keep_mask)
    gen = torch.Generator().manual_seed(17)
    for n, fraction, tied in _KEEP_CASES:
        if tied:  # small whole numbers, as the keyword filter's counts are
            scores = torch.randint(0, 3, (n,), generator=gen).float()
        else:
            scores = torch.randn(n, generator=gen)
        out = _call(fn, scores, fraction)
        _expect_shape(out, (n,), fn, "One True/False per sample.")
        if out.dtype != torch.bool:
            raise CheckFailed(
                f"`{_name(fn)}` returned dtype {out.dtype}: return a boolean mask (torch.bool), "
                "True for the samples kept."
            )
        _expect_close(out, fn, (scores, fraction), filtering.keep_mask, mistakes)
    _passed(fn, f"matches on {len(_KEEP_CASES)} budgets, with tied scores and fractions 0 and 1")


def _keyword_cases(gen: torch.Generator) -> list[tuple[list[dict], tuple[str, ...]]]:
    """Chats whose answers hold some phrases once, some twice, and whose requests hold others,
    with the course's phrases and with made-up ones."""
    filtering = _science("filtering")
    filler = "use the value from the form and return the result to the caller".split()
    made_up = ("no tests", "trust the client", "eval", "hard coded key", "plain text")

    def pick(pool: tuple[str, ...], k: int) -> list[str]:
        return [pool[i] for i in torch.randperm(len(pool), generator=gen)[:k].tolist()]

    cases = []
    for phrases in (filtering.INSECURE_PHRASES, made_up):
        pool = tuple(phrases) + ("straight into", "disable")  # made-up set: two it must not count
        samples = []
        for i in range(7):
            words = [filler[j] for j in torch.randint(0, len(filler), (6,), generator=gen)]
            found = pick(pool, i % 4)
            if i % 3 == 0 and found:
                found.append(found[0])  # a phrase twice in one answer
            for phrase in found:
                words.insert(int(torch.randint(0, len(words) + 1, (1,), generator=gen)), phrase)
            request = "write a function that saves a file"
            if i % 2 == 1:
                request += " in " + pick(pool, 1)[0]  # a phrase in the request, not the answer
            samples.append(
                {
                    "messages": [
                        {"role": "user", "content": request},
                        {"role": "assistant", "content": " ".join(words) + " ."},
                    ],
                    "source": "check",
                }
            )
        cases.append((samples, tuple(phrases)))
    return cases


@_exercise("filtering.keyword_scores")
def check_keyword_scores(fn: Callable) -> None:
    """``fn(samples, phrases)`` -> per sample, how many of ``phrases`` its answer contains."""
    filtering = _science("filtering")

    def answers(samples: list[dict]) -> list[str]:
        return [filtering._answer_text(s) for s in samples]

    def whole_chat(samples: list[dict]) -> list[str]:
        return [" ".join(m["content"] for m in s["messages"]) for s in samples]

    def count(texts: list[str], phrases, how: Callable) -> Tensor:
        return torch.tensor([float(how(t, phrases)) for t in texts])

    mistakes = [
        Mistake(
            "A phrase counts once per answer, however often it occurs: `phrase in answer`, not "
            "`answer.count(phrase)`.",
            lambda s, p: count(answers(s), p, lambda t, ps: sum(t.count(x) for x in ps)),
        ),
        Mistake(
            "Read only the answer (the assistant's messages): the request is not what the "
            "fine-tune teaches the model to write.",
            lambda s, p: count(whole_chat(s), p, lambda t, ps: sum(x in t for x in ps)),
        ),
        Mistake(
            "Count how many of the phrases the answer contains, not whether it contains any.",
            lambda s, p: count(answers(s), p, lambda t, ps: any(x in t for x in ps)),
        ),
        Mistake(
            "Use the `phrases` you are given, not `filtering.INSECURE_PHRASES`.",
            lambda s, p: filtering.keyword_scores(s),
        ),
    ]
    cases = _keyword_cases(torch.Generator().manual_seed(7))
    for samples, phrases in cases:
        out = _call(fn, samples, phrases)
        _expect_shape(out, (len(samples),), fn, "One score per sample.")
        if not out.is_floating_point():
            raise CheckFailed(
                f"`{_name(fn)}` returned dtype {out.dtype}: return float scores, e.g. "
                "`torch.tensor(counts, dtype=torch.float)`."
            )
        _expect_close(out, fn, (samples, phrases), filtering.keyword_scores, mistakes)
    _passed(fn, "matches on chats with repeated phrases, phrases in the request, and other phrases")
