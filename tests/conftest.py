"""Shared test helpers. Tests mirror the package: tests/test_<module>.py tests emgeo/<module>.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
