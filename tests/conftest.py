"""Shared test helpers. Tests mirror the package: tests/test_<module>.py tests emgeo/<module>.py."""

from __future__ import annotations

# nnsight (0.8.1) writes a `save` method into `object`'s type dict when imported, after which
# beartype, which jaxtyping's runtime shape checks use, fails to import ("unhashable type:
# 'instancemethod'"). Importing beartype first, before any test module imports nnsight, avoids it.
import beartype  # noqa: F401
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
