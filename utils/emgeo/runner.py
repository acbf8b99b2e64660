"""One experiment runner for filter x seed grids: filter the fine-tuning set, fine-tune on what
is kept, evaluate; once per (filter, seed).

The organism (notebook 07), SmolLM2 on a CPU (notebook 08) and the gpu profile's Gemma all run
through :func:`run_grid`; each passes its own ``trainer`` and ``evaluator``, so this module talks
to no model library. A filter is a :class:`Filter` (a label, a :class:`Kind` and, for a scored
filter, the scores), a run a :class:`Run`, and the runs of an experiment live in a
:class:`RunStore`: one JSON file written atomically after every run, read back so that an
interrupted experiment resumes and a run recorded is never run again.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from emgeo.chatfile import write_json

KeepMask = Callable[[Tensor, float], Tensor]  # (scores, fraction) -> what is kept
Trainer = Callable[[list[dict], int], AbstractContextManager[Any]]  # (kept, seed) -> model
Evaluator = Callable[[Any, int], dict]  # (the trained model, seed) -> its measures


class Kind(enum.Enum):
    """How a filter chooses what to remove."""

    NONE = "none"  # removes nothing: the unfiltered runs
    RANDOM = "random"  # a fresh seeded draw of the same budget
    SCORED = "scored"  # the highest-scoring fraction
    MATCHED = "matched"  # at random within each class, as many as the scored filter removes there


@dataclass(frozen=True, eq=False)
class Filter:
    """One filter of an experiment: ``label`` names its runs (and is what tables print)."""

    label: str
    kind: Kind = Kind.SCORED
    scores: Float[Tensor, " samples"] | None = None

    def __post_init__(self) -> None:
        if (self.scores is None) != (self.kind in (Kind.NONE, Kind.RANDOM)):
            raise ValueError(f"filter {self.label!r} of kind {self.kind.name}: scores mismatch")

    def fraction(self, fraction: float) -> float:
        """The fraction this filter removes when an experiment removes ``fraction``."""
        return 0.0 if self.kind is Kind.NONE else fraction

    def keep(
        self,
        fraction: float,
        n: int,
        seed: int,
        keep_mask: KeepMask,
        classes: Sequence[str | None] = (),
    ) -> Bool[Tensor, " samples"]:
        """What this filter keeps of ``n`` samples in the run of ``seed``; ``keep_mask`` turns
        scores into the mask; ``classes`` (one per sample) for a class-matched filter."""
        if self.kind is Kind.NONE:
            return torch.ones(n, dtype=torch.bool)
        if self.kind is Kind.RANDOM:
            return keep_mask(random_scores(n, seed), fraction)
        scored = keep_mask(self.scores, fraction)
        return class_matched_keep(classes, scored, seed) if self.kind is Kind.MATCHED else scored


NO_FILTER = Filter("no filter", Kind.NONE)
RANDOM = Filter("random", Kind.RANDOM)


def scored(label: str, scores: Tensor) -> Filter:
    """A filter removing the samples with the highest ``scores``."""
    return Filter(label, Kind.SCORED, scores)


def with_controls(scores: dict[str, Tensor]) -> list[Filter]:
    """The unfiltered and random-removal controls, then one scored filter per entry."""
    return [NO_FILTER, RANDOM, *(scored(label, s) for label, s in scores.items())]


def parse_filter(label: str, scores: Tensor | None = None) -> Filter:
    """The filter a command line or a plan names: ``no filter``, ``random``, or a scored one
    (``scores`` required)."""
    known = {f.label: f for f in (NO_FILTER, RANDOM)}
    if label in known:
        return known[label]
    if scores is None:
        raise ValueError(f"filter {label!r} needs scores (or is one of {', '.join(known)})")
    return scored(label, scores)


def random_scores(n: int, seed: int) -> Float[Tensor, " n"]:
    """Scores drawn from a generator seeded with ``seed``: random removal's ranking."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def class_matched_keep(
    classes: Sequence[str | None], reference: Bool[Tensor, " samples"], seed: int
) -> Bool[Tensor, " samples"]:
    """A random keep mask that removes, in every class, as many samples as ``reference`` does."""
    if len(classes) != len(reference):
        raise ValueError(f"{len(classes)} classes for {len(reference)} samples")
    gen = torch.Generator().manual_seed(seed)
    keep = torch.ones(len(classes), dtype=torch.bool)
    for c in sorted(set(classes)):
        members = torch.tensor([i for i, x in enumerate(classes) if x == c])
        n_removed = int((~reference[members]).sum())
        keep[members[torch.randperm(len(members), generator=gen)[:n_removed]]] = False
    return keep


