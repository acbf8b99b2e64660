"""``emgeo audit``: score a fine-tuning dataset for geometric risk before training.

Each sample of a chat JSONL file gets the seed paper's score (how near its SAE features lie to
the toxic features) and its two ablations; the command writes the scores, the dataset without
the riskiest fraction, and a self-contained HTML report. Modules: :mod:`.inputs` (reading and
validating the file), :mod:`.scorers` (a backend per profile), :mod:`.cache` (resumable, keyed by
content), :mod:`.run` (the two passes), :mod:`.report` (the HTML).
"""

from __future__ import annotations

from emgeo.audit.run import AuditResult, audit
from emgeo.audit.scorers import Scorer, scorer_for

__all__ = ["AuditResult", "Scorer", "audit", "scorer_for"]
