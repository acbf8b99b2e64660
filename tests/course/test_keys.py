"""Colab Secrets into the environment: only on Colab, never printed, a missing one said plainly."""

import importlib
import importlib.machinery
import os
import sys
import types

import huggingface_hub
import nbformat
import pytest
import torch

from emgeo import errors
from emgeo.config import SOLUTIONS_DIR
from emgeo.course import keys, pins


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
    package.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)  # accelerate asks
    try:
        importlib.import_module("google")  # a real namespace package (protobuf's) stays
    except ImportError:
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
    assert (
        "to set it, open Secrets (key icon, left bar) \N{RIGHTWARDS ARROW} add NDIF_API_KEY" in text
    )
    assert "HF_TOKEN        set: gated models" in text and "add HF_TOKEN" not in text


# -- every notebook's setup cell, as the migration writes it, on a fake Colab --------------------

SETUP_CELLS = {
    path.stem: next(
        c.source for c in nbformat.read(path, as_version=4).cells if "emgeo.setup(" in c.source
    )
    for path in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
}


def run_setup_cell(notebook: str, choice: str) -> dict:
    """The notebook's setup cell with its profile field set to ``choice`` in Colab's form (Colab
    rewrites the line's value), run as Colab would: no EMGEO_PROFILE, keys only in Secrets."""
    source = pins.with_profile_choice(SETUP_CELLS[notebook])
    field = pins.PROFILE_FIELD.replace('"cpu"', f'"{choice}"', 1)
    assert pins.PROFILE_FIELD in source, "the migrated cell carries the form field"
    namespace: dict = {}
    exec(compile(source.replace(pins.PROFILE_FIELD, field), notebook, "exec"), namespace)
    return namespace


@pytest.fixture
def colab_runtime(colab, monkeypatch):
    """A fresh Colab runtime with a GPU: no EMGEO_PROFILE, no stand-ins, no saved keys."""
    from nnsight import CONFIG

    for name in ("EMGEO_PROFILE", "EMGEO_STANDINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: os.environ.get("HF_TOKEN"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return colab


@pytest.mark.parametrize("notebook", SETUP_CELLS)
@pytest.mark.parametrize("choice", ["gpu", "remote"])
def test_the_setup_cell_takes_the_forms_profile_and_the_keys_from_secrets(
    colab_runtime, notebook, choice
):
    colab_runtime["NDIF_API_KEY"] = "ndif_secret_456"
    profile = run_setup_cell(notebook, choice)["profile"]
    assert profile.name == choice and profile.missing_keys == () and profile.overrides is None
    assert os.environ["HF_TOKEN"] == "hf_secret_123" and os.environ["NDIF_API_KEY"]
    assert "secret" not in str(profile)


@pytest.mark.parametrize("notebook", SETUP_CELLS)
def test_without_the_ndif_secret_the_remote_setup_says_where_to_add_it(colab_runtime, notebook):
    with pytest.raises(errors.ProfileError) as err:
        run_setup_cell(notebook, "remote")
    message = str(err.value)
    assert "open Secrets (key icon, left bar) \N{RIGHTWARDS ARROW} add NDIF_API_KEY" in message
    assert "\n" not in message and "export" not in message


@pytest.mark.parametrize("notebook", SETUP_CELLS)
def test_without_the_hf_secret_the_gpu_profile_says_where_to_add_it(colab_runtime, notebook):
    del colab_runtime["HF_TOKEN"]
    profile = run_setup_cell(notebook, "gpu")["profile"]
    assert profile.name == "gpu" and profile.missing_keys == ("HF_TOKEN",)
    assert "open Secrets (key icon, left bar) \N{RIGHTWARDS ARROW} add HF_TOKEN" in str(profile)
