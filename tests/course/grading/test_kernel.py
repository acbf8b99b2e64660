"""emgeo.course.grading.kernel: the kernel's environment is offline and has no credentials, and
where a network namespace can be made, no connection leaves the kernel."""

from __future__ import annotations

import socket

import pytest
from notebook_builders import tiny

from emgeo.course.grading import kernel, outcomes


def test_kernel_env_is_offline_and_has_no_credentials():
    env = kernel.kernel_env({"HF_TOKEN": "x", "NDIF_API_KEY": "y", "PATH": "/bin", "HOME": "/h"})
    assert "HF_TOKEN" not in env and "NDIF_API_KEY" not in env and env["PATH"] == "/bin"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["HTTPS_PROXY"].startswith("http://127.0.0.1:")


def test_the_kernel_has_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "a secret the student must not see")
    if not kernel.network_isolation():
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
