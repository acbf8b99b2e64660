"""Measured claims of the course, recorded by the notebooks into results/summary.json.

A notebook calls ``record("toy.n_represented_sparse", 5)`` next to the number it shows. When
``emgeo reproduce`` runs the notebook it sets ``EMGEO_RECORD_FILE``, and every record is appended
there; the runner merges them into ``results/summary.json``. In an interactive session the values
are kept in :data:`RECORDED` only, so a learner's run writes nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD_FILE_ENV = "EMGEO_RECORD_FILE"
RECORDED: dict[str, Any] = {}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # undefined (a selectivity where the task was kept): null, strict JSON
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def record(key: str, value: Any) -> None:
    """Record a measured value under a dotted ``key`` (JSON-serializable after conversion; an
    undefined number, NaN or infinite, is recorded as null)."""
    value = _jsonable(value)
    json.dumps(value, allow_nan=False)  # fail here, at the notebook line, if it cannot be stored
    RECORDED[key] = value
    path = os.environ.get(RECORD_FILE_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"key": key, "value": value}) + "\n")


def read_records(path: Path) -> dict[str, Any]:
    """The records a notebook run appended to ``path``, last value per key."""
    if not path.exists():
        return {}
    out: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            out[item["key"]] = item["value"]
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(t, "a.b", 1)`` makes ``t == {"a": {"b": 1}}``."""
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value
