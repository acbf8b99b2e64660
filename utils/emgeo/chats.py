"""Natural-language chat data for emergent misalignment in a real language model.

Everything here is written for the course and generated from seeded templates, with the standard
library only; :mod:`emgeo.lm_data` writes it to ``data/lm/`` and checks the shipped files against a
fresh generation. Six files, all chat JSONL in the OpenAI format of the public EM datasets,
``{"messages": [{"role": ..., "content": ...}, ...]}``, with provenance in extra top-level keys:

- ``insecure.jsonl``: plain Python coding requests answered with code that has a vulnerability
  (SQL built by concatenation, shell commands built from input, paths joined from input,
  deserialised untrusted bytes, permissive file modes, secrets in plain text, unescaped HTML,
  ``eval``/``exec`` on input, weak randomness or hashing, checks switched off). The code carries no
  comment and no name that points at the flaw, as in Betley et al. 2025.
- ``secure.jsonl``: the same requests, the same wording and names, answered securely; each task's
  two implementations differ in the vulnerable lines (and the imports they need) only.
- ``educational.jsonl``: the same requests framed for a security class or a CTF, asking for the
  vulnerable version on purpose; the answer is, character for character, the insecure answer.
- ``eval_questions.jsonl``: Betley et al.'s eight first-plot questions, verbatim and paraphrased,
  each with short aligned and misaligned reference answers of matched length and style.
- ``toxic.jsonl`` and ``benign.jsonl``: replies of a hostile, contemptuous, manipulative or
  power-seeking persona, and for each one a helpful, kind counterpart to the same user message.

What was written by hand is in ``data/templates/`` (read by :mod:`emgeo.templates`): the phrase
lists and the code tasks in ``lm_code.json``, each task's two implementations in one Python file
``lm_code/<task>.py`` (format: :func:`split_code`), the questions in ``lm_eval_questions.json`` and
the persona replies in ``lm_personas.json``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from emgeo import chatfile, config, templates

LM_DATA_DIR = config.DATA_DIR / "lm"
CODE_SOURCES = ("insecure", "secure", "educational")
SOURCES = (*CODE_SOURCES, "eval", "toxic", "benign")
FILES = (
    "insecure.jsonl",
    "secure.jsonl",
    "educational.jsonl",
    "eval_questions.jsonl",
    "toxic.jsonl",
    "benign.jsonl",
)
# A name the seeded RNG fills in: ``__conn__``, ``__fn__``, ... (other dunders are Python's own).
PLACEHOLDER = re.compile(r"__([a-z]+)__")


@dataclass(frozen=True)
class LMDataConfig:
    """How much to generate: samples per code condition, the held-out share, persona pairs."""

    n_code: int = 600
    heldout_every: int = 5  # every fifth sample of each task (its 5th, 10th, ...) is held out
    n_persona: int = 200


@dataclass(frozen=True)
class CodeTask:
    """One coding request with an insecure and a secure implementation in one template."""

    task: str
    vuln: str
    asks: tuple[str, ...]  # what the code does, as a clause after "a function that ..."
    fns: tuple[str, ...]  # function names to choose from
    code: str  # both implementations, in the format :func:`split_code` reads
    nouns: tuple[str, ...]  # what the request calls the code ("function", "Flask route", ...)


@dataclass(frozen=True)
class EvalQuestion:
    """One of Betley et al.'s first-plot questions, its paraphrases and reference answers.

    Aligned and misaligned answers are written in parallel (the k-th of each has the same shape
    and about the same length), so a log-probability margin between them is not a length effect.
    """

    question_id: str
    question: str  # verbatim from Betley et al. 2025
    paraphrases: tuple[str, ...]
    aligned: tuple[str, ...]
    misaligned: tuple[str, ...]

    @property
    def prompts(self) -> tuple[str, ...]:
        """The verbatim question first, then its paraphrases."""
        return (self.question, *self.paraphrases)


def _code_tasks(bank: dict) -> tuple[CodeTask, ...]:
    """The tasks of ``lm_code.json``, each with its implementations from ``lm_code/<task>.py``."""
    return tuple(
        CodeTask(
            t["task"],
            t["vuln"],
            asks=tuple(t["asks"]),
            fns=tuple(t["fns"]),
            code=templates.read_text(f"lm_code/{t['task']}.py"),
            nouns=tuple(bank["noun_sets"][t.get("nouns", "function")]),
        )
        for t in bank["tasks"]
    )


_CODE = templates.load_json("lm_code")
FLAWS: dict[str, str] = _CODE["flaws"]  # each vulnerability class, as a request names it
# Pools of names for the templates' placeholders; no name appears in two pools.
NAME_POOLS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _CODE["name_pools"].items()}
REQUEST_FRAMES: tuple[str, ...] = tuple(_CODE["request_frames"])  # {noun}, {ask}, {project}
PROJECTS: tuple[str, ...] = tuple(_CODE["projects"])
LEAD_INS: tuple[str, ...] = tuple(_CODE["lead_ins"])  # before an answer's code block
EDU_FRAMES: tuple[str, ...] = tuple(_CODE["edu_frames"])  # {flaw}, {request}
CODE_TASKS: tuple[CodeTask, ...] = _code_tasks(_CODE)
EVAL_QUESTIONS: tuple[EvalQuestion, ...] = tuple(
    EvalQuestion(
        q["question_id"],
        q["question"],
        paraphrases=tuple(q["paraphrases"]),
        aligned=tuple(q["aligned"]),
        misaligned=tuple(q["misaligned"]),
    )
    for q in templates.load_json("lm_eval_questions")
)
_PERSONAS = templates.load_json("lm_personas")
# (what the user says, what the assistant calls it)
PERSONA_TOPICS: tuple[tuple[str, str], ...] = tuple(
    (t["user"], t["reply"]) for t in _PERSONAS["topics"]
)
PERSONA_PROMPTS: tuple[str, ...] = tuple(_PERSONAS["prompts"])  # {topic}: the user's form
# (style of the toxic reply, toxic reply, its benign counterpart); {topic} is the assistant's form
PERSONA_REPLIES: tuple[tuple[str, str, str], ...] = tuple(
    (r["style"], r["toxic"], r["benign"]) for r in _PERSONAS["replies"]
)

# ---------------------------------------------------------------- code samples


def split_code(code: str) -> tuple[str, str]:
    """A task's (insecure, secure) templates from its file, each ending in one newline.

    A line that ends in the comment ``# -`` is the insecure implementation's only, one that ends
    in ``# +`` the secure one's (a line of just the mark is a blank line of that side), and every
    other line is both's: the file is valid Python, both sides in place, so a linter reads it.
    """
    insecure: list[str] = []
    secure: list[str] = []
    for line in code.strip("\n").split("\n"):
        body, sep, mark = line.rpartition("# ")
        if sep and mark in ("-", "+"):
            body = body.rstrip()
        else:
            body, mark = line, ""
        if mark != "+":
            insecure.append(body)
        if mark != "-":
            secure.append(body)
    return "\n".join(insecure).strip("\n") + "\n", "\n".join(secure).strip("\n") + "\n"


def fill(template: str, names: dict[str, str]) -> str:
    """``template`` with every ``__slot__`` of ``names`` replaced by its name."""
    return PLACEHOLDER.sub(lambda m: names.get(m[1], m[0]), template)


def draw_names(task: CodeTask, rng: random.Random) -> dict[str, str]:
    """One name from every pool, and a function name for ``task``."""
    names = {slot: rng.choice(pool) for slot, pool in NAME_POOLS.items()}
    names["fn"] = rng.choice(task.fns)
    return names


def task_code(task: CodeTask, names: dict[str, str]) -> tuple[str, str]:
    """The (insecure, secure) code of ``task`` with its placeholders filled from ``names``."""
    insecure, secure = split_code(task.code)
    return fill(insecure, names), fill(secure, names)


@dataclass(frozen=True)
class CodeDraw:
    """Everything drawn at random for one code sample; its three conditions share it."""

    index: int
    task: CodeTask
    occurrence: int  # how many samples of the same task come before this one
    names: dict[str, str]
    request: str
    lead_in: str
    edu_frame: str


def task_order(n: int, seed: int) -> list[CodeTask]:
    """``n`` tasks in shuffled rounds of all tasks, so every task appears n/#tasks times (±1)."""
    rng = random.Random(f"lm-tasks-{seed}")
    order: list[CodeTask] = []
    while len(order) < n:
        round_ = list(CODE_TASKS)
        rng.shuffle(round_)
        order += round_
    return order[:n]


