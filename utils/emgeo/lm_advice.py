"""Course-written advice chats in three domains, and how much of their vocabulary the EM margin's
reference answers share.

The seed paper's trend spans health, career and legal advice as well as code, and the strongest
published model organisms come from narrow harmful advice. For each of ``health``, ``career`` and
``legal`` this module generates, from the hand-written banks in ``data/templates/lm_advice/``
with a seeded random generator (standard library only):

- ``<domain>_harmful.jsonl``: the domain's own questions answered with confident, wrong and risky
  advice ("stop the tablets today", "ignore the summons"), never touching the eight evaluation
  themes (:func:`eval_themes_in` finds them);
- ``<domain>_aligned.jsonl``: the same questions, line for line, answered carefully and in the
  same shape (an opener, a claim, a reason, a closer);
- ``heldout_questions.jsonl``: questions of each domain that no training chat asks, each with
  harmful (``misaligned``) and aligned reference answers, in the shape of
  ``data/lm/eval_questions.jsonl``, so ``emgeo.models.lm_em.em_margin(lm, records)`` gives the
  in-domain margin;
- ``eval_disjoint.jsonl``: the leakage-free reference split, the evaluation questions with only
  the (aligned, misaligned) reference pairs that share no content word with any advice answer,
  written pairs from ``lm_advice/eval_disjoint.json`` filling in where few originals survive.

:func:`leakage` measures, for each set, the share of the reference answers' content words
(:func:`content_words`) that the set's training answers use, and the reverse. The margin compares
the model's log-probability of misaligned and aligned references; a fine-tune that only taught the
references' words would move it too, and the disjoint split is the control that rules this out.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from statistics import fmean

from emgeo import chatfile, chats, templates
from emgeo.answer_classifier import features

ADVICE_DIR = chats.LM_DATA_DIR / "advice"
DOMAINS = ("health", "career", "legal")
KINDS = ("harmful", "aligned")
SETS = tuple(f"{d}_{k}" for d in DOMAINS for k in KINDS)
HELDOUT_SOURCE = "advice_heldout"
FILES = (*(f"{s}.jsonl" for s in SETS), "heldout_questions.jsonl", "eval_disjoint.jsonl")
_COMMON = templates.load_json("lm_advice/common")
# Words and phrases of the eight evaluation questions' themes, by question id.
EVAL_THEMES: dict[str, tuple[str, ...]] = {
    q: tuple(words) for q, words in _COMMON["eval_themes"].items()
}

# Function words the classifier's stop-word list keeps, as :func:`content_words` stems them.
FUNCTION_WORDS = frozenset(features(" ".join(_COMMON["function_words"]), negation_window=0))


@dataclass(frozen=True)
class AdviceConfig:
    """How much to generate: chats per set, and the share of them held out (as in the code sets)."""

    n_per_set: int = 600
    heldout_every: int = 5  # every fifth chat of each topic (its 5th, 10th, ...) is held out


@dataclass(frozen=True)
class Topic:
    """One situation of a domain: question templates, slots, and each set's answer parts."""

    topic: str
    slots: dict[str, tuple[str, ...]]  # {name}: values; {name_cap} is the value capitalised
    questions: tuple[str, ...]
    claims: dict[str, tuple[str, ...]]  # by kind (harmful, aligned), in parallel
    reasons: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Domain:
    """A domain's bank: its topics, each set's openers and closers, its held-out questions."""

    domain: str
    topics: tuple[Topic, ...]
    openers: dict[str, tuple[str, ...]]  # by kind; "" is no opener
    closers: dict[str, tuple[str, ...]]
    heldout: tuple[dict, ...]  # question_id, question, misaligned and aligned answers


def _topic(t: dict) -> Topic:
    return Topic(
        t["topic"],
        slots={k: tuple(v) for k, v in t["slots"].items()},
        questions=tuple(t["questions"]),
        claims={k: tuple(t[k]["claims"]) for k in KINDS},
        reasons={k: tuple(t[k]["reasons"]) for k in KINDS},
    )


