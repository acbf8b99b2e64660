"""Run notebooks headless: execute solutions/ in place, and ``reproduce`` them into results/.

Each notebook runs in its own child process (``python -m emgeo.course.notebooks``) so that its wall
time and the peak memory of its kernel are measured alone: the kernel is that process's only child,
and ``getrusage(RUSAGE_CHILDREN)`` reports its peak resident set once it has exited.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat
import torch
from nbclient import NotebookClient

from emgeo.config import RESULTS_DIR, SOLUTIONS_DIR, STANDINS_ENV
from emgeo.course import claims
from emgeo.course.results import RECORD_FILE_ENV, read_records, set_dotted
from emgeo.course.site import WIDGET_STATE, WIDGET_VIEW, tag_free

KERNEL = "python3"
CELL_TIMEOUT_S = 900
# Cell tags: ``profile`` marks a cell whose work depends on the profile; ``setup`` marks what such
# cells need first (imports, constants). :func:`execute_profile` runs exactly these.
PROFILE_TAG, SETUP_TAG = "profile", "setup"


def notebook_env(n_threads: int | None = None) -> dict[str, str]:
    """The environment every headless run gets: cpu profile, fixed threads (``n_threads``, else
    ``EMGEO_THREADS`` when set, as the test suite sets it to keep one thread per core, else 2),
    fixed hash seed, and (unless ``EMGEO_RESULTS_DIR`` is set) a results folder of its own, so
    that the outputs it stores come from this run and never from runs saved under ``results/``."""
    env = dict(os.environ)
    n_threads = n_threads or int(env.get("EMGEO_THREADS") or 2)
    if "EMGEO_RESULTS_DIR" not in env:
        env["EMGEO_RESULTS_DIR"] = tempfile.mkdtemp(prefix="emgeo-results-")
    env.update(
        EMGEO_PROFILE=env.get("EMGEO_PROFILE", "cpu"),
        EMGEO_THREADS=str(n_threads),
        OMP_NUM_THREADS=str(n_threads),
        MKL_NUM_THREADS=str(n_threads),
        PYTHONHASHSEED="0",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
    )
    return env


def find_notebooks(names: Iterable[str] | None = None, root: Path = SOLUTIONS_DIR) -> list[Path]:
    """solutions/ notebooks, all or those whose name starts with one of ``names`` (e.g. ``01``)."""
    paths = sorted(root.glob("[0-9][0-9]_*.ipynb"))
    if names:
        names = list(names)
        paths = [p for p in paths if any(p.stem.startswith(n) or p.name == n for n in names)]
        if not paths:
            raise FileNotFoundError(f"no notebook in {root} matches {names}")
    return paths


def execute(src: Path, dst: Path, timeout: int = CELL_TIMEOUT_S) -> dict[str, float]:
    """Execute ``src`` top to bottom into ``dst`` here; return its wall time and peak memory."""
    nb = nbformat.read(src, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(src.parent)}}
    )
    client.execute()
    wall_s = time.perf_counter() - start
    for cell in nb.cells:  # nbclient's timing metadata changes every run; keep files stable
        cell.metadata.pop("execution", None)
    final_progress_bars(nb)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": round(wall_s, 1), "peak_rss_mb": round(rss_mb(peak), 1)}


_FIRST_FRAME = re.compile(r"^(?P<desc>.*?)\s*\d+%\|.*?(?P<timing>\[[^\]]*\])?\s*$", re.S)
_TIMING = re.compile(r"\[(\d\d:\d\d(?::\d\d)?)<([\d:?]+), *([\d.?]+ *\w+/\w+)")


def _bar_line(model_id: str, state: dict[str, Any], first_frame: str) -> str | None:
    """A tqdm widget's last state as tqdm prints it (``desc: 100%|██████████| 30/30 [...]``), or
    None when ``model_id`` is not a progress bar with a total. The description is the one of the
    bar's first frame (``first_frame``, the text the kernel sent): a live description (a loss)
    belongs to the run, not to the notebook."""
    box = state.get(model_id, {})
    frame = _FIRST_FRAME.match(first_frame)
    if box.get("model_name") != "HBoxModel" or frame is None:
        return None
    parts = [state.get(c.removeprefix("IPY_MODEL_"), {}) for c in box["state"].get("children", [])]
    if [part.get("model_name") for part in parts] != [
        "HTMLModel",
        "FloatProgressModel",
        "HTMLModel",
    ]:
        return None
    bar, right = parts[1].get("state", {}), tag_free(parts[2].get("state", {}).get("value", ""))
    if not bar.get("max"):
        return None
    value, total = bar.get("value", 0), bar["max"]
    filled = round(10 * value / total)
    timing = _TIMING.search(right)
    bracket = f"[{timing[1]}<{timing[2]}, {timing[3]}]" if timing else frame["timing"] or ""
    counts = f"{int(value)}/{int(total)}"
    line = f"{frame['desc']} {round(100 * value / total):3d}%|{'█' * filled}{' ' * (10 - filled)}|"
    return f"{line} {counts} {bracket}".rstrip()


def final_progress_bars(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give every progress-bar widget output the text of its last state, in place: a notebook
    shown without its widgets (on GitHub, in a diff) reads ``100%``, not the ``0%`` of the bar's
    first frame. nbval masks the bar either way (tests/nbval_sanitize.cfg)."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            view = data.get(WIDGET_VIEW)
            first = data.get("text/plain", "")
            line = view and _bar_line(view.get("model_id", ""), state, "".join(first))
            if line:
                data["text/plain"] = line
    return nb


def profile_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` keeping only its code cells tagged ``setup`` or ``profile``, in order."""
    out = nbformat.from_dict(nb)
    keep = {SETUP_TAG, PROFILE_TAG}
    out.cells = [
        c for c in out.cells if c.cell_type == "code" and keep & set(c.metadata.get("tags", []))
    ]
    return out


