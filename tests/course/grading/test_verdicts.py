"""emgeo.course.grading.verdicts: the grader runs the course's check itself on the student's
function (here through a channel in this process): the right answer passes, a wrong one fails with
the check's diagnosis, the stub and a function that raises fail with why, the package's own
version earns nothing, and the inputs follow the seed the grader draws."""

from __future__ import annotations

import torch
from grading_channels import local_channel
from notebook_builders import course

from emgeo import geometry
from emgeo.course.grading import outcomes, verdicts
from emgeo.course.grading.exercises import exercises
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
