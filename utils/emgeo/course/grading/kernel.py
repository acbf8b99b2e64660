"""Run a submission in a fresh kernel: offline, without the grader's credentials, within a budget.

Where Linux allows it, the kernel starts in a new network namespace (:func:`network_isolation`),
so no connection can leave it; everywhere its environment says offline and points every proxy at
a closed port (:func:`kernel_env`).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets.config import Config

from emgeo.course.grading.outcomes import KERNEL_DIED, RAN, TIMED_OUT
from emgeo.course.notebooks import notebook_env

STARTUP_TIMEOUT_S = 120
# Variables a student's code must not see: credentials of the grader's own accounts.
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_DEAD_PROXY = "http://127.0.0.1:9"  # a closed local port: HTTP clients that honour it fail at once


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that starts a kernel in a new network namespace, or () if none works.

    Linux's ``unshare --net`` (as root, or with ``--map-root-user`` where user namespaces are
    allowed) leaves the kernel only a loopback device that is down: no connection can leave it.
    Elsewhere the kernel runs without that, and only the offline environment applies.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    candidates = [(unshare, "--net")] if os.geteuid() == 0 else []
    candidates.append((unshare, "--map-root-user", "--net"))
    for prefix in candidates:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


class OfflineKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel with :func:`network_isolation`'s prefix.

    Used with the ``ipc`` transport (Unix sockets), which works across network namespaces.
    """

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*network_isolation(), *super().format_kernel_cmd(extra_arguments)]


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: the course's headless one, offline, with no credentials.

    Hugging Face and transformers are told they are offline, proxies point to a closed local port
    (so HTTP clients that honour them fail at once even without a network namespace), and every
    variable that looks like a credential (token, key, secret, password) is removed.
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
    return env


@dataclass
class KernelRun:
    """How a notebook's run went: the cells that ran, and where and why it stopped, if it did."""

    executed: set[int] = field(default_factory=set)
    stopped_at: int | None = None  # the cell that timed out or killed the kernel
    status: str = RAN  # RAN, TIMED_OUT or KERNEL_DIED
    reason: str = ""


def run_notebook(nb: NotebookNode, workdir: Path, timeout_s: float) -> KernelRun:
    """Execute ``nb`` in place in a fresh offline kernel in ``workdir``, within ``timeout_s``."""
    run = KernelRun()
    deadline = time.monotonic() + timeout_s
    config = Config({"KernelManager": {"transport": "ipc", "ip": str(workdir / ".ipc" / "k")}})
    (workdir / ".ipc").mkdir(exist_ok=True)
    client = NotebookClient(
        nb,
        config=config,
        kernel_name="python3",
        kernel_manager_class=OfflineKernelManager,
        allow_errors=True,
        startup_timeout=STARTUP_TIMEOUT_S,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        shutdown_kernel="immediate",
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    with client.setup_kernel(env=kernel_env()):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if time.monotonic() >= deadline:
                return _stop(run, index, TIMED_OUT, f"did not finish within {timeout_s:g} s")
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                return _stop(run, index, TIMED_OUT, f"did not finish within {timeout_s:g} s")
            except DeadKernelError:
                return _stop(run, index, KERNEL_DIED, "killed its kernel")
            run.executed.add(index)
    return run


def _stop(run: KernelRun, index: int, status: str, why: str) -> KernelRun:
    run.stopped_at, run.status, run.reason = index, status, f"{why} in cell {index}"
    return run
