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
    _generator,
    _name,
    _passed,
    _run,
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
    gen = _generator(14)
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
    gen = _generator(17)
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
    cases = _keyword_cases(_generator(7))
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


_PARTS = ("full", "membership only", "neighbours only")


def _parts(fn: Callable, args: tuple) -> dict[str, Tensor]:
    out = _call(fn, *args)
    if not isinstance(out, dict) or set(out) != set(_PARTS):
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise CheckFailed(
            f"`{_name(fn)}` should return a dict with the keys {list(_PARTS)}, got {got}."
        )
    return out


def _ablation_mistakes(filtering) -> dict[str, list[Mistake]]:
    """Per part, the likely mistakes, each a whole wrong ``(latents, proximity, toxic)``."""

    def outside(f: Tensor, t: Tensor) -> Tensor:
        kept = f.clone()
        kept[:, t] = 0
        return kept

    score = filtering.geometric_scores
    return {
        "membership only": [
            Mistake(
                "Divide by the sample's *total* activation: the share on the toxic latents, not "
                "their summed activation.",
                lambda f, p, t: f[:, t].sum(-1),
            ),
        ],
        "neighbours only": [
            Mistake(
                "You divided the neighbours' sum by *all* of the sample's activation: that is "
                "'full minus membership', and a sample that fires toxic latents scores lower by "
                "dilution alone. Divide by the activation of the non-toxic latents only.",
                lambda f, p, t: (outside(f, t) @ p) / f.sum(-1).clamp_min(1e-8),
            ),
            Mistake(
                "The toxic latents are still in your neighbours' score: leave them out of the "
                "numerator and the denominator (`latents[:, toxic] = 0` on a copy).",
                lambda f, p, t: score(f, p),
            ),
            Mistake(
                "A sample with no activation outside the toxic set has no neighbours to score: "
                "it scores 0 (clamp the denominator, e.g. `.clamp_min(1e-8)`), not NaN.",
                lambda f, p, t: (outside(f, t) @ p) / outside(f, t).sum(-1),
            ),
        ],
        "full": [
            Mistake(
                "`full` is the geometric score itself, over every latent the sample fires.",
                lambda f, p, t: score(outside(f, t), p),
            ),
        ],
    }


