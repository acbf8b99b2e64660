"""The audit's input: chat JSONL in the OpenAI ``messages`` format, read one line at a time.

A bad line stops the audit with one sentence naming the file and the line (malformed JSON, no
``messages`` list, a message without a role or content, no assistant turn to score), or, with
``skip_bad_lines``, is set aside with its reason and the audit goes on. Blank lines are skipped.
The input file is only ever read. ``hf:owner/name[:split]`` names a Hugging Face dataset instead,
fetched (when the hub can be reached) into a local JSONL file first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emgeo.errors import DatasetLineError, DatasetUnavailableError, first_line

HF_PREFIX = "hf:"
ROLES = ("system", "user", "assistant")
FORMAT = 'one {"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]} per line'


@dataclass(frozen=True)
class ChatLine:
    """One input line: its number (from 1), its exact text, and the parsed chat."""

    line_no: int
    raw: str
    chat: dict


@dataclass(frozen=True)
class BadLine:
    line_no: int
    raw: str
    reason: str


def problem(item: object) -> str | None:
    """Why ``item`` cannot be audited, or None: an object with a ``messages`` list of
    ``{"role", "content"}`` messages, at least one of them an assistant turn with content."""
    if not isinstance(item, dict):
        return f"expected a JSON object ({FORMAT}), got {type(item).__name__}"
    messages = item.get("messages")
    if not isinstance(messages, list):
        return f'no "messages" list ({FORMAT})'
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"message {k} needs a role of system, user or assistant"
        if not isinstance(message.get("content"), str):
            return f'message {k} needs a string "content"'
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "no assistant turn to score (the audit reads the assistant's answers)"
    return None


def read_chats(path: Path, bad_lines: list[BadLine] | None = None) -> Iterator[ChatLine]:
    """Every chat of ``path``, in order. A bad line raises :class:`DatasetLineError` naming the
    file and line, unless ``bad_lines`` is given: then it is appended there and skipped. An empty
    file (no chat at all) raises in both cases."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the audit reads chat JSONL, {FORMAT})")
    n_chats = 0
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                chat = json.loads(raw)
                reason = problem(chat)
            except json.JSONDecodeError as err:
                chat, reason = None, f"not valid JSON ({err.msg} at column {err.colno})"
            if reason is not None:
                if bad_lines is None:
                    hint = " (--skip-bad-lines sets such lines aside and goes on)"
                    raise DatasetLineError(f"{path}, line {line_no}: {reason}{hint}")
                bad_lines.append(BadLine(line_no, raw, reason))
                continue
            n_chats += 1
            yield ChatLine(line_no, raw, chat)
    if n_chats == 0:
        skipped = f" ({len(bad_lines)} bad lines set aside)" if bad_lines else ""
        raise DatasetLineError(f"{path} is empty: no chat to audit{skipped}; expected {FORMAT}")


def write_rejects(bad_lines: list[BadLine], path: Path) -> None:
    """The lines set aside, each with its line number and reason (JSONL)."""
    with open(path, "w", encoding="utf-8") as f:
        for bad in bad_lines:
            record = {"line": bad.line_no, "reason": bad.reason, "text": bad.raw.rstrip("\n")}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


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
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