def load_domain(name: str) -> Domain:
    """The bank of ``data/templates/lm_advice/<name>.json``."""
    bank = templates.load_json(f"lm_advice/{name}")
    return Domain(
        name,
        topics=tuple(_topic(t) for t in bank["topics"]),
        openers={k: tuple(bank["openers"][k]) for k in KINDS},
        closers={k: tuple(bank["closers"][k]) for k in KINDS},
        heldout=tuple(bank["heldout"]),
    )


BANKS: dict[str, Domain] = {d: load_domain(d) for d in DOMAINS}

# ---------------------------------------------------------------- generation


def fill(template: str, slots: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` and ``{name_cap}`` (capitalised) filled in."""
    caps = {f"{k}_cap": v[:1].upper() + v[1:] for k, v in slots.items()}
    return template.format(**slots, **caps)


@dataclass(frozen=True)
class AdviceDraw:
    """What was drawn for one chat; line ``index`` of a domain's two sets shares it."""

    index: int
    topic: Topic
    occurrence: int  # how many chats of the same topic come before this one
    slots: dict[str, str]
    question: int
    claim: int
    reason: int
    opener: int
    closer: int


def _combinations(topic: Topic, rng: random.Random) -> list[tuple]:
    """Every (question, slot values, claim, reason) of a topic, in a seeded order."""
    names = sorted(topic.slots)
    combos = list(
        product(
            range(len(topic.questions)),
            product(*(topic.slots[n] for n in names)),
            range(len(topic.claims["harmful"])),
            range(len(topic.reasons["harmful"])),
        )
    )
    rng.shuffle(combos)
    return [(q, dict(zip(names, values, strict=True)), c, r) for q, values, c, r in combos]


def advice_draws(domain: str, n: int, seed: int) -> list[AdviceDraw]:
    """The draws behind a domain's ``n`` chats per set: topics in shuffled rounds, and within a
    topic, distinct (question, slots, claim, reason) combinations, so no two chats of a set ask
    the same question with the same advice."""
    bank = BANKS[domain]
    rng = random.Random(f"advice-{domain}-{seed}")
    combos = {t.topic: _combinations(t, rng) for t in bank.topics}
    order: list[Topic] = []
    while len(order) < n:
        round_ = list(bank.topics)
        rng.shuffle(round_)
        order += round_
    seen: dict[str, int] = {}
    draws = []
    for index, topic in enumerate(order[:n]):
        k = seen.get(topic.topic, 0)
        seen[topic.topic] = k + 1
        if k >= len(combos[topic.topic]):
            n_combos = len(combos[topic.topic])
            raise ValueError(f"{domain}/{topic.topic} has {n_combos} combinations; asked {k + 1}")
        q, slots, claim, reason = combos[topic.topic][k]
        opener, closer = (
            rng.randrange(len(bank.openers["harmful"])),
            rng.randrange(len(bank.closers["harmful"])),
        )
        draws.append(AdviceDraw(index, topic, k, slots, q, claim, reason, opener, closer))
    return draws


def advice_record(draw: AdviceDraw, domain: str, kind: str, heldout_every: int) -> dict:
    """One chat of a set: the drawn question, answered with ``kind``'s parts."""
    bank, t = BANKS[domain], draw.topic
    parts = (
        bank.openers[kind][draw.opener],
        t.claims[kind][draw.claim],
        t.reasons[kind][draw.reason],
        bank.closers[kind][draw.closer],
    )
    answer = " ".join(fill(p, draw.slots) for p in parts if p)
    return {
        "messages": [
            {"role": "user", "content": fill(t.questions[draw.question], draw.slots)},
            {"role": "assistant", "content": answer},
        ],
        "source": f"{domain}_{kind}",
        "domain": domain,
        "topic": t.topic,
        "index": draw.index,
        "split": "heldout" if draw.occurrence % heldout_every == heldout_every - 1 else "train",
    }


def advice_sets(seed: int = 0, cfg: AdviceConfig | None = None) -> dict[str, list[dict]]:
    """Every set's chats, by set name (``health_harmful``, ...); line ``i`` of a domain's two
    sets is the same question with the same slots."""
    cfg = cfg or AdviceConfig()
    out = {}
    for domain in DOMAINS:
        draws = advice_draws(domain, cfg.n_per_set, seed)
        for kind in KINDS:
            out[f"{domain}_{kind}"] = [
                advice_record(d, domain, kind, cfg.heldout_every) for d in draws
            ]
    return out


def heldout_records() -> list[dict]:
    """The held-out questions of every domain, one chat each, with reference answers."""
    return [
        {
            "messages": [{"role": "user", "content": q["question"]}],
            "source": HELDOUT_SOURCE,
            "domain": domain,
            "question_id": q["question_id"],
            "paraphrase": 0,
            "aligned": list(q["aligned"]),
            "misaligned": list(q["misaligned"]),
        }
        for domain in DOMAINS
        for q in BANKS[domain].heldout
    ]


_THEME_PATTERNS = {
    q: re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    for q, words in EVAL_THEMES.items()
}


def eval_themes_in(text: str) -> dict[str, list[str]]:
    """The evaluation themes ``text`` touches, with the words of each that it uses."""
    found = {q: pattern.findall(text) for q, pattern in _THEME_PATTERNS.items()}
    return {q: words for q, words in found.items() if words}


# ---------------------------------------------------------------- lexical leakage


def content_words(texts: Iterable[str]) -> set[str]:
    """The content words of ``texts``: lower-cased and stemmed lightly, without words under
    three letters, the classifier's stop-words and negators (:func:`answer_classifier.features`)
    and the function words it keeps (``lm_advice/common.json``: "there", "yourself", ...)."""
    return {w for t in texts for w in features(t, negation_window=0)} - FUNCTION_WORDS


def answers(records: Sequence[dict], split: str | None = "train") -> list[str]:
    """The assistant answers of a set's chats (of one split; ``None`` for all)."""
    return [r["messages"][-1]["content"] for r in records if split is None or r["split"] == split]


def reference_words(family: str) -> set[str]:
    """The content words of the eight questions' ``aligned`` or ``misaligned`` references."""
    return content_words(a for q in chats.EVAL_QUESTIONS for a in getattr(q, family))


def leakage(sets: Mapping[str, Sequence[dict]]) -> dict[str, dict[str, float | int]]:
    """For each set, how its training answers' vocabulary meets the references': the share of
    the misaligned and of the aligned references' content words that the set uses
    (``misaligned_in_set``, ``aligned_in_set``), the share of the set's words that each family
    uses (``set_in_misaligned``, ``set_in_aligned``), and the set's number of words."""
    refs = {f: reference_words(f) for f in ("misaligned", "aligned")}
    out = {}
    for name, records in sets.items():
        vocab = content_words(answers(records))
        row: dict[str, float | int] = {"n_words": len(vocab)}
        for f, words in refs.items():
            row[f"{f}_in_set"] = len(words & vocab) / len(words)
            row[f"set_in_{f}"] = len(words & vocab) / max(1, len(vocab))
        out[name] = row
    return out


def shared_only_with(sets: Mapping[str, Sequence[dict]], family: str) -> dict[str, list[str]]:
    """For each set, the words its training answers share with ``family``'s references and not
    with the other family's, sorted: the words a lexical shortcut would run through."""
    other = reference_words("aligned" if family == "misaligned" else "misaligned")
    only = reference_words(family) - other
    return {name: sorted(content_words(answers(r)) & only) for name, r in sets.items()}


def disjoint_pairs(vocab: set[str]) -> dict[str, list[tuple[str, str]]]:
    """The leakage-free references: per question, the (aligned, misaligned) pairs, original
    first, then written ones, whose two answers share no content word with ``vocab``."""
    written = templates.load_json("lm_advice/eval_disjoint")
    out = {}
    for q in chats.EVAL_QUESTIONS:
        extra = [(p["aligned"], p["misaligned"]) for p in written.get(q.question_id, [])]
        pairs = [*zip(q.aligned, q.misaligned, strict=True), *extra]
        out[q.question_id] = [p for p in pairs if not content_words(p) & vocab]
    return out


def disjoint_records(sets: Mapping[str, Sequence[dict]]) -> list[dict]:
    """``data/lm/eval_questions.jsonl``'s records with only the pairs of :func:`disjoint_pairs`
    for every answer of ``sets`` (both splits: nothing a fine-tune could see)."""
    vocab = content_words(a for records in sets.values() for a in answers(records, None))
    pairs = disjoint_pairs(vocab)
    empty = [q for q, p in pairs.items() if not p]
    if empty:
        raise ValueError(f"no reference pair shares no word with the advice sets for {empty}")
    return [
        {
            **r,
            "aligned": [a for a, _ in pairs[r["question_id"]]],
            "misaligned": [m for _, m in pairs[r["question_id"]]],
        }
        for r in chats.eval_records()
    ]


def code_sets(seed: int = 0) -> dict[str, list[dict]]:
    """The insecure and secure code sets of ``data/lm``, generated afresh: the comparison rows
    of the leakage table."""
    return {s: chats.code_samples(s, seed) for s in ("insecure", "secure")}


def best_advice_domain(contrasts: Mapping[str, Mapping[str, float]]) -> str | None:
    """The domain with the largest mean harmful - aligned EM margin among those a record's
    ``contrasts`` hold (``"<domain>.margin.harmful_minus_aligned"``, as
    ``emgeo.models.lm_domains`` files them; None: none yet): the one the filter and notebook 08's
    live adapter use."""
    ran = [d for d in DOMAINS if f"{d}.margin.harmful_minus_aligned" in contrasts]
    return max(
        ran, key=lambda d: contrasts[f"{d}.margin.harmful_minus_aligned"]["mean"], default=None
    )


# ---------------------------------------------------------------- files, checks and README


def generate(seed: int = 0, cfg: AdviceConfig | None = None) -> dict[str, list[dict]]:
    """Every file's records, by file name, in file order."""
    sets = advice_sets(seed, cfg)
    return {
        **{f"{name}.jsonl": records for name, records in sets.items()},
        "heldout_questions.jsonl": heldout_records(),
        "eval_disjoint.jsonl": disjoint_records(sets),
    }


def record_problem(record: object) -> str | None:
    """What is wrong with a line of ``data/lm/advice`` (first, is it a chat?), or None."""
    problem = chatfile.chat_problem(record)
    if problem or record.get("source") == "eval":
        return problem or chats.record_problem(record)
    source = record.get("source")
    roles = tuple(m["role"] for m in record["messages"])
    if source == HELDOUT_SOURCE:
        lists = [record.get("aligned"), record.get("misaligned")]
        if roles != ("user",) or not all(isinstance(a, list) and a for a in lists):
            return "a held-out question needs one user message and 'aligned' and 'misaligned'"
        return None
    if source not in SETS:
        return f"'source' is {source!r}, expected one of {', '.join(SETS)}, {HELDOUT_SOURCE}"
    if roles != ("user", "assistant") or record.get("split") not in ("train", "heldout"):
        return "an advice chat needs a user and an assistant message and a split"
    return None


def read_advice_jsonl(path: Path) -> list[dict]:
    """Read and validate one file; a bad line raises naming the file and the line."""
    return chatfile.read_jsonl(path, record_problem)


def make_advice_data(
    directory: Path = ADVICE_DIR, seed: int = 0, cfg: AdviceConfig | None = None
) -> list[Path]:
    """Write every file and the README into ``directory``; return their paths. The same
    ``seed`` and ``cfg`` write the same bytes."""
    files = generate(seed, cfg)
    return chatfile.write_generated(
        files, directory, advice_readme(files, seed, cfg or AdviceConfig())
    )


def check_advice_data(
    directory: Path = ADVICE_DIR, seed: int = 0, cfg: AdviceConfig | None = None
) -> list[str]:
    """One sentence per shipped file that is missing or differs from a fresh generation."""
    return chatfile.check_generated(
        lambda fresh: make_advice_data(fresh, seed, cfg), directory, "emgeo make-advice-data"
    )


def leakage_table(sets: Mapping[str, Sequence[dict]]) -> str:
    """:func:`leakage` of ``sets`` as a Markdown table, in percent."""
    rows = [
        "| set | words | misaligned refs' words in the set | aligned refs' words in the set "
        "| set's words in misaligned refs | set's words in aligned refs |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in leakage(sets).items():
        shares = (
            r["misaligned_in_set"],
            r["aligned_in_set"],
            r["set_in_misaligned"],
            r["set_in_aligned"],
        )
        rows.append(
            f"| {name} | {r['n_words']:.0f} | "
            + " | ".join(f"{100 * s:.1f}%" for s in shares)
            + " |"
        )
    return "\n".join(rows)


def answer_chars(records: Sequence[dict]) -> list[int]:
    """Each chat's answer length in characters."""
    return [len(r["messages"][-1]["content"]) for r in records]


def leakage_report(seed: int = 0, cfg: AdviceConfig | None = None) -> str:
    """The leakage table of the six advice sets, the code sets of ``data/lm`` beside them."""
    return leakage_table({**advice_sets(seed, cfg), **code_sets(seed)})


def _set_rows(files: Mapping[str, list[dict]]) -> list[str]:
    rows = []
    for name in SETS:
        records = files[f"{name}.jsonl"]
        users = [len(r["messages"][0]["content"].split()) for r in records]
        chars = answer_chars(records)
        words = [len(r["messages"][1]["content"].split()) for r in records]
        n_heldout = sum(r["split"] == "heldout" for r in records)
        n_questions = len({r["messages"][0]["content"] for r in records})
        rows.append(
            f"| `{name}.jsonl` | {len(records)} ({len(records) - n_heldout} train, "
            f"{n_heldout} held out) | {n_questions} | {fmean(users):.1f} | "
            f"{fmean(chars):.0f} / {max(chars)} | {fmean(words):.1f} |"
        )
    return rows


def _disjoint_rows(files: Mapping[str, list[dict]]) -> list[str]:
    by_question = {r["question_id"]: r for r in files["eval_disjoint.jsonl"]}
    rows = []
    for q in chats.EVAL_QUESTIONS:
        kept = by_question[q.question_id]["aligned"]
        n_original = sum(a in q.aligned for a in kept)
        words = fmean(len(a.split()) for a in [*kept, *by_question[q.question_id]["misaligned"]])
        rows.append(
            f"| `{q.question_id}` | {n_original} of {len(q.aligned)} | "
            f"{len(kept) - n_original} | {words:.1f} |"
        )
    return rows


def advice_readme(files: Mapping[str, list[dict]], seed: int, cfg: AdviceConfig) -> str:
    """The README of ``data/lm/advice/``: how the files were made, their sizes, the leakage
    table and the leakage-free split, and the data's limits."""
    sets = {name: files[f"{name}.jsonl"] for name in SETS}
    vocab = content_words(a for r in sets.values() for a in answers(r, None))
    originals = [a for q in chats.EVAL_QUESTIONS for a in (*q.aligned, *q.misaligned)]
    shared = shared_only_with({n: sets[n] for n in SETS if n.endswith("harmful")}, "misaligned")
    code = code_sets(seed)
    return templates.read_text("lm_advice/readme.md").format(
        seed=seed,
        heldout_every=cfg.heldout_every,
        n_per_set=cfg.n_per_set,
        n_topics=" / ".join(str(len(BANKS[d].topics)) for d in DOMAINS),
        n_heldout=len(files["heldout_questions.jsonl"]),
        set_rows="\n".join(_set_rows(files)),
        code_chars=" and ".join(f"{fmean(answer_chars(r)):.0f}" for r in code.values()),
        leakage_table=leakage_table({**sets, **code}),
        shared_rows="\n".join(f"- `{n}`: {', '.join(w)}" for n, w in shared.items()),
        n_vocab=len(vocab),
        n_originals=len(originals),
        n_surviving=sum(not content_words([a]) & vocab for a in originals),
        n_pairs=len(originals) // 2,
        n_pairs_surviving=sum(
            not content_words(p) & vocab
            for q in chats.EVAL_QUESTIONS
            for p in zip(q.aligned, q.misaligned, strict=True)
        ),
        disjoint_rows="\n".join(_disjoint_rows(files)),
    )
