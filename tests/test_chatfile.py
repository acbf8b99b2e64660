"""emgeo.chatfile: the one reader (streamed, file and line of every bad line, UTF-8 with or without
a byte-order mark), validator and atomic writer of the course's JSONL; and a fuzz test that the
reader ends every input in a record or a sentence, never in another exception."""

from __future__ import annotations

import json
import os
import random
import stat

import pytest

from emgeo import chatfile
from emgeo.chatfile import BOM, BadLine
from emgeo.errors import DatasetLineError


def _chat(answer: str = "fine", **extra) -> dict:
    return {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}],
        **extra,
    }


def _write_bytes(path, *lines: bytes):
    path.write_bytes(b"".join(lines))
    return path


def _line(record: object) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------- reading


def test_records_come_in_order_with_their_line_numbers_and_text_and_blank_lines_are_skipped(
    tmp_path,
):
    path = _write_bytes(
        tmp_path / "d.jsonl", _line(_chat("a")), b"\n", b"  \t\n", _line(_chat("b"))
    )
    lines = list(chatfile.read_lines(path))
    assert [line.line_no for line in lines] == [1, 4]
    assert [line.record["messages"][1]["content"] for line in lines] == ["a", "b"]
    assert lines[1].raw == json.dumps(_chat("b")) + "\n"
    assert chatfile.read_chats(path) == [_chat("a"), _chat("b")] == chatfile.read_jsonl(path)


def test_the_reader_streams_each_record_comes_before_the_next_line_is_read(tmp_path):
    path = _write_bytes(tmp_path / "d.jsonl", _line(_chat("a")), b"{broken\n")
    lines = chatfile.read_lines(path)
    assert next(lines).line_no == 1  # the bad line 2 is not read yet
    with pytest.raises(DatasetLineError, match="line 2"):
        next(lines)


def test_a_utf8_byte_order_mark_is_read_past_and_counted_in_byte_offsets(tmp_path):
    path = _write_bytes(tmp_path / "bom.jsonl", BOM + _line(_chat("é")), _line(_chat("b")))
    assert [c["messages"][1]["content"] for c in chatfile.read_chats(path)] == ["é", "b"]
    only_bom = _write_bytes(tmp_path / "only.jsonl", BOM + b"\n", _line(_chat()))
    assert [line.line_no for line in chatfile.read_lines(only_bom)] == [2]
    # a mark anywhere but the file's start is not one: that line is bad, and says so
    later = _write_bytes(tmp_path / "later.jsonl", _line(_chat()), BOM + _line(_chat()))
    with pytest.raises(DatasetLineError, match=r"later\.jsonl, line 2: not valid JSON"):
        chatfile.read_chats(later)


def test_a_byte_that_is_not_utf8_names_the_file_the_line_and_the_byte_offset(tmp_path):
    first = _line(_chat())
    latin1 = json.dumps(_chat("café"), ensure_ascii=False).encode("latin-1") + b"\n"
    path = _write_bytes(tmp_path / "latin1.jsonl", first, latin1, _line(_chat("after")))
    offset = len(first) + latin1.index(b"\xe9")
    with pytest.raises(DatasetLineError) as err:
        chatfile.read_chats(path)
    assert str(err.value) == (
        f"{path}, line 2: not UTF-8 (byte 0xe9 at byte offset {offset} of the file)"
    )
    bad: list[BadLine] = []
    kept = list(chatfile.read_lines(path, bad_lines=bad))
    assert [line.line_no for line in kept] == [1, 3]
    assert [(b.line_no, b.reason.split(" (")[0]) for b in bad] == [(2, "not UTF-8")]
    assert "caf\ufffd" in bad[0].raw  # shown with the replacement character


def test_the_offset_counts_the_byte_order_mark(tmp_path):
    path = _write_bytes(tmp_path / "d.jsonl", BOM + b'{"a": "\xff"}\n')
    with pytest.raises(DatasetLineError, match=r"byte 0xff at byte offset 10 of the file"):
        chatfile.read_jsonl(path, chatfile.object_problem)


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"{not json", "not valid JSON (Expecting property name enclosed in double quotes"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
        (json.dumps({"prompt": "x"}).encode(), 'no "messages" list'),
        (json.dumps({"messages": "x"}).encode(), 'no "messages" list'),
        (json.dumps({"messages": [{"role": "bot", "content": "x"}]}).encode(), "message 0 needs"),
        (json.dumps({"messages": ["x"]}).encode(), "message 0 needs a role"),
        (json.dumps({"messages": [{"role": "user"}]}).encode(), 'message 0 needs a string "con'),
        (
            json.dumps({"messages": [{"role": "user", "content": 3}]}).encode(),
            "message 0 needs a string",
        ),
        (b"1" * 5000, "not readable JSON (Exceeds the limit (4300 digits)"),
        (b"[" * 100_000, "not valid JSON"),
        (b'{"messages": [], "x": "\\ud800"}', "a \\u escape of half a surrogate pair"),
    ],
)
def test_every_bad_line_is_one_sentence_naming_file_and_line(tmp_path, line, reason):
    path = _write_bytes(tmp_path / "bad.jsonl", _line(_chat()), line + b"\n")
    with pytest.raises(DatasetLineError) as err:
        list(chatfile.read_lines(path, hint=" (a hint)"))
    message = str(err.value)
    assert message.startswith(f"{path}, line 2: {reason}") and message.endswith(" (a hint)")
    assert "\n" not in message


