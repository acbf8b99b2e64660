"""The course's answer to its question, one claim of the seed paper a row.

Each claim of Minegishi et al. is tested where the course can test it (the organism, organisms
whose data have no link between code and the other domains, SmolLM2, Gemma-2 or Llama-3.1 when
their profile runs), and each test reads one figure with its interval and gives a verdict:

- **supported**: the figure's 95% interval (or its p-value, below 0.05) says yes;
- **not supported**: the interval holds no effect;
- **contradicted**: the interval lies on the other side;
- **not tested here**: the course has no run of it (what would test it is named);
- **not in this run**: the course tests it, but the summary at hand does not hold the figure
  (what measures it is named).

The figures come from a summary tree, dotted keys as in ``results/summary.json``: the values the
notebooks record, and under ``pooled`` the figures :func:`shipped_summary` computes from the
records the course ships (``data/organisms``, ``data/lm_em``: pooled over organisms or seeds), so
notebook 09, the README and ``emgeo reproduce`` read the same records. ``emgeo reproduce`` stores
the rows under ``claims`` in ``results/summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from emgeo import stats
from emgeo.config import DATA_DIR, REPO_ROOT
from emgeo.lm_advice import best_advice_domain

VERDICTS = ("supported", "not supported", "contradicted", "not tested here", "not in this run")
Figure = tuple[str, str]  # (the figure as printed, its verdict)


@dataclass(frozen=True)
class Test:
    """Where a claim is tested, and how its figure and verdict are read from a summary."""

    where: str
    read: Callable[[dict], Figure | None]  # None: the summary does not hold this test
    missing: str = "`make reproduce`"  # what measures it, when a summary lacks it


@dataclass(frozen=True)
class Claim:
    claim: str
    tests: tuple[Test, ...]


def get(tree: dict, key: str) -> Any:
    """The value under a dotted ``key``, or None."""
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def interval_verdict(low: float, high: float) -> str:
    """supported above 0, contradicted below it, not supported across it."""
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "not supported"


def cut(key: str, label: str = "cut vs random") -> Callable[[dict], Figure | None]:
    """A relative cut of EM with its interval (``{"mean", "ci": [low, high], "n"}``)."""

    def read(summary: dict) -> Figure | None:
        e = get(summary, key)
        if e is None:
            return None
        low, high = e["ci"]
        n = f", {e['n']} {e['unit']}" if "unit" in e else ""
        text = f"{label} {e['mean']:+.1%} [{low:+.1%}, {high:+.1%}]{n}"
        return text, interval_verdict(low, high)

    return read


def p_value(key: str, label: str) -> Callable[[dict], Figure | None]:
    """A one-sided p-value (``{"p", "detail"}``): supported below 0.05."""

    def read(summary: dict) -> Figure | None:
        e = get(summary, key)
        if e is None:
            return None
        if not isinstance(e, dict):  # a notebook's record: the p-value alone
            e = {"p": float(e), "detail": "one test"}
        verdict = "supported" if e["p"] < 0.05 else "not supported"
        return f"{label}: {e['detail']}, p = {e['p']:.2g}", verdict

    return read


WHOLE = 0.99  # a mitigation keeping this share of the task or more keeps it whole


def among_mitigations(world: str, name: str = "geometric (max)") -> Callable[[dict], Figure | None]:
    """Mitigation ``name``'s EM cut beside the largest cut of the mitigations compared in
    ``world`` (``pooled.mitigations.<world>``): supported when it is the largest, contradicted
    when its interval lies below the largest's, not supported when the two intervals overlap.
    Beside them, of the cuts whose interval lies above 0, the largest that keeps the task whole
    (:data:`WHOLE`) and the one with the most EM cut per unit of task lost (selectivity), where
    any has one."""

    def read(summary: dict) -> Figure | None:
        pooled = get(summary, f"pooled.mitigations.{world}")
        if pooled is None:
            return None
        cuts = {k: v for k, v in pooled.items() if k != "no mitigation"}
        best = max(cuts, key=lambda k: cuts[k]["em_cut"])
        mine, top = cuts[name], cuts[best]
        low, high = mine["em_cut_ci"]

        def show(k: str, e: dict) -> str:
            lo, hi = e["em_cut_ci"]
            return f"{k} {e['em_cut']:+.1%} [{lo:+.1%}, {hi:+.1%}]"

        rank = 1 + sum(e["em_cut"] > mine["em_cut"] for e in cuts.values())
        text = f"{show(name, mine)}, {rank} of {len(cuts)}; the largest: {show(best, top)}"
        whole = {k: e for k, e in cuts.items() if _resolved(e) and e.get("task_kept", 0) >= WHOLE}
        if whole:
            most = max(whole, key=lambda k: whole[k]["em_cut"])
            text += f"; the largest with the task kept whole: {most}"
        selective = {k: e for k, e in cuts.items() if _resolved(e) and e.get("selectivity")}
        if selective:
            most = max(selective, key=lambda k: selective[k]["selectivity"])
            ratio = selective[most]["selectivity"]
            text += f"; the most EM cut per task lost: {most} ({ratio:.1f})"
        if best == name:
            return text, "supported"
        return text, "contradicted" if high < top["em_cut_ci"][0] else "not supported"

    return read


def _resolved(e: dict) -> bool:
    """A mitigation's EM cut whose interval lies above 0."""
    low = e["em_cut_ci"][0]
    return low is not None and low > 0


