"""Every exercise check passes correct answers, rejects the stub and names each planted mistake.

The cases live in tests/check_cases/ (one module per notebook): for every check, the reference,
correct alternatives that must pass, and planted bugs, each with the words of the check's message
it must produce. A check without an entry fails test_every_check_has_cases; a named mistake that no
planted bug triggers fails test_every_named_mistake_fires.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from check_cases import all_cases

from emgeo import errors, geometry, sae
from emgeo.course import checks
from emgeo.course.checks import core

CASES = all_cases()


def _stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def _label(value):
    return getattr(value, "__name__", value)


def _named_mistakes(name: str, monkeypatch) -> list[str]:
    """The hints of every Mistake ``name`` defines, recorded while it checks the reference."""
    hints: list[str] = []

    class Recorded(checks.Mistake):
        def __init__(self, hint, compute):
            super().__init__(hint, compute)
            hints.append(hint)

    for module in core.check_modules():
        monkeypatch.setattr(module, "Mistake", Recorded)
    getattr(checks, name)(_same_as(CASES[name].reference))  # a copy: the check runs in full
    return hints


def _overwrite(value) -> None:
    if isinstance(value, torch.Tensor):
        value.fill_(float("nan") if value.is_floating_point() else -1)
    elif isinstance(value, torch.nn.Module):
        with torch.no_grad():
            for param in value.parameters():
                param.fill_(float("nan"))
    elif isinstance(value, list):
        value.clear()


def _answer_then_overwrite_inputs(reference: Callable) -> Callable:
    """A correct function that, once it has its answer, overwrites every input it was given."""

    def answer_then_overwrite(*args):
        out = core._copy(reference(*args))  # a tensor cloned; a number as it is
        for arg in args:
            _overwrite(arg)
        return out

    return answer_then_overwrite


# ---------------------------------------------------------------- the tests


def test_every_check_has_cases():
    assert set(checks.all_checks()) == set(CASES)
    for name, case in CASES.items():
        assert case.alternatives, f"{name} needs a correct alternative implementation"
        assert len(case.bugs) >= 2, f"{name} needs at least two planted bugs"
        assert all(hint for _, hint in case.bugs), f"{name}: say what each bug must be told"


def _same_as(reference: Callable) -> Callable:
    """The reference under another identity: a learner's correct copy of it."""

    def copy_of_reference(*args):
        return reference(*args)

    return copy_of_reference


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_passes(name, capsys):
    getattr(checks, name)(_same_as(CASES[name].reference))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, alternative",
    [(name, alt) for name, case in sorted(CASES.items()) for alt in case.alternatives],
    ids=_label,
)
def test_correct_alternative_passes(name, alternative, capsys):
    getattr(checks, name)(alternative)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_stub_fails_with_a_clear_message(name):
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        getattr(checks, name)(_stub)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_failed_check_says_how_to_go_on_with_the_courses_version(name):
    exercise = name.removeprefix("check_")
    with pytest.raises(checks.CheckFailed) as failure:
        getattr(checks, name)(_stub)
    last = str(failure.value).splitlines()[-1]
    assert last.endswith(f'_stub = checks.reference("{exercise}")'), last
    go_on = checks.reference(exercise)
    assert go_on is CASES[name].reference  # the very function the check compares against


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_courses_version_runs_but_is_not_taken_for_the_learners(name, capsys):
    getattr(checks, name)(checks.reference(name.removeprefix("check_")))
    out = capsys.readouterr().out
    assert errors.USED_REFERENCE in out and "✓" not in out


def test_reference_names_the_exercises_when_asked_for_an_unknown_one():
    with pytest.raises(KeyError, match="proximity_to_set"):
        checks.reference("no_such_exercise")


@pytest.mark.parametrize(
    "name, bug, hint",
    [(name, bug, hint) for name, case in sorted(CASES.items()) for bug, hint in case.bugs],
    ids=_label,
)
def test_planted_bug_is_diagnosed(name, bug, hint):
    with pytest.raises(checks.CheckFailed) as failure:
        getattr(checks, name)(bug)
    assert hint in str(failure.value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_named_mistake_fires(name, monkeypatch):
    """Each named mistake's hint is what the check says to at least one planted bug, and each
    planted bug's words pick out one mistake."""
    hints = _named_mistakes(name, monkeypatch)
    planted = [words for _, words in CASES[name].bugs]
    for hint in hints:
        assert any(words in hint for words in planted), f"no planted bug makes {name} say: {hint}"
    for words in planted:
        assert sum(words in hint for hint in hints) <= 1, f"{words!r} names several mistakes"


def test_in_place_sae_encode_passes(capsys):
    def sae_encode(x, W_enc, b_enc, b_dec):
        x -= b_dec
        return torch.relu(x @ W_enc + b_enc)

    checks.check_sae_encode(sae_encode)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_correct_answer_passes_whatever_it_does_to_its_inputs(name, capsys):
    getattr(checks, name)(_answer_then_overwrite_inputs(CASES[name].reference))
    assert "✓" in capsys.readouterr().out


def test_a_check_does_not_modify_the_callers_inputs():
    x, ids = torch.arange(6.0).reshape(2, 3), [1, 2]
    model = sae.ToySAE(sae.ToySAEConfig(d_in=3, d_sae=4), generator=torch.Generator())
    x_before, params_before = x.clone(), {k: v.clone() for k, v in model.state_dict().items()}

    def changes_everything(x, ids, model):
        ids.append(0)
        with torch.no_grad():
            model.b_dec += 1.0
        return x.mul_(2.0)  # changes its input and returns it

    out = core._call(changes_everything, x, ids, model)
    assert torch.equal(out, 2 * x_before)
    assert torch.equal(x, x_before) and ids == [1, 2]
    assert all(torch.equal(v, params_before[k]) for k, v in model.state_dict().items())
    out.zero_()  # the answer shares no memory with the caller's input
    assert torch.equal(x, x_before)


def test_reference_and_each_mistake_get_fresh_inputs():
    x = torch.ones(3)
    mistakes = [
        checks.Mistake("halved", lambda x: x.div_(2.0)),
        checks.Mistake("tripled", lambda x: x.mul_(3.0)),
    ]
    with pytest.raises(checks.CheckFailed, match="tripled"):
        core._expect_close(torch.full((3,), 3.0), _stub, (x,), lambda x: x.add_(1.0), mistakes)
    assert torch.equal(x, torch.ones(3))


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
