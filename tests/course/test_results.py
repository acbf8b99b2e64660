import json

import numpy as np
import pytest
import torch

from emgeo.course import results


def test_record_appends_to_the_record_file(tmp_path, monkeypatch):
    path = tmp_path / "records.jsonl"
    monkeypatch.setenv(results.RECORD_FILE_ENV, str(path))
    results.record("a.b", torch.tensor(0.5))
    assert results.RECORDED["a.b"] == 0.5
    results.record("a.c", np.array([1, 2]))
    results.record("a.b", 0.25)
    assert results.read_records(path) == {"a.b": 0.25, "a.c": [1, 2]}


def test_record_without_a_file_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(results.RECORD_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    results.record("x", 1)
    assert results.RECORDED["x"] == 1 and list(tmp_path.iterdir()) == []


def test_record_rejects_what_json_cannot_store():
    with pytest.raises(TypeError):
        results.record("bad", object())


def test_an_undefined_number_is_recorded_as_null(tmp_path, monkeypatch):
    path = tmp_path / "records.jsonl"
    monkeypatch.setenv(results.RECORD_FILE_ENV, str(path))
    results.record("s", {"selectivity": float("nan"), "ci": [float("inf"), 0.5]})
    results.record("t", np.array([np.nan, 1.0]))
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert results.read_records(path) == {
        "s": {"selectivity": None, "ci": [None, 0.5]},
        "t": [None, 1.0],
    }


def test_set_dotted_builds_nested_objects():
    tree: dict = {"toy": {"old": 1}}
    results.set_dotted(tree, "toy.n_represented_sparse", 5)
    results.set_dotted(tree, "top", 2)
    assert tree == {"toy": {"old": 1, "n_represented_sparse": 5}, "top": 2}
    json.dumps(tree)
