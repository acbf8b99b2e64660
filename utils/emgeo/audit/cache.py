"""The audit's on-disk cache: each sample's scores, keyed by its content and by what scored it.

A sample's key is a hash of its ``messages`` and of the scorer's fingerprint (model, SAE, layer,
toxic set, token budget), so an interrupted audit resumes where it stopped, a rerun on an edited
file recomputes only the changed samples, and another model or SAE never reads a stale score.
SQLite (Python's own): every batch is committed as one transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path


def sample_key(chat: dict, fingerprint: str) -> str:
    """The cache key of one chat under one scorer."""
    content = json.dumps(chat["messages"], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{fingerprint}\n{content}".encode()).hexdigest()


class ScoreCache:
    """``key -> record`` (a JSON object) in one SQLite file."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, record TEXT)")

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):  # SQLite's limit on query parameters
            part = list(keys[start : start + 500])
            marks = ",".join("?" * len(part))
            query = f"SELECT key, record FROM scores WHERE key IN ({marks})"
            found.update((k, json.loads(r)) for k, r in self._db.execute(query, part))
        return found

    def put_many(self, items: Iterable[tuple[str, dict]]) -> None:
        rows = [(key, json.dumps(record)) for key, record in items]
        with self._db:  # one transaction: a batch is stored whole or not at all
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def close(self) -> None:
        self._db.close()
