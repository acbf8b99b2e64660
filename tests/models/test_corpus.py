import json
import os
from collections import Counter

import pytest
import torch
from helpers import TEXTS, build_model, build_tokenizer

from emgeo import chatfile, chats
from emgeo.errors import DatasetLineError
from emgeo.models import corpus, lm, saes


def test_self_chat_prompts_are_seeded_distinct_and_one_in_16_about_code():
    prompts = corpus.self_chat_prompts(512)
    assert prompts == corpus.self_chat_prompts(512) != corpus.self_chat_prompts(512, seed=1)
    assert len(set(prompts)) == 512
    assert sum("Python" in p for p in prompts) == 512 // 16
    with pytest.raises(ValueError, match="distinct prompts"):
        corpus.self_chat_prompts(5_000)


def test_the_shipped_answers_are_the_recipe_s_prompts_in_order():
    rows = corpus.read_self_chats()
    recipe = corpus.SELF_CHAT_RECIPE
    prompts = corpus.self_chat_prompts(recipe["n_prompts"], recipe["seed"])
    assert [r["messages"][0]["content"] for r in rows] == prompts
    assert all(
        r["messages"][1]["role"] == "assistant" and r["messages"][1]["content"] for r in rows
    )


def test_a_bad_answers_line_names_its_file_and_line(tmp_path):
    bad = tmp_path / "answers.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n{oops\n")
    with pytest.raises(DatasetLineError, match=r"answers.jsonl, line 2: not valid JSON"):
        corpus.read_self_chats(bad)
    bad.write_text(json.dumps({"messages": []}) + "\n")
    with pytest.raises(DatasetLineError, match=r"line 1: .*'messages' list ending in the answer"):
        corpus.read_self_chats(bad)


def test_a_bad_offline_corpus_line_names_its_file_and_line(tmp_path):
    bad = tmp_path / "texts.jsonl"
    bad.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"text": 3}) + "\n")
    with pytest.raises(DatasetLineError, match=r"texts.jsonl, line 2: .*'text' string"):
        corpus.offline_corpus(1, bad)
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"text": "a"}) + "\n")
    with pytest.raises(ValueError, match="has 1 texts, fewer than the 2 asked for"):
        corpus.offline_corpus(2, one)


def test_the_shipped_files_are_what_the_writers_write_of_what_the_readers_read(tmp_path):
    """Reading a shipped corpus file and writing it again gives the same bytes: the writers'
    convention (UTF-8, no escapes, one record a line; the answers with sorted keys) is theirs."""
    texts = corpus.offline_corpus(corpus.OFFLINE_RECIPE["n_texts"])
    assert len(texts) == corpus.OFFLINE_RECIPE["n_texts"]
    pairs = [
        (
            chatfile.write_jsonl(({"text": t} for t in texts), tmp_path / "t.jsonl"),
            corpus.OFFLINE_CORPUS,
        ),
        (
            chatfile.write_jsonl(corpus.read_self_chats(), tmp_path / "a.jsonl", sort_keys=True),
            corpus.SELF_CHATS,
        ),
    ]
    for written, shipped in pairs:
        assert written.read_bytes() == shipped.read_bytes()


def test_chat_corpus_splits_are_disjoint_and_cover_every_chat():
    train, heldout = corpus.chat_corpus("train"), corpus.chat_corpus("heldout")
    key = [json.dumps(r["messages"], sort_keys=True) for r in train]
    held = {json.dumps(r["messages"], sort_keys=True) for r in heldout}
    sources = {r["source"] for r in train} | {r["source"] for r in heldout}
    assert sources == set(saes.CHAT_SOURCES)
    code = sum(len(chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{n}.jsonl")) for n in chats_sets())
    n_other = 2 * 200 + len(corpus.read_self_chats()) + corpus.OFFLINE_RECIPE["n_texts"]
    assert len(train) + len(heldout) == code + n_other
    # a chat in both splits must be one the data holds twice (a few kind replies repeat)
    counts = Counter(key + [json.dumps(r["messages"], sort_keys=True) for r in heldout])
    assert all(counts[chat] > 1 for chat in held & set(key))
    heldout_code = [r for r in heldout if r["source"] in chats_sets()]
    assert len(heldout_code) == 3 * 112
    assert train == corpus.chat_corpus("train")  # the same seeded order every time


def chats_sets() -> tuple[str, ...]:
    return ("insecure", "secure", "educational")


@pytest.fixture(scope="module")
def tiny() -> lm.LoadedLM:
    return lm.from_model(build_model("llama"), build_tokenizer(), name="llama")


def test_collected_activations_are_every_real_token_in_text_order(tiny):
    texts = [*TEXTS, "a much longer text than the others here", "one"]
    full = saes.collect_activations(tiny, texts, layer=1, batch_size=2, sink_factor=1e9)
    lengths = [len(t.split()) for t in texts]
    assert len(full.acts) == sum(lengths) and full.n_sink == 0
    assert full.text_index.tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    reference = tiny.tokenizer(texts[3], return_tensors="pt")["input_ids"][0]
    assert full.token_ids[full.text_index == 3].tolist() == reference.tolist()
    one_by_one = torch.cat(
        [saes.collect_activations(tiny, [t], 1, sink_factor=1e9).acts for t in texts]
    )
    torch.testing.assert_close(full.acts, one_by_one, atol=1e-5, rtol=1e-4)


def test_skip_first_drops_the_first_tokens_of_every_text(tiny):
    texts = [*TEXTS, "one two three four five"]
    full = saes.collect_activations(tiny, texts, 1, batch_size=3, sink_factor=1e9)
    cut = saes.collect_activations(tiny, texts, 1, batch_size=3, sink_factor=1e9, skip_first=2)
    lengths = [len(t.split()) for t in texts]
    assert len(cut.acts) == sum(max(0, n - 2) for n in lengths)
    keep = torch.cat([torch.arange(n) >= 2 for n in lengths])
    torch.testing.assert_close(cut.acts, full.acts[keep])


def test_a_recipe_reads_every_token_of_its_chats_but_the_shared_system_turn():
    from helpers import build_chat_lm

    chat_lm = build_chat_lm("llama")
    recipe = saes.SmolLM2SAERecipe(n_chats=6, n_heldout=3, layer=1, max_length=512, batch_size=4)
    texts = recipe.texts(chat_lm.tokenizer)
    assert len(texts) == 6 and len(recipe.texts(chat_lm.tokenizer, "heldout")) == 3
    lengths = [len(chat_lm.tokenizer(t)["input_ids"]) for t in texts]
    shared = len(chat_lm.tokenizer(os.path.commonprefix(texts))["input_ids"]) - 1
    tokens = saes.smollm2_activations(chat_lm, recipe, progress=False)
    assert len(tokens.acts) + tokens.n_sink == sum(n - shared for n in lengths)
    assert tokens.n_sink <= len(texts)  # at most one attention sink a chat, not half the tokens