def execute_profile(
    src: Path, profile: str, results_dir: Path, timeout: int = CELL_TIMEOUT_S
) -> nbformat.NotebookNode:
    """Run the profile-dependent cells of ``src`` (and their set-up) in ``profile`` on this CPU,
    against stand-ins (``EMGEO_STANDINS=tiny``: tiny random models of the profile's architectures,
    NDIF through nnsight's local simulation); return the executed cells. Whatever the cells save
    goes under ``results_dir``. Raises nbclient's ``CellExecutionError`` at the first failing cell.
    """
    nb = profile_cells(nbformat.read(src, as_version=4))
    env = notebook_env()
    env.update(
        {"EMGEO_PROFILE": profile, STANDINS_ENV: "tiny", "EMGEO_RESULTS_DIR": str(results_dir)}
    )
    env.pop(RECORD_FILE_ENV, None)  # a stand-in's numbers are never the course's results
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(src.parent)}}
    )
    client.execute(env=env)
    return nb


def rss_mb(ru_maxrss: int, system: str = platform.system()) -> float:
    """``getrusage``'s peak resident set in MB: Linux reports KiB, macOS bytes."""
    return ru_maxrss / (1024**2 if system == "Darwin" else 1024)


def run_in_child(src: Path, dst: Path, record_file: Path | None = None) -> dict[str, float]:
    """Execute one notebook in a fresh child process; return its measurements."""
    env = notebook_env()
    if record_file is not None:
        env[RECORD_FILE_ENV] = str(record_file)
    cmd = [sys.executable, "-m", "emgeo.course.notebooks", str(src), str(dst)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{src.name} failed to execute:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save_figures(nb_path: Path, out_dir: Path) -> list[Path]:
    """Write every PNG output of an executed notebook to ``out_dir``; return the files."""
    nb = nbformat.read(nb_path, as_version=4)
    saved = []
    for i, cell in enumerate(nb.cells):
        for k, output in enumerate(cell.get("outputs", [])):
            png = output.get("data", {}).get("image/png")
            if png:
                path = out_dir / f"{nb_path.stem}_cell{i:02d}_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(png))
                saved.append(path)
    return saved


def environment_summary() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "profile": notebook_env()["EMGEO_PROFILE"],
        "threads": int(notebook_env()["EMGEO_THREADS"]),
        "cpu_count": os.cpu_count(),
    }


# What each notebook must hold to on a CPU: Binder gives 2 GB (1.8 keeps a margin for the server
# and the browser's kernel messages), and a notebook is a few minutes of compute.
MAX_PEAK_MB, MAX_WALL_S = 1800.0, 180.0


def over_budget(notebooks: dict[str, dict[str, float]]) -> list[str]:
    """One sentence per notebook (``summary.json``'s ``notebooks``) over :data:`MAX_PEAK_MB` of
    memory or :data:`MAX_WALL_S` of wall time."""
    lines = []
    for name, m in sorted(notebooks.items()):
        if m["peak_rss_mb"] > MAX_PEAK_MB:
            lines.append(
                f"{name} peaks at {m['peak_rss_mb']:.0f} MB, over the {MAX_PEAK_MB:.0f} MB that "
                "leave a margin in Binder's 2 GB"
            )
        if m["wall_s"] > MAX_WALL_S:
            lines.append(f"{name} took {m['wall_s']:.0f} s, over {MAX_WALL_S:.0f} s")
    return lines


def reproduce(
    names: Iterable[str] | None = None,
    results_dir: Path = RESULTS_DIR,
    root: Path = SOLUTIONS_DIR,
    progress=None,
) -> Path:
    """Execute solutions/ notebooks into ``results_dir``; merge measurements into summary.json."""
    summary_path = results_dir / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    paths = find_notebooks(names, root)
    for src in progress(paths) if progress else paths:
        dst = results_dir / "notebooks" / src.name
        with tempfile.TemporaryDirectory() as tmp:
            record_file = Path(tmp) / "records.jsonl"
            measured = run_in_child(src, dst, record_file)
            for key, value in read_records(record_file).items():
                set_dotted(summary, key, value)
        summary.setdefault("notebooks", {})[src.stem] = measured
        save_figures(dst, results_dir / "figures")
    summary["environment"] = environment_summary()
    summary["over_budget"] = over_budget(summary["notebooks"])
    summary["claims"] = claims.rows(claims.with_shipped(summary))
    results_dir.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (results_dir / "claims.md").write_text(claims.markdown(claims.with_shipped(summary)))
    return summary_path


def execute_in_place(
    names: Iterable[str] | None = None, progress=None, root: Path = SOLUTIONS_DIR
) -> dict[Path, dict[str, float]]:
    """Re-execute solutions/ notebooks and store their outputs in the files (for committing);
    return each one's measurements (``wall_s``, ``peak_rss_mb``)."""
    paths = find_notebooks(names, root)
    return {src: run_in_child(src, src) for src in (progress(paths) if progress else paths)}


if __name__ == "__main__":  # the child process of run_in_child
    print(json.dumps(execute(Path(sys.argv[1]), Path(sys.argv[2]))))
