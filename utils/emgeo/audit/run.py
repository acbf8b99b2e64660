"""``audit(data, out)``: score every sample of a chat JSONL file for geometric risk, write the
scores, the dataset filtered at the budget and a report.

The file is streamed in chunks: each chunk's chats are looked up in the cache, the missing ones
scored from the shortest to the longest (batches of similar length, less padding), stored, and
their rows appended to the scores file, so memory holds one chunk whatever the file's size (plus
one float and one line number per sample for the budget). A second pass copies the kept lines
verbatim: the filtered file is the input minus the removed lines, byte for byte. A line the scorer
cannot score (:attr:`Scorer.problem`) is a bad line like a malformed one. Every file is written
whole or not at all (:func:`emgeo.chatfile.atomic_write`) but the scores, appended chunk by chunk.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import torch
from tqdm.auto import tqdm

import emgeo.audit.cache as cache_module
import emgeo.audit.inputs as inputs
import emgeo.audit.report as report
from emgeo import chatfile, config, filtering
from emgeo.audit.scorers import SCORES, Scorer, scorer_for
from emgeo.chatfile import Line
from emgeo.errors import DatasetLineError, first_line

CHUNK = 256  # chats read, looked up and stored together
N_RISKIEST = 20  # samples the report shows
SCORES_FILE, FILTERED_FILE, REPORT_FILE = "scores.csv", "filtered.jsonl", "report.html"
REJECTS_FILE, SUMMARY_FILE, CACHE_FILE = "rejected.jsonl", "summary.json", "cache.sqlite"


@dataclass
class AuditResult:
    """What an audit wrote, and its figures."""

    out: Path
    n_samples: int
    n_removed: int
    n_rejected: int
    n_cached: int  # samples whose scores came from the cache
    threshold: float  # the lowest full score removed
    seconds: float
    model: str
    sae: str

    @property
    def samples_per_s(self) -> float:
        return self.n_samples / self.seconds if self.seconds else math.inf


def _chunks(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _by_length(chats: Sequence[dict], size: Callable[[dict], int] | None = None) -> list[int]:
    """Indices of ``chats`` from the shortest to the longest: by ``size`` (e.g. tokens), or by the
    characters of their messages."""
    size = size or (lambda chat: sum(len(m["content"]) for m in chat["messages"]))
    sizes = [size(c) for c in chats]
    return sorted(range(len(chats)), key=sizes.__getitem__)


def score_missing(scorer: Scorer, chats: Sequence[dict]) -> list[dict]:
    """Score ``chats`` from the shortest to the longest (in the scorer's tokens when it says how
    to count them), so each of its batches holds chats of similar length (little padding);
    records in the order of ``chats``."""
    order = _by_length(chats, scorer.size)
    records: list[dict | None] = [None] * len(chats)
    for i, record in zip(order, scorer.score([chats[i] for i in order]), strict=True):
        records[i] = record
    return records  # type: ignore[return-value]


def metadata_fields(chat: dict) -> dict[str, str]:
    """A chat's top-level fields other than ``messages`` with a plain value (e.g. ``source``)."""
    return {
        key: str(value)
        for key, value in chat.items()
        if key != "messages" and isinstance(value, str | int | float | bool)
    }


def _answer_excerpt(chat: dict, n_chars: int = 300) -> tuple[str, str]:
    user = next((m["content"] for m in chat["messages"] if m["role"] == "user"), "")
    answer = " ".join(m["content"] for m in chat["messages"] if m["role"] == "assistant")
    return user[:n_chars], answer[:n_chars]


