"""Every exercise check passes the reference, rejects the stub and rejects planted bugs.

Each check must have an entry in CASES: a reference implementation and at least one planted bug
(a plausible learner mistake). A new check without an entry fails test_every_check_has_cases.
"""

from __future__ import annotations

import pytest
import torch
from emgeo import checks, geometry


def _stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def _cos_unnormalized(a, b):
    return a @ b.T


def _cos_wrong_dim(a, b):
    return (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T


def _cos_transposed(a, b):
    return geometry.cosine_similarity_matrix(b, a)


def _cos_numpy(a, b):
    return geometry.cosine_similarity_matrix(a, b).numpy()


def _cos_abs(a, b):
    return geometry.cosine_similarity_matrix(a, b).abs()


CASES = {
    "check_cosine_similarity": (
        geometry.cosine_similarity_matrix,
        [_cos_unnormalized, _cos_wrong_dim, _cos_transposed, _cos_numpy, _cos_abs],
    ),
}


def test_every_check_has_cases():
    assert set(checks.all_checks()) == set(CASES)
    for name, (_, bugs) in CASES.items():
        assert bugs, f"{name} needs at least one planted bug"


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_passes(name, capsys):
    reference, _ = CASES[name]
    getattr(checks, name)(reference)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_stub_fails_with_a_clear_message(name):
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        getattr(checks, name)(_stub)


@pytest.mark.parametrize(
    "name, bug",
    [(name, bug) for name, (_, bugs) in sorted(CASES.items()) for bug in bugs],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_planted_bug_fails(name, bug):
    with pytest.raises(checks.CheckFailed):
        getattr(checks, name)(bug)


def test_diagnosis_names_the_mistake():
    with pytest.raises(checks.CheckFailed, match="plain dot product"):
        checks.check_cosine_similarity(_cos_unnormalized)
    with pytest.raises(checks.CheckFailed, match="expected"):
        checks.check_cosine_similarity(_cos_transposed)


def test_check_failed_renders_as_one_line_in_ipython():
    assert checks.CheckFailed("x")._render_traceback_() == ["CheckFailed: x"]


def test_errors_in_learner_code_propagate():
    def broken(a, b):
        return a @ b  # shapes do not line up: the learner should see torch's own error

    with pytest.raises(RuntimeError):
        checks.check_cosine_similarity(broken)


def test_checks_do_not_mutate_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    checks.check_cosine_similarity(geometry.cosine_similarity_matrix)
    assert torch.equal(torch.rand(1), expected)
