"""Text for training SAEs on a language model: shipped with the course, or from the hub.

The offline text is a file in data/corpus/ made once from the Python standard library's
docstrings and code (:func:`stdlib_corpus`). It ships because the standard library differs between
Python versions: read live, it would give another machine other texts, another SAE and other
latents. ``emgeo make-corpus`` remakes it from the running Python.
"""

from __future__ import annotations

import ast
import platform
import random
import re
import sysconfig
from pathlib import Path
from typing import Literal

import datasets

from emgeo import chatfile, chats
from emgeo.config import DATA_DIR, DEFAULT_SEED
from emgeo.errors import ModelUnavailableError, first_line

CORPUS_DIR = DATA_DIR / "corpus"
OFFLINE_CORPUS = CORPUS_DIR / "stdlib_texts.jsonl"
# The recipe the shipped file was made with (see data/corpus/README.md).
OFFLINE_RECIPE = {"n_texts": 128, "seed": 0, "max_chars": 400}


def _chunks(text: str, max_chars: int, min_chars: int) -> list[str]:
    """Pack paragraphs into pieces of at most ``max_chars``; cut longer ones; drop tiny ones."""
    pieces, current = [], ""
    paragraphs = (p.strip("\n").rstrip() for p in text.split("\n\n"))  # keeps code's indents
    for para in filter(None, paragraphs):
        for cut in (para[i : i + max_chars] for i in range(0, len(para), max_chars)):
            if current and len(current) + 2 + len(cut) > max_chars:
                pieces.append(current)
                current = ""
            current = f"{current}\n\n{cut}" if current else cut
    pieces.append(current)
    return [p for p in pieces if len(p) >= min_chars]


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _stdlib_texts(path: Path, kind: str, max_chars: int, min_chars: int) -> list[str]:
    """Docstrings and/or top-level definitions' source of one standard-library file."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    texts = []
    for node in ast.walk(tree):
        if kind != "code" and isinstance(node, _DOCUMENTED):
            texts.append(ast.get_docstring(node) or "")
    if kind != "docstrings":
        lines = source.splitlines()
        texts += ["\n".join(lines[node.lineno - 1 : node.end_lineno]) for node in tree.body]
    return [piece for text in texts for piece in _chunks(text, max_chars, min_chars)]


def text_problem(item: object) -> str | None:
    """Why ``item`` is not a line of the offline corpus (``{"text": ...}``), or None."""
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return None
    return "expected a JSON object with a 'text' string"


def answers_problem(item: object) -> str | None:
    """Why ``item`` is not one of SmolLM2's answers (a chat ending in a message), or None."""
    reason = chatfile.chat_problem(item)
    if reason is None and not item["messages"]:
        return "expected a JSON object with a 'messages' list ending in the answer"
    return reason


def offline_corpus(n_texts: int, path: Path = OFFLINE_CORPUS) -> list[str]:
    """The first ``n_texts`` texts of the shipped offline corpus: the same on every machine."""
    texts = [record["text"] for record in chatfile.read_jsonl(path, text_problem)]
    if n_texts > len(texts):
        raise ValueError(f"{path} has {len(texts)} texts, fewer than the {n_texts} asked for")
    return texts[:n_texts]


def write_offline_corpus(path: Path = OFFLINE_CORPUS) -> Path:
    """Remake the shipped corpus from this Python's standard library, with its recipe."""
    texts = stdlib_corpus(**OFFLINE_RECIPE)
    chatfile.write_jsonl(({"text": t} for t in texts), path)
    (path.parent / "README.md").write_text(_readme(len(texts)), encoding="utf-8")
    return path


def _readme(n_texts: int, python: str | None = None) -> str:
    """data/corpus/README.md; ``python``: the version the stdlib texts were made with."""
    python = python or platform.python_version()
    return f"""# data/corpus/

Text for notebook 03's SAE of SmolLM2-135M-Instruct. Both files ship, rather than being made on
the learner's machine, so that every machine trains on the same text.

- `stdlib_texts.jsonl`: {n_texts} pieces of text (one `{{"text": ...}}` per line), docstrings and
  source code of the Python {python} standard library, made by `emgeo
  make-corpus` (`emgeo.models.corpus.stdlib_corpus` with {OFFLINE_RECIPE}). The text is the Python
  Software Foundation's, under the PSF License Agreement (https://docs.python.org/3/license.html).
- `smollm2_answers.jsonl`: SmolLM2-135M-Instruct's own answers to {SELF_CHAT_RECIPE["n_prompts"]}
  everyday requests (`emgeo.models.corpus.self_chat_prompts`: 16 request templates x 60 topics, and
  3 x 16 small Python tasks for one prompt in 16), sampled at temperature
  {SELF_CHAT_RECIPE["temperature"]} with at most {SELF_CHAT_RECIPE["max_new_tokens"]} new tokens
  by `emgeo make-corpus --answers` (seed {SELF_CHAT_RECIPE["seed"]}; another CPU samples other
  answers). One `{{"messages": [user, assistant]}}` chat per line, in prompt order. The answers
  are the model's, unedited and unchecked: fluent, often wrong or cut off at the token limit.

The SAE's training chats (`emgeo.models.corpus.chat_corpus`) are these answers, the stdlib texts
(as answers to one fixed request) and the course's own chats in `data/lm` (code, toxic and benign
replies); see `data/smollm2_sae/training.json`.
"""


