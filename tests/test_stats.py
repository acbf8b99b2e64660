import math

import pytest

from emgeo import stats


def test_mean_ci_matches_the_t_interval():
    ci = stats.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * sd / sqrt(n)
    assert ci["mean"] == 3.0 and ci["n"] == 5
    assert ci["ci_low"] == pytest.approx(3 - half) and ci["ci_high"] == pytest.approx(3 + half)


def test_mean_ci_of_one_value_has_no_interval():
    ci = stats.mean_ci([0.5])
    assert ci["mean"] == 0.5 and math.isnan(ci["ci_low"])