def test_a_surrogate_pair_is_one_character_and_reads(tmp_path):
    path = _write_bytes(tmp_path / "d.jsonl", b'{"messages": [], "x": "\\ud83d\\ude00"}\n')
    assert chatfile.read_chats(path)[0]["x"] == "\U0001f600"


def test_set_aside_lines_keep_their_number_text_and_reason(tmp_path):
    path = _write_bytes(tmp_path / "d.jsonl", b"{oops\n", _line(_chat()), b"[]\n")
    bad: list[BadLine] = []
    assert [line.line_no for line in chatfile.read_lines(path, bad_lines=bad)] == [2]
    assert [(b.line_no, b.raw) for b in bad] == [(1, "{oops\n"), (3, "[]\n")]
    assert "not valid JSON" in bad[0].reason and "got list" in bad[1].reason


def test_a_missing_file_and_a_folder_say_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl: no such file"):
        list(chatfile.read_lines(tmp_path / "nowhere.jsonl"))
    with pytest.raises(IsADirectoryError, match="is a folder: name a JSONL file in it"):
        list(chatfile.read_lines(tmp_path))


def test_an_empty_file_has_no_records(tmp_path):
    assert chatfile.read_jsonl(_write_bytes(tmp_path / "e.jsonl")) == []


def test_problems_say_why_a_record_is_not_a_chat():
    assert chatfile.chat_problem(_chat()) is None
    assert chatfile.chat_problem({"messages": []}) is None  # a chat of no message: readers decide
    assert "got int" in chatfile.chat_problem(3)
    assert chatfile.chat_problem({"messages": [{"role": ["user"], "content": "x"}]}).startswith(
        "message 0 needs a role"
    )
    assert chatfile.object_problem({}) is None and "got list" in chatfile.object_problem([])


# ---------------------------------------------------------------- writing


def test_records_are_written_one_a_line_in_utf8_without_escapes(tmp_path):
    records = [_chat("café ✓", z=1, a=2), {"text": "line\nbreak"}]
    path = chatfile.write_jsonl(records, tmp_path / "sub" / "out.jsonl")
    data = path.read_bytes()
    assert data == b"".join(_line(r) for r in records) and "café ✓".encode() in data
    assert chatfile.read_jsonl(path, chatfile.object_problem) == records
    assert chatfile.dumps({"b": 1, "a": "é"}, sort_keys=True) == '{"a": "é", "b": 1}'
    sorted_path = chatfile.write_jsonl([{"b": 1, "a": 2}], tmp_path / "s.jsonl", sort_keys=True)
    assert sorted_path.read_text() == '{"a": 2, "b": 1}\n'


def test_a_json_document_ends_in_a_newline_with_sorted_keys_by_default(tmp_path):
    path = chatfile.write_json({"b": [1], "a": "é"}, tmp_path / "r.json")
    assert path.read_text() == '{\n "a": "\\u00e9",\n "b": [\n  1\n ]\n}\n'
    path = chatfile.write_json({"b": 1, "a": 2}, tmp_path / "r.json", indent=None, sort_keys=False)
    assert path.read_text() == '{"b": 1, "a": 2}\n'


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    path = chatfile.write_jsonl([{"n": 1}], tmp_path / "d.jsonl")

    def records():
        yield {"n": 2}
        raise KeyboardInterrupt  # stopped half way

    with pytest.raises(KeyboardInterrupt):
        chatfile.write_jsonl(records(), path)
    assert path.read_text() == '{"n": 1}\n' and os.listdir(tmp_path) == ["d.jsonl"]


