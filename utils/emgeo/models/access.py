"""Access to the gated Hugging Face models: is a token there, and may its account download them?

Gemma-2 and Llama-3.1 are gated: the hub serves them only to an account that accepted the model's
licence on its page, and only with that account's token (``HF_TOKEN``, a saved ``hf auth
login``, or on Colab the secret ``HF_TOKEN``; ``huggingface_hub.get_token`` reads all three).
:func:`check_access` says, per model, whether a download would work, without downloading.
"""

from __future__ import annotations

from dataclasses import dataclass

import huggingface_hub
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from emgeo import config
from emgeo.errors import first_line
from emgeo.models import standins
from emgeo.models.lm import MODELS, ModelSpec

TOKENS_URL = "https://huggingface.co/settings/tokens"


@dataclass(frozen=True)
class Access:
    """What :func:`check_access` found for one model: ``ok`` | ``no token`` | ``no access`` |
    ``unknown`` (offline or the hub did not answer), and one sentence on it."""

    model: str
    state: str
    message: str

    def __str__(self) -> str:
        return f"{self.model}: {self.message}"


def gated_models(profile: str) -> list[ModelSpec]:
    """The gated models a profile downloads."""
    return [spec for spec in MODELS.values() if spec.gated and spec.profile == profile]


def hub_token() -> str | None:
    """The Hugging Face token this process would use (never printed), or None."""
    try:
        return huggingface_hub.get_token()
    except Exception:  # a broken token store or OIDC set-up: the same as no token here
        return None


def check_access(spec: ModelSpec, online: bool | None = None) -> Access:
    """Whether ``spec`` can be downloaded here; asks the hub (no download) when ``online``
    (default: unless ``HF_HUB_OFFLINE`` is set)."""
    page = f"https://huggingface.co/{spec.hf_id}"
    if standins.active():
        return Access(spec.name, "ok", "stand-in (EMGEO_STANDINS): nothing is downloaded")
    if not spec.gated:
        return Access(spec.name, "ok", "not gated")
    token = hub_token()
    if token is None:
        return Access(
            spec.name,
            "no token",
            f"no Hugging Face token: accept the licence at {page}, make a read token at "
            f"{TOKENS_URL}, then {config.key_fix('HF_TOKEN')}.",
        )
    online = not hub_constants.HF_HUB_OFFLINE if online is None else online
    if not online:
        return Access(
            spec.name, "unknown", f"token found; offline, so access to {spec.hf_id} is unchecked."
        )
    return _ask_hub(spec, token, page)


def _ask_hub(spec: ModelSpec, token: str, page: str) -> Access:
    try:
        huggingface_hub.HfApi().auth_check(spec.hf_id, token=token)
    except GatedRepoError:
        return Access(
            spec.name,
            "no access",
            f"this token's account has not been granted {spec.hf_id}: accept the licence at "
            f"{page} (approval can take a while), then run this again.",
        )
    except RepositoryNotFoundError:
        return Access(
            spec.name,
            "no access",
            f"the hub does not recognise this token for {spec.hf_id}: make a new read token at "
            f"{TOKENS_URL}, then {config.key_fix('HF_TOKEN')}.",
        )
    except Exception as err:  # network down, hub error (its HTTP stack varies): not checked
        return Access(
            spec.name, "unknown", f"token found; the hub did not answer ({first_line(err, 120)})."
        )
    return Access(spec.name, "ok", f"token found; access to {spec.hf_id} granted.")
