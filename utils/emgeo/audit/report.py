"""The audit's report: one self-contained HTML file (the figure embedded, no script, nothing from
the network) with the score distribution, the riskiest samples and their top SAE latents (linked
to Neuronpedia where it hosts the SAE), a breakdown by each metadata field, and a plain statement
of what was used and what the score can and cannot tell."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emgeo.audit.scorers import Scorer

CAN_AND_CANNOT = (
    "The score measures how near a sample's SAE features lie to the toxic features, before any "
    "fine-tuning. It can rank which samples to read or drop first. It cannot say that a sample "
    "is harmful, that a fine-tune on the rest is safe, or how much misalignment a fine-tune will "
    "show: that needs fine-tuning and an evaluation. Its validation (the course's organism and "
    "SmolLM2 code sets, notebook 09) holds for data like the course's; on other data it is a "
    "hypothesis to check. The membership-only score counts the toxic features themselves "
    "(co-activation); the neighbours-only score counts only features near them (geometry)."
)

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.txt{max-width:32em;white-space:pre-wrap} .muted{color:#666}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def histogram_png(scores: Sequence[float], threshold: float, bins: int = 40) -> str:
    """The full-score distribution with the budget's cut, as base64 PNG."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is

    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    ax.hist(scores, bins=bins, color="#4c72b0")
    if threshold != float("inf"):
        ax.axvline(threshold, color="#c44e52", ls="--", label="removed from here")
        ax.legend(frameon=False, loc="upper left")
    ax.set_xlabel("full geometric score (activation-weighted proximity to the toxic set)")
    ax.set_ylabel("samples")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode()


def _latent_cell(scorer: Scorer, top: list) -> str:
    parts = []
    for latent, activation, proximity in top:
        url = scorer.latent_url(latent)
        name = f'<a href="{_e(url)}">{latent}</a>' if url else str(latent)
        toxic = " (toxic)" if latent in set(scorer.toxic.tolist()) else ""
        parts.append(f"{name}{toxic}: act {activation:.3g}, prox {proximity:.2f}")
    return "<br>".join(parts) or '<span class="muted">none active</span>'


def _riskiest_table(scorer: Scorer, riskiest: list[dict]) -> str:
    rows = [
        "<tr><th>line</th><th>full</th><th>membership</th><th>neighbours</th>"
        "<th>request</th><th>answer</th><th>top latents</th></tr>"
    ]
    for item in riskiest:
        r = item["record"]
        rows.append(
            f"<tr><td class=num>{item['line']}</td><td class=num>{r['full']:.3f}</td>"
            f"<td class=num>{r['membership only']:.3f}</td>"
            f"<td class=num>{r['neighbours only']:.3f}</td>"
            f"<td class=txt>{_e(item['user'])}</td><td class=txt>{_e(item['answer'])}</td>"
            f"<td>{_latent_cell(scorer, r['top_latents'])}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _groups_table(
    groups: dict[str, dict[str, list[int]]], full: Sequence[float], keep: Sequence[bool]
) -> str:
    if not groups:
        return '<p class="muted">The samples carry no metadata field besides their messages.</p>'
    out = []
    for field, values in sorted(groups.items()):
        if len(values) > 50:  # an id-like field: one row per sample says nothing
            out.append(
                f"<p class=muted>{_e(field)}: {len(values)} distinct values, not broken down.</p>"
            )
            continue
        rows = [
            f"<tr><th>{_e(field)}</th><th>samples</th><th>mean full score</th><th>removed</th></tr>"
        ]
        for value, idx in sorted(values.items(), key=lambda kv: -len(kv[1])):
            mean = sum(full[i] for i in idx) / len(idx)
            removed = sum(not keep[i] for i in idx) / len(idx)
            rows.append(
                f"<tr><td>{_e(value)}</td><td class=num>{len(idx)}</td>"
                f"<td class=num>{mean:.3f}</td><td class=num>{removed:.0%}</td></tr>"
            )
        out.append("<table>" + "".join(rows) + "</table>")
    return "".join(out)


def write_report(
    path: Path,
    scorer: Scorer,
    source: str,
    fraction: float,
    full_scores: Sequence[float],
    keep: Sequence[bool],
    riskiest: list[dict],
    groups: dict[str, dict[str, list[int]]],
    result: dict,
) -> Path:
    """Write the report; return its path. ``result`` holds the audit's figures (``n_samples``,
    ``n_removed``, ``n_rejected``, ``n_cached``, ``threshold``, ``seconds``)."""
    png = histogram_png(full_scores, result["threshold"])
    links = (
        f"latent numbers link to Neuronpedia ({_e(scorer.neuronpedia_id)})"
        if scorer.neuronpedia_id
        else "Neuronpedia does not host this SAE, so latents are not linked"
    )
    rejected = (
        f", {result['n_rejected']} bad lines set aside (rejected.jsonl)"
        if result["n_rejected"]
        else ""
    )
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>emgeo audit: {_e(Path(source).name)}</title><style>{STYLE}</style></head><body>
<h1>Geometric risk audit</h1>
<p><b>{result["n_samples"]}</b> samples of <code>{_e(source)}</code>{rejected}; the
{fraction:.0%} with the highest full score ({result["n_removed"]} samples, full score &ge;
{result["threshold"]:.4g}) are left out of <code>filtered.jsonl</code>. {result["n_cached"]} samples
came from the cache; {result["seconds"]:.1f} s.</p>
<h2>What was used</h2>
<table>
<tr><th>model</th><td>{_e(scorer.model)}</td></tr>
<tr><th>SAE</th><td>{_e(scorer.sae)} ({links})</td></tr>
<tr><th>toxic reference</th><td>{_e(scorer.toxic_reference)}: latents
{_e(", ".join(map(str, scorer.toxic.tolist())))}</td></tr>
<tr><th>read</th><td>the SAE's latents averaged over each sample's assistant tokens (at most
{scorer.max_length} tokens a chat)</td></tr>
</table>
<h2>What the score can and cannot tell</h2><p>{_e(CAN_AND_CANNOT)}</p>
<h2>Score distribution</h2><img alt="score distribution" src="data:image/png;base64,{png}">
<h2>The {len(riskiest)} riskiest samples</h2>{_riskiest_table(scorer, riskiest)}
<h2>By metadata field</h2>{_groups_table(groups, full_scores, keep)}
</body></html>
"""
    path.write_text(body, encoding="utf-8")
    return path
