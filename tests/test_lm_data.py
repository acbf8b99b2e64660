"""Tests for emgeo.lm_data: the files of data/lm, written, checked and described."""

from __future__ import annotations

import json

from emgeo import chats, lm_data


def test_writing_twice_gives_the_same_bytes(tmp_path):
    first = lm_data.make_lm_data(tmp_path / "a")
    second = lm_data.make_lm_data(tmp_path / "b")
    assert [p.name for p in first] == [*chats.FILES, "README.md"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_files_are_ascii_with_sorted_keys(tmp_path):
    for path in lm_data.make_lm_data(tmp_path, cfg=chats.LMDataConfig(n_code=60, n_persona=20)):
        text = path.read_bytes().decode("ascii")
        if path.suffix == ".jsonl":
            first = text.split("\n", 1)[0]
            keys = list(json.loads(first))
            assert keys == sorted(keys), path.name


def test_shipped_files_equal_a_fresh_generation():
    assert lm_data.check_lm_data(chats.LM_DATA_DIR) == []


def test_check_names_a_file_that_drifted(tmp_path):
    lm_data.make_lm_data(tmp_path)
    (tmp_path / "toxic.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "benign.jsonl").unlink()
    problems = lm_data.check_lm_data(tmp_path)
    assert len(problems) == 2
    assert "toxic.jsonl differs" in problems[0] and "benign.jsonl is missing" in problems[1]


def test_readme_counts_what_it_describes():
    cfg = chats.LMDataConfig(n_code=300, heldout_every=2, n_persona=40)
    files = chats.generate(seed=3, cfg=cfg)
    readme = lm_data.data_readme(files, 3, cfg)
    n_heldout = sum(r["split"] == "heldout" for r in files["insecure.jsonl"])
    assert 100 < n_heldout < 200
    assert f"| `insecure.jsonl` | 300 ({300 - n_heldout} train, {n_heldout} held out) |" in readme
    assert "| `toxic.jsonl` | 40 |" in readme and "(seed 3)" in readme
    assert f"{len(chats.CODE_TASKS)} tasks" in readme and "{" not in readme.split("## Format")[0]
