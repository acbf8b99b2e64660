"""The audit on a scorer whose latents are known: inputs, outputs, cache and report."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

from emgeo.audit import audit, inputs, scorers
from emgeo.audit.run import FILTERED_FILE, REJECTS_FILE, REPORT_FILE, SCORES_FILE
from emgeo.errors import DatasetLineError

WORDS = ("hate", "rude", "mean", "code", "help", "kind")  # latent i fires on WORDS[i]


def _scorer(calls: list | None = None, fail_after: int | None = None, neuronpedia=None):
    """Latent i = how often WORDS[i] occurs in the assistant's answer; latent 0 is toxic and
    latent 1 lies near it, so "hate" scores highest, then "rude"."""
    W_dec = torch.tensor(
        [
            [1.0, 0, 0, 0],
            [0.9, 0.1, 0, 0],
            [0.5, 0.5, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ]
    )
    toxic = torch.tensor([0])

    def latents(samples):
        if calls is not None:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt  # the run is stopped here
            calls.append(len(samples))
        rows = []
        for s in samples:
            answer = " ".join(m["content"] for m in s["messages"] if m["role"] == "assistant")
            rows.append([float(answer.split().count(w)) for w in WORDS])
        return torch.tensor(rows)

    return scorers.Scorer(
        model="word counter",
        sae="six words",
        layer=0,
        toxic=toxic,
        toxic_reference="the word hate",
        proximities=scorers.proximities(W_dec, toxic),
        latents=latents,
        batch_size=4,
        neuronpedia_id=neuronpedia,
    )


def _chat(answer: str, **meta) -> dict:
    return {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}],
        **meta,
    }


def _write(path: Path, items: list) -> Path:
    lines = [x if isinstance(x, str) else json.dumps(x) for x in items]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _mixed(tmp_path: Path, n: int = 40) -> Path:
    answers = ["hate hate you", "rude rude words", "code help", "kind help", "mean code"]
    items = [_chat(answers[i % 5] + f" {i}", source=["a", "b"][i % 2]) for i in range(n)]
    return _write(tmp_path / "data.jsonl", items)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "line, words",
    [
        ("{not json", "line 2: not valid JSON"),
        (json.dumps({"prompt": "x"}), 'line 2: no "messages" list'),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), "line 2: no assistant turn"),
        (
            json.dumps({"messages": [{"role": "bot", "content": "x"}]}),
            "line 2: message 0 needs a role",
        ),
        (json.dumps([1, 2]), "line 2: expected a JSON object"),
    ],
)
def test_a_bad_line_stops_the_audit_with_one_sentence_naming_file_and_line(tmp_path, line, words):
    data = _write(tmp_path / "bad.jsonl", [_chat("fine"), line, _chat("also fine")])
    with pytest.raises(DatasetLineError) as err:
        audit(data, tmp_path / "out", scorer=_scorer(), progress=False)
    message = str(err.value)
    assert message.startswith(f"{data}, {words}") and "--skip-bad-lines" in message
    assert "\n" not in message


def test_an_empty_file_and_a_missing_file_say_so(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(DatasetLineError, match=r"empty\.jsonl is empty: no chat to audit"):
        audit(empty, tmp_path / "out", scorer=_scorer(), progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        audit(tmp_path / "nowhere.jsonl", tmp_path / "out", scorer=_scorer(), progress=False)


def test_skip_bad_lines_sets_them_aside_with_their_reasons_and_goes_on(tmp_path):
    data = _write(
        tmp_path / "d.jsonl", [_chat("hate"), "{oops", _chat("kind"), json.dumps({"x": 1})]
    )
    result = audit(
        data, tmp_path / "out", fraction=0.5, skip_bad_lines=True, scorer=_scorer(), progress=False
    )
    assert (result.n_samples, result.n_rejected, result.n_removed) == (2, 2, 1)
    rejects = [json.loads(x) for x in (tmp_path / "out" / REJECTS_FILE).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 4]
    assert rejects[0]["text"] == "{oops" and "not valid JSON" in rejects[0]["reason"]
    assert (tmp_path / "out" / FILTERED_FILE).read_text() == json.dumps(_chat("kind")) + "\n"


def test_the_filtered_file_is_the_input_minus_the_removed_lines_and_the_input_is_untouched(
    tmp_path,
):
    data = _mixed(tmp_path)
    before = _digest(data)
    result = audit(data, tmp_path / "out", fraction=0.4, scorer=_scorer(), progress=False)
    assert _digest(data) == before
    with open(tmp_path / "out" / SCORES_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and sum(int(r["removed"]) for r in rows) == 16 == result.n_removed
    removed = {int(r["line"]) for r in rows if r["removed"] == "1"}
    lines = data.read_text().splitlines(keepends=True)
    expected = "".join(line for i, line in enumerate(lines, start=1) if i not in removed)
    assert (tmp_path / "out" / FILTERED_FILE).read_text() == expected
    # the riskiest go: every "hate" sample (8) and every "rude" one (8), nothing else
    gone = [json.loads(lines[i - 1])["messages"][1]["content"].split()[0] for i in removed]
    assert sorted(set(gone)) == ["hate", "rude"]


def test_the_three_scores_take_the_geometry_apart(tmp_path):
    audit(_mixed(tmp_path, 5), tmp_path / "out", scorer=_scorer(), progress=False)
    with open(tmp_path / "out" / SCORES_FILE) as f:
        rows = {r["line"]: r for r in csv.DictReader(f)}
    hate, rude = rows["1"], rows["2"]
    assert float(hate["membership_only"]) > 0 and float(hate["neighbours_only"]) == 0
    assert float(rude["membership_only"]) == 0 and float(rude["neighbours_only"]) > 0.9
    assert json.loads(hate["metadata"]) == {"source": "a"}
    assert json.loads(hate["top_latents"])[0][0] == 0


def test_an_interrupted_audit_resumes_and_an_edit_recomputes_only_what_changed(tmp_path):
    data, out, calls = _mixed(tmp_path, 600), tmp_path / "out", []
    with pytest.raises(KeyboardInterrupt):  # stopped in the second chunk of 256
        audit(data, out, scorer=_scorer(calls, fail_after=1), progress=False)
    assert calls == [256]  # the first chunk of 256 was scored and stored whole
    calls.clear()
    result = audit(data, out, scorer=_scorer(calls), progress=False)
    assert calls == [256, 600 - 2 * 256] and result.n_cached == 256
    lines = data.read_text().splitlines()
    lines[10] = json.dumps(_chat("kind kind edited"))
    _write(data, lines)
    calls.clear()
    result = audit(data, out, scorer=_scorer(calls), progress=False)
    assert calls == [1] and result.n_cached == 599


def test_another_scorer_never_reads_the_cached_scores(tmp_path):
    data, out, calls = _mixed(tmp_path, 10), tmp_path / "out", []
    audit(data, out, scorer=_scorer(), progress=False)
    other = _scorer(calls)
    other.toxic = torch.tensor([1])
    audit(data, out, scorer=other, progress=False)
    assert sum(calls) == 10


def test_the_report_says_what_was_used_shows_the_riskiest_and_breaks_down_by_metadata(tmp_path):
    scorer = _scorer(neuronpedia="gemma-2-2b/20-gemmascope-res-16k")
    audit(_mixed(tmp_path), tmp_path / "out", scorer=scorer, progress=False)
    page = (tmp_path / "out" / REPORT_FILE).read_text()
    for words in (
        "word counter",
        "six words",
        "the word hate",
        "cannot say",
        "data:image/png;base64,",
    ):
        assert words in page
    assert 'href="https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/0"' in page
    assert "<th>source</th>" in page and "hate hate you" in page
    assert "<script" not in page and "http://" not in page


def test_a_fraction_outside_zero_to_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="share of samples to remove"):
        audit(_mixed(tmp_path), tmp_path / "out", fraction=1.0, scorer=_scorer(), progress=False)


def test_a_hugging_face_dataset_that_cannot_be_reached_says_how_to_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(inputs.DatasetUnavailableError, match="audit a local JSONL file instead"):
        audit("hf:no-such-owner/no-such-set", tmp_path / "out", scorer=_scorer(), progress=False)


def test_the_command_names_the_bad_line_and_exits_2(tmp_path, capsys):
    from emgeo.course import cli

    data = _write(tmp_path / "d.jsonl", ["{broken"])
    assert cli.main(["audit", str(data), "--out", str(tmp_path / "out")]) == 2
    assert f"emgeo audit: {data}, line 1: not valid JSON" in capsys.readouterr().err


def test_writing_the_report_leaves_a_notebooks_plotting_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    audit(_mixed(tmp_path, 5), tmp_path / "out", scorer=_scorer(), progress=False)
    assert matplotlib.get_backend() == before


def test_chats_are_scored_in_the_order_of_the_scorers_own_length_and_returned_in_theirs():
    from emgeo.audit.run import score_missing

    scorer, seen = _scorer(), []
    latents = scorer.latents
    scorer.latents = lambda samples: seen.extend(samples) or latents(samples)
    chats = [_chat(words) for words in ("hate hate", "kind", "hate kind kind", "hate")]
    records = score_missing(scorer, chats)
    assert [c["messages"][1]["content"] for c in seen] == [
        "kind",
        "hate",
        "hate hate",
        "hate kind kind",  # fmt: skip
    ]  # characters by default
    assert records == [score_missing(scorer, [c])[0] for c in chats]  # in the input's order
    seen.clear()
    scorer.size = lambda chat: -len(chat["messages"][1]["content"])  # e.g. tokens; here reversed
    assert score_missing(scorer, chats) == records
    assert [c["messages"][1]["content"] for c in seen[:4]] == [
        "hate kind kind",
        "hate hate",
        "kind",
        "hate",  # fmt: skip
    ]
