"""The course's written data, read from ``data/templates/``: the one loader of its data files.

The generators of the course's datasets (:mod:`emgeo.chats`, :mod:`emgeo.data`) and the offline
answer classifier (:mod:`emgeo.answer_classifier`) keep what was written by hand out of their code:
phrase lists, question banks and lexicons as JSON documents, README templates as Markdown
(``str.format`` fields), and the code tasks' implementations as Python files a linter can read
(their format is in :func:`emgeo.chats.split_code`). Every file is UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emgeo import config

TEMPLATES_DIR = config.DATA_DIR / "templates"


def template_path(name: str) -> Path:
    """Where ``data/templates/<name>`` is; a missing file raises naming it."""
    path = TEMPLATES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file of the course")
    return path


def read_text(name: str) -> str:
    """The text of ``data/templates/<name>`` (a README template, a code sample)."""
    with open(template_path(name), encoding="utf-8") as f:
        return f.read()


def load_json(name: str) -> Any:
    """The JSON document ``data/templates/<name>.json``."""
    return json.loads(read_text(f"{name}.json"))
