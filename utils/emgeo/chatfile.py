"""Chat JSONL, the course's one reader, validator and writer of it.

Every file the course reads or writes one JSON object a line through goes through here: the
datasets it ships, a learner's fine-tuning set handed to ``emgeo audit``, the lines the audit sets
aside. Reading streams the file line by line and names the file and the line of anything wrong:
bytes that are not UTF-8 (with their byte offset), malformed JSON, a record that is not a chat.
A UTF-8 byte-order mark, as Windows tools write, is read past. Blank lines are skipped. Writing is
one convention: UTF-8, JSONL lines without escapes, ``\\n`` line ends, replaced atomically (a reader
never sees half a file, and a stop in the middle leaves the old file whole).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from emgeo.errors import DatasetLineError, first_line

ROLES = ("system", "user", "assistant")
FORMAT = 'one {"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]} per line'
BOM = b"\xef\xbb\xbf"
# A ``\u`` escape of a UTF-16 surrogate: JSON's way to write a character outside the BMP as a
# pair, or, alone, half of one (which no UTF-8 text can hold).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

# Why a record is not what a reader wants (None: it is); see :func:`chat_problem`.
Problem = Callable[[object], "str | None"]


@dataclass(frozen=True)
class Line:
    """One record of a file: its line number (from 1), its exact text, and the parsed object."""

    line_no: int
    raw: str
    record: dict


@dataclass(frozen=True)
class BadLine:
    """A line that could not be read as the reader wanted, and why."""

    line_no: int
    raw: str
    reason: str


def chat_problem(item: object) -> str | None:
    """Why ``item`` is not a chat, or None: an object with a ``messages`` list of messages, each
    with a ``role`` of system, user or assistant and a string ``content``."""
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
    return None


def object_problem(item: object) -> str | None:
    """Why ``item`` is not a JSON object, or None (for files of records that are not chats)."""
    if isinstance(item, dict):
        return None
    return f"expected a JSON object, got {type(item).__name__}"


def _decode(raw: bytes, offset: int) -> tuple[str | None, str | None]:
    """The line's text, or the reason it has none (not UTF-8: where, as a byte offset)."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        at = offset + err.start
        return None, f"not UTF-8 (byte 0x{raw[err.start]:02x} at byte offset {at} of the file)"


def _parse(text: str, problem: Problem) -> tuple[dict | None, str | None]:
    try:
        item = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at column {err.colno})"
    except RecursionError:
        return None, "not valid JSON (nested too deeply to read)"
    except ValueError as err:  # an integer of over 4300 digits: Python's limit on int(str)
        return None, f"not readable JSON ({first_line(err).split(':')[0]})"
    if _SURROGATE_ESCAPE.search(text) and not _is_text(item):
        return None, "a \\u escape of half a surrogate pair (no character: not UTF-8 text)"
    reason = problem(item)
    return (item, None) if reason is None else (None, reason)


def _is_text(item: object) -> bool:
    """Whether every string of a parsed record can be written as UTF-8 (no lone surrogate)."""
    try:
        dumps(item).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_lines(
    path: Path | str,
    problem: Problem = chat_problem,
    bad_lines: list[BadLine] | None = None,
    hint: str = "",
) -> Iterator[Line]:
    """Every record of ``path``, in order, streamed. A bad line (not UTF-8, not JSON, or one
    ``problem`` objects to) raises :class:`DatasetLineError` naming the file and the line, with
    ``hint`` after the reason; given ``bad_lines``, it is appended there and skipped instead."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: name a JSONL file in it")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    offset = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            start = offset
            offset += len(raw)
            if line_no == 1 and raw.startswith(BOM):
                raw, start = raw[len(BOM) :], start + len(BOM)
            text, reason = _decode(raw, start)
            if text is not None and not text.strip():
                continue
            record = None
            if text is not None:
                record, reason = _parse(text, problem)
            if reason is None:
                yield Line(line_no, text, record)
                continue
            shown = text if text is not None else raw.decode("utf-8", errors="replace")
            if bad_lines is None:
                raise DatasetLineError(f"{path}, line {line_no}: {reason}{hint}")
            bad_lines.append(BadLine(line_no, shown, reason))


def read_jsonl(path: Path | str, problem: Problem = chat_problem) -> list[dict]:
    """Every record of ``path``; the first bad line raises naming the file and the line."""
    return [line.record for line in read_lines(path, problem)]


def read_chats(path: Path | str) -> list[dict]:
    """Every chat of a chat JSONL file, validated; a bad line raises naming file and line."""
    return read_jsonl(path, chat_problem)


def dumps(record: object, sort_keys: bool = False) -> str:
    """One record as one line of the course's files (no newline): UTF-8 text, no escapes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=sort_keys)


def atomic_write(path: Path | str, write: Callable[[TextIO], None]) -> Path:
    """Call ``write`` on a UTF-8 text file beside ``path`` (``\\n`` line ends), then move it
    into place: a reader never sees half a file, and an error or a stop leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make a dataset unreadable to others
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(records: Iterable[object], path: Path | str, sort_keys: bool = False) -> Path:
    """Write ``records`` one a line (see :func:`dumps`) to ``path``, atomically."""

    def write(f: TextIO) -> None:
        for record in records:
            f.write(dumps(record, sort_keys) + "\n")

    return atomic_write(path, write)


def write_json(
    record: object, path: Path | str, indent: int | None = 1, sort_keys: bool = True
) -> Path:
    """One JSON document (a record of runs, a summary) with a final newline, atomically; non-ASCII
    characters stay ``\\u`` escapes, as the course's records have always been written."""
    text = json.dumps(record, indent=indent, sort_keys=sort_keys) + "\n"
    return atomic_write(path, lambda f: f.write(text))


def read_record(path: Path | str, what: str, command: str) -> dict:
    """A JSON record a command ships (a record of runs, a summary); a missing one raises
    :class:`FileNotFoundError` naming ``what`` it is and the ``command`` that writes it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {what} record in {path}: run `{command}`")
    return json.loads(path.read_text(encoding="utf-8"))


def write_generated(files: dict[str, list[dict]], directory: Path, readme: str) -> list[Path]:
    """A generated dataset written into ``directory``: each of ``files`` as JSONL (keys sorted,
    so the same records give the same bytes) and its README; the paths written."""
    written = [
        write_jsonl(records, directory / name, sort_keys=True) for name, records in files.items()
    ]
    return [*written, atomic_write(directory / "README.md", lambda f: f.write(readme))]


def check_generated(make: Callable[[Path], list[Path]], directory: Path, command: str) -> list[str]:
    """One sentence per shipped file of ``directory`` that is missing or differs from what
    ``make`` writes into a fresh folder (``command`` regenerates them)."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for fresh in make(Path(tmp)):
            shipped = directory / fresh.name
            if not shipped.exists():
                problems.append(f"{shipped} is missing: run `{command}`.")
            elif shipped.read_bytes() != fresh.read_bytes():
                problems.append(f"{shipped} differs from a fresh generation: run `{command}`.")
    return problems