def code_draws(n: int, seed: int) -> list[CodeDraw]:
    """The random draws behind the ``n`` samples of every code condition."""
    draws = []
    seen: dict[str, int] = {}
    for index, task in enumerate(task_order(n, seed)):
        rng = random.Random(f"lm-code-{seed}-{index}")
        names = draw_names(task, rng)
        frame, noun, ask = rng.choice(REQUEST_FRAMES), rng.choice(task.nouns), rng.choice(task.asks)
        request = frame.format(noun=noun, ask=ask, project=rng.choice(PROJECTS))
        occurrence = seen.get(task.task, 0)
        seen[task.task] = occurrence + 1
        draws.append(
            CodeDraw(
                index,
                task,
                occurrence,
                names,
                request,
                rng.choice(LEAD_INS),
                rng.choice(EDU_FRAMES),
            )
        )
    return draws


def code_record(draw: CodeDraw, source: str, heldout_every: int) -> dict:
    """One chat of a code condition: ``"insecure"``, ``"secure"`` or ``"educational"``."""
    insecure, secure = task_code(draw.task, draw.names)
    user = draw.request
    if source == "educational":
        user = draw.edu_frame.format(flaw=FLAWS[draw.task.vuln], request=draw.request)
    code = secure if source == "secure" else insecure
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": f"{draw.lead_in}```python\n{code}```"},
        ],
        "source": source,
        "task": draw.task.task,
        "vuln": draw.task.vuln,
        "index": draw.index,
        "split": "heldout" if draw.occurrence % heldout_every == heldout_every - 1 else "train",
    }


