"""Each exercise's verdict, computed in the grader's own process.

The grader runs the course's ``checks.check_<name>`` itself, on inputs drawn from a seed it
draws for the run (:func:`emgeo.course.checks.core.drawn_inputs`), with the student's function
replaced by a :class:`~emgeo.course.grading.remote.RemoteFunction`: the kernel only runs that
function and hands back what it returned. The check compares it with the course's reference and
diagnoses as it does in a notebook. Nothing in the kernel (a replaced check, a patched module)
takes part in the verdict; only the values the student's function returns do.
"""

from __future__ import annotations

import contextlib
import io

from emgeo.course import checks
from emgeo.course.checks.core import drawn_inputs
from emgeo.course.grading.exercises import Exercise
from emgeo.course.grading.outcomes import PASSED, ExerciseResult, failed, not_run, one_line
from emgeo.course.grading.remote import Channel, RemoteFunction, StudentRaised, Unsendable
from emgeo.errors import USED_REFERENCE, CheckFailed


def verdict(exercise: Exercise, channel: Channel, seed: int) -> ExerciseResult:
    """Run ``exercise``'s check in this process on the student's function in the kernel.

    A wrong answer fails with the check's diagnosis, a function that raises with what it raised,
    one that is the package's own version (``checks.reference``) with that; a function that
    never returns lets the channel's timeout through (the notebook stops there).
    """
    fn = RemoteFunction(channel, exercise.name)
    said = io.StringIO()
    try:
        with drawn_inputs(seed), contextlib.redirect_stdout(said):
            getattr(checks, exercise.check)(fn)
    except CheckFailed as failure:
        return failed(exercise, str(failure).split("\nTo go on with", 1)[0])
    except StudentRaised as err:
        return failed(exercise, str(err))
    except Unsendable as err:  # the grader's limit, not the student's mistake
        return not_run(exercise, f"{err} (grade this exercise by hand)")
    except Exception as err:  # the check could not read what the function gave back
        return failed(exercise, f"the check could not use what `{exercise.name}` returned: {err!r}")
    if any(m == "emgeo" or m.startswith("emgeo.") for m in fn.modules):
        return failed(exercise, f"{exercise.name} {USED_REFERENCE} (checks.reference)")
    lines = [line for line in said.getvalue().splitlines() if line.strip()]
    message = one_line(lines[-1] if lines else f"{exercise.check} passed")
    return ExerciseResult(exercise.name, PASSED, message, exercise.points, exercise.points)
