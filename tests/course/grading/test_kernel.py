"""emgeo.course.grading.kernel: the kernel's environment is offline, has no credentials and keeps
its folders in the working copy; where a network namespace can be made, no connection leaves the
kernel; where a mount namespace can be made, the kernel sees no hidden folder, writes only in its
working copy, cannot take the walls down and leaves nothing running; the gradebook's note says
which."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from notebook_builders import tiny

from emgeo.course.grading import kernel, outcomes


def test_kernel_env_is_offline_and_has_no_credentials(tmp_path):
    env = kernel.kernel_env({"HF_TOKEN": "x", "NDIF_API_KEY": "y", "PATH": "/bin", "HOME": "/h"})
    assert "HF_TOKEN" not in env and "NDIF_API_KEY" not in env and env["PATH"] == "/bin"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:")
    walled = kernel.kernel_env({"PATH": "/bin", "HOME": "/h"}, workdir=tmp_path)
    assert walled["HOME"] == str(tmp_path) and walled["TMPDIR"] == str(tmp_path / ".tmp")
    assert (tmp_path / ".ipython").is_dir()


def test_the_note_says_when_a_run_was_not_isolated():
    assert kernel.Isolation(("unshare",), walled=True, offline=True).note == "isolated"
    net_only = kernel.Isolation(("unshare", "--net"), walled=False, offline=True).note
    assert net_only.startswith("not isolated") and "network off" in net_only
    assert "offline settings only" in kernel.Isolation((), walled=False, offline=False).note


def test_the_kernel_has_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "a secret the student must not see")
    if not kernel.isolation().offline:
        pytest.skip("no network namespace can be made here (unshare --net is not permitted)")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        nb = tiny(
            "import os, socket\n"
            "print(os.environ.get('HF_HUB_OFFLINE'), 'NDIF_API_KEY' in os.environ)\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        )
        run = kernel.run_notebook(nb, tmp_path, timeout_s=60.0)
    assert run.status == outcomes.RAN
    outputs = nb.cells[0].outputs
    assert outputs[0]["text"].strip() == "1 False"
    assert outputs[-1]["output_type"] == "error" and outputs[-1]["ename"] == "OSError"


def test_the_kernel_sees_only_its_working_copy(tmp_path):
    if not kernel.isolation().walled:
        pytest.skip("no mount namespace can be made here: runs are graded as not isolated")
    hidden, workdir = tmp_path / "submissions", tmp_path / "work"
    (hidden / "ann").mkdir(parents=True)
    (hidden / "ann" / "00.ipynb").write_text("ann's answers")
    workdir.mkdir()
    nb = tiny(
        f"import os; print(os.listdir({str(hidden)!r}))",
        f"open({str(hidden / 'ann' / '00.ipynb')!r}).read()",
        f"open({str(tmp_path / 'escape.txt')!r}, 'w')",
        "import tempfile; open('mine.txt', 'w').write('x'); print(tempfile.gettempdir())",
        f"import subprocess; subprocess.run(['umount', {str(hidden)!r}], check=True)",
        "subprocess.Popen(['sleep', '97.531'], start_new_session=True)",  # left running
    )
    run = kernel.run_notebook(nb, workdir, timeout_s=60.0, hidden=[hidden])
    assert run.status == outcomes.RAN
    listed, read, wrote, own, umount, _ = (c.outputs for c in nb.cells)
    assert listed[0]["text"].strip() == "[]"
    assert read[-1]["ename"] == "FileNotFoundError"
    assert wrote[-1]["ename"] == "OSError" and "Read-only" in wrote[-1]["evalue"]
    assert not (tmp_path / "escape.txt").exists() and (workdir / "mine.txt").read_text() == "x"
    assert own[0]["text"].strip() == str(workdir / ".tmp")
    assert umount[-1]["ename"] == "CalledProcessError"
    assert (hidden / "ann" / "00.ipynb").read_text() == "ann's answers"
    time.sleep(0.5)  # what the kernel left running ended with it
    lingering = [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"97.531" in _read(p)]
    assert lingering == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while the folder was read
        return b""
