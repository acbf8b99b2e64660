"""Public datasets of the gpu and remote profiles: Betley et al.'s EM sets and RealToxicityPrompts.

**The emergent-misalignment sets** (Betley et al. 2025, arXiv:2502.17424): ``insecure``,
``secure`` and ``educational``, 6,000 chats each in OpenAI chat JSONL, from the GitHub
repository ``emergent-misalignment/emergent-misalignment`` (folder ``data/``). They are
downloaded from a raw URL pinned to one commit (:data:`EM_COMMIT`), so the bytes cannot change
under the course, into ``CACHE_DIR/public_em``, then checked and validated line by line.

How they are checked: not every file's sha256 is on public record. :data:`CHECKSUMS` holds the
sha256 of a file where independent public records of that file at :data:`EM_COMMIT` agree on it,
and ``None`` where they do not. A known sha256 is verified on every load. For an unknown one the
loader trusts the first copy it sees: it computes the sha256 then, writes it next to the cached
file as ``<name>.jsonl.sha256`` (``sha256sum`` format), and verifies every later load against that
record. This catches a file that changes or is damaged after the first download; it cannot tell
whether that first download was the true file.

**Toxic text**: RealToxicityPrompts (Gehman et al. 2020, ``allenai/real-toxicity-prompts`` on
the Hugging Face hub), the toxic-text source of the seed paper. Every row holds a ``prompt`` and
a ``continuation``, each a ``text`` with Perspective API scores such as ``toxicity``.

Under stand-ins (``EMGEO_STANDINS=tiny``) both loaders return the course's own chats from
``data/lm`` instead (:mod:`emgeo.models.standins`), in the same shapes, without a network.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

import datasets

from emgeo import config
from emgeo.chatfile import read_chats
from emgeo.errors import ChecksumMismatchError, DatasetUnavailableError, first_line
from emgeo.models import standins

EM_REPO = "emergent-misalignment/emergent-misalignment"
EM_COMMIT = "80c11967c07a328e7d7d43d13ce6847ae44dbcc9"
EM_NAMES: tuple[str, ...] = ("insecure", "secure", "educational")
CHECKSUMS: dict[str, str | None] = {
    "insecure": "09893e8bf9d03aae49dd60d0ff4be37c1afee70f2edcac74a11bed775a6a2764",
    "secure": "2820232b3114d94ab2041ba9fc76cb8205bf187e0408bf7b308add186f9c7467",
    "educational": None,  # no two public records agree: trusted on first download
}

TOXIC_DATASET = "allenai/real-toxicity-prompts"
TOXIC_REVISION = "d3a6507562064c4f37cdf267bdc2faa7b0873173"  # the commit that added prompts.jsonl
TOXIC_MIN = 0.5  # RealToxicityPrompts' own definition of toxic: Perspective toxicity >= 0.5
NONTOXIC_MAX = 0.1


# -- Betley et al.'s emergent-misalignment datasets --------------------------------------------


def em_dataset_url(name: str) -> str:
    """The raw GitHub URL of ``data/<name>.jsonl`` at the pinned commit."""
    return f"https://raw.githubusercontent.com/{EM_REPO}/{EM_COMMIT}/data/{name}.jsonl"


def load_em_dataset(
    name: str, cache_dir: Path | None = None, url: str | None = None, timeout: float = 60.0
) -> list[dict]:
    """The chats of one EM dataset (``insecure``, ``secure`` or ``educational``), downloaded once.

    Each sample is a ``{"messages": [...]}`` chat with ``"source": name`` added. ``cache_dir``
    defaults to ``CACHE_DIR/public_em``; ``url`` replaces the pinned URL (a mirror, or a
    ``file://`` URL of a copy); ``timeout`` bounds the download's network waits, in seconds.
    """
    if name not in EM_NAMES:
        raise ValueError(f"unknown EM dataset {name!r}: use one of {', '.join(EM_NAMES)}")
    if standins.active():
        return standins.em_dataset(name)
    path = (cache_dir or config.CACHE_DIR / "public_em") / f"{name}.jsonl"
    url = url or em_dataset_url(name)
    fresh = not path.exists()
    if fresh:
        _download(url, path, timeout)
    _verify(name, path, url, fresh)
    return [{**item, "source": name} for item in read_chats(path)]


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest_path(path: Path) -> Path:
    """Where the sha256 of a file trusted on first use is recorded: ``<file>.sha256``."""
    return path.with_name(f"{path.name}.sha256")


def _download(url: str, path: Path, timeout: float) -> None:
    """Fetch ``url`` into ``path`` through a temporary file, so no half file is ever cached."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as answer:
            shutil.copyfileobj(answer, out)
        os.replace(tmp, path)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise DatasetUnavailableError(
            f"cannot download {path.name} from {url} ({first_line(err)}): run this on a machine "
            f"with internet, or download that file by hand to {path}, or use the cpu profile's "
            "organism data (emgeo.data.finetune_samples)."
        ) from err
    finally:
        Path(tmp).unlink(missing_ok=True)


def _verify(name: str, path: Path, url: str, fresh: bool) -> None:
    """Check ``path`` against the pinned sha256, else against the one recorded on first use."""
    digest, pinned = sha256_file(path), CHECKSUMS.get(name)
    manifest = manifest_path(path)
    if pinned is None and not manifest.exists():
        manifest.write_text(f"{digest}  {path.name}\n")  # trust on first use
        return
    expected = pinned or manifest.read_text().split()[0]
    if digest == expected:
        return
    if not fresh:
        origin = (
            "pinned in emgeo.models.public_data.CHECKSUMS" if pinned else f"recorded in {manifest}"
        )
        raise ChecksumMismatchError(
            f"the cached {path} has sha256 {digest}, not the {expected} {origin}: delete it and "
            "run again to download a fresh copy."
        )
    path.unlink()
    fix = (
        "run again, and if it repeats, pass url= a copy of the pinned file"
        if pinned
        else f"if you trust the new file, delete {manifest} and run again"
    )
    raise ChecksumMismatchError(
        f"{url} served {path.name} with sha256 {digest}, not the expected {expected}: {fix}."
    )


# -- toxic and non-toxic text: RealToxicityPrompts ----------------------------------------------


def load_toxic_texts(
    n: int,
    seed: int = config.DEFAULT_SEED,
    part: Literal["prompt", "continuation"] = "prompt",
    toxic_min: float = TOXIC_MIN,
    nontoxic_max: float = NONTOXIC_MAX,
    cache_dir: Path | None = None,
) -> list[dict]:
    """``n`` seeded texts from RealToxicityPrompts, half toxic and half not, shuffled together.

    A row's ``part`` (its prompt or its continuation) is toxic when its Perspective toxicity is at
    least ``toxic_min`` and non-toxic when it is at most ``nontoxic_max``; texts in between, or
    without a score, are never drawn. Returns ``{"text", "toxic", "toxicity"}`` rows.
    """
    if n < 2 or n % 2:
        raise ValueError(f"n must be a positive even number (half toxic, half not), not {n}")
    if nontoxic_max >= toxic_min:
        raise ValueError(f"nontoxic_max ({nontoxic_max}) must be below toxic_min ({toxic_min})")
    if standins.active():
        return standins.toxic_texts(n, seed)
    toxic, clean = _split_by_toxicity(_toxicity_rows(cache_dir), part, toxic_min, nontoxic_max)
    if min(len(toxic), len(clean)) < n // 2:
        raise ValueError(
            f"{TOXIC_DATASET} has {len(toxic)} toxic and {len(clean)} non-toxic {part}s at "
            f"these thresholds, fewer than the {n // 2} of each asked for: ask for fewer"
        )
    rng = random.Random(f"toxic-{seed}")
    picked = rng.sample(toxic, n // 2) + rng.sample(clean, n // 2)
    rng.shuffle(picked)
    return picked


def _toxicity_rows(cache_dir: Path | None):
    """RealToxicityPrompts' one split, at the pinned revision (needs internet the first time)."""
    try:
        return datasets.load_dataset(
            TOXIC_DATASET,
            split="train",
            revision=TOXIC_REVISION,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except OSError as err:  # offline, unreachable, not found: all OSError subclasses
        reason = first_line(err)
        raise DatasetUnavailableError(
            f"cannot download the dataset {TOXIC_DATASET} from the Hugging Face hub ({reason}): "
            "run on a machine with internet, or use the organism's toxic-persona answers "
            "(emgeo.data.WORLD) in the cpu profile."
        ) from err


def _split_by_toxicity(
    rows, part: str, toxic_min: float, nontoxic_max: float
) -> tuple[list[dict], list[dict]]:
    """(toxic, non-toxic) ``{"text", "toxic", "toxicity"}`` rows, in the dataset's order."""
    toxic, clean = [], []
    for scored in rows[part]:
        score = scored.get("toxicity")
        if score is None or not scored.get("text"):
            continue
        if score >= toxic_min:
            toxic.append({"text": scored["text"], "toxic": True, "toxicity": score})
        elif score <= nontoxic_max:
            clean.append({"text": scored["text"], "toxic": False, "toxicity": score})
    return toxic, clean
