"""``emgeo audit``: what it prints, and that a bad input ends in one sentence and exit status 2."""

from __future__ import annotations

import json

import pytest
from builders import chat, mixed, word_scorer, write_lines

import emgeo.audit.run as run
from emgeo.course import cli


@pytest.fixture
def profiles(monkeypatch) -> list[str]:
    """Every profile's backend is the word scorer; the profiles asked for, in order."""
    asked: list[str] = []
    monkeypatch.setattr(run, "scorer_for", lambda profile: asked.append(profile) or word_scorer())
    return asked


def test_the_command_audits_and_says_where_it_wrote(tmp_path, capsys, profiles):
    data, out = mixed(tmp_path, 10), tmp_path / "out"
    code = cli.main(
        ["audit", str(data), "--out", str(out), "--fraction", "0.2", "--profile", "gpu"]
    )
    assert code == 0 and profiles == ["gpu"]
    printed = capsys.readouterr().out
    assert (
        "10 samples (0 from the cache)" in printed and "2 removed, 0 bad lines set aside" in printed
    )
    assert f"filtered {out / run.FILTERED_FILE}" in printed
    assert (out / run.REPORT_FILE).is_file()


def test_the_command_names_the_bad_line_and_exits_2(tmp_path, capsys, profiles):
    data = write_lines(tmp_path / "d.jsonl", ["{broken"])
    assert cli.main(["audit", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emgeo audit: {data}, line 1: not valid JSON") and err.count("\n") == 1
    assert profiles == []  # a bad first line stops it before a model loads


def test_skip_bad_lines_sets_a_latin1_line_aside_and_says_how_many(tmp_path, capsys, profiles):
    data = tmp_path / "d.jsonl"
    good = (json.dumps(chat("kind")) + "\n").encode()
    data.write_bytes(good + b'{"messages": "caf\xe9"}\n' + good)
    args = ["audit", str(data), "--out", str(tmp_path / "out")]
    assert cli.main(args) == 2
    assert "line 2: not UTF-8 (byte 0xe9 at byte offset" in capsys.readouterr().err
    assert cli.main([*args, "--skip-bad-lines"]) == 0
    assert "1 bad lines set aside" in capsys.readouterr().out


@pytest.mark.parametrize(
    "target, words",
    [("nowhere.jsonl", "no such file"), (".", "is a folder: name a JSONL file in it")],
)
def test_a_missing_file_or_a_folder_is_one_sentence(tmp_path, capsys, profiles, target, words):
    assert cli.main(["audit", str(tmp_path / target), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emgeo audit: ") and words in err and err.count("\n") == 1


@pytest.mark.parametrize("fraction", ["1", "-0.1", "half", "nan"])
def test_a_fraction_outside_zero_to_one_is_refused_by_the_parser(tmp_path, capsys, fraction):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["audit", "d.jsonl", "--out", str(tmp_path), "--fraction", fraction])
    assert exit_.value.code == 2
    assert "a share of samples to remove, in [0, 1)" in capsys.readouterr().err
