"""Run a submission in a fresh kernel: offline, walled in, without the grader's credentials.

Where Linux allows it (:func:`isolation`), the kernel starts in new mount and network namespaces:
no connection leaves it, the submissions, the gradebook's folder and the grader's private folders
are hidden under empty tmpfs mounts, every mount but its working copy is read-only, and it holds
no capability to undo that (:mod:`emgeo.course.grading.sandbox`). Where only a network namespace
can be made, or none, it runs with what can be had, and :func:`isolation` says so. Everywhere its
environment says offline, points every proxy at a closed port, and puts its home, temporary and
cache folders in its working copy (:func:`kernel_env`).

The check cells do not run in the kernel: at each one, the grader computes the verdict itself
(:mod:`emgeo.course.grading.verdicts`), calling the student's function in the kernel through a
channel that runs one request cell at a time.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets import List, Unicode
from traitlets.config import Config

from emgeo.course.grading import sandbox
from emgeo.course.grading.outcomes import KERNEL_DIED, RAN, TIMED_OUT, ExerciseResult
from emgeo.course.grading.remote import Channel, KernelStopped
from emgeo.course.notebooks import notebook_env

STARTUP_TIMEOUT_S = 120
# Variables a student's code must not see: credentials of the grader's own accounts.
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_DEAD_PROXY = "http://127.0.0.1:9"  # a closed local port: HTTP clients that honour it fail at once


@dataclass(frozen=True)
class Isolation:
    """How kernels are walled in on this machine."""

    unshare: tuple[str, ...]  # the namespaces' command prefix, () for none
    walled: bool  # a mount namespace: the kernel sees and writes only its own working copy
    offline: bool  # a network namespace: no connection leaves the kernel

    @property
    def note(self) -> str:
        """What a gradebook says of a run under this isolation."""
        if self.walled:
            return "isolated"
        network = "network off" if self.offline else "offline settings only"
        return f"not isolated (no mount namespace here; {network})"


def _probe(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _walls(prefix: Sequence[str], workdir: Path, hidden: Sequence[Path]) -> list[str]:
    """``prefix``, then the sandbox script that walls the kernel in (see :mod:`.sandbox`)."""
    walls = [*prefix, sys.executable, "-I", "-S", sandbox.__file__, "--work", str(workdir)]
    for path in hidden:
        walls += ["--hide", str(path)]
    return [*walls, "--"]


# A PID namespace whose first process is the kernel: when the kernel ends, so does everything it
# started (nothing of one submission lingers to reach the next one's working copy or kernel).
_PID = ("--pid", "--fork", "--kill-child", "--mount-proc")


@functools.cache
def isolation() -> Isolation:
    """The best isolation this machine allows: mount, PID and network namespaces (``unshare``,
    as root or with ``--map-root-user``) with the sandbox's walls; else a network namespace; else
    none. Each is tried once, on a command that must run inside it."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return Isolation((), walled=False, offline=False)
    roots = [(unshare,)] if os.geteuid() == 0 else []
    roots.append((unshare, "--map-root-user"))
    with tempfile.TemporaryDirectory(prefix="emgeo-probe-") as tmp:
        for root in roots:
            prefix = (*root, "--mount", "--net", *_PID)
            if _probe([*_walls(prefix, Path(tmp), []), shutil.which("true") or "/bin/true"]):
                return Isolation(prefix, walled=True, offline=True)
    for root in roots:
        if _probe([*root, "--net", "true"]):
            return Isolation((*root, "--net"), walled=False, offline=True)
    return Isolation((), walled=False, offline=False)


def private_paths(needed: Sequence[Path] = ()) -> list[Path]:
    """The grader's own folders and files a kernel must not read: the grader's home if nothing
    the kernel needs lies in it (the Python it runs, the package, ``needed``), else the
    credentials in it (ssh, git and netrc, the Hugging Face token, configuration folders)."""
    home = Path.home().resolve()
    package = Path(__file__).resolve().parents[3]
    used = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve(), package]
    if not any(p.resolve().is_relative_to(home) for p in [*used, *needed]):
        return [home]
    relative = [
        ".ssh",
        ".config",
        ".netrc",
        ".git-credentials",
        ".huggingface",
        ".cache/huggingface/token",
        ".cache/huggingface/stored_tokens",
        ".local/share/jupyter/runtime",
    ]
    return [home / r for r in relative if (home / r).exists()]


class WalledKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel behind ``prefix`` (:func:`kernel_prefix`).

    Used with the ``ipc`` transport (Unix sockets in the working copy), which works across
    network namespaces.
    """

    prefix = List(Unicode(), help="the command the kernel starts behind").tag(config=True)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*self.prefix, *super().format_kernel_cmd(extra_arguments)]


def kernel_prefix(workdir: Path, hidden: Sequence[Path] = ()) -> tuple[str, ...]:
    """The command that starts a kernel in ``workdir`` with :func:`isolation`'s walls, hiding
    ``hidden`` and :func:`private_paths` (the walls need a mount namespace: else only the
    network namespace, if any)."""
    found = isolation()
    if not found.walled:
        return found.unshare
    return tuple(_walls(found.unshare, workdir, [*hidden, *private_paths([workdir])]))


def kernel_env(base: dict[str, str] | None = None, workdir: Path | None = None) -> dict[str, str]:
    """The kernel's environment: the course's headless one, offline, with no credentials.

    Hugging Face and transformers are told they are offline, proxies point to a closed local port
    (so HTTP clients that honour them fail at once even without a network namespace), and every
    variable that looks like a credential (token, key, secret, password) is removed. With a
    ``workdir``, the kernel's home, temporary, IPython, matplotlib and cache folders are in it.
    """
    env = {k: v for k, v in (base or notebook_env()).items() if not _SECRET.search(k)}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HTTP_PROXY=_DEAD_PROXY,
        HTTPS_PROXY=_DEAD_PROXY,
        ALL_PROXY=_DEAD_PROXY,
        http_proxy=_DEAD_PROXY,
        https_proxy=_DEAD_PROXY,
        all_proxy=_DEAD_PROXY,
        NO_PROXY="",
        no_proxy="",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if workdir is not None:
        hub = env.get("HF_HUB_CACHE") or str(
            Path(env.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
        )
        folders = {
            "HOME": "",
            "TMPDIR": ".tmp",
            "IPYTHONDIR": ".ipython",
            "MPLCONFIGDIR": ".matplotlib",
            "XDG_CACHE_HOME": ".cache",
            "XDG_CONFIG_HOME": ".config",
        }
        for name, sub in folders.items():
            (workdir / sub).mkdir(parents=True, exist_ok=True)
            env[name] = str(workdir / sub)
        env.update(HF_HUB_CACHE=hub, HF_HOME=str(workdir / ".cache" / "huggingface"))
    return env


@dataclass
class KernelRun:
    """How a notebook's run went: the cells that ran, each check's verdict, and where and why it
    stopped, if it did."""

    executed: set[int] = field(default_factory=set)
    verdicts: dict[int, ExerciseResult] = field(default_factory=dict)
    stopped_at: int | None = None  # the cell that timed out or killed the kernel
    status: str = RAN  # RAN, TIMED_OUT or KERNEL_DIED
    reason: str = ""


Verdict = Callable[[Channel], ExerciseResult]  # a check cell's verdict, given the channel


def _client(
    nb: NotebookNode, workdir: Path, deadline: float, hidden: Sequence[Path]
) -> NotebookClient:
    (workdir / ".ipc").mkdir(exist_ok=True)
    ipc = workdir / ".ipc"
    connection = {"transport": "ipc", "ip": str(ipc / "k"), "connection_file": str(ipc / "k.json")}
    config = Config(
        {
            "KernelManager": connection,
            "WalledKernelManager": {"prefix": list(kernel_prefix(workdir, hidden))},
        }
    )
    return NotebookClient(  # it owns its kernel manager: the kernel is shut down after the run
        nb,
        config=config,
        kernel_name="python3",
        kernel_manager_class=WalledKernelManager,
        allow_errors=True,
        startup_timeout=STARTUP_TIMEOUT_S,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        shutdown_kernel="immediate",
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )


def _channel(client: NotebookClient, index: int, limit: str) -> Channel:
    """Run a request cell in the kernel on behalf of check cell ``index``; its outputs."""

    def run(source: str) -> list[dict]:
        cell = nbformat.v4.new_code_cell(source)
        try:
            client.execute_cell(cell, index, store_history=False)
        except CellTimeoutError:
            raise KernelStopped(TIMED_OUT, f"did not return within {limit}") from None
        except DeadKernelError:
            raise KernelStopped(KERNEL_DIED, "killed its kernel") from None
        return list(cell.outputs)

    return run


def run_notebook(
    nb: NotebookNode,
    workdir: Path,
    timeout_s: float,
    verdicts: dict[int, Verdict] | None = None,
    hidden: Sequence[Path] = (),
) -> KernelRun:
    """Execute ``nb`` in place in a fresh walled-in kernel in ``workdir``, within ``timeout_s``.

    A cell in ``verdicts`` (a check cell) is not run in the kernel: its verdict is computed by
    the grader, which shows it as the cell's output. ``hidden`` are folders the kernel must not
    see (with :func:`private_paths`, where :func:`isolation` can wall it in).
    """
    run, verdicts = KernelRun(), verdicts or {}
    deadline = time.monotonic() + timeout_s
    limit = f"{timeout_s:g} s"
    client = _client(nb, workdir, deadline, hidden)
    with client.setup_kernel(env=kernel_env(workdir=workdir)):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if time.monotonic() >= deadline:
                return _stop(run, index, TIMED_OUT, f"did not finish within {limit}")
            try:
                if index in verdicts:
                    result = verdicts[index](_channel(client, index, limit))
                    run.verdicts[index] = result
                    cell.outputs = [nbformat.v4.new_output("stream", text=result.message + "\n")]
                else:
                    client.execute_cell(cell, index)
            except CellTimeoutError:
                return _stop(run, index, TIMED_OUT, f"did not finish within {limit}")
            except DeadKernelError:
                return _stop(run, index, KERNEL_DIED, "killed its kernel")
            except KernelStopped as stopped:
                return _stop(run, index, stopped.status, stopped.why)
            run.executed.add(index)
    return run


def _stop(run: KernelRun, index: int, status: str, why: str) -> KernelRun:
    run.stopped_at, run.status, run.reason = index, status, f"{why} in cell {index}"
    return run
