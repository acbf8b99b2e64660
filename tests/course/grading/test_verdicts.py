"""emgeo.course.grading.verdicts: the grader runs the course's check itself on the student's
function (here through a channel in this process): the right answer passes, a wrong one fails with
the check's diagnosis, the stub and a function that raises fail with why, the package's own
version earns nothing, and the inputs follow the seed the grader draws. Every check of the course
grades a correct function this way."""

from __future__ import annotations

import pytest
import torch
from grading_channels import local_channel
from notebook_builders import course

from emgeo import geometry
from emgeo.course import checks
from emgeo.course.grading import outcomes, verdicts
from emgeo.course.grading.exercises import Exercise, exercises
from emgeo.errors import USED_REFERENCE

EXERCISE = exercises(course())[0]  # cosine_similarity, graded by check_cosine_similarity


def _verdict(fn, seed: int = 0) -> outcomes.ExerciseResult:
    return verdicts.verdict(EXERCISE, local_channel({"cosine_similarity": fn}), seed)


def cosine(a, b):
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def test_a_right_answer_passes_and_a_wrong_one_is_diagnosed():
    passed = _verdict(cosine, seed=12345)
    assert (passed.status, passed.points) == (outcomes.PASSED, 1)
    assert passed.message.startswith("✓ cosine_similarity passes")
    wrong = _verdict(lambda a, b: a @ b.T)
    assert (wrong.status, wrong.points) == (outcomes.FAILED, 0)
    assert "plain dot product" in wrong.message and "To go on" not in wrong.message


def test_the_stub_a_raise_and_the_courses_own_version_fail():
    def stub(a, b):
        raise NotImplementedError()

    assert "still raises NotImplementedError" in _verdict(stub).message
    raised = _verdict(lambda a, b: 1 / 0)
    assert raised.status == outcomes.FAILED and "raised ZeroDivisionError" in raised.message
    used = _verdict(geometry.cosine_similarity_matrix)
    assert used.status == outcomes.FAILED and USED_REFERENCE in used.message
    odd = _verdict(lambda a, b: {"not": "a tensor"})
    assert odd.status == outcomes.FAILED and "should return a torch.Tensor" in odd.message


def test_the_inputs_follow_the_graders_seed():
    def first_input(seed: int) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        assert _verdict(lambda a, b: seen.append(a) or cosine(a, b), seed).status == "passed"
        return seen[0]

    assert torch.equal(first_input(3), first_input(3))
    assert not torch.equal(first_input(3), first_input(4))


UNSENDABLE = {
    "trace_layer"
}  # its check hands the function an nnsight wrapper, which no pickle takes


@pytest.mark.parametrize("name", [c.removeprefix("check_") for c in checks.all_checks()])
def test_every_check_grades_a_correct_function_through_the_kernel_channel(name):
    """Every exercise of the course, graded as the grader does (a seed of its own), passes a
    learner's function that does what the course's does."""
    course_version = checks.reference(name)

    def learners(*args, **kwargs):
        return course_version(*args, **kwargs)

    exercise = Exercise(name, f"check_{name}", "")
    result = verdicts.verdict(exercise, local_channel({name: learners}), seed=2**20 + 17)
    if name in UNSENDABLE:
        assert result.status == outcomes.NOT_RUN and "cannot be sent" in result.message
    else:
        assert result.status == outcomes.PASSED, result.message