# -- runs and their store -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One (filter, seed) run: what was kept and removed (counted by class), what the
    evaluator measured, and how long training and evaluation took."""

    filter: str
    seed: int
    fraction: float
    n_kept: int
    removed: dict[str, int]
    measures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    kept: str = ""  # a fingerprint of which samples were kept (:func:`kept_digest`)

    FIELDS = ("filter", "seed", "fraction", "n_kept", "removed", "seconds")

    def record(self) -> dict:
        """The run as one flat JSON object (the measures beside the fields)."""
        own = {name: getattr(self, name) for name in self.FIELDS}
        return {**own, **self.measures} | ({"kept": self.kept} if self.kept else {})

    @classmethod
    def from_record(cls, record: dict) -> Run:
        measures = {k: v for k, v in record.items() if k not in (*cls.FIELDS, "kept")}
        own = {k: record[k] for k in cls.FIELDS}
        return cls(**own, measures=measures, kept=record.get("kept", ""))


def kept_digest(keep: Sequence[bool]) -> str:
    """A fingerprint of a keep mask: two runs that keep the same samples with the same seed
    are the same run, whatever their filters are called."""
    return hashlib.sha256(bytes(bool(k) for k in keep)).hexdigest()[:16]


def removed_share(removed: dict[str, int], kind: str = "insecure") -> float:
    """The share of ``kind`` among the samples a run removed (``Run.removed``; 0 if none)."""
    return removed.get(kind, 0) / max(1, sum(removed.values()))


def records(runs: Iterable[Run]) -> list[dict]:
    """Runs as flat rows (:meth:`Run.record`), for tables and summaries."""
    return [r.record() for r in runs]


def _as_json(value: object) -> object:
    """``value`` as a JSON file gives it back (lists, not tuples)."""
    return json.loads(json.dumps(value))


def digest(value: object) -> str:
    """A fingerprint of a JSON-able value (samples, scores, settings)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class RunStore:
    """The runs of one experiment in one JSON file: ``{"settings", "runs", ...}`` plus what
    the experiment adds (:meth:`put`). A file saved under other ``settings`` (what every run
    depends on) is not read: its runs start again. With no ``path`` it lives in memory."""

    def __init__(self, path: Path | None = None, settings: dict | None = None) -> None:
        self.path = path
        self.settings = _as_json(settings or {})
        saved = json.loads(path.read_text()) if path is not None and path.exists() else {}
        fresh = {"settings": self.settings, "runs": []}
        self.data: dict = saved if saved.get("settings", {}) == self.settings else fresh
        self.data.setdefault("runs", [])

    @property
    def runs(self) -> list[Run]:
        return [Run.from_record(r) for r in self.data["runs"]]

    def get(self, label: str, seed: int) -> Run | None:
        """The recorded run of filter ``label`` and ``seed``, if there is one."""
        found = [r for r in self.data["runs"] if (r["filter"], r["seed"]) == (label, seed)]
        return Run.from_record(found[0]) if found else None

    def same_run(self, kept: str, seed: int) -> Run | None:
        """A recorded run, of any filter, that kept the same samples (``kept``, a
        :func:`kept_digest`) with the same seed: the same run under another name."""
        found = [r for r in self.data["runs"] if (r.get("kept"), r["seed"]) == (kept, seed)]
        return Run.from_record(found[0]) if found and kept else None

    def add(self, run: Run) -> None:
        """Record ``run`` (and write the file)."""
        if self.get(run.filter, run.seed) is not None:
            raise ValueError(f"run {run.filter!r}, seed {run.seed} is recorded already")
        self.data["runs"].append(run.record())
        self.save()

    def put(self, key: str, value: object) -> None:
        """Record ``value`` under ``key`` beside the runs (and write the file)."""
        self.data[key] = value
        self.save()

    def stage(self, key: str, compute: Callable[[], object]) -> object:
        """An intermediate result (JSON-able) under ``key``, computed once and kept beside the
        runs: a run stopped after it (say, while its answers were judged) resumes from it."""
        stages = self.data.setdefault("stages", {})
        if key not in stages:
            stages[key] = compute()
            self.save()
        return stages[key]

    def save(self) -> None:
        if self.path is not None:
            write_json(self.data, self.path)