def audit(
    data: Path | str,
    out: Path | str,
    fraction: float = 0.5,
    profile: str = "cpu",
    skip_bad_lines: bool = False,
    scorer: Scorer | None = None,
    progress: bool = True,
) -> AuditResult:
    """Audit ``data`` (chat JSONL, or ``hf:owner/name[:split]``) into the folder ``out``:
    ``scores.csv`` (one row per sample: line, the three scores, whether it is removed, its top
    latents, its metadata fields), ``filtered.jsonl`` (the input without the ``fraction`` of
    samples with the highest full score), ``report.html``, ``summary.json``, and with
    ``skip_bad_lines`` ``rejected.jsonl``. ``scorer`` replaces the profile's backend."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction is the share of samples to remove, in [0, 1): got {fraction}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = _input_path(str(data), out)
    start = time.perf_counter()
    # An empty file or a bad first line fails here, before a model loads.
    next(inputs.read_chats(path, [] if skip_bad_lines else None), None)
    scorer = scorer or scorer_for(profile)
    bad: list[chatfile.BadLine] | None = [] if skip_bad_lines else None
    scan = _score_file(path, out, scorer, bad, progress)
    keep = filtering.keep_mask(torch.tensor(scan.full, dtype=torch.float64), fraction).tolist()
    removed = [s for s, k in zip(scan.full, keep, strict=True) if not k]
    _finish_scores(out / (SCORES_FILE + ".partial"), out / SCORES_FILE, keep)
    kept = {line_no for line_no, k in zip(scan.line_nos, keep, strict=True) if k}
    _write_filtered(path, out / FILTERED_FILE, kept)
    if bad is not None:
        inputs.write_rejects(bad, out / REJECTS_FILE)
    result = AuditResult(
        out=out,
        n_samples=len(scan.full),
        n_removed=len(removed),
        n_rejected=len(bad or []),
        n_cached=scan.n_cached,
        threshold=min(removed) if removed else math.inf,
        seconds=round(time.perf_counter() - start, 2),
        model=scorer.model,
        sae=scorer.sae,
    )
    summary = {**asdict(result), "out": str(out), "input": str(path), "fraction": fraction}
    chatfile.write_json(summary, out / SUMMARY_FILE, sort_keys=False)
    report.write_report(
        out / REPORT_FILE,
        scorer=scorer,
        source=str(path),
        fraction=fraction,
        full_scores=scan.full,
        keep=keep,
        riskiest=[entry[2] for entry in sorted(scan.riskiest, reverse=True)],
        groups=scan.groups,
        result=asdict(result),
    )
    return result


def _input_path(data: str, out: Path) -> Path:
    if data.startswith(inputs.HF_PREFIX):
        return inputs.fetch_hf_dataset(data.removeprefix(inputs.HF_PREFIX), out / "input.jsonl")
    return Path(data)


@dataclass
class _Scan:
    """What the first pass keeps: one full score and line number per sample, the riskiest
    samples (a min-heap), and the sample indices of each metadata value."""

    full: list[float]
    line_nos: list[int]
    riskiest: list[tuple[float, int, dict]]
    groups: dict[str, dict[str, list[int]]]
    n_cached: int = 0

    def add(self, line: Line, record: dict, meta: dict[str, str]) -> None:
        index = len(self.full)
        self.full.append(record["full"])
        self.line_nos.append(line.line_no)
        user, answer = _answer_excerpt(line.record)
        shown = {
            "line": line.line_no,
            "record": record,
            "meta": meta,
            "user": user,
            "answer": answer,
        }
        entry = (record["full"], -line.line_no, shown)
        if len(self.riskiest) < N_RISKIEST:
            heapq.heappush(self.riskiest, entry)
        elif entry[:2] > self.riskiest[0][:2]:
            heapq.heapreplace(self.riskiest, entry)
        for field, value in meta.items():
            self.groups.setdefault(field, {}).setdefault(value, []).append(index)


def _score_file(path: Path, out: Path, scorer: Scorer, bad: list | None, progress: bool) -> _Scan:
    """The first pass: score every chat (from the cache when it can) and write its row."""
    fingerprint = scorer.fingerprint()
    store = cache_module.ScoreCache(out / CACHE_FILE)
    scan = _Scan(full=[], line_nos=[], riskiest=[], groups={})
    lines = inputs.read_chats(path, bad, inputs.scoreable(scorer.problem))
    bar = tqdm(desc="auditing", unit="sample", disable=not progress)
    with open(out / (SCORES_FILE + ".partial"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        for chunk in _chunks(lines, CHUNK):
            keys = [cache_module.sample_key(line.record, fingerprint) for line in chunk]
            found = store.get_many(keys)
            scan.n_cached += len(found)
            missing = [i for i, key in enumerate(keys) if key not in found]
            if missing:
                new = list(
                    zip(
                        (keys[i] for i in missing),
                        score_missing(scorer, [chunk[i].record for i in missing]),
                        strict=True,
                    )
                )
                store.put_many(new)  # stored before anything else: a stop loses at most a chunk
                found.update(new)
            for line, key in zip(chunk, keys, strict=True):
                record, meta = found[key], metadata_fields(line.record)
                scores = (f"{record[s]:.6g}" for s in SCORES)
                writer.writerow(
                    [line.line_no, *scores, json.dumps(record["top_latents"]), json.dumps(meta)]
                )
                scan.add(line, record, meta)
            bar.update(len(chunk))
    bar.close()
    store.close()
    return scan


def _finish_scores(partial: Path, final: Path, keep: list[bool]) -> None:
    """The scores file with its header and each row's ``removed`` column."""
    header = ["line", *(s.replace(" ", "_") for s in SCORES), "removed", "top_latents", "metadata"]

    def write(dst: TextIO) -> None:
        writer = csv.writer(dst)
        writer.writerow(header)
        with open(partial, newline="", encoding="utf-8") as src:
            for row, k in zip(csv.reader(src), keep, strict=True):
                writer.writerow([*row[:4], int(not k), *row[4:]])

    chatfile.atomic_write(final, write)
    partial.unlink()


