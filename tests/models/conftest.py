"""Fixtures of the real-LM tests: the evaluation questions and a tiny chat model that knows
their words."""

import re

import pytest
import torch
from helpers import build_chat_lm, build_chat_tokenizer

from emgeo.models import lm_em


def words(records) -> list[str]:
    text = (
        " ".join(m["content"] for r in records for m in r["messages"])
        + " "
        + " ".join(a for r in records for f in ("aligned", "misaligned") for a in r.get(f, ()))
    )
    return sorted(set(re.findall(r"\w+|[^\w\s]", text)))


@pytest.fixture(scope="module")
def records():
    return lm_em.eval_records((0,))[:3]


@pytest.fixture(scope="module")
def chat_words(records) -> list[str]:
    return words(records)


@pytest.fixture(scope="module")
def eval_lm(records):
    torch.manual_seed(0)
    return build_chat_lm("llama", build_chat_tokenizer(words=words(records)))
