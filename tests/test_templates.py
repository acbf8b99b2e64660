"""Tests for emgeo.templates, the one loader of the course's written data files."""

from __future__ import annotations

import json

import pytest

from emgeo import config, templates


def test_templates_live_in_the_data_directory():
    assert templates.TEMPLATES_DIR == config.DATA_DIR / "templates"


def test_every_json_file_loads_and_is_ascii():
    names = sorted(p.stem for p in templates.TEMPLATES_DIR.glob("*.json"))
    assert {"lm_code", "lm_eval_questions", "lm_personas", "organism_world"} <= set(names)
    for name in names:
        path = templates.TEMPLATES_DIR / f"{name}.json"
        assert templates.load_json(name) == json.loads(path.read_bytes().decode("ascii")), name


def test_a_missing_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(templates, "TEMPLATES_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nothing\.json: no such data file"):
        templates.load_json("nothing")
    (tmp_path / "one.json").write_text('{"a": [1, "\\u00e9"]}\n', encoding="utf-8")
    assert templates.load_json("one") == {"a": [1, "\u00e9"]}