def _ablation_inputs(gen: torch.Generator, trial: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sparse latents, a proximity of 1 on the toxic latents, and rows that fire toxic latents
    only, none, or no toxic latent at all."""
    n, d_sae = 6 + trial, 14 + trial
    latents = torch.relu(torch.randn(n, d_sae, generator=gen) - 0.3) * 3
    toxic = torch.randperm(d_sae, generator=gen)[:4]
    proximity = torch.rand(d_sae, generator=gen) * 1.6 - 0.6
    proximity[toxic] = 1.0
    only_toxic = torch.zeros(d_sae)
    only_toxic[toxic[:2]] = torch.rand(2, generator=gen) + 0.5
    latents[0] = only_toxic  # no activation outside the toxic set
    latents[1, toxic] = 0.0  # no toxic activation
    latents[2, toxic] *= 4  # mostly toxic
    return latents, proximity, toxic


@_exercise("filtering.ablated_scores")
def check_ablated_scores(fn: Callable, n_trials: int = 4) -> None:
    """``fn(latents, proximity, toxic)`` -> ``{"full", "membership only", "neighbours only"}``,
    one score per sample each (:func:`emgeo.filtering.ablated_scores`)."""
    filtering = _science("filtering")
    mistakes = _ablation_mistakes(filtering)
    gen = _generator(23)
    for trial in range(n_trials):
        args = _ablation_inputs(gen, trial)
        out = _parts(fn, args)
        expected = _run(filtering.ablated_scores, args)
        for part in _PARTS:
            _expect_shape(out[part], (len(args[0]),), fn, f"One {part!r} score per sample.")
            _expect_part(fn, part, out[part], expected[part], args, mistakes[part])
    _passed(
        fn,
        f"matches on {n_trials} random batches, with samples that fire only toxic latents, "
        "none, or mostly toxic ones",
    )


def _expect_part(
    fn: Callable, part: str, out: Tensor, expected: Tensor, args: tuple, mistakes: list[Mistake]
) -> None:
    """One part of ``fn``'s answer against the reference's; a mismatch names its mistake."""
    if torch.allclose(out.float(), expected, atol=1e-5, rtol=1e-4, equal_nan=False):
        return
    for mistake in mistakes:
        wrong = _run(mistake.compute, args).float()
        if torch.allclose(out.float(), wrong, atol=1e-5, rtol=1e-4, equal_nan=True):
            raise CheckFailed(f"`{_name(fn)}` gives wrong {part!r} scores. {mistake.hint}")
    if torch.isnan(out).any():
        raise CheckFailed(f"`{_name(fn)}` gives NaN {part!r} scores: no score may be NaN.")
    err = (out.float() - expected).abs().max().item()
    raise CheckFailed(f"`{_name(fn)}` gives wrong {part!r} scores (largest error {err:.3g}).")


def _seed_rows(gen: torch.Generator, n_seeds: int) -> list[dict]:
    """Runs of three filters over ``n_seeds`` seeds, in an order that pairs nothing by position."""
    rows = []
    for seed in range(n_seeds):
        base = 0.2 + 0.1 * torch.rand(1, generator=gen).item()
        rows.append({"filter": "random", "seed": seed, "offdomain": base})
        cut = 0.05 + 0.3 * torch.rand(1, generator=gen).item()
        rows.append({"filter": "geometric (max)", "seed": seed, "offdomain": base * (1 - cut)})
        rows.append({"filter": "no filter", "seed": seed, "offdomain": base * 1.05})
    order = torch.randperm(len(rows), generator=gen).tolist()
    return [rows[i] for i in order]


def _cut_mistakes(stats) -> list[tuple[str, Callable[[list[dict], str, str], dict]]]:
    def by_seed(rows: list[dict], name: str) -> dict[int, float]:
        return {r["seed"]: r["offdomain"] for r in rows if r["filter"] == name}

    def of_means(rows, name, ref):
        f, r = by_seed(rows, name), by_seed(rows, ref)
        return {"mean": 1 - sum(f.values()) / sum(r.values())}

    def by_position(rows, name, ref):
        f = [r["offdomain"] for r in rows if r["filter"] == name]
        r = [r["offdomain"] for r in rows if r["filter"] == ref]
        return stats.mean_ci([1 - a / b for a, b in zip(f, r, strict=True)])

    def ratio(rows, name, ref):
        f, r = by_seed(rows, name), by_seed(rows, ref)
        return stats.mean_ci([f[s] / r[s] - 1 for s in f])

    def normal(rows, name, ref):
        f, r = by_seed(rows, name), by_seed(rows, ref)
        cuts = [1 - f[s] / r[s] for s in f]
        out = stats.mean_ci(cuts)
        sd = float(torch.tensor(cuts).std())
        half = 1.96 * sd / len(cuts) ** 0.5
        return out | {"ci_low": out["mean"] - half, "ci_high": out["mean"] + half}

    return [
        (
            "Pair by seed: the cut of each seed, 1 - EM(filter, seed) / EM(reference, seed), "
            "then their mean; 1 - mean / mean is the cut of the means, with no interval.",
            of_means,
        ),
        (
            "Pair the runs by their seed, not by their position in the list: the rows come in no "
            "particular order.",
            by_position,
        ),
        ("A cut is 1 - filtered / reference (positive when the filter lowers EM).", ratio),
        (
            "With a handful of seeds the interval is Student's t (`stats.mean_ci`), wider than "
            "the normal one with 1.96.",
            normal,
        ),
    ]


@_exercise("filtering.paired_reduction")
def check_paired_reduction(fn: Callable, n_trials: int = 4) -> None:
    """``fn(rows, name, reference)`` -> the seed-paired relative cut of EM of filter ``name``
    against ``reference``: ``{"mean", "ci_low", "ci_high", "n"}``."""
    filtering, stats = _science("filtering"), _science("stats")
    gen = _generator(29)
    for trial in range(n_trials):
        rows = _seed_rows(gen, 3 + trial)
        for ref in ("random", "no filter"):
            args = (rows, "geometric (max)", ref)
            out = _call(fn, *args)
            expected = _run(filtering.paired_reduction, args)
            if not isinstance(out, dict) or not {"mean", "ci_low", "ci_high"} <= set(out):
                got = sorted(out) if isinstance(out, dict) else type(out).__name__
                raise CheckFailed(
                    f"`{_name(fn)}` should return a dict with mean, ci_low, ci_high and n "
                    f"(as `stats.mean_ci` does), got {got}."
                )
            if _same(out, expected, ("mean", "ci_low", "ci_high")):
                if out.get("n") != expected["n"]:
                    raise CheckFailed(f"`{_name(fn)}`: n is the number of paired seeds.")
                continue
            for hint, compute in _cut_mistakes(stats):
                wrong = compute(*_copy_rows(args))
                keys = [k for k in ("mean", "ci_low", "ci_high") if k in wrong]
                if _same(out, wrong, keys):
                    raise CheckFailed(f"`{_name(fn)}` gives wrong values. {hint}")
            raise CheckFailed(
                f"`{_name(fn)}` gives wrong values: mean {out['mean']:.4f}, expected "
                f"{expected['mean']:.4f} (interval [{expected['ci_low']:.4f}, "
                f"{expected['ci_high']:.4f}])."
            )
    _passed(fn, f"matches on {n_trials} sets of shuffled runs, against random and no filter")


def _copy_rows(args: tuple) -> tuple:
    rows, name, ref = args
    return [dict(r) for r in rows], name, ref


def _same(out: dict, expected: dict, keys) -> bool:
    try:
        return all(abs(float(out[k]) - float(expected[k])) < 1e-6 for k in keys)
    except (TypeError, ValueError, KeyError):
        return False
