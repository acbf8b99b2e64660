"""`emgeo doctor --smoke`: the profile's model and SAE loaded, one trace and one encode, on the
stand-ins of the gpu and remote profiles; offline, each failure said in one sentence and the
steps after it not run. Nothing here touches the network."""

import httpx
import pytest
import torch

from emgeo import config
from emgeo.course import cli, doctor
from emgeo.models import ndif


@pytest.fixture
def standins(monkeypatch):
    monkeypatch.setenv("EMGEO_STANDINS", "tiny")


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("gpu", ["gemma-2-2b loaded", "gemma-scope-2b-pt-res-canonical / layer_12", "traced here"]),
        (
            "remote",
            ["is running on stand-in", "llama-3.1-8b loaded", "llama_scope_lxr_8x", "on NDIF"],
        ),
    ],
)
def test_the_smoke_run_works_on_the_standins(standins, profile, expected):
    checks = doctor.smoke(profile)
    assert all(check.ok for check in checks), "\n".join(map(str, checks))
    steps = [check.step for check in checks]
    assert steps[-4:] == ["model", "SAE", "trace", "encode"] and ("NDIF" in steps) == (
        profile == "remote"
    )
    text = "\n".join(map(str, checks))
    assert all(part in text for part in expected), text
    assert "active" in checks[-1].message


def test_the_smoke_command_prints_each_step_and_exits_zero(standins, capsys):
    assert cli.main(["doctor", "--smoke", "--profile", "remote"]) == 0
    out = capsys.readouterr().out
    assert "Smoke run:" in out and "ok   encode" in out and "OK: the profile's model" in out


def assert_sentences(checks: list[doctor.Check], failed: str) -> None:
    """The step ``failed`` failed in one sentence, and every step after it was not run."""
    at = [c.step for c in checks].index(failed)
    assert all(c.ok for c in checks[:at]), checks
    assert not checks[at].ok and "\n" not in checks[at].message
    assert all(c.message == f"not run: it needs the {failed} step" for c in checks[at + 1 :])


def test_offline_without_a_gpu_the_profile_step_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    checks = doctor.smoke("gpu")
    assert_sentences(checks, "profile")
    assert checks[0].message.startswith("The gpu profile needs a CUDA GPU")


def test_offline_the_gated_model_cannot_download(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checks = doctor.smoke("gpu")
    assert_sentences(checks, "model")
    assert "cannot download google/gemma-2-2b" in checks[1].message, checks[1]
    assert "HF_TOKEN" in checks[1].message


def test_offline_ndif_cannot_be_reached(monkeypatch, capsys):
    monkeypatch.setenv("NDIF_API_KEY", "a-key")

    def unreachable(path, timeout):
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(ndif, "_get", unreachable)
    checks = doctor.smoke("remote")
    assert_sentences(checks, "NDIF")
    assert checks[1].message.startswith("cannot reach the NDIF service")
    assert cli.main(["doctor", "--smoke", "--profile", "remote"]) == 1
    out = capsys.readouterr().out
    assert "FAIL NDIF" in out and "Not ready: see FAIL." in out


def test_the_report_takes_a_notebooks_profile(monkeypatch):
    monkeypatch.setenv("EMGEO_PROFILE", "cpu")
    chosen = config.Profile("remote", "cpu", 1)
    lines = doctor.doctor_report(chosen)
    assert any(line.startswith("profile          remote (given;") for line in lines)
