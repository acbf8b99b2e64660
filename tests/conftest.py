"""Test set-up shared by every test: the environment notebooks run in, an isolated cache, and
global state (torch threads, random generators, plot style) restored after each test.

Tests mirror the package: tests/test_<module>.py tests emgeo/<module>.py, tests/models/ and
tests/course/ test emgeo/models/ and emgeo/course/. Shared builders live in tests/helpers.py.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

# Tests never write to the user's ~/.cache/emgeo: they get a cache inside the clone (the portable
# run, `make test-portable`, gets its own, empty one). Set before anything imports emgeo.config.
REPO = Path(__file__).resolve().parents[1]
os.environ["EMGEO_CACHE_DIR"] = str(REPO / ".cache" / os.environ.get("EMGEO_TEST_CACHE", "test"))

# nnsight (0.8.1) writes a `save` method into `object`'s type dict when imported, after which
# beartype, which jaxtyping's runtime shape checks use, fails to import ("unhashable type:
# 'instancemethod'"). Importing beartype first, before any test module imports nnsight, avoids it.
import beartype  # noqa: E402, F401
import matplotlib as mpl  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from emgeo.course.notebooks import notebook_env  # noqa: E402

# nbval's kernels (--nbval-current-env) inherit this process's environment: the same one
# `emgeo execute` stored the outputs under, except a thread count the portable run sets itself.
os.environ.update(notebook_env(n_threads=int(os.environ.get("EMGEO_THREADS", "2"))))


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Each test starts from seed 0 and leaves threads, generators and plot style as found."""
    threads = torch.get_num_threads()
    torch_rng, py_rng, np_rng = torch.get_rng_state(), random.getstate(), np.random.get_state()
    style = mpl.rcParams.copy()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(torch_rng)
    random.setstate(py_rng)
    np.random.set_state(np_rng)
    mpl.rcParams.update(style)