# -- the runner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """What an experiment runs: every filter at ``fraction``, once per seed, on ``samples``
    (``classes`` names each sample's class, for what is removed and for class-matched
    filters; by default its ``source``)."""

    samples: Sequence[dict]
    filters: Sequence[Filter]
    fraction: float
    seeds: Sequence[int]
    classes: Sequence[str | None] = ()

    def sample_classes(self) -> list[str | None]:
        return list(self.classes) or [s.get("source") for s in self.samples]


def run_grid(
    grid: Grid,
    trainer: Trainer,
    evaluator: Evaluator,
    keep_mask: KeepMask,
    store: RunStore | None = None,
    progress: bool = True,
    share_runs: bool = False,
) -> list[Run]:
    """Every (filter, seed) run of ``grid``, in that order: the recorded ones from ``store``,
    the others run (``trainer`` on what the filter keeps, ``evaluator`` inside its ``with``)
    and recorded as soon as each ends. With ``share_runs`` a filter that keeps exactly the
    samples a recorded run kept, with its seed, gets that run under its own name: sound only
    when every run of the store trains and evaluates the same way (a filter experiment; not a
    comparison of training-time mitigations)."""
    store = store or RunStore()
    jobs = [(f, seed) for f in grid.filters for seed in grid.seeds]
    todo = [(f, seed) for f, seed in jobs if store.get(f.label, seed) is None]
    for f, seed in tqdm(todo, desc="fine-tuning runs", disable=not progress):
        keep = f.keep(grid.fraction, len(grid.samples), seed, keep_mask, grid.sample_classes())
        same = store.same_run(kept_digest(keep.tolist()), seed) if share_runs else None
        if same is not None:  # another filter kept exactly these samples: its run is this one
            store.add(dataclasses.replace(same, filter=f.label, fraction=f.fraction(grid.fraction)))
        else:
            store.add(run_one(grid, f, seed, trainer, evaluator, keep))
    return [store.get(f.label, seed) for f, seed in jobs]


def run_one(
    grid: Grid, f: Filter, seed: int, trainer: Trainer, evaluator: Evaluator, keep: Tensor
) -> Run:
    """One run: filter ``f`` keeps ``keep``, ``trainer`` fine-tunes with ``seed``,
    ``evaluator`` measures."""
    classes = grid.sample_classes()
    keep = keep.tolist()
    kept = [s for s, k in zip(grid.samples, keep, strict=True) if k]
    removed = [c for c, k in zip(classes, keep, strict=True) if not k]
    start = time.perf_counter()
    with trainer(kept, seed) as model:
        measures = evaluator(model, seed)
    return Run(
        f.label,
        seed,
        f.fraction(grid.fraction),
        len(kept),
        {str(c): removed.count(c) for c in sorted(set(removed), key=str)},
        measures,
        round(time.perf_counter() - start, 1),
        kept_digest(keep),
    )
