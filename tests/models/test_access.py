"""Gated-model access: a token, the licence, and an offline machine, each said in one sentence;
nothing here touches the network."""

import httpx
import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError

from emgeo.course import doctor
from emgeo.models import access, lm

GEMMA = lm.MODELS["gemma-2-2b"]


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_secret_123")


@pytest.fixture
def no_token(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)


def gated_error() -> GatedRepoError:
    """The error the hub raises for an account that has not accepted the licence."""
    url = "https://huggingface.co/api/models/google/gemma-2-2b/auth-check"
    response = httpx.Response(403, request=httpx.Request("GET", url))
    return GatedRepoError("403 gated", response=response)


def answer(monkeypatch, outcome):
    """The hub's answer to auth_check: None (access) or an exception to raise."""

    def auth_check(self, repo_id, token=None):
        assert token == "hf_secret_123"
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(huggingface_hub.HfApi, "auth_check", auth_check)


def test_each_profile_names_its_gated_models():
    assert [s.name for s in access.gated_models("gpu")] == ["gemma-2-2b", "gemma-2-2b-it"]
    assert [s.name for s in access.gated_models("remote")] == ["llama-3.1-8b"]
    assert access.gated_models("cpu") == []


@pytest.mark.parametrize(
    "on_colab, fix", [(True, "Secrets (key icon"), (False, "export HF_TOKEN=")]
)
def test_without_a_token_it_says_where_to_get_one(no_token, monkeypatch, on_colab, fix):
    monkeypatch.setattr(access.config, "on_colab", lambda: on_colab)
    found = access.check_access(GEMMA, online=True)
    assert found.state == "no token" and "\n" not in found.message
    for part in ("https://huggingface.co/google/gemma-2-2b", "HF_TOKEN", fix):
        assert part in found.message


def test_offline_it_cannot_check(token):
    found = access.check_access(GEMMA, online=False)
    assert found.state == "unknown" and "offline" in found.message


def test_a_token_whose_account_has_not_accepted_the_licence(token, monkeypatch):
    answer(monkeypatch, gated_error())
    found = access.check_access(GEMMA, online=True)
    assert found.state == "no access" and "accept the licence" in found.message


def test_access_granted_and_a_hub_that_does_not_answer(token, monkeypatch):
    answer(monkeypatch, None)
    assert access.check_access(GEMMA, online=True).state == "ok"
    answer(monkeypatch, ConnectionError("Network is unreachable"))
    found = access.check_access(GEMMA, online=True)
    assert found.state == "unknown" and "Network is unreachable" in found.message


def test_doctor_reports_gated_access_without_the_token(token, monkeypatch):
    answer(monkeypatch, gated_error())
    monkeypatch.setattr(access.hub_constants, "HF_HUB_OFFLINE", False)
    lines = doctor.doctor_report("gpu")
    text = "\n".join(lines)
    assert "HF token         found" in text and "hf_secret_123" not in text
    gated = [line for line in lines if line.startswith("  gated ")]
    assert [line.split(":")[0] for line in gated] == ["  gated gemma-2-2b", "  gated gemma-2-2b-it"]
    assert all("accept the licence" in line for line in gated)
    assert "not needed in the cpu profile" in "\n".join(doctor.doctor_report("cpu"))
