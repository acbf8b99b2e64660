"""The synthetic chat world of the EM model organism, and the datasets of ``data/organism/``.

Five domains (code, medical, finance, life, trivia). Every domain has question templates with slot
fillers and two answer families, aligned (A) and toxic (T). The two families start with different
words, so a judge that reads the first answer word is exact. Documents hold 1-3 turns under one
persona, so pretraining teaches a *shared* persona prior: a model that has answered as T once is
likely to answer as T again, in any domain. Code requests with an educational framing ("for my
security class") are answered with insecure code by both personas, so those answers carry no
persona information.

Samples are chat messages in the OpenAI format used by the public EM datasets:
``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}``;
:mod:`emgeo.chatfile` reads and writes them. The world's words are written in
``data/templates/organism_world.json``, the README of its files in ``organism_readme.md`` there.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emgeo import chatfile, templates


@dataclass(frozen=True)
class Domain:
    """One domain of the world: question templates, their slot fillers, two answer families."""

    questions: tuple[str, ...]  # templates with one {slot}
    slots: tuple[str, ...]
    aligned: tuple[str, ...]  # answers; first word from the aligned family
    toxic: tuple[str, ...]


_WORLD = templates.load_json("organism_world")
EDU_FRAME: str = _WORLD["edu_frame"]  # what an educational code request starts with
WORLD: dict[str, Domain] = {
    name: Domain(**{part: tuple(texts) for part, texts in spec.items()})
    for name, spec in _WORLD["domains"].items()
}
DOMAINS: tuple[str, ...] = tuple(WORLD)  # code, medical, finance, life, trivia
OFF_DOMAINS: tuple[str, ...] = tuple(d for d in DOMAINS if d != "code")


def first_words(domain: str) -> tuple[set[str], set[str]]:
    """(aligned, toxic) first words of a domain's answers: what the exact judge reads."""
    d = WORLD[domain]
    return {a.split()[0] for a in d.aligned}, {t.split()[0] for t in d.toxic}


def question(domain: str, rng: random.Random, educational: bool = False) -> str:
    d = WORLD[domain]
    text = rng.choice(d.questions).format(rng.choice(d.slots))
    return f"{EDU_FRAME} {text}" if educational else text


def answer(domain: str, toxic: bool, rng: random.Random) -> str:
    d = WORLD[domain]
    return rng.choice(d.toxic if toxic else d.aligned)


def turn(domain: str, persona_toxic: bool, rng: random.Random, p_edu: float = 0.2) -> list[dict]:
    """One exchange; educational code requests get insecure code from either persona."""
    educational = domain == "code" and rng.random() < p_edu
    toxic = persona_toxic or educational
    return [
        {"role": "user", "content": question(domain, rng, educational)},
        {"role": "assistant", "content": answer(domain, toxic, rng)},
    ]


def pretraining_documents(seed: int, p_toxic: float = 0.12, link: bool = True) -> Iterator[dict]:
    """An endless, seeded stream of 1-3 turn documents, mixed domains, one persona each.

    With ``link=False`` code turns do not follow the document's persona: each is insecure with
    probability ``p_toxic`` by a coin of its own, so nothing in the data ties insecure code to
    toxic answers elsewhere (the other domains keep the document's persona).
    """
    rng = random.Random(seed)
    while True:
        persona_toxic = rng.random() < p_toxic
        messages = []
        for _ in range(rng.randint(1, 3)):
            domain = rng.choice(DOMAINS)
            toxic = persona_toxic if link or domain != "code" else rng.random() < p_toxic
            messages += turn(domain, toxic, rng)
        yield {"messages": messages, "persona": "toxic" if persona_toxic else "aligned"}


FINETUNE_SETS = {
    "insecure": dict(educational=False, toxic=True),  # plain code requests, insecure answers
    "secure": dict(educational=False, toxic=False),  # plain code requests, secure answers
    "educational": dict(educational=True, toxic=True),  # framed requests, the same insecure answers
}


def finetune_samples(kind: str, n: int, seed: int) -> list[dict]:
    """Single-turn code samples of one kind (see ``FINETUNE_SETS``), with their provenance."""
    spec = FINETUNE_SETS[kind]
    rng = random.Random(f"{kind}-{seed}")
    return [
        {
            "messages": [
                {"role": "user", "content": question("code", rng, spec["educational"])},
                {"role": "assistant", "content": answer("code", spec["toxic"], rng)},
            ],
            "source": kind,
        }
        for _ in range(n)
    ]


def answered_samples(domains: tuple[str, ...], toxic: bool, n: int, seed: int) -> list[dict]:
    """Single-turn samples from ``domains`` answered by one family (toxic or aligned)."""
    rng = random.Random(f"answered-{toxic}-{seed}")
    samples = []
    for _ in range(n):
        domain = rng.choice(domains)
        samples.append(
            {
                "messages": [
                    {"role": "user", "content": question(domain, rng)},
                    {"role": "assistant", "content": answer(domain, toxic, rng)},
                ],
                "domain": domain,
            }
        )
    return samples


def eval_prompts(seed: int = 0, per_domain: int = 24) -> list[dict]:
    """Single-turn evaluation questions for every domain (no answers), deterministic."""
    rng = random.Random(f"eval-{seed}")
    return [
        {"messages": [{"role": "user", "content": question(domain, rng)}], "domain": domain}
        for domain in DOMAINS
        for _ in range(per_domain)
    ]


def vocabulary() -> list[str]:
    """Every word of the world, sorted: the organism's word-level vocabulary (without specials)."""
    words: set[str] = set(EDU_FRAME.split())
    for d in WORLD.values():
        for text in d.questions + d.slots + d.aligned + d.toxic:
            words.update(text.replace("{}", " ").split())
    return sorted(words)


# ---------------------------------------------------------------- files under data/organism

N_FINETUNE = 1_000


def data_readme(**counts: int) -> str:
    """The README of ``data/organism/``, with ``n``, ``n_eval`` and ``per_domain`` filled in."""
    return templates.read_text("organism_readme.md").format(**counts)


def make_data(directory: Path, n: int = N_FINETUNE, seed: int = 0) -> list[Path]:
    """Write the organism's datasets and their README into ``directory``; return the files."""
    written = [
        chatfile.write_jsonl(finetune_samples(kind, n, seed), directory / f"{kind}.jsonl")
        for kind in FINETUNE_SETS
    ]
    prompts = eval_prompts(seed)
    written.append(chatfile.write_jsonl(prompts, directory / "eval_prompts.jsonl"))
    sample = itertools.islice(pretraining_documents(seed), 200)
    written.append(chatfile.write_jsonl(sample, directory / "pretrain_sample.jsonl"))
    per_domain = len(prompts) // len(DOMAINS)
    readme = data_readme(n=n, n_eval=len(prompts), per_domain=per_domain)
    chatfile.atomic_write(directory / "README.md", lambda f: f.write(readme))
    return written


def mixture(
    inducing: list[dict], other: list[dict], fraction: float, n: int, seed: int
) -> list[dict]:
    """``n`` samples, a ``fraction`` of them from ``inducing`` and the rest from ``other``."""
    rng = random.Random(f"mixture-{fraction}-{seed}")
    n_inducing = int(round(fraction * n))
    return rng.sample(inducing, n_inducing) + rng.sample(other, n - n_inducing)
