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


# -- the geometric score taken apart ------------------------------------------------------------


def _ablated_in_place(latents, proximity, toxic):
    total = latents.sum(-1).clamp_min(1e-8)
    full = (latents @ proximity) / total
    membership = latents[:, toxic].sum(-1) / total
    latents[:, toxic] = 0  # in place: the toxic latents leave the neighbours' score
    neighbours = (latents @ proximity) / latents.sum(-1).clamp_min(1e-8)
    return {"full": full, "membership only": membership, "neighbours only": neighbours}


def _ablated_masked(latents, proximity, toxic):
    is_toxic = torch.zeros(latents.shape[-1], dtype=torch.bool)
    is_toxic[toxic] = True
    total = latents.sum(-1)
    outside = latents[:, ~is_toxic]
    near = outside.sum(-1)
    neighbours = torch.where(near > 0, (outside @ proximity[~is_toxic]) / near, 0.0)
    return {
        "full": torch.where(total > 0, (latents @ proximity) / total, 0.0),
        "membership only": torch.where(total > 0, latents[:, is_toxic].sum(-1) / total, 0.0),
        "neighbours only": neighbours,
    }


def _with(part, compute):
    def bug(latents, proximity, toxic):
        return filtering.ablated_scores(latents, proximity, toxic) | {
            part: compute(latents, proximity, toxic)
        }

    return bug


def _outside(latents, toxic):
    kept = latents.clone()
    kept[:, toxic] = 0
    return kept


_diluted = _with(
    "neighbours only",
    lambda f, p, t: (_outside(f, t) @ p) / f.sum(-1).clamp_min(1e-8),
)
_toxic_kept = _with("neighbours only", lambda f, p, t: filtering.geometric_scores(f, p))
_nan_rows = _with("neighbours only", lambda f, p, t: (_outside(f, t) @ p) / _outside(f, t).sum(-1))
_membership_sum = _with("membership only", lambda f, p, t: f[:, t].sum(-1))
_full_outside = _with("full", lambda f, p, t: filtering.geometric_scores(_outside(f, t), p))
_membership_count = _with("membership only", lambda f, p, t: (f[:, t] > 0).float().sum(-1) / len(t))


def _ablated_keys(latents, proximity, toxic):
    parts = filtering.ablated_scores(latents, proximity, toxic)
    return {key.replace(" ", "_"): value for key, value in parts.items()}


# -- the seed-paired cut ------------------------------------------------------------------------


def _cut_loop(rows, name, reference):
    from emgeo import stats

    ref = {}
    for row in rows:
        if row["filter"] == reference:
            ref[row["seed"]] = row["offdomain"]
    cuts = [1 - r["offdomain"] / ref[r["seed"]] for r in rows if r["filter"] == name]
    return stats.mean_ci(cuts)


def _cut_pandas(rows, name, reference):
    import pandas as pd

    from emgeo import stats

    table = pd.DataFrame(rows).pivot(index="seed", columns="filter", values="offdomain")
    return stats.mean_ci((1 - table[name] / table[reference]).tolist())


def _cut_of_means(rows, name, reference):
    from emgeo import stats

    f = [r["offdomain"] for r in rows if r["filter"] == name]
    r = [r["offdomain"] for r in rows if r["filter"] == reference]
    return stats.mean_ci([1 - sum(f) / sum(r)] * len(f))


def _cut_by_position(rows, name, reference):
    from emgeo import stats

    f = [r["offdomain"] for r in rows if r["filter"] == name]
    r = [r["offdomain"] for r in rows if r["filter"] == reference]
    return stats.mean_ci([1 - a / b for a, b in zip(f, r, strict=True)])


def _cut_ratio(rows, name, reference):
    out = filtering.paired_reduction(rows, name, reference)
    from emgeo import stats

    ref = {r["seed"]: r["offdomain"] for r in rows if r["filter"] == reference}
    return stats.mean_ci(
        [r["offdomain"] / ref[r["seed"]] - 1 for r in rows if r["filter"] == name]
    ) | {"n": out["n"]}


def _cut_normal(rows, name, reference):
    out = dict(filtering.paired_reduction(rows, name, reference))
    ref = {r["seed"]: r["offdomain"] for r in rows if r["filter"] == reference}
    cuts = torch.tensor([1 - r["offdomain"] / ref[r["seed"]] for r in rows if r["filter"] == name])
    half = 1.96 * cuts.std().item() / len(cuts) ** 0.5
    return out | {"ci_low": out["mean"] - half, "ci_high": out["mean"] + half}


def _cut_wrong_reference(rows, name, reference):
    return filtering.paired_reduction(
        rows, name, "no filter" if reference == "random" else "random"
    )


def _cut_tuple(rows, name, reference):
    out = filtering.paired_reduction(rows, name, reference)
    return out["mean"], out["ci_low"], out["ci_high"]


CASES |= {
    "check_ablated_scores": Case(
        filtering.ablated_scores,
        (_ablated_in_place, _ablated_masked),
        (
            (_diluted, "'full minus membership'"),
            (_toxic_kept, "still in your neighbours' score"),
            (_nan_rows, "not NaN"),
            (_membership_sum, "*total* activation"),
            (_full_outside, "over every latent the sample fires"),
            (_membership_count, UNDIAGNOSED),
            (_ablated_keys, "should return a dict with the keys"),
        ),
    ),
    "check_paired_reduction": Case(
        filtering.paired_reduction,
        (_cut_loop, _cut_pandas),
        (
            (_cut_of_means, "Pair by seed"),
            (_cut_by_position, "not by their position"),
            (_cut_ratio, "1 - filtered / reference"),
            (_cut_normal, "Student's t"),
            (_cut_wrong_reference, "gives wrong values: mean"),
            (_cut_tuple, "should return a dict"),
        ),
    ),
}
