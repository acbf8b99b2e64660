"""Meta-test cases of notebook 07's checks: the reference, correct alternatives, planted bugs."""

from __future__ import annotations

import torch

from check_cases import UNDIAGNOSED, Case
from emgeo import filtering


def _scores_in_place(latents, proximity):
    latents /= latents.sum(-1, keepdim=True).clamp_min(1e-8)  # weights summing to 1, in place
    return latents @ proximity


def _scores_weighted_sum(latents, proximity):
    return (latents * proximity).sum(-1) / latents.sum(-1)


def _scores_unnormalized(latents, proximity):
    return latents @ proximity


def _scores_unweighted(latents, proximity):
    active = (latents > 0).float()
    return (active @ proximity) / active.sum(-1).clamp_min(1)


def _scores_per_latent(latents, proximity):
    return (latents @ proximity) / latents.shape[-1]


def _scores_max(latents, proximity):
    return torch.where(latents > 0, proximity, -2.0).max(-1).values


def _keep_sorted(scores, fraction):
    n_remove = round(fraction * len(scores))
    _, order = torch.sort(-scores, stable=True)  # ascending -score: highest first, ties in order
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[order[:n_remove]] = False
    return keep


def _keep_loop(scores, fraction):
    n_remove = round(fraction * len(scores))
    ranked = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    removed = set(ranked[:n_remove])
    return torch.tensor([i not in removed for i in range(len(scores))])


def _keep_rank(scores, fraction):
    scores -= scores.min()  # in place: the ranks do not change
    n = len(scores)
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.argsort(scores, descending=True, stable=True)] = torch.arange(n)
    return rank >= round(fraction * n)


def _remove_lowest(scores, fraction):
    return filtering.keep_mask(-scores, fraction)


def _return_removed(scores, fraction):
    return ~filtering.keep_mask(scores, fraction)


def _share_kept(scores, fraction):
    return filtering.keep_mask(scores, 1 - fraction)


def _truncated(scores, fraction):
    n_remove = int(fraction * len(scores))
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[torch.argsort(scores, descending=True, stable=True)[:n_remove]] = False
    return keep


def _one_too_many(scores, fraction):
    n_remove = round(fraction * len(scores))
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[torch.argsort(scores, descending=True, stable=True)[: n_remove + 1]] = False
    return keep


def _tail_of_ascending(scores, fraction):
    n_remove = round(fraction * len(scores))
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[torch.argsort(scores, stable=True)[-n_remove:]] = False  # [-0:] is everything
    return keep


def _ties_from_the_end(scores, fraction):
    n_remove = round(fraction * len(scores))
    keep = torch.ones(len(scores), dtype=torch.bool)
    if n_remove:
        keep[torch.argsort(scores, stable=True)[-n_remove:]] = False
    return keep


def _cutoff(scores, fraction):
    n_remove = round(fraction * len(scores))
    if n_remove == 0:
        return torch.ones(len(scores), dtype=torch.bool)
    return scores < torch.topk(scores, n_remove).values[-1]


def _float_mask(scores, fraction):
    return filtering.keep_mask(scores, fraction).float()


def _keyword_loop(samples, phrases):
    out = []
    for sample in samples:
        answer = sample["messages"][-1]["content"]
        out.append(len([p for p in phrases if p in answer]))
    return torch.tensor(out, dtype=torch.float)


def _keyword_set(samples, phrases):
    for sample in samples:  # in place: the requests are emptied once read past
        sample["messages"] = [m for m in sample["messages"] if m["role"] == "assistant"]
    found = [{p for p in phrases if p in s["messages"][0]["content"]} for s in samples]
    return torch.tensor([len(f) for f in found]).float()


def _keyword_occurrences(samples, phrases):
    answers = [s["messages"][-1]["content"] for s in samples]
    return torch.tensor([float(sum(a.count(p) for p in phrases)) for a in answers])


def _keyword_whole_chat(samples, phrases):
    texts = [" ".join(m["content"] for m in s["messages"]) for s in samples]
    return torch.tensor([float(sum(p in t for p in phrases)) for t in texts])


def _keyword_any(samples, phrases):
    answers = [s["messages"][-1]["content"] for s in samples]
    return torch.tensor([float(any(p in a for p in phrases)) for a in answers])


def _keyword_default_phrases(samples, phrases):
    return filtering.keyword_scores(samples)


def _keyword_ints(samples, phrases):
    return filtering.keyword_scores(samples, phrases).long()


def _keyword_words(samples, phrases):
    words = {w for p in phrases for w in p.split()}
    answers = [s["messages"][-1]["content"].split() for s in samples]
    return torch.tensor([float(sum(w in words for w in a)) for a in answers])


CASES = {
    "check_geometric_scores": Case(
        filtering.geometric_scores,
        (_scores_in_place, _scores_weighted_sum),
        (
            (_scores_unnormalized, "otherwise a sample scores high"),
            (_scores_unweighted, "the unweighted mean proximity"),
            (_scores_per_latent, "divided by the number of latents"),
            (_scores_max, UNDIAGNOSED),
        ),
    ),
    "check_keep_mask": Case(
        filtering.keep_mask,
        (_keep_sorted, _keep_loop, _keep_rank),
        (
            (_remove_lowest, "the *lowest* scores"),
            (_return_removed, "True marks the samples *kept*"),
            (_share_kept, "the share *removed*"),
            (_truncated, "Round the budget"),
            (_one_too_many, "One sample too many"),
            (_tail_of_ascending, "`order[-0:]` is the"),
            (_ties_from_the_end, "remove the *earlier* samples first"),
            (_cutoff, "A threshold"),
            (_float_mask, "return a boolean mask"),
        ),
    ),
    "check_keyword_scores": Case(
        filtering.keyword_scores,
        (_keyword_loop, _keyword_set),
        (
            (_keyword_occurrences, "counts once per answer"),
            (_keyword_whole_chat, "Read only the answer"),
            (_keyword_any, "not whether it contains any"),
            (_keyword_default_phrases, "Use the `phrases` you are given"),
            (_keyword_ints, "return float scores"),
            (_keyword_words, UNDIAGNOSED),
        ),
    ),
}
