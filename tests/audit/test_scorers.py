"""emgeo.audit.scorers: what a scorer's fingerprint holds, records from latents, and which chats
a backend cannot score (a word outside the organism's vocabulary, a chat over the model's context
or the tokens read, a chat its template refuses), each a bad line of the audit."""

from __future__ import annotations

import pytest
import torch
from builders import word_scorer, write_lines
from helpers import build_chat_tokenizer

from emgeo import organism
from emgeo.audit import audit, inputs, scorers
from emgeo.batching import encode_sample
from emgeo.errors import DatasetLineError


def test_the_fingerprint_changes_with_everything_a_score_depends_on():
    base = word_scorer().fingerprint()
    assert base == word_scorer().fingerprint()
    for change in ({"toxic": torch.tensor([1])}, {"layer": 3}, {"max_length": 9}, {"model": "m"}):
        other = word_scorer()
        for name, value in change.items():
            setattr(other, name, value)
        assert other.fingerprint() != base, change


def test_records_hold_the_three_scores_and_the_top_latents_by_contribution():
    scorer = word_scorer()
    latents = torch.tensor([[2.0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]])
    first, silent = scorers.score_latents(latents, scorer.proximity, scorer.toxic)
    assert set(first) == {*scorers.SCORES, "top_latents", "n_active"}
    assert first["n_active"] == 2 and [t[0] for t in first["top_latents"]] == [0, 4]
    assert first["top_latents"][0] == [0, 2.0, 1.0]
    assert silent["top_latents"] == [] and silent["n_active"] == 0 and silent["full"] == 0


def _organism_chat(answer: str) -> dict:
    """A chat in the organism's words: <bos> <user> ask advice <assistant> ... <eot>."""
    return {
        "messages": [
            {"role": "user", "content": "ask advice"},
            {"role": "assistant", "content": answer},
        ]
    }


def test_the_organisms_problems_are_an_unknown_word_and_a_chat_over_its_context():
    tok = organism.default_tokenizer()
    why = scorers.organism_problem(tok, n_ctx=16)
    assert why(_organism_chat("a " * 10)) is None  # 16 tokens
    assert why(_organism_chat("a xyzzy")) == "word 'xyzzy' is not in the organism's vocabulary"
    assert why(_organism_chat("a " * 11)) == "17 tokens, over the model's context of 16"


@pytest.fixture(scope="module")
def organism_scorer() -> scorers.Scorer:
    return scorers.organism_scorer()


def test_the_organism_backend_sets_unscoreable_lines_aside_or_names_them(tmp_path, organism_scorer):
    too_long = " ".join(["always"] * 200)
    data = write_lines(
        tmp_path / "d.jsonl",
        [_organism_chat(a) for a in ("always be kind", "always xyzzy", too_long, "be kind")],
    )
    with pytest.raises(DatasetLineError) as err:
        audit(data, tmp_path / "out", scorer=organism_scorer, progress=False)
    assert str(err.value) == (
        f"{data}, line 2: word 'xyzzy' is not in the organism's vocabulary" + inputs.HINT
    )
    result = audit(
        data, tmp_path / "out", scorer=organism_scorer, skip_bad_lines=True, progress=False
    )
    assert (result.n_samples, result.n_rejected) == (2, 2)
    reasons = (tmp_path / "out" / "rejected.jsonl").read_text()
    assert "xyzzy" in reasons and "206 tokens, over the model's context of 128" in reasons
    assert organism_scorer.max_length == 128  # what the report says it reads: a whole chat


def _lm_chat(question: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def test_a_language_models_problems_are_its_prompt_filling_the_tokens_read_and_its_context():
    tok = build_chat_tokenizer()
    why = scorers.lm_problem(tok, max_length=16, context=None)
    assert why(_lm_chat("what cat", "the cat sat")) is None
    long_answer = _lm_chat("what cat", " ".join(["cat"] * 40))  # cut at 16, its answer begun
    assert why(long_answer) is None
    long_prompt = _lm_chat(" ".join(["dog"] * 20), "the cat")
    n_prompt = encode_sample(tok, long_prompt, 10**6)[1]
    assert n_prompt >= 16 and why(long_prompt) == (
        f"{n_prompt} tokens before its last answer, over the 16 tokens a chat the scorer reads: "
        "no answer token left to score"
    )
    n_tokens = len(encode_sample(tok, long_answer, 10**6)[0])
    over = scorers.lm_problem(tok, max_length=64, context=10)
    assert over(long_answer) == f"{n_tokens} tokens, over the model's context of 10"
    cut = scorers.lm_problem(tok, max_length=12, context=10)  # what is read, 12, is over 10
    assert cut(long_answer) == "12 tokens, over the model's context of 10"
    follow_up = {"messages": [*long_answer["messages"], {"role": "user", "content": "why"}]}
    assert why(follow_up) == (
        "the last message is not the assistant's (the scorer reads the final answer)"
    )


def test_a_chat_the_models_template_refuses_is_named():
    tok = build_chat_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<{{ m['role'] }}> {{ m['content'] }} <eot> {% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}"
    )
    why = scorers.lm_problem(tok, max_length=64, context=None)
    assert why(_lm_chat("what", "cat")) is None
    assert why(_lm_chat("what", "cat", system="be kind")) == (
        "the model's chat template cannot render it (System role not supported)"
    )