def test_written_files_are_readable_by_others_and_have_unix_line_ends(tmp_path):
    path = chatfile.atomic_write(tmp_path / "t.txt", lambda f: f.write("a\nb\r\n"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"a\nb\r\n"  # nothing translated


# ---------------------------------------------------------------- fuzzing the reader

WRONG = [None, True, 0, -1.5, float("nan"), "", "x", [], [1], {}, {"role": "user"}, [[[]]]]


def _wrong_fields(rng: random.Random) -> bytes:
    """A chat with one field (top level, messages, a message, its role or content) of a wrong
    type, or missing."""
    chat = _chat()
    where = rng.choice(["chat", "messages", "message", "role", "content"])
    value = rng.choice(WRONG)
    if where == "chat":
        chat = value
    elif where == "messages":
        chat["messages"] = value
    elif where == "message":
        chat["messages"][rng.randrange(2)] = value
    else:
        message = chat["messages"][rng.randrange(2)]
        if rng.random() < 0.2:
            del message[where]
        else:
            message[where] = value
    return json.dumps(chat).encode()


def _fuzz_line(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    whole = json.dumps(_chat(rng.choice(["ok", "é", "日本", "\\u0000", "a\tb"])))
    if kind == 0:  # random bytes (newlines included: they split lines anywhere)
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
    if kind == 1:  # truncated JSON
        return whole[: rng.randrange(len(whole))].encode()
    if kind == 2:  # deep nesting, as an array or inside a message's content
        depth = rng.choice([10, 1000, 100_000])
        inner = "[" * depth + "]" * depth * rng.randrange(2)
        return (whole[:-1] + ', "deep": ' + inner + "}").encode()
    if kind == 3:  # one byte flipped
        data = bytearray(whole.encode())
        data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 4:
        return _wrong_fields(rng)
    if kind == 5:  # escapes: surrogates whole and halved, control characters
        content = "a" + rng.choice(["\udc00", "\ud83d", "\U0001f600", "\x00", "\u2028"])
        return json.dumps({"messages": [{"role": "user", "content": content}]}).encode()
    return whole.encode()


def _check_reads(path) -> tuple[int, int]:
    """The reader on ``path``: set-aside lines plus records cover every non-blank line, and
    without ``bad_lines`` the only exception is the course's one sentence."""
    bad: list[BadLine] = []
    records = list(chatfile.read_lines(path, bad_lines=bad))
    for line in records:
        assert chatfile.chat_problem(line.record) is None
        chatfile.dumps(line.record).encode("utf-8")  # what is read can be written again
    for b in bad:
        assert b.reason and "\n" not in b.reason
    try:
        assert len(list(chatfile.read_lines(path))) == len(records) and not bad
    except DatasetLineError as err:
        assert bad and str(err).startswith(f"{path}, line {bad[0].line_no}: {bad[0].reason}")
    numbers = [line.line_no for line in records] + [b.line_no for b in bad]
    assert len(numbers) == len(set(numbers))
    return len(records), len(bad)


def test_the_reader_never_raises_anything_but_the_course_s_own_error(tmp_path):
    rng = random.Random(0)
    n_records = n_bad = 0
    for case in range(300):
        lines = [_fuzz_line(rng) for _ in range(rng.randrange(1, 12))]
        prefix = BOM if rng.random() < 0.2 else b""
        end = b"\n" if rng.random() < 0.8 else b""
        path = _write_bytes(tmp_path / f"fuzz{case}.jsonl", prefix + b"\n".join(lines) + end)
        read, set_aside = _check_reads(path)
        n_records, n_bad = n_records + read, n_bad + set_aside
    assert n_records > 20 and n_bad > 20  # the cases read records and set lines aside


def test_ten_megabyte_lines_are_read_or_set_aside(tmp_path):
    big = "word " * 2_000_000  # 10 MB
    path = _write_bytes(
        tmp_path / "big.jsonl",
        _line(_chat(big)),
        b'{"messages": "' + big.encode() + b"\n",  # 10 MB of truncated JSON
        b"\xff" * 10_000_000 + b"\n",
    )
    bad: list[BadLine] = []
    records = [line.record for line in chatfile.read_lines(path, bad_lines=bad)]
    assert records == [_chat(big)]
    assert [(b.line_no, b.reason.split(" (")[0]) for b in bad] == [
        (2, "not valid JSON"),
        (3, "not UTF-8"),
    ]


def test_a_missing_record_names_what_it_is_and_the_command_that_writes_it(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no robustness record in .*: run `emgeo robustness`"
    ):
        chatfile.read_record(tmp_path / "robustness.json", "robustness", "emgeo robustness")
    chatfile.write_json({"a": [1, 2]}, tmp_path / "r.json")
    assert chatfile.read_record(tmp_path / "r.json", "r", "emgeo r") == {"a": [1, 2]}
