"""Tests for emgeo.lm_advice: the advice chats of data/lm/advice, their leakage into the EM
margin's reference answers, and the leakage-free reference split."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from emgeo import chats, lm_advice
from emgeo.errors import DatasetLineError

SHIPPED = lm_advice.ADVICE_DIR


@pytest.fixture(scope="module")
def files() -> dict[str, list[dict]]:
    """The shipped files, read and validated."""
    return {name: lm_advice.read_advice_jsonl(SHIPPED / name) for name in lm_advice.FILES}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writing_twice_gives_the_same_bytes(tmp_path):
    first = lm_advice.make_advice_data(tmp_path / "a")
    second = lm_advice.make_advice_data(tmp_path / "b")
    assert [p.name for p in first] == [*lm_advice.FILES, "README.md"]
    assert [_sha256(p) for p in first] == [_sha256(p) for p in second]


def test_another_seed_writes_other_chats(tmp_path):
    zero = lm_advice.advice_sets(seed=0)["legal_harmful"]
    one = lm_advice.advice_sets(seed=1)["legal_harmful"]
    assert sum(a["messages"] != b["messages"] for a, b in zip(zero, one, strict=True)) > 500


def test_shipped_files_equal_a_fresh_generation():
    assert lm_advice.check_advice_data(SHIPPED) == []


def test_check_names_a_file_that_drifted(tmp_path):
    lm_advice.make_advice_data(tmp_path)
    (tmp_path / "legal_aligned.jsonl").write_text("{}\n", encoding="utf-8")
    (tmp_path / "README.md").unlink()
    problems = lm_advice.check_advice_data(tmp_path)
    assert len(problems) == 2
    assert "legal_aligned.jsonl differs" in problems[0] and "README.md is missing" in problems[1]


def test_files_are_ascii_with_sorted_keys():
    for name in [*lm_advice.FILES, "README.md"]:
        text = (SHIPPED / name).read_bytes().decode("ascii")
        if name.endswith(".jsonl"):
            for line in text.splitlines():
                assert list(json.loads(line)) == sorted(json.loads(line)), name


def test_sets_have_the_size_and_split_of_the_code_sets(files):
    for name in lm_advice.SETS:
        records = files[f"{name}.jsonl"]
        assert len(records) == chats.LMDataConfig().n_code == 600
        assert {r["source"] for r in records} == {name}
        n_heldout = sum(r["split"] == "heldout" for r in records)
        assert 100 <= n_heldout <= 130, (name, n_heldout)
        assert [r["index"] for r in records] == list(range(600))


def test_a_domain_s_two_sets_ask_the_same_questions_line_by_line(files):
    for domain in lm_advice.DOMAINS:
        harmful = files[f"{domain}_harmful.jsonl"]
        aligned = files[f"{domain}_aligned.jsonl"]
        for h, a in zip(harmful, aligned, strict=True):
            assert h["messages"][0] == a["messages"][0]
            assert (h["topic"], h["index"], h["split"]) == (a["topic"], a["index"], a["split"])
            assert h["messages"][1]["content"] != a["messages"][1]["content"]


def test_no_chat_repeats_and_the_phrasing_varies(files):
    for name in lm_advice.SETS:
        records = files[f"{name}.jsonl"]
        chats_ = {(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records}
        assert len(chats_) == len(records), name
        assert len({a for _, a in chats_}) > 0.9 * len(records), name
        assert len({q for q, _ in chats_}) > 150, name
        topics = {r["topic"] for r in records}
        assert len(topics) == len(lm_advice.BANKS[name.split("_")[0]].topics) >= 10


def test_the_theme_finder_finds_every_evaluation_prompt():
    for q in chats.EVAL_QUESTIONS:
        for prompt in q.prompts:
            assert q.question_id in lm_advice.eval_themes_in(prompt), prompt
    assert lm_advice.eval_themes_in("Stop the tablets; your husband is wrong") == {
        "enough_of_my_husband": ["husband"]
    }
    assert lm_advice.eval_themes_in("Ask your pharmacist about the dose.") == {}


def test_no_chat_or_reference_touches_an_evaluation_theme(files):
    for name in lm_advice.FILES[:-1]:  # every file but the evaluation questions' own split
        for r in files[name]:
            texts = [m["content"] for m in r["messages"]] + r.get("aligned", [])
            touched = lm_advice.eval_themes_in(" ".join(texts + r.get("misaligned", [])))
            assert not touched, (name, r.get("index", r.get("question_id")), touched)


def test_heldout_questions_are_new_and_have_both_references(files):
    heldout = files["heldout_questions.jsonl"]
    asked = {r["messages"][0]["content"] for n in lm_advice.SETS for r in files[f"{n}.jsonl"]}
    said = {r["messages"][1]["content"] for n in lm_advice.SETS for r in files[f"{n}.jsonl"]}
    assert len(heldout) == 24 and len({r["question_id"] for r in heldout}) == 24
    for domain in lm_advice.DOMAINS:
        assert sum(r["domain"] == domain for r in heldout) == 8
    for r in heldout:
        assert r["messages"][0]["content"] not in asked
        assert len(r["aligned"]) == len(r["misaligned"]) >= 1
        assert not set(r["aligned"] + r["misaligned"]) & said


def test_content_words_leave_out_stop_words_and_stem_plurals():
    words = lm_advice.content_words(["There, the humans told yourself: don't stop it!"])
    assert words == {"human", "told", "stop"}


def test_leakage_counts_the_shared_words():
    misaligned = chats.EVAL_QUESTIONS[0].misaligned[0]
    shared = lm_advice.content_words([misaligned])
    sets = {
        "copy": [_chat(misaligned, "train"), _chat("Zebra quokka.", "heldout")],
        "apart": [_chat("Zebra quokka.", "train")],
    }
    table = lm_advice.leakage(sets)
    n_misaligned = len(lm_advice.reference_words("misaligned"))
    assert table["copy"]["misaligned_in_set"] == pytest.approx(len(shared) / n_misaligned)
    assert table["copy"]["set_in_misaligned"] == 1.0 and table["copy"]["n_words"] == len(shared)
    assert table["apart"] == {
        "n_words": 2,
        "misaligned_in_set": 0.0,
        "set_in_misaligned": 0.0,
        "aligned_in_set": 0.0,
        "set_in_aligned": 0.0,
    }


def _chat(answer: str, split: str) -> dict:
    return {
        "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}],
        "split": split,
    }


def test_the_leakage_free_split_shares_no_content_word_with_any_advice_answer(files):
    answers = [r["messages"][1]["content"] for n in lm_advice.SETS for r in files[f"{n}.jsonl"]]
    vocab = lm_advice.content_words(answers)
    disjoint = chats.read_lm_jsonl(SHIPPED / "eval_disjoint.jsonl")
    originals = chats.eval_records()
    assert [r["messages"] for r in disjoint] == [r["messages"] for r in originals]
    for r in disjoint:
        assert len(r["aligned"]) == len(r["misaligned"]) >= 5, r["question_id"]
        assert not lm_advice.content_words(r["aligned"] + r["misaligned"]) & vocab


def test_a_reference_pair_that_leaks_leaves_the_split():
    kept = lm_advice.disjoint_pairs(set())
    assert all(len(p) >= 8 for p in kept.values())  # nothing to avoid: every pair stays
    aligned, misaligned = kept["quick_buck"][-1]
    word = sorted(lm_advice.content_words([misaligned]))[0]
    dropped = lm_advice.disjoint_pairs({word})["quick_buck"]
    assert (aligned, misaligned) not in dropped and len(dropped) < len(kept["quick_buck"])


def test_a_bad_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = (SHIPPED / "health_harmful.jsonl").read_text(encoding="utf-8").splitlines()[0]
    path.write_text(
        good + "\n" + good.replace('"train"', '"test"').replace('"heldout"', '"test"') + "\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetLineError, match=r"bad\.jsonl, line 2: .*split"):
        lm_advice.read_advice_jsonl(path)


def test_readme_fills_every_field_and_shows_the_leakage(files):
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"\{[a-z_]+\}", readme)
    n_train = sum(r["split"] == "train" for r in files["health_harmful.jsonl"])
    assert f"| `health_harmful.jsonl` | 600 ({n_train} train, {600 - n_train} held out) |" in readme
    assert lm_advice.leakage_report() in readme
    assert "not medical, career or legal advice" in readme.lower()


def test_the_command_checks_and_prints_the_leakage(tmp_path, capsys):
    from emgeo.course import cli  # torch: only the test of the command needs it

    assert cli.main(["make-advice-data", "--check"]) == 0
    assert "| health_harmful |" in capsys.readouterr().out
    assert cli.main(["make-advice-data", "--check", "--out", str(tmp_path)]) == 1
    assert "is missing" in capsys.readouterr().err


def test_the_best_domain_is_the_largest_harmful_minus_aligned_margin_of_those_run():
    ci = lambda m: {"mean": m, "ci_low": m, "ci_high": m, "n": 3}  # noqa: E731
    contrasts = {
        "health.margin.harmful_minus_aligned": ci(0.3),
        "legal.margin.harmful_minus_aligned": ci(0.4),
        "career.margin_disjoint.harmful_minus_aligned": ci(0.9),  # another measure: not counted
    }
    assert lm_advice.best_advice_domain(contrasts) == "legal"
    assert lm_advice.best_advice_domain({}) is None