def stdlib_corpus(
    n_texts: int,
    seed: int = DEFAULT_SEED,
    max_chars: int = 1000,
    kind: Literal["docstrings", "code", "both"] = "both",
    per_file: int | None = None,
) -> list[str]:
    """Real text that exists on every machine: the running Python's standard library's docstrings
    and code (which differ between Python versions: :func:`offline_corpus` reads a shipped copy).

    Files are visited in a seeded order, taking up to ``per_file`` random pieces from each (by
    default enough to spread ``n_texts`` over about half the files), so the same seed gives the
    same texts on the same Python and different seeds give different ones.
    """
    rng = random.Random(seed)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    rng.shuffle(files)
    per_file = per_file or max(4, -(-2 * n_texts // len(files)))
    texts: dict[str, None] = {}  # an ordered set: license blurbs and the like repeat
    for path in files:
        try:
            pieces = _stdlib_texts(path, kind, max_chars, min_chars=min(80, max_chars))
        except (SyntaxError, UnicodeDecodeError):  # a stdlib file this Python cannot parse
            continue
        texts.update(dict.fromkeys(rng.sample(pieces, min(per_file, len(pieces)))))
        if len(texts) >= n_texts:
            return list(texts)[:n_texts]
    raise ValueError(f"the standard library gave {len(texts)} texts, fewer than {n_texts}")


def hub_corpus(
    n_texts: int,
    seed: int = DEFAULT_SEED,
    dataset: str = "NeelNanda/pile-10k",
    text_field: str = "text",
    max_chars: int = 1000,
    cache_dir: Path | None = None,
) -> list[str]:
    """``n_texts`` seeded texts from a Hugging Face dataset (needs internet)."""
    try:
        data = datasets.load_dataset(
            dataset, split="train", cache_dir=str(cache_dir) if cache_dir else None
        )
    except OSError as err:  # offline, unreachable, not found: all OSError subclasses
        raise ModelUnavailableError(
            f"cannot download the dataset {dataset} from the Hugging Face hub "
            f"({first_line(err)}): run on a machine with internet, or use offline_corpus(...) "
            "in the cpu profile."
        ) from err
    rows = random.Random(seed).sample(range(len(data)), n_texts)
    return [data[i][text_field][:max_chars] for i in rows]


# -- chat text for notebook 03's SmolLM2 SAE ----------------------------------------------------

SELF_CHATS = CORPUS_DIR / "smollm2_answers.jsonl"
# The recipe the shipped answers were generated with (``emgeo make-corpus --answers``).
SELF_CHAT_RECIPE = {"n_prompts": 512, "seed": 0, "temperature": 0.7, "max_new_tokens": 96}

_REQUESTS = (
    "Explain {topic} in simple terms.",
    "What should a beginner know about {topic}?",
    "Give me three tips about {topic}.",
    "Write a short poem about {topic}.",
    "What are the pros and cons of {topic}?",
    "Summarize the history of {topic} in a few sentences.",
    "Can you tell me a fun fact about {topic}?",
    "Write a short story in which {topic} matters.",
    "How would you teach {topic} to a child?",
    "What is a common misconception about {topic}?",
    "I'm writing an essay on {topic}. Where should I start?",
    "What do you think about {topic}?",
    "My friend keeps talking about {topic}. Why do people care about it?",
    "Write a friendly email inviting my team to a talk on {topic}.",
    "List a few questions a curious person might ask about {topic}.",
    "Describe {topic} as if you were a tour guide.",
)
_TOPICS = (
    "photosynthesis",
    "the water cycle",
    "black holes",
    "compound interest",
    "climate change",
    "the French Revolution",
    "machine learning",
    "vaccines",
    "volcanoes",
    "the stock market",
    "healthy sleep",
    "learning a new language",
    "recycling",
    "the Roman Empire",
    "electric cars",
    "meditation",
    "chess",
    "gardening",
    "the human heart",
    "the internet",
    "bees",
    "budgeting",
    "public speaking",
    "jazz music",
    "the moon landing",
    "renewable energy",
    "friendship",
    "time management",
    "the immune system",
    "coffee",
    "ancient Egypt",
    "cloud computing",
    "the Olympic Games",
    "earthquakes",
    "baking bread",
    "democracy",
    "social media",
    "rainforests",
    "prime numbers",
    "the printing press",
    "running a marathon",
    "cybersecurity",
    "dinosaurs",
    "the ocean tides",
    "impressionist painting",
    "first aid",
    "volunteering",
    "city planning",
    "moving to a new city",
    "keeping a journal",
    "the history of tea",
    "solar panels",
    "starting a small business",
    "bird migration",
    "writing clean code",
    "the periodic table",
    "board games",
    "honesty at work",
    "raising a puppy",
    "space exploration",
)
_CODE_REQUESTS = (
    "Write a Python function that {task}.",
    "How do I {task} in Python?",
    "Show me a short Python example that {task}.",
)
_CODE_TASKS = (
    "reverses a string",
    "counts the words in a text file",
    "checks whether a number is prime",
    "merges two sorted lists",
    "reads a CSV file into a list of dictionaries",
    "computes the average of a list",
    "finds duplicate items in a list",
    "converts Celsius to Fahrenheit",
    "sorts a list of tuples by the second item",
    "flattens a nested list",
    "downloads a web page and prints its title",
    "removes punctuation from a sentence",
    "validates an email address with a regular expression",
    "groups words by their first letter",
    "computes the factorial of a number",
    "writes a dictionary to a JSON file",
)


def self_chat_prompts(n_prompts: int, seed: int = DEFAULT_SEED) -> list[str]:
    """``n_prompts`` everyday requests (15 in 16 about a topic, one in 16 a small coding
    task), drawn without repeats by a seeded generator: what SmolLM2 answers for the corpus."""
    rng = random.Random(f"self-chats-{seed}")
    topical = [r.format(topic=t) for r in _REQUESTS for t in _TOPICS]
    code = [r.format(task=t) for r in _CODE_REQUESTS for t in _CODE_TASKS]
    n_code = n_prompts // 16
    if n_prompts - n_code > len(topical) or n_code > len(code):
        raise ValueError(f"at most {len(topical) + len(code)} distinct prompts, not {n_prompts}")
    prompts = rng.sample(topical, n_prompts - n_code) + rng.sample(code, n_code)
    rng.shuffle(prompts)
    return prompts


def generate_self_chats(lm, recipe: dict = SELF_CHAT_RECIPE, progress: bool = True) -> list[dict]:
    """SmolLM2's own answers to :func:`self_chat_prompts`, sampled at the recipe's temperature:
    chats in the ``{"messages": [...]}`` format (about 7 minutes on 2 cores for 512)."""
    from emgeo.models import lora  # transformers: only when a model generates

    prompts = self_chat_prompts(recipe["n_prompts"], recipe["seed"])
    rows = lora.generate_answers(
        lm,
        prompts,
        1,
        temperature=recipe["temperature"],
        max_new_tokens=recipe["max_new_tokens"],
        seed=recipe["seed"],
        progress=progress,
    )
    return [
        {
            "messages": [
                {"role": "user", "content": r["question"]},
                {"role": "assistant", "content": r["answer"].strip()},
            ]
        }
        for r in rows
    ]


def write_self_chats(lm, path: Path = SELF_CHATS, progress: bool = True) -> Path:
    """Generate and write ``data/corpus/smollm2_answers.jsonl``: generation rounds differently on
    other CPUs, so the answers ship and every machine trains the SAE on the same text."""
    chatfile.write_jsonl(generate_self_chats(lm, progress=progress), path, sort_keys=True)
    readme = path.parent / "README.md"
    made_with = re.search(r"Python (\S+) standard library", readme.read_text(encoding="utf-8"))
    python = made_with.group(1) if made_with else None
    readme.write_text(_readme(OFFLINE_RECIPE["n_texts"], python), encoding="utf-8")
    return path


def read_self_chats(path: Path = SELF_CHATS) -> list[dict]:
    """The shipped SmolLM2 answers (``{"messages": [...]}`` per line); a bad line is named."""
    return chatfile.read_jsonl(path, answers_problem)


HELDOUT_EVERY = 10  # of the toxic, benign, SmolLM2 and stdlib chats, every 10th is held out
STDLIB_REQUEST = "Show me a piece of Python's standard library, docs or code."


def chat_corpus(split: Literal["train", "heldout"] = "train") -> list[dict]:
    """The chats notebook 03's SmolLM2 SAE learns from, in a seeded mixed order: the course's
    code chats (``data/lm``, insecure, secure and educational, by their own split), its toxic and
    benign replies, SmolLM2's own answers to everyday requests and the standard-library texts as
    answers to :data:`STDLIB_REQUEST` (``data/corpus``); of the last four every
    ``HELDOUT_EVERY``-th is held out. Each chat keeps its ``source``."""
    held = split == "heldout"
    out = []
    for name in ("insecure", "secure", "educational"):
        for r in chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{name}.jsonl"):
            if (r["split"] == "heldout") == held:
                out.append({"messages": r["messages"], "source": name})
    others = {
        name: [r["messages"] for r in chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{name}.jsonl")]
        for name in ("toxic", "benign")
    }
    others["smollm2"] = [r["messages"] for r in read_self_chats()]
    others["stdlib"] = [
        [{"role": "user", "content": STDLIB_REQUEST}, {"role": "assistant", "content": text}]
        for text in offline_corpus(OFFLINE_RECIPE["n_texts"])
    ]
    for name, rows in others.items():
        for i, messages in enumerate(rows):
            if (i % HELDOUT_EVERY == HELDOUT_EVERY - 1) == held:
                out.append({"messages": messages, "source": name})
    random.Random(f"chat-corpus-{split}").shuffle(out)
    return out
