"""emgeo.audit.run: the two passes over a file (scores, then the filtered copy), the summary, and
the order chats are scored in."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from builders import chat, mixed, word_scorer, write_lines

from emgeo import chatfile
from emgeo.audit import audit
from emgeo.audit.run import FILTERED_FILE, SCORES_FILE, SUMMARY_FILE, metadata_fields, score_missing


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(out: Path) -> list[dict]:
    with open(out / SCORES_FILE, newline="") as f:
        return list(csv.DictReader(f))


def test_the_filtered_file_is_the_input_minus_the_removed_lines_and_the_input_is_untouched(
    tmp_path,
):
    data = mixed(tmp_path)
    before = _digest(data)
    result = audit(data, tmp_path / "out", fraction=0.4, scorer=word_scorer(), progress=False)
    assert _digest(data) == before
    rows = _rows(tmp_path / "out")
    assert len(rows) == 40 and sum(int(r["removed"]) for r in rows) == 16 == result.n_removed
    removed = {int(r["line"]) for r in rows if r["removed"] == "1"}
    lines = data.read_text().splitlines(keepends=True)
    expected = "".join(line for i, line in enumerate(lines, start=1) if i not in removed)
    assert (tmp_path / "out" / FILTERED_FILE).read_text() == expected
    # the riskiest go: every "hate" sample (8) and every "rude" one (8), nothing else
    gone = [json.loads(lines[i - 1])["messages"][1]["content"].split()[0] for i in removed]
    assert sorted(set(gone)) == ["hate", "rude"]


def test_kept_lines_are_copied_byte_for_byte_with_their_own_line_ends(tmp_path):
    data = tmp_path / "d.jsonl"
    lines = [
        json.dumps(chat("kind"), ensure_ascii=False) + "\r\n",
        "\n",
        json.dumps(chat("hate hate")) + "\n",
        json.dumps(chat("café ✓"), ensure_ascii=False),  # the last line, with no line end
    ]
    data.write_bytes("".join(lines).encode())
    audit(data, tmp_path / "out", fraction=0.3, scorer=word_scorer(), progress=False)
    assert [r["line"] for r in _rows(tmp_path / "out")] == ["1", "3", "4"]
    filtered = (tmp_path / "out" / FILTERED_FILE).read_bytes()
    assert filtered == (lines[0] + lines[3]).encode()


def test_the_three_scores_take_the_geometry_apart(tmp_path):
    audit(mixed(tmp_path, 5), tmp_path / "out", scorer=word_scorer(), progress=False)
    rows = {r["line"]: r for r in _rows(tmp_path / "out")}
    hate, rude = rows["1"], rows["2"]
    assert float(hate["membership_only"]) > 0 and float(hate["neighbours_only"]) == 0
    assert float(rude["membership_only"]) == 0 and float(rude["neighbours_only"]) > 0.9
    assert json.loads(hate["metadata"]) == {"source": "a"}
    assert json.loads(hate["top_latents"])[0][0] == 0


def test_the_summary_holds_the_audits_figures(tmp_path):
    data = write_lines(tmp_path / "d.jsonl", [chat("hate"), "{oops", chat("kind")])
    result = audit(
        data, tmp_path / "out", skip_bad_lines=True, scorer=word_scorer(), progress=False
    )
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["n_samples"] == 2 == result.n_samples and summary["n_rejected"] == 1
    assert summary["input"] == str(data) and summary["fraction"] == 0.5
    assert summary["model"] == "word counter" and summary["threshold"] == result.threshold
    assert not list((tmp_path / "out").glob("*.partial")) and not list(
        (tmp_path / "out").glob(".*.tmp")
    )


def test_a_fraction_outside_zero_to_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="share of samples to remove"):
        audit(mixed(tmp_path), tmp_path / "out", fraction=1.0, scorer=word_scorer(), progress=False)


def test_metadata_fields_are_the_plain_top_level_values_but_the_messages():
    item = chat("x", source="a", n=3, ok=True, nested={"a": 1}, items=[1])
    assert metadata_fields(item) == {"source": "a", "n": "3", "ok": "True"}


def test_chats_are_scored_in_the_order_of_the_scorers_own_length_and_returned_in_theirs():
    scorer, seen = word_scorer(), []
    latents = scorer.latents
    scorer.latents = lambda samples: seen.extend(samples) or latents(samples)
    chats = [chat(words) for words in ("hate hate", "kind", "hate kind kind", "hate")]
    records = score_missing(scorer, chats)
    answers = [c["messages"][1]["content"] for c in seen]
    assert answers == ["kind", "hate", "hate hate", "hate kind kind"]  # characters by default
    assert records == [score_missing(scorer, [c])[0] for c in chats]  # in the input's order
    seen.clear()
    scorer.size = lambda c: -len(c["messages"][1]["content"])  # e.g. tokens; here reversed
    assert score_missing(scorer, chats) == records
    answers = [c["messages"][1]["content"] for c in seen[:4]]
    assert answers == ["hate kind kind", "hate hate", "kind", "hate"]


def test_rejected_lines_are_written_in_utf8_without_escapes(tmp_path):
    """The rejected lines are written by chatfile: UTF-8, no escapes."""
    data = write_lines(tmp_path / "d.jsonl", [chat("kind"), "{café"])
    audit(data, tmp_path / "out", skip_bad_lines=True, scorer=word_scorer(), progress=False)
    text = (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8")
    assert '"text": "{café"' in text
    assert chatfile.read_jsonl(tmp_path / "out" / "rejected.jsonl", chatfile.object_problem)
