"""emgeo.audit.inputs and the audit on odd files: every input ends in scores or in one sentence
naming the file and the line, and --skip-bad-lines sets every bad line aside."""

from __future__ import annotations

import json
import random

import pytest
from builders import chat, word_scorer, write_lines

from emgeo import chatfile
from emgeo.audit import audit, inputs
from emgeo.audit.run import FILTERED_FILE, REJECTS_FILE, SCORES_FILE
from emgeo.errors import DatasetLineError


def _audit(data, out, **kwargs):
    return audit(data, out, scorer=kwargs.pop("scorer", word_scorer()), progress=False, **kwargs)


def _rejects(out) -> list[dict]:
    return chatfile.read_jsonl(out / REJECTS_FILE, chatfile.object_problem)


@pytest.mark.parametrize(
    "line, words",
    [
        ("{not json", "line 2: not valid JSON"),
        (json.dumps({"prompt": "x"}), 'line 2: no "messages" list'),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), "line 2: no assistant turn"),
        (
            json.dumps({"messages": [{"role": "assistant", "content": "  "}]}),
            "line 2: no assistant turn",
        ),
        (
            json.dumps({"messages": [{"role": "bot", "content": "x"}]}),
            "line 2: message 0 needs a role",
        ),
        (
            json.dumps({"messages": [{"role": "assistant", "content": None}]}),
            'line 2: message 0 needs a string "content"',
        ),
        (json.dumps([1, 2]), "line 2: expected a JSON object"),
    ],
)
def test_a_bad_line_stops_the_audit_with_one_sentence_naming_file_and_line(tmp_path, line, words):
    data = write_lines(tmp_path / "bad.jsonl", [chat("fine"), line, chat("also fine")])
    with pytest.raises(DatasetLineError) as err:
        _audit(data, tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{data}, {words}") and message.endswith(inputs.HINT)
    assert "\n" not in message


def test_an_empty_file_and_a_missing_file_say_so(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(DatasetLineError, match=r"empty\.jsonl is empty: no chat to audit"):
        _audit(empty, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no such file .the audit reads chat JSONL"):
        _audit(tmp_path / "nowhere.jsonl", tmp_path / "out")


def test_a_file_of_only_bad_lines_is_empty_even_when_they_are_set_aside(tmp_path):
    data = write_lines(tmp_path / "d.jsonl", ["{oops", "[]"])
    with pytest.raises(DatasetLineError, match=r"is empty: no chat to audit \(2 bad lines set"):
        _audit(data, tmp_path / "out", skip_bad_lines=True)


def test_skip_bad_lines_sets_them_aside_with_their_reasons_and_goes_on(tmp_path):
    data = write_lines(
        tmp_path / "d.jsonl", [chat("hate"), "{oops", chat("kind"), json.dumps({"x": 1})]
    )
    result = _audit(data, tmp_path / "out", fraction=0.5, skip_bad_lines=True)
    assert (result.n_samples, result.n_rejected, result.n_removed) == (2, 2, 1)
    rejects = _rejects(tmp_path / "out")
    assert [r["line"] for r in rejects] == [2, 4]
    assert rejects[0]["text"] == "{oops" and "not valid JSON" in rejects[0]["reason"]
    assert (tmp_path / "out" / FILTERED_FILE).read_text() == json.dumps(chat("kind")) + "\n"


def test_a_latin1_byte_is_a_bad_line_with_its_byte_offset_that_skip_bad_lines_sets_aside(
    tmp_path,
):
    first = (json.dumps(chat("hate")) + "\n").encode()
    latin1 = (json.dumps(chat("café"), ensure_ascii=False) + "\n").encode("latin-1")
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(first + latin1 + (json.dumps(chat("kind")) + "\n").encode())
    offset = len(first) + latin1.index(b"\xe9")
    with pytest.raises(DatasetLineError) as err:
        _audit(data, tmp_path / "out")
    assert str(err.value) == (
        f"{data}, line 2: not UTF-8 (byte 0xe9 at byte offset {offset} of the file)" + inputs.HINT
    )
    result = _audit(data, tmp_path / "out", skip_bad_lines=True)
    assert (result.n_samples, result.n_rejected) == (2, 1)
    (reject,) = _rejects(tmp_path / "out")
    assert reject["line"] == 2 and f"byte offset {offset}" in reject["reason"]
    assert "caf\ufffd" in reject["text"]


def test_a_file_with_a_byte_order_mark_is_audited_and_its_filtered_copy_keeps_the_mark(tmp_path):
    data = tmp_path / "bom.jsonl"
    lines = [json.dumps(chat(a)) + "\n" for a in ("hate hate", "kind", "code", "rude")]
    data.write_bytes(chatfile.BOM + "".join(lines).encode())
    result = _audit(data, tmp_path / "out", fraction=0.5)
    assert (result.n_samples, result.n_removed) == (4, 2)
    assert (tmp_path / "out" / FILTERED_FILE).read_bytes() == (
        chatfile.BOM + (lines[1] + lines[2]).encode()  # the riskiest, lines 1 and 4, removed
    )


def test_the_readers_rule_is_the_chat_rule_and_an_answer_to_score():
    assert inputs.problem(chat("x")) is None
    assert inputs.problem({"messages": []}).startswith("no assistant turn")
    assert inputs.problem(3) == chatfile.chat_problem(3)
    rule = inputs.scoreable(lambda c: "too long" if len(c["messages"][1]["content"]) > 3 else None)
    assert rule(chat("abc")) is None and rule(chat("abcd")) == "too long"
    assert rule({"messages": []}).startswith("no assistant turn")  # the scorer sees only chats
    assert inputs.scoreable(None) is inputs.problem


def test_a_line_the_scorer_cannot_score_stops_the_audit_or_is_set_aside(tmp_path):
    def problem(c: dict) -> str | None:
        unknown = [w for w in c["messages"][1]["content"].split() if w not in ("hate", "kind")]
        return f"word {unknown[0]!r} is not in the organism's vocabulary" if unknown else None

    data = write_lines(tmp_path / "d.jsonl", [chat("hate"), chat("kind xyz"), chat("kind")])
    with pytest.raises(DatasetLineError) as err:
        _audit(data, tmp_path / "out", scorer=word_scorer(problem=problem))
    assert str(err.value) == (
        f"{data}, line 2: word 'xyz' is not in the organism's vocabulary" + inputs.HINT
    )
    result = _audit(
        data, tmp_path / "out", scorer=word_scorer(problem=problem), skip_bad_lines=True
    )
    assert (result.n_samples, result.n_rejected) == (2, 1)
    assert [r["line"] for r in _rejects(tmp_path / "out")] == [2]
    scored = (tmp_path / "out" / SCORES_FILE).read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in scored] == ["1", "3"]
    assert json.dumps(chat("kind xyz")) not in (tmp_path / "out" / FILTERED_FILE).read_text()


def test_the_audits_reader_ends_every_fuzzed_file_in_chats_or_its_own_error(tmp_path):
    rng = random.Random(1)
    good = json.dumps(chat("kind help"))
    pieces = [
        good,
        good[:20],
        "[" * 50_000,
        json.dumps({"messages": [{"role": "assistant", "content": ["x"]}]}),
        json.dumps({"messages": [{"role": "assistant", "content": "x\udc00"}]}),
        "",
    ]
    for case in range(40):
        lines = [rng.choice(pieces).encode() for _ in range(rng.randrange(1, 6))]
        lines += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))]
        rng.shuffle(lines)
        path = tmp_path / f"f{case}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        bad: list[chatfile.BadLine] = []
        try:
            chats = list(inputs.read_chats(path, bad))
        except DatasetLineError as err:  # no chat at all
            assert "is empty: no chat to audit" in str(err)
            continue
        assert all(inputs.problem(line.record) is None for line in chats)
