"""emgeo.audit.cache: scores keyed by a chat's messages and the scorer's fingerprint, so an audit
resumes where it stopped, an edit recomputes only what changed, and another scorer never reads
them."""

from __future__ import annotations

import json

import pytest
import torch
from builders import chat, mixed, word_scorer, write_lines

from emgeo.audit import audit
from emgeo.audit.cache import ScoreCache, sample_key


def test_a_key_depends_on_the_messages_and_the_fingerprint_only():
    a = sample_key(chat("x", source="a"), "f1")
    assert a == sample_key(chat("x", source="b"), "f1")  # metadata is not what is scored
    assert a == sample_key(
        {"messages": [dict(reversed(m.items())) for m in chat("x")["messages"]]}, "f1"
    )
    assert a != sample_key(chat("y"), "f1") and a != sample_key(chat("x"), "f2")


def test_records_round_trip_in_batches_over_sqlites_parameter_limit(tmp_path):
    cache = ScoreCache(tmp_path / "sub" / "cache.sqlite")
    items = [(f"k{i}", {"full": i / 7, "top_latents": [[i, 0.5, 1.0]]}) for i in range(1234)]
    cache.put_many(items)
    cache.put_many([("k0", {"full": -1.0})])  # replaced, not added
    assert len(cache) == 1234
    found = cache.get_many([k for k, _ in items] + ["missing"])
    assert len(found) == 1234 and found["k0"] == {"full": -1.0} and found["k7"] == items[7][1]
    cache.close()
    assert len(ScoreCache(tmp_path / "sub" / "cache.sqlite")) == 1234  # it was on disk


def test_an_interrupted_audit_resumes_and_an_edit_recomputes_only_what_changed(tmp_path):
    data, out, calls = mixed(tmp_path, 600), tmp_path / "out", []
    with pytest.raises(KeyboardInterrupt):  # stopped in the second chunk of 256
        audit(data, out, scorer=word_scorer(calls, fail_after=1), progress=False)
    assert calls == [256]  # the first chunk of 256 was scored and stored whole
    calls.clear()
    result = audit(data, out, scorer=word_scorer(calls), progress=False)
    assert calls == [256, 600 - 2 * 256] and result.n_cached == 256
    lines = data.read_text().splitlines()
    lines[10] = json.dumps(chat("kind kind edited"))
    write_lines(data, lines)
    calls.clear()
    result = audit(data, out, scorer=word_scorer(calls), progress=False)
    assert calls == [1] and result.n_cached == 599


def test_another_scorer_never_reads_the_cached_scores(tmp_path):
    data, out, calls = mixed(tmp_path, 10), tmp_path / "out", []
    audit(data, out, scorer=word_scorer(), progress=False)
    other = word_scorer(calls)
    other.toxic = torch.tensor([1])
    audit(data, out, scorer=other, progress=False)
    assert sum(calls) == 10
