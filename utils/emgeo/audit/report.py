"""The audit's report: one self-contained HTML file (the figure embedded, no script, nothing from
the network) with the score distribution, the riskiest samples and their top SAE latents (linked
to Neuronpedia where it hosts the SAE), a breakdown by each metadata field, and a plain statement
of what was used and what the score can and cannot tell.

The page is the Jinja2 template ``templates/report.html.j2`` beside this module, rendered with
autoescaping: every text from the data (requests, answers, metadata, the file's name) is escaped.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from emgeo import chatfile

if TYPE_CHECKING:
    from emgeo.audit.scorers import Scorer

TEMPLATE = "report.html.j2"
MAX_GROUPS = 50  # a field with more distinct values is id-like: one row per sample says nothing
CAN_AND_CANNOT = (
    "The score measures how near a sample's SAE features lie to the toxic features, before any "
    "fine-tuning. It can rank which samples to read or drop first. It cannot say that a sample "
    "is harmful, that a fine-tune on the rest is safe, or how much misalignment a fine-tune will "
    "show: that needs fine-tuning and an evaluation. Its validation (the course's organism and "
    "SmolLM2 code sets, notebook 09) holds for data like the course's; on other data it is a "
    "hypothesis to check. The membership-only score counts the toxic features themselves "
    "(co-activation); the neighbours-only score counts only features near them (geometry)."
)


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


def _latents(scorer: Scorer, top: list) -> list[dict]:
    """A sample's top latents as the template shows them: number, link, toxic or not."""
    toxic = set(scorer.toxic.tolist())
    return [
        {
            "id": latent,
            "url": scorer.latent_url(latent),
            "toxic": latent in toxic,
            "activation": activation,
            "proximity": proximity,
        }
        for latent, activation, proximity in top
    ]


def _groups(
    groups: dict[str, dict[str, list[int]]], full: Sequence[float], keep: Sequence[bool]
) -> list[dict]:
    """Each metadata field's values with their samples, mean full score and share removed
    (``n_values`` instead of rows for an id-like field)."""
    out = []
    for field, values in sorted(groups.items()):
        if len(values) > MAX_GROUPS:
            out.append({"field": field, "n_values": len(values), "rows": []})
            continue
        rows = [
            {
                "value": value,
                "n": len(idx),
                "mean": sum(full[i] for i in idx) / len(idx),
                "removed": sum(not keep[i] for i in idx) / len(idx),
            }
            for value, idx in sorted(values.items(), key=lambda kv: -len(kv[1]))
        ]
        out.append({"field": field, "n_values": None, "rows": rows})
    return out


def render(**context: object) -> str:
    """The report's HTML from the template and ``context`` (an unknown name is an error)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("emgeo.audit", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(**context)


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
    page = render(
        source=source,
        source_name=Path(source).name,
        scorer=scorer,
        toxic=scorer.toxic.tolist(),
        fraction=fraction,
        result=result,
        can_and_cannot=CAN_AND_CANNOT,
        png=histogram_png(full_scores, result["threshold"]),
        riskiest=[
            {**item, "latents": _latents(scorer, item["record"]["top_latents"])}
            for item in riskiest
        ],
        groups=_groups(groups, full_scores, keep),
    )
    return chatfile.atomic_write(path, lambda f: f.write(page))