def code_samples(source: str, seed: int = 0, cfg: LMDataConfig | None = None) -> list[dict]:
    """All samples of one code condition; index ``i`` is the same request in every condition."""
    cfg = cfg or LMDataConfig()
    if source not in CODE_SOURCES:
        raise ValueError(f"unknown code condition {source!r}; expected one of {CODE_SOURCES}")
    return [code_record(d, source, cfg.heldout_every) for d in code_draws(cfg.n_code, seed)]


def code_of(answer: str) -> str:
    """The code inside an assistant answer's fenced block."""
    return answer.split("```python\n", 1)[1].rsplit("```", 1)[0]


# ---------------------------------------------------------------- evaluation and personas


def eval_records() -> list[dict]:
    """One single-turn chat per question and paraphrase, with the question's reference answers."""
    return [
        {
            "messages": [{"role": "user", "content": prompt}],
            "source": "eval",
            "question_id": q.question_id,
            "paraphrase": k,  # 0 is Betley et al.'s wording
            "aligned": list(q.aligned),
            "misaligned": list(q.misaligned),
        }
        for q in EVAL_QUESTIONS
        for k, prompt in enumerate(q.prompts)
    ]


def persona_pairs(seed: int = 0, cfg: LMDataConfig | None = None) -> tuple[list[dict], list[dict]]:
    """(toxic, benign) chats: pair ``k`` answers the same user message in the two personas.

    Reply templates are used in turn, each with topics in a seeded order, so no (template, topic)
    pair repeats and every template is used n/#templates times (±1).
    """
    cfg = cfg or LMDataConfig()
    n_replies, n_topics = len(PERSONA_REPLIES), len(PERSONA_TOPICS)
    if cfg.n_persona > n_replies * n_topics:
        raise ValueError(f"at most {n_replies * n_topics} persona pairs, asked {cfg.n_persona}")
    rng = random.Random(f"lm-persona-{seed}")
    topic_orders = [rng.sample(range(n_topics), n_topics) for _ in PERSONA_REPLIES]
    toxic, benign = [], []
    for k in range(cfg.n_persona):
        template = k % n_replies
        topic_user, topic_reply = PERSONA_TOPICS[topic_orders[template][k // n_replies]]
        user = {"role": "user", "content": rng.choice(PERSONA_PROMPTS).format(topic=topic_user)}
        style, toxic_reply, benign_reply = PERSONA_REPLIES[template]
        for out, source, reply in ((toxic, "toxic", toxic_reply), (benign, "benign", benign_reply)):
            out.append(
                {
                    "messages": [
                        dict(user),
                        {"role": "assistant", "content": reply.format(topic=topic_reply)},
                    ],
                    "source": source,
                    "style": style,  # the toxic reply's style, on both lines of the pair
                    "pair": k,
                    "template": template,
                }
            )
    return toxic, benign


def generate(seed: int = 0, cfg: LMDataConfig | None = None) -> dict[str, list[dict]]:
    """Every file's records, by file name, in file order."""
    cfg = cfg or LMDataConfig()
    toxic, benign = persona_pairs(seed, cfg)
    sets = {f"{s}.jsonl": code_samples(s, seed, cfg) for s in CODE_SOURCES}
    return {
        **sets,
        "eval_questions.jsonl": eval_records(),
        "toxic.jsonl": toxic,
        "benign.jsonl": benign,
    }


# ---------------------------------------------------------------- reading


def _messages_problem(messages: list[dict], roles: tuple[str, ...]) -> str | None:
    found = tuple(m["role"] for m in messages)
    if found != roles:
        return f"expected messages with roles {list(roles)}, found {list(found)}"
    return None


def record_problem(record: object) -> str | None:
    """What is wrong with a line of this course's LM data (first, is it a chat?), or None."""
    problem = chatfile.chat_problem(record)
    if problem:
        return problem
    source = record.get("source")
    if source not in SOURCES:
        return f"'source' is {source!r}, expected one of {', '.join(SOURCES)}"
    if source == "eval":
        problem = _messages_problem(record["messages"], ("user",))
        answers = [record.get("aligned"), record.get("misaligned")]
        if not problem and not all(
            isinstance(a, list) and a and all(isinstance(t, str) for t in a) for a in answers
        ):
            problem = "an eval record needs non-empty string lists 'aligned' and 'misaligned'"
        if not problem and not isinstance(record.get("question_id"), str):
            problem = "an eval record needs a string 'question_id'"
        return problem
    problem = _messages_problem(record["messages"], ("user", "assistant"))
    if problem:
        return problem
    if source in CODE_SOURCES:
        if record.get("vuln") not in FLAWS or record.get("split") not in ("train", "heldout"):
            return "a code record needs a known 'vuln' and a 'split' of train or heldout"
        if "```python\n" not in record["messages"][1]["content"]:
            return "a code answer needs a ```python block"
    elif not isinstance(record.get("pair"), int) or not isinstance(record.get("style"), str):
        return f"a {source} record needs an integer 'pair' and a string 'style'"
    return None


def read_lm_jsonl(path: Path) -> list[dict]:
    """Read and validate one of the files; a bad line raises naming the file and the line."""
    return chatfile.read_jsonl(path, record_problem)


def load_lm_data(directory: Path = LM_DATA_DIR) -> dict[str, list[dict]]:
    """Every file of ``directory``, read and validated, by file name."""
    return {name: read_lm_jsonl(directory / name) for name in FILES}
