"""The keys a profile may need, and on Colab one call that reads them from Colab Secrets.

On Colab, secrets are set under the key icon in the left bar (Secrets), each with "Notebook
access" switched on. :func:`load_colab_secrets` copies the ones it finds into this kernel's
environment, where huggingface_hub, nnsight and the OpenAI client look for them; every notebook's
``emgeo.setup()`` calls it, since each Colab notebook is a runtime of its own. Values are never
printed. How to set a missing key is said by :func:`emgeo.config.key_fix`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from emgeo import config

KEYS: dict[str, str] = {
    "HF_TOKEN": "gated models, Gemma-2 (gpu) and Llama-3.1 (remote): accept each licence on its "
    "Hugging Face page, then make a read token at https://huggingface.co/settings/tokens",
    "NDIF_API_KEY": "the remote profile: a key from https://login.ndif.us",
    "OPENAI_API_KEY": "optional, the OpenAI judge of notebook 07's gpu run (else a local judge)",
}


def load_colab_secrets(names: Sequence[str] = tuple(KEYS)) -> dict[str, bool] | None:
    """On Colab, put each secret of ``names`` that is set (and not already in the environment)
    into ``os.environ``; return, per name, whether the environment now has it. Off Colab, do
    nothing and return None."""
    try:
        from google.colab import userdata  # exists only on Colab
    except ImportError:
        return None
    found = {}
    for name in names:
        if not os.environ.get(name):
            try:
                value = userdata.get(name)
            except Exception:  # not set, or notebook access not granted: the same to a learner
                value = None
            if value:
                os.environ[name] = value
        found[name] = bool(os.environ.get(name))
    return found


def report(found: dict[str, bool] | None) -> str:
    """What :func:`load_colab_secrets` found, one line per key, with what each is for (and, for
    a key not set, a second line saying how to set it)."""
    if found is None:
        names = ", ".join(KEYS)
        return (
            f"Not on Colab: profiles read their keys ({names}) from the environment; "
            "`emgeo doctor` says which are set."
        )
    lines = []
    for name, ok in found.items():
        lines.append(f"{name:<15} {'set' if ok else 'not set'}: {KEYS.get(name, '')}")
        if not ok:
            lines.append(f"{'':<16}to set it, {config.key_fix(name)}")
    return "\n".join(lines)
