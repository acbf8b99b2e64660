"""Colab Secrets into the environment: only on Colab, never printed, a missing one said plainly."""

import sys
import types

import pytest

from emgeo.course import keys


class SecretNotFoundError(Exception):
    pass


@pytest.fixture
def colab(monkeypatch):
    """A Colab whose Secrets hold HF_TOKEN only; NDIF_API_KEY raises as an unset secret does."""
    secrets = {"HF_TOKEN": "hf_secret_123"}

    def get(name):
        if name not in secrets:
            raise SecretNotFoundError(name)
        return secrets[name]

    userdata = types.SimpleNamespace(get=get)
    package = types.ModuleType("google.colab")
    package.userdata = userdata
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", package)
    for name in keys.KEYS:
        monkeypatch.delenv(name, raising=False)
    return secrets


def test_off_colab_nothing_is_read_and_the_report_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails, as off Colab
    assert keys.load_colab_secrets() is None
    assert keys.report(None).startswith("Not on Colab")


def test_on_colab_secrets_reach_the_environment_and_are_never_printed(colab, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-shell")
    found = keys.load_colab_secrets()
    assert found == {"HF_TOKEN": True, "NDIF_API_KEY": False, "OPENAI_API_KEY": True}
    assert keys.os.environ["HF_TOKEN"] == "hf_secret_123"
    assert keys.os.environ["OPENAI_API_KEY"] == "sk-from-the-shell", "a set variable wins"
    text = keys.report(found)
    assert "hf_secret_123" not in text and "sk-from" not in text
    assert "NDIF_API_KEY    not set: the remote profile" in text
    assert "to set it, open Secrets (key icon, left bar) \N{RIGHTWARDS ARROW} add NDIF_API_KEY" in text
    assert "HF_TOKEN        set: gated models" in text and "add HF_TOKEN" not in text