def _write_filtered(path: Path, out: Path, kept: set[int]) -> None:
    """Copy the lines of ``path`` numbered in ``kept`` verbatim, after the input's byte-order mark
    if it has one (blank and bad lines are not chats: they are never kept)."""

    def write(dst: TextIO) -> None:
        with open(path, "rb") as src:
            for line_no, raw in enumerate(src, start=1):
                if line_no == 1 and raw.startswith(chatfile.BOM):
                    dst.write("\ufeff")
                    raw = raw[len(chatfile.BOM) :]
                if line_no in kept:  # a chat the audit read: UTF-8
                    dst.write(raw.decode("utf-8"))

    chatfile.atomic_write(out, write)


# ---------------------------------------------------------------- the command


def add_subcommand(sub) -> None:
    """``emgeo audit DATA --out DIR [--fraction 0.5] [--profile cpu|gpu|remote|organism]
    [--skip-bad-lines]``."""
    p = sub.add_parser(
        "audit",
        help="score a chat JSONL dataset for geometric risk before fine-tuning: per-sample "
        "scores, the dataset filtered at a budget, an HTML report",
    )
    p.add_argument(
        "data", help="chat JSONL ({'messages': [...]} per line) or hf:owner/name[:split]"
    )
    p.add_argument("--out", required=True, help="folder for the scores, filtered data and report")
    p.add_argument("--fraction", type=_fraction, default=0.5, help="share of samples to remove")
    p.add_argument(
        "--profile",
        default=None,
        choices=["cpu", "gpu", "remote", "organism"],
        help="the backend (default: EMGEO_PROFILE, else cpu); organism: the course's organism",
    )
    p.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="set malformed lines aside in rejected.jsonl instead of stopping",
    )
    p.set_defaults(func=_audit_command)


def _fraction(text: str) -> float:
    """``--fraction``: a share of samples, in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a share of samples to remove, in [0, 1): got {text!r}")
    return value


def _audit_command(args) -> int:
    profile = args.profile or config.profile_name(None)
    torch.set_num_threads(config.get_profile("cpu").n_threads)
    try:
        result = audit(args.data, args.out, args.fraction, profile, args.skip_bad_lines)
    except (DatasetLineError, OSError) as err:  # the input, or a folder that cannot be written
        print(f"emgeo audit: {first_line(err)}", file=sys.stderr)
        return 2
    print(
        f"{result.n_samples} samples ({result.n_cached} from the cache) in {result.seconds:.1f} s: "
        f"{result.n_removed} removed, {result.n_rejected} bad lines set aside\n"
        f"scores   {result.out / SCORES_FILE}\nfiltered {result.out / FILTERED_FILE}\n"
        f"report   {result.out / REPORT_FILE}"
    )
    return 0
