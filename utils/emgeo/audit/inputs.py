"""The audit's input: chat JSONL in the OpenAI ``messages`` format, read one line at a time.

The file is read by :func:`emgeo.chatfile.read_lines` (UTF-8, with or without a byte-order mark),
with one rule of the audit's own on top of what makes a chat: an assistant turn with content to
score. A scorer can add its own (:attr:`emgeo.audit.scorers.Scorer.problem`: a word outside the
organism's vocabulary, a chat longer than the model's context). A bad line stops the audit with
one sentence naming the file and the line, or, with ``skip_bad_lines``, is set aside with its
reason and the audit goes on. Blank lines are skipped. The input file is only ever read.
``hf:owner/name[:split]`` names a Hugging Face dataset instead, fetched (when the hub can be
reached) into a local JSONL file first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from emgeo import chatfile
from emgeo.chatfile import FORMAT, BadLine, Line, Problem
from emgeo.errors import DatasetLineError, DatasetUnavailableError, first_line

HF_PREFIX = "hf:"
HINT = " (--skip-bad-lines sets such lines aside and goes on)"


def problem(item: object) -> str | None:
    """Why ``item`` cannot be audited, or None: a chat (:func:`emgeo.chatfile.chat_problem`)
    with at least one assistant turn with content."""
    reason = chatfile.chat_problem(item)
    if reason is None and not any(
        m["role"] == "assistant" and m["content"].strip() for m in item["messages"]
    ):
        return "no assistant turn to score (the audit reads the assistant's answers)"
    return reason


def scoreable(scorer_problem: Problem | None) -> Problem:
    """:func:`problem`, then why the scorer cannot score the chat (``scorer_problem``)."""
    if scorer_problem is None:
        return problem
    return lambda item: problem(item) or scorer_problem(item)


def read_chats(
    path: Path, bad_lines: list[BadLine] | None = None, rule: Problem = problem
) -> Iterator[Line]:
    """Every chat of ``path`` that ``rule`` accepts, in order. A bad line raises
    :class:`DatasetLineError` naming the file and line, unless ``bad_lines`` is given: then it is
    appended there and skipped. An empty file (no chat at all) raises in both cases."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (the audit reads chat JSONL, {FORMAT})")
    n_chats = 0
    for line in chatfile.read_lines(path, rule, bad_lines, HINT):
        n_chats += 1
        yield line
    if n_chats == 0:
        skipped = f" ({len(bad_lines)} bad lines set aside)" if bad_lines else ""
        raise DatasetLineError(f"{path} is empty: no chat to audit{skipped}; expected {FORMAT}")


def write_rejects(bad_lines: list[BadLine], path: Path) -> None:
    """The lines set aside, each with its line number and reason (JSONL)."""
    records = (
        {"line": bad.line_no, "reason": bad.reason, "text": bad.raw.rstrip("\n")}
        for bad in bad_lines
    )
    chatfile.write_jsonl(records, path)


def fetch_hf_dataset(name: str, out: Path) -> Path:
    """A Hugging Face dataset (``owner/name`` or ``owner/name:split``, default split ``train``)
    written to ``out`` as chat JSONL, one record per line as the hub has it; a one-sentence
    :class:`DatasetUnavailableError` when the hub cannot be reached."""
    repo, _, split = name.partition(":")
    try:
        import datasets  # the hub client: only when a dataset is named

        rows = datasets.load_dataset(repo, split=split or "train")
    except Exception as err:  # offline, unknown dataset, gated: one sentence says which
        raise DatasetUnavailableError(
            f"could not load the Hugging Face dataset {repo!r} ({first_line(err, 160)}); "
            "audit a local JSONL file instead, or run where the hub can be reached"
        ) from None
    return chatfile.write_jsonl(rows, out)
