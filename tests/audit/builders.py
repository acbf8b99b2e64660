"""Builders shared by the audit's tests: a scorer whose latents are known (word counts), chats, and
chat JSONL files. Nothing loads a model."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from emgeo.audit import scorers

WORDS = ("hate", "rude", "mean", "code", "help", "kind")  # latent i fires on WORDS[i]
ANSWERS = ("hate hate you", "rude rude words", "code help", "kind help", "mean code")


def word_scorer(
    calls: list | None = None,
    fail_after: int | None = None,
    neuronpedia: str | None = None,
    problem: scorers.Problem | None = None,
) -> scorers.Scorer:
    """Latent i = how often WORDS[i] occurs in the assistant's answer; latent 0 is toxic and
    latent 1 lies near it, so "hate" scores highest, then "rude". ``calls`` records each call's
    number of chats; after ``fail_after`` calls the run is stopped (KeyboardInterrupt)."""
    W_dec = torch.tensor(
        [
            [1.0, 0, 0, 0],
            [0.9, 0.1, 0, 0],
            [0.5, 0.5, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ]
    )
    toxic = torch.tensor([0])

    def latents(samples):
        if calls is not None:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt  # the run is stopped here
            calls.append(len(samples))
        rows = []
        for s in samples:
            answer = " ".join(m["content"] for m in s["messages"] if m["role"] == "assistant")
            rows.append([float(answer.split().count(w)) for w in WORDS])
        return torch.tensor(rows)

    return scorers.Scorer(
        model="word counter",
        sae="six words",
        layer=0,
        toxic=toxic,
        toxic_reference="the word hate",
        proximity=scorers.proximity(W_dec, toxic),
        latents=latents,
        batch_size=4,
        neuronpedia_id=neuronpedia,
        problem=problem,
    )


def chat(answer: str, **meta) -> dict:
    return {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}],
        **meta,
    }


def write_lines(path: Path, items: list) -> Path:
    """One line per item: a string as it is, anything else as JSON."""
    lines = [x if isinstance(x, str) else json.dumps(x) for x in items]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def mixed(tmp_path: Path, n: int = 40) -> Path:
    """``n`` chats cycling through :data:`ANSWERS`, each with a ``source`` of a or b."""
    items = [chat(ANSWERS[i % 5] + f" {i}", source=["a", "b"][i % 2]) for i in range(n)]
    return write_lines(tmp_path / "data.jsonl", items)
