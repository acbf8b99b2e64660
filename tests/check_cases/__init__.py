"""Meta-test cases of the exercise checks, one module per notebook (``nb00`` ... ``nb08``).

Each module's ``CASES`` maps a check's name to its :class:`Case`: the reference; correct
alternatives written differently (in place on the inputs where the signature allows, einsum for
matmul, loops, other reductions), which must pass; and planted bugs, each with the words of the
check's message it must produce. tests/course/test_checks_meta.py runs them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

UNDIAGNOSED = "largest error"  # a wrong answer that matches no named mistake
NOTEBOOKS = ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09")


@dataclass(frozen=True)
class Case:
    reference: Callable
    alternatives: tuple[Callable, ...]  # correct, written differently: must pass
    bugs: tuple[tuple[Callable, str], ...]  # (planted bug, words the check's message must contain)


def all_cases() -> dict[str, Case]:
    """Every notebook's cases, by check name."""
    cases: dict[str, Case] = {}
    for nb in NOTEBOOKS:
        module = importlib.import_module(f"check_cases.nb{nb}")
        overlap = set(cases) & set(module.CASES)
        assert not overlap, f"cases defined twice: {overlap}"
        cases.update(module.CASES)
    return cases
