"""Nothing lost on a stop: a long command killed mid-run (SIGKILL, no chance to clean up) and
started again resumes from what it had written, to the same record as a run never stopped.

The runner's store (:class:`emgeo.runner.RunStore`, which lm-filter and the gpu plan resume
through) is killed with a trainer that blocks after two runs; geometry-dose, on a configuration
smaller still than its quick one, once two organisms are written. Times (``seconds``) are the
only thing allowed to differ. (robustness, the sub-task world and lm-em keep each organism or
run as it ends in records of their own, and resume from them.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from emgeo.experiments import dose

_GRID = """
import contextlib, sys, time
from pathlib import Path

import torch

from emgeo import runner

BLOCK_AFTER = int(sys.argv[2])  # runs before the trainer blocks for good (-1: never)
started = []


@contextlib.contextmanager
def trainer(kept, seed):
    if len(started) == BLOCK_AFTER:
        time.sleep(3600)
    started.append(seed)
    yield sum(len(s["text"]) for s in kept) + seed


def evaluator(model, seed):
    return {"measure": model * 0.5}


samples = [{"text": "x" * n, "source": "a" if n % 2 else "b"} for n in range(1, 13)]
filters = [runner.parse_filter("no filter"), runner.parse_filter("random")]
grid = runner.Grid(samples, filters, fraction=0.25, seeds=(0, 1, 2))
store = runner.RunStore(Path(sys.argv[1]), {"grid": "tiny"})


def keep_mask(scores, fraction):
    keep = torch.ones(len(scores), dtype=torch.bool)
    keep[scores.argsort(descending=True)[: round(fraction * len(scores))]] = False
    return keep


runner.run_grid(grid, trainer, evaluator, keep_mask, store, progress=False)
"""


def _run(*args: str) -> subprocess.Popen:
    env = {**os.environ, "EMGEO_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], env=env, stderr=subprocess.PIPE)


def _kill_when(
    process: subprocess.Popen, written: Callable[[], bool], timeout_s: float = 120.0
) -> None:
    """SIGKILL ``process`` as soon as ``written()`` holds (it must, before ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not written():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never wrote what it was to write"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def _runs(path: Path) -> list:
    try:
        return json.loads(path.read_text())["runs"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


def test_a_killed_grid_resumes_to_the_same_record(tmp_path):
    script = tmp_path / "grid.py"
    script.write_text(_GRID)
    stopped, whole = tmp_path / "stopped.json", tmp_path / "whole.json"
    process = _run(str(script), str(stopped), "2")
    _kill_when(process, lambda: len(_runs(stopped)) == 2)
    time.sleep(0.2)
    assert len(_runs(stopped)) == 2  # the file is whole: each run was written atomically
    for path in (stopped, whole):
        assert _run(str(script), str(path), "-1").wait(timeout=120) == 0
    assert len(_runs(whole)) == 6
    assert _without_seconds(json.loads(stopped.read_text())) == _without_seconds(
        json.loads(whole.read_text())
    )


def _dose(out: Path) -> subprocess.Popen:
    code = (
        "import sys, torch; from dataclasses import replace; from pathlib import Path; "
        "from emgeo.experiments import dose; torch.set_num_threads(1); "
        "cfg = replace(dose.quick(), pretrain_steps=5, finetune_steps=2, n_finetune=16, "
        "n_probe=8, n_permutations=50); dose.run(cfg, Path(sys.argv[1]), progress=False)"
    )
    return _run("-c", code, str(out))


def test_a_killed_geometry_dose_resumes_to_the_same_record(tmp_path):
    stopped, whole = tmp_path / "stopped.json", tmp_path / "whole.json"
    partial = dose.partial_path(stopped)

    def two_organisms() -> bool:
        try:
            return len(json.loads(partial.read_text())["rows"]) >= 2
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    _kill_when(_dose(stopped), two_organisms)
    assert not stopped.exists()
    kept = json.loads(partial.read_text())["rows"]
    for path in (stopped, whole):
        assert _dose(path).wait(timeout=300) == 0
    resumed = json.loads(stopped.read_text())
    assert resumed["rows"][: len(kept)] == kept  # the organisms done before the stop were kept
    assert _without_seconds(resumed) == _without_seconds(json.loads(whole.read_text()))
    assert not partial.exists()