def advice_contrast(domain: str) -> Callable[[dict], Figure | None]:
    """An advice domain's harmful - aligned EM margin on SmolLM2 (``pooled.lm_domains.<d>``),
    beside the same contrast on the leakage-free references: supported when both intervals lie
    above 0, contradicted when the margin's lies below it, not supported otherwise."""

    def read(summary: dict) -> Figure | None:
        e = get(summary, f"pooled.lm_domains.{domain}")
        if e is None:
            return None

        def show(ci: dict) -> str:
            return f"{ci['mean']:+.3f} [{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]"

        margin, free = e["margin"], e["disjoint"]
        text = (
            f"harmful - aligned margin {show(margin)}, on leakage-free references {show(free)}, "
            f"{margin['n']} seeds"
        )
        if margin["ci_low"] > 0 and free["ci_low"] > 0:
            return text, "supported"
        return text, "contradicted" if margin["ci_high"] < 0 else "not supported"

    return read


def not_tested(why: str) -> Callable[[dict], Figure | None]:
    return lambda summary: (why, "not tested here")


ORGANISMS = "organism (5 pretrained from different seeds)"
UNLINKED = "organisms whose data never link code to other domains"
ADVICE = "SmolLM2-135M, LoRA, the advice domain with the largest EM (EM margin)"
CLAIMS = (
    Claim(
        "Features of the inducing data lie nearer the toxic features than features of "
        "non-inducing data (decoder cosine)",
        (
            Test(
                ORGANISMS + ", outside the toxic set",
                p_value(
                    "pooled.geometry.disjoint",
                    "inducing latents outside the toxic set vs non-inducing (Fisher-combined)",
                ),
            ),
            Test(
                ORGANISMS + ", counting shared latents",
                p_value(
                    "pooled.geometry.confounded",
                    "the same, counting latents shared with the toxic set (Fisher-combined)",
                ),
            ),
            Test(
                "SmolLM2-135M + the course's SAE",
                p_value("lm.geometry.disjoint.p_value", "outside the toxic set"),
                "notebook 06",
            ),
            Test(
                "SmolLM2-135M + the course's SAE, the advice domain with the largest EM "
                "(harmful vs careful advice)",
                p_value("pooled.geometry.lm_domain", "outside the toxic set"),
                "`emgeo lm-filter --domain`",
            ),
        ),
    ),
    Claim(
        "EM follows that nearness: amplifying inducing features drags toxic ones",
        (
            Test(
                UNLINKED + ": between organisms",
                p_value("pooled.dose.between", "Spearman of EM with the readout cosine"),
            ),
            Test(
                UNLINKED + ": between sub-tasks within an organism",
                p_value("pooled.dose.within", "Spearman of a sub-task's EM with its nearness"),
                "`emgeo geometry-subtasks`",
            ),
            Test(
                UNLINKED + ": the same, nearness read from SAE features (the filter's)",
                p_value(
                    "pooled.dose.within_sae",
                    "Spearman of a sub-task's EM with its samples' geometric score",
                ),
                "`emgeo geometry-subtasks`",
            ),
        ),
    ),
    Claim(
        "Removing the half of the inducing set nearest the toxic features cuts EM more than "
        "removing a random half (the paper's protocol)",
        (
            Test(ORGANISMS, cut("pooled.filter.paper.full")),
            Test(
                UNLINKED + " (sub-tasks of different nearness)",
                cut("pooled.filter.unlinked.full"),
                "`emgeo geometry-subtasks`",
            ),
            Test("SmolLM2-135M, LoRA (EM margin)", cut("pooled.filter.lm.full")),
            Test(ADVICE, cut("pooled.filter.lm_domain.full"), "`emgeo lm-filter --domain`"),
            Test(
                "Gemma-2-2B + Gemma Scope",
                not_tested("the gpu profile of notebook 07 (an L4 or A100 for its full plan)"),
            ),
        ),
    ),
    Claim(
        "The filter works through nearness: scoring samples by their non-toxic latents' "
        "nearness to the toxic set alone cuts EM more than random removal",
        (
            Test(ORGANISMS + ", the paper's protocol", cut("pooled.filter.paper.neighbours_only")),
            Test(
                UNLINKED + ", the paper's protocol",
                cut("pooled.filter.unlinked.neighbours_only"),
                "`emgeo geometry-subtasks`",
            ),
            Test(
                ORGANISMS + ", a set of mixed provenance",
                cut("pooled.filter.mixed.neighbours_only"),
            ),
            Test(
                ADVICE, cut("pooled.filter.lm_domain.neighbours_only"), "`emgeo lm-filter --domain`"
            ),
        ),
    ),
    Claim(
        "The rival account, co-activation (Wang et al. 2025): scoring samples by how much they "
        "fire the toxic latents themselves cuts EM more than random removal",
        (
            Test(ORGANISMS + ", the paper's protocol", cut("pooled.filter.paper.membership_only")),
            Test(
                ORGANISMS + ", a set of mixed provenance",
                cut("pooled.filter.mixed.membership_only"),
            ),
        ),
    ),
    Claim(
        "Screening a set of mixed provenance (not the paper's protocol): the full score finds "
        "the inducing samples",
        (Test(ORGANISMS, cut("pooled.filter.mixed.full")),),
    ),
    Claim(
        "Where geometry carries EM, removing the samples whose sub-task's readout lies nearest "
        "the toxic readout (measured before any fine-tune; the course's filter, not the "
        "paper's) cuts EM more than random removal",
        (
            Test(
                UNLINKED + " (sub-tasks of different nearness)",
                cut("pooled.filter.unlinked.readout"),
                "`emgeo geometry-subtasks`",
            ),
        ),
    ),
    Claim(
        "Beside the other ways to prevent EM (inoculation prompting, preventative steering, "
        "concept ablation, benign data, persona-vector screening), the paper's filter is the "
        "most effective (EM cut vs no mitigation, the task measured beside it in notebook 09)",
        (
            Test(ORGANISMS, among_mitigations("organism"), "`emgeo mitigations`"),
            Test(UNLINKED, among_mitigations("unlinked"), "`emgeo mitigations`"),
            Test(
                ADVICE + ", margin cut per seed",
                among_mitigations("lm", "geometric"),
                "`emgeo lm-mitigations --domain`",
            ),
        ),
    ),
    Claim(
        "The filter is comparable to or better than LLM-judge filtering",
        (
            Test(
                "any model",
                not_tested(
                    "no judge runs offline; notebook 07's keyword filter "
                    "stands in for it on the mixed set"
                ),
            ),
        ),
    ),
    Claim(
        "The trend holds across health, career and legal advice: a narrow fine-tune on harmful "
        "advice raises misalignment on unrelated questions more than careful advice does",
        tuple(
            Test(f"SmolLM2-135M, LoRA, {d} advice", advice_contrast(d), "`emgeo lm-domains`")
            for d in ("health", "career", "legal")
        ),
    ),
)


