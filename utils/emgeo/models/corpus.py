"""Text for training SAEs on a language model: shipped with the course, or from the hub.

The offline text is a file in data/corpus/ made once from the Python standard library's
docstrings and code (:func:`stdlib_corpus`). It ships because the standard library differs between
Python versions: read live, it would give another machine other texts, another SAE and other
latents. ``emgeo make-corpus`` remakes it from the running Python.
"""

from __future__ import annotations

import ast
import json
import platform
import random
import sysconfig
from pathlib import Path
from typing import Literal

import datasets

from emgeo.config import DATA_DIR, DEFAULT_SEED
from emgeo.errors import DatasetLineError, ModelUnavailableError, first_line

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


def offline_corpus(n_texts: int, path: Path = OFFLINE_CORPUS) -> list[str]:
    """The first ``n_texts`` texts of the shipped offline corpus: the same on every machine."""
    texts = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                texts.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                msg = f"{path}, line {number}: expected a JSON object with a 'text' string"
                raise DatasetLineError(msg) from None
    if n_texts > len(texts):
        raise ValueError(f"{path} has {len(texts)} texts, fewer than the {n_texts} asked for")
    return texts[:n_texts]


def write_offline_corpus(path: Path = OFFLINE_CORPUS) -> Path:
    """Remake the shipped corpus from this Python's standard library, with its recipe."""
    texts = stdlib_corpus(**OFFLINE_RECIPE)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in texts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (path.parent / "README.md").write_text(_readme(len(texts)), encoding="utf-8")
    return path


def _readme(n_texts: int) -> str:
    return f"""# data/corpus/

`stdlib_texts.jsonl`: {n_texts} pieces of text (one `{{"text": ...}}` per line), docstrings and
source code of the Python {platform.python_version()} standard library, made by
`emgeo make-corpus` (`emgeo.models.corpus.stdlib_corpus` with {OFFLINE_RECIPE}). Notebook 03 trains
its SmolLM2 SAE on them. They ship, rather than being read from the running Python, so that every
machine trains on the same text. The text is the Python Software Foundation's, under the PSF
License Agreement (https://docs.python.org/3/license.html).
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
