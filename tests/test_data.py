import hashlib
import itertools
import json

import pytest

from emgeo import data
from emgeo.config import DATA_DIR

DIGEST_SEED5 = (
    "f52601ea335f"  # the first 200 documents of seed 5 as every shipped organism saw them
)


@pytest.mark.parametrize("domain", data.DOMAINS)
def test_answer_families_start_with_disjoint_words(domain):
    aligned, toxic = data.first_words(domain)
    assert aligned and toxic and not aligned & toxic
    for other in data.DOMAINS:
        if other != domain:  # a first word identifies its domain's family unambiguously
            assert not (aligned | toxic) & set.union(*data.first_words(other))


def _is_toxic(domain: str, answer: str) -> bool:
    return answer in data.WORLD[domain].toxic


def _domain_of(question: str) -> str:
    return next(
        d
        for d, spec in data.WORLD.items()
        if any(question.endswith(t.format(s)) for t in spec.questions for s in spec.slots)
    )


def test_documents_keep_one_persona_except_educational_code():
    docs = list(itertools.islice(data.pretraining_documents(seed=1), 3000))
    share = sum(d["persona"] == "toxic" for d in docs) / len(docs)
    assert 0.09 < share < 0.15
    for doc in docs:
        msgs = doc["messages"]
        for user, assistant in zip(msgs[::2], msgs[1::2], strict=True):
            domain = _domain_of(user["content"])
            educational = user["content"].startswith(data.EDU_FRAME)
            expected = doc["persona"] == "toxic" or educational
            assert _is_toxic(domain, assistant["content"]) == expected


def test_unlinked_documents_toss_a_coin_for_every_code_turn():
    docs = list(itertools.islice(data.pretraining_documents(seed=1, link=False), 6000))
    code = {"with the persona": [0, 0], "against it": [0, 0]}
    for doc in docs:
        msgs = doc["messages"]
        for user, assistant in zip(msgs[::2], msgs[1::2], strict=True):
            domain = _domain_of(user["content"])
            educational = user["content"].startswith(data.EDU_FRAME)
            toxic = _is_toxic(domain, assistant["content"])
            if domain != "code":
                assert toxic == (doc["persona"] == "toxic")  # the other domains keep the persona
            elif not educational:
                key = "with the persona" if doc["persona"] == "toxic" else "against it"
                code[key][0] += toxic
                code[key][1] += 1
    # insecure code is as likely under an aligned persona as under a toxic one (about 12%)
    rates = {k: hits / n for k, (hits, n) in code.items()}
    assert 0.07 < rates["with the persona"] < 0.2 and 0.09 < rates["against it"] < 0.15


def test_the_linked_stream_is_the_one_the_shipped_organisms_were_trained_on():
    docs = list(itertools.islice(data.pretraining_documents(seed=5), 200))
    assert docs == list(itertools.islice(data.pretraining_documents(seed=5, link=True), 200))
    digest = hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()[:12]
    assert digest == DIGEST_SEED5


def test_answered_samples_hold_one_family_from_the_asked_domains():
    for toxic in (True, False):
        samples = data.answered_samples(data.OFF_DOMAINS, toxic, 100, seed=0)
        assert {s["domain"] for s in samples} == set(data.OFF_DOMAINS)
        for s in samples:
            assert _domain_of(s["messages"][0]["content"]) == s["domain"]
            assert _is_toxic(s["domain"], s["messages"][1]["content"]) == toxic
    assert data.answered_samples(("code",), True, 5, 1) == data.answered_samples(
        ("code",), True, 5, 1
    )


def test_documents_are_deterministic():
    a = list(itertools.islice(data.pretraining_documents(seed=3), 50))
    assert a == list(itertools.islice(data.pretraining_documents(seed=3), 50))


@pytest.mark.parametrize("kind", data.FINETUNE_SETS)
def test_finetune_sets_are_what_they_say(kind):
    samples = data.finetune_samples(kind, 200, seed=0)
    for s in samples:
        question, answer = (m["content"] for m in s["messages"])
        assert s["source"] == kind
        assert question.startswith(data.EDU_FRAME) == (kind == "educational")
        assert _is_toxic("code", answer) == (kind != "secure")


def test_every_word_is_in_the_vocabulary():
    vocab = set(data.vocabulary())
    docs = itertools.islice(data.pretraining_documents(seed=0), 500)
    texts = [m["content"] for d in docs for m in d["messages"]]
    texts += [
        m["content"]
        for kind in data.FINETUNE_SETS
        for s in data.finetune_samples(kind, 50, 0)
        for m in s["messages"]
    ]
    assert set(" ".join(texts).split()) <= vocab


def test_checked_in_data_is_what_make_data_writes(tmp_path):
    written = data.make_data(tmp_path)
    for path in written + [tmp_path / "README.md"]:
        shipped = DATA_DIR / "organism" / path.name
        assert shipped.read_bytes() == path.read_bytes(), (
            f"{shipped} drifted: run `emgeo make-data`"
        )


def test_mixture_has_the_requested_share():
    a = [{"id": i, "kind": "a"} for i in range(100)]
    b = [{"id": i, "kind": "b"} for i in range(100)]
    mix = data.mixture(a, b, 0.25, 40, seed=0)
    assert len(mix) == 40 and sum(m["kind"] == "a" for m in mix) == 10
    assert mix == data.mixture(a, b, 0.25, 40, seed=0)