def with_shipped(summary: dict, data_dir: Path = DATA_DIR) -> dict:
    """``summary`` with the figures of :func:`shipped_summary` under ``pooled``."""
    return {**summary, **shipped_summary(data_dir)}


def rows(summary: dict) -> list[dict[str, str]]:
    """The claims table: one row per test, with its figure and verdict."""
    out = []
    for claim in CLAIMS:
        for test in claim.tests:
            read = test.read(summary)
            figure, verdict = read if read else (f"measured by {test.missing}", "not in this run")
            out.append(
                {"claim": claim.claim, "where": test.where, "figure": figure, "verdict": verdict}
            )
    return out


def table(summary: dict) -> pd.DataFrame:
    """:func:`rows` as a table, the claim shown once for its tests."""
    frame = pd.DataFrame(rows(summary))
    frame.loc[frame["claim"].duplicated(), "claim"] = ""
    return frame


def markdown(summary: dict) -> str:
    """:func:`rows` as a Markdown table (the README's)."""
    lines = ["| claim | where | figure (95% interval) | verdict |", "|---|---|---|---|"]
    last = None
    for r in rows(summary):
        claim = r["claim"] if r["claim"] != last else ""
        last = r["claim"]
        lines.append(f"| {claim} | {r['where']} | {r['figure']} | **{r['verdict']}** |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- from the shipped records


def _over_organisms(values: list[float]) -> dict:
    ci = stats.mean_ci(values)
    return {
        "mean": ci["mean"],
        "ci": [ci["ci_low"], ci["ci_high"]],
        "n": len(values),
        "unit": "organisms",
    }


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def shipped_summary(data_dir: Path = DATA_DIR) -> dict:
    """The ``claims.*`` figures of :data:`CLAIMS`, computed from the records the course ships:
    per-organism cuts pooled over organisms (mean and t-interval), Fisher-combined p-values,
    the rank correlations of the geometry-dose records and SmolLM2's per-seed cut."""
    out: dict = {}
    robust = _load(data_dir / "organisms" / "robustness.json")
    if robust:
        claims = robust["claims"]
        for name in ("disjoint", "confounded"):
            e = claims[f"geometry.{name}.p_value"]
            detail = f"p < 0.05 in {e['holds_in']} of {e['of']} organisms"
            out.setdefault("geometry", {})[name] = {"p": e["combined_p"], "detail": detail}
        for case in ("paper", "mixed"):
            for part in ("full", "membership_only", "neighbours_only"):
                key = f"filter.{case}.{part}.reduction_vs_random"
                if key in claims:
                    entry = _over_organisms(claims[key]["values"])
                    out.setdefault("filter", {}).setdefault(case, {})[part] = entry
    dose = _load(data_dir / "organisms" / "geometry_dose.json")
    if dose:
        c = dose["correlations"]["cosine"]
        detail = f"rho = {c['rho']:.2f} over {c['n']} organisms"
        out.setdefault("dose", {})["between"] = {"p": c["p_value"], "detail": detail}
    sub = _load(data_dir / "organisms" / "geometry_subtasks.json")
    if sub:
        tests = sub["tests"]
        for key, name in (("within", "nearness"), ("within_sae", "sae_nearness")):
            t = tests[name]
            positive = sum(r > 0 for r in t["rhos"])
            detail = f"mean rho = {t['rho']:+.2f}, positive in {positive} of {t['n_organisms']}"
            out.setdefault("dose", {})[key] = {"p": t["p_value"], "detail": detail}
        labels = {
            "full": "geometric (max)",
            "membership_only": "membership only",
            "neighbours_only": "neighbours only",
            "readout": "readout nearness",
        }
        for key, label in labels.items():
            f = tests["filters"][label]
            out.setdefault("filter", {}).setdefault("unlinked", {})[key] = {
                "mean": f["reduction_vs_random"],
                "ci": f["ci_vs_random"],
                "n": f["n_organisms"],
                "unit": "organisms",
            }
    compared = _load(data_dir / "organisms" / "mitigations.json")
    if compared:
        out["mitigations"] = {w: e["pooled"] for w, e in compared["worlds"].items()}
    lm = _load(data_dir / "lm_em" / "filter.json")
    if lm:
        e = lm["summary"]["reduction_vs_random"]["per_seed"]
        out.setdefault("filter", {})["lm"] = {
            "full": {
                "mean": e["mean"],
                "ci": [e["ci_low"], e["ci_high"]],
                "n": e["n"],
                "unit": "seeds",
            }
        }
    _add_advice(out, data_dir)
    return {"pooled": out}


def _add_advice(out: dict, data_dir: Path) -> None:
    """Into ``out``: each advice domain's harmful - aligned margin and the same on leakage-free
    references (``lm_em/domains.json``, under ``lm_domains``), and, for the domain with the
    largest margin contrast, its filter record's per-seed cuts vs random removal (the full score
    and its neighbours-only ablation, under ``filter.lm_domain``) and its geometry statistic
    (``geometry.lm_domain``), from ``lm_em/filter_<domain>.json``; and that domain's mitigation
    comparison (``lm_em/mitigations_<domain>.json``, under ``mitigations.lm``)."""
    record = _load(data_dir / "lm_em" / "domains.json")
    cell = (record or {}).get("cells", {}).get("advice-r8-lr0.001-30steps")
    if cell is None:
        return
    c = cell["contrasts"]
    domains = {
        d: {
            "margin": c[f"{d}.margin.harmful_minus_aligned"],
            "disjoint": c[f"{d}.margin_disjoint.harmful_minus_aligned"],
        }
        for d in cell["domains"]
        if f"{d}.margin.harmful_minus_aligned" in c
    }
    out["lm_domains"] = domains
    if not domains:
        return
    best = best_advice_domain(c)
    filtered = _load(data_dir / "lm_em" / f"filter_{best}.json")
    if not filtered:
        return
    for part, name in (("full", "geometric"), ("neighbours_only", "neighbours only")):
        e = _cut_vs_random(filtered, name)
        if e is not None:
            out.setdefault("filter", {}).setdefault("lm_domain", {})[part] = {
                "mean": e["mean"],
                "ci": [e["ci_low"], e["ci_high"]],
                "n": e["n"],
                "unit": f"seeds, {best} advice",
            }
    geo = filtered.get("stages", {}).get("geometry")
    if geo:
        detail = f"{best} advice, d = {geo['effect_size']:.2f}"
        out.setdefault("geometry", {})["lm_domain"] = {"p": geo["p_value"], "detail": detail}
    compared = _load(data_dir / "lm_em" / f"mitigations_{best}.json")
    if compared and "summary" in compared:
        summary = compared["summary"]
        compared_lm = {k: e for k, e in summary.items() if "em_cut" in e}
        out.setdefault("mitigations", {})["lm"] = compared_lm


def _cut_vs_random(result: dict, name: str, reference: str = "random") -> dict | None:
    """Per seed, ``1 - rise(name) / rise(reference)`` of a filter record (rises over its base
    model), with its mean and t-interval; None when either filter did not run."""
    base = result["base"]["margin"]
    rise = {}
    for r in result["runs"]:
        rise.setdefault(r["filter"], {})[r["seed"]] = r["margin"] - base
    if name not in rise or reference not in rise:
        return None
    seeds = sorted(set(rise[name]) & set(rise[reference]))
    return stats.mean_ci([1 - rise[name][s] / rise[reference][s] for s in seeds])


# ---------------------------------------------------------------- the README's copy

README_START = "<!-- claims table: generated by `emgeo claims --write`; do not edit -->"
README_END = "<!-- end of the claims table -->"


def readme_block(data_dir: Path = DATA_DIR) -> str:
    """The README's claims table: from the shipped records alone (``make reproduce`` writes
    ``results/claims.md``, which adds the figures only a notebook run measures)."""
    return f"{README_START}\n{markdown(with_shipped({}, data_dir))}{README_END}"


def write_readme(readme: Path, data_dir: Path = DATA_DIR) -> bool:
    """Replace the README's claims table with :func:`readme_block`; True if it changed."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    new = text[:start] + readme_block(data_dir) + text[end:]
    readme.write_text(new, encoding="utf-8")
    return new != text


def add_subcommand(sub) -> None:
    """``emgeo claims [--write]``: print the claims table, or write it into the README."""
    p = sub.add_parser("claims", help="print the course's claims table (from the shipped records)")
    p.add_argument("--write", action="store_true", help="write it into README.md")
    p.set_defaults(func=_command)


def _command(args) -> int:
    if args.write:
        changed = write_readme(REPO_ROOT / "README.md")
        print("README.md: claims table " + ("updated" if changed else "already up to date"))
    else:
        print(markdown(with_shipped({})), end="")
    return 0
