import pytest
import torch

import emgeo
from emgeo import config, errors
from emgeo.course import cli
from emgeo.course.plan import NOTEBOOK_PLAN


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(config, "ndif_key_configured", lambda: False)


def test_default_profile_is_cpu(monkeypatch):
    monkeypatch.delenv("EMGEO_PROFILE", raising=False)
    prof = config.get_profile()
    assert prof.name == "cpu" and prof.device == "cpu" and prof.is_cpu


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("EMGEO_PROFILE", " CPU ")
    assert config.get_profile().name == "cpu"


def test_unknown_profile_names_the_choices(monkeypatch):
    monkeypatch.setenv("EMGEO_PROFILE", "tpu")
    with pytest.raises(errors.ProfileError, match="one of cpu, gpu, remote"):
        config.get_profile()


def test_gpu_without_cuda_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(errors.ProfileError, match="Change runtime type"):
        config.get_profile("gpu")


def test_gpu_with_cuda_uses_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.get_profile("gpu").device == "cuda"


def test_remote_without_key_says_how_to_fix(no_key):
    with pytest.raises(errors.ProfileError, match="NDIF_API_KEY"):
        config.get_profile("remote")


def test_remote_key_from_environment(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "abc")
    assert config.ndif_key_configured()
    assert config.get_profile("remote").device == "cpu"


def test_profile_error_renders_as_one_sentence_in_ipython():
    lines = errors.ProfileError("do this")._render_traceback_()
    assert lines == ["ProfileError: do this"]


def test_setup_seeds_and_sets_threads():
    prof = emgeo.setup("cpu", seed=3, n_threads=1)
    first = torch.rand(3)
    emgeo.setup("cpu", seed=3, n_threads=1)
    assert torch.equal(first, torch.rand(3)) and torch.get_num_threads() == 1 == prof.n_threads


def test_doctor_reports_key_presence_never_its_value(monkeypatch, capsys):
    monkeypatch.setenv("NDIF_API_KEY", "secret-value-123")
    monkeypatch.setenv("EMGEO_PROFILE", "remote")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "configured" in out and "not configured" not in out and "secret-value-123" not in out
    for notebook, plan in NOTEBOOK_PLAN.items():
        assert f"{notebook}" in out and plan["remote"] in out


def test_doctor_fails_with_one_sentence_for_an_impossible_profile(monkeypatch, capsys, no_key):
    monkeypatch.setenv("EMGEO_PROFILE", "remote")
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("emgeo: The remote profile needs an NDIF API key") and "Traceback" not in err
    )


# -- the notebook's choice, Colab Secrets, and where a missing key is set ------------------------


def test_setup_takes_the_notebooks_choice_without_an_environment_variable(monkeypatch):
    monkeypatch.delenv("EMGEO_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    prof = emgeo.setup("gpu", n_threads=1)
    assert prof.name == "gpu" and prof.device == "cuda" and prof.overrides is None


def test_emgeo_profile_overrides_the_notebooks_choice_and_says_so(monkeypatch):
    monkeypatch.setenv("EMGEO_PROFILE", "cpu")
    prof = emgeo.setup("gpu", n_threads=1)
    assert prof.name == "cpu" and prof.overrides == "gpu"
    assert str(prof).endswith("from EMGEO_PROFILE over PROFILE = 'gpu'")
    assert "over" not in str(emgeo.setup("cpu", n_threads=1)), "no note when they agree"


def test_setup_without_a_choice_reads_emgeo_profile(monkeypatch, no_key):
    monkeypatch.setenv("EMGEO_PROFILE", "remote")
    monkeypatch.setenv("NDIF_API_KEY", "abc")
    monkeypatch.setattr(config, "ndif_key_configured", lambda: True)
    assert emgeo.setup(n_threads=1).name == "remote"


@pytest.mark.parametrize(
    "on_colab, fix",
    [
        (True, "open Secrets (key icon, left bar) \N{RIGHTWARDS ARROW} add NDIF_API_KEY"),
        (False, "run `export NDIF_API_KEY=...` in the shell"),
    ],
)
def test_a_missing_key_is_set_where_the_learner_is(monkeypatch, no_key, on_colab, fix):
    monkeypatch.setattr(config, "on_colab", lambda: on_colab)
    with pytest.raises(errors.ProfileError) as err:
        config.get_profile("remote")
    message = str(err.value)
    assert fix in message and "\n" not in message and "login.ndif.us" in message
    assert ("Secrets" in message) == on_colab
