"""Every exception the course raises, and the one helper that quotes another error in a sentence.

Errors a learner can fix (a profile this machine cannot run, a model or dataset that cannot be
fetched, a missing key) derive from :class:`ProfileError`: in a notebook they render as their
one-sentence message instead of a traceback. Errors in a learner's input name the file and line.
"""

from __future__ import annotations


def first_line(err: BaseException, max_chars: int | None = None) -> str:
    """The first line of an error's message (its type's name if empty), to quote in a sentence.

    ``urllib``'s ``URLError`` keeps its cause in ``.reason``; that is quoted instead. Lines over
    ``max_chars`` are cut with an ellipsis.
    """
    reason = getattr(err, "reason", None)
    text = str(reason if isinstance(reason, (str, BaseException)) else err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    if max_chars is not None and len(line) > max_chars:
        return line[: max_chars - 3] + "..."
    return line


class ProfileError(RuntimeError):
    """A profile was asked for that this machine cannot run; the message says how to fix it.

    In a notebook it renders as its one-sentence message instead of a traceback.
    """

    def _render_traceback_(self) -> list[str]:  # IPython hook: show the sentence, not the stack
        return [f"{type(self).__name__}: {self}"]  # subclasses show their own name


class ModelUnavailableError(ProfileError):
    """A model cannot be obtained here (hub unreachable, package missing); says how to fix it."""


class RemoteUnavailableError(ModelUnavailableError):
    """NDIF cannot run the trace (no key, service down, model not deployed, versions differ)."""


class DatasetUnavailableError(ModelUnavailableError):
    """A public dataset cannot be obtained here; the message says how to fix it."""


class ChecksumMismatchError(DatasetUnavailableError):
    """A downloaded or cached file is not the file its checksum says it should be."""


class JudgeUnavailableError(ProfileError):
    """A judge cannot run here (no API key); the message says how to fix it."""


class DatasetLineError(ValueError):
    """A chat JSONL line is malformed; the message names the file and the line."""


class OrganismMismatch(RuntimeError):
    """The shipped weights do not match the code's model config or vocabulary."""


class BuildError(ValueError):
    """A solutions notebook is malformed (unbalanced solution markers)."""


class CheckFailed(AssertionError):
    """A learner's function gave a wrong answer; the message says what is likely wrong."""

    def _render_traceback_(self) -> list[str]:  # IPython: show the diagnosis, not our stack
        return [f"CheckFailed: {self}"]


# What a check prints when it is given the course's own version of its exercise
# (``checks.reference``): it runs, but there is nothing of the learner's to check or to grade.
USED_REFERENCE = "is the course's own version"
