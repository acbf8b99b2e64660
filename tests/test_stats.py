import math

import pytest
import scipy.stats

from emgeo import stats


def test_mean_ci_matches_the_t_interval():
    ci = stats.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * sd / sqrt(n)
    assert ci["mean"] == 3.0 and ci["n"] == 5
    assert ci["ci_low"] == pytest.approx(3 - half) and ci["ci_high"] == pytest.approx(3 + half)


def test_mean_ci_of_one_value_has_no_interval():
    ci = stats.mean_ci([0.5])
    assert ci["mean"] == 0.5 and math.isnan(ci["ci_low"])


def test_auroc_perfect_chance_and_ties():
    from emgeo.stats import auroc

    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [True, True])


def test_rounded_all_rounds_every_number_and_keeps_counts():
    out = stats.rounded_all({"mean": 0.123456, "ci_low": -0.00001, "n": 3}, 3)
    assert out == {"mean": 0.123, "ci_low": 0.0, "n": 3} and isinstance(out["n"], int)
    assert f"{out['ci_low']:+.3f}" == "+0.000"


def test_rounded_drops_the_sign_of_zero_and_keeps_the_digits():
    assert f"{stats.rounded(-0.00004, 3):+.3f}" == "+0.000"
    assert stats.rounded(0.02596, 3) == 0.026 and stats.rounded(-0.0626, 2) == -0.06


def test_t_interval_is_the_interval_of_mean_ci_and_collapses_for_one_value():
    values = [0.2, 0.25, 0.31, 0.18]
    ci = stats.mean_ci(values)
    assert stats.t_interval(values) == (ci["ci_low"], ci["ci_high"])
    assert stats.t_interval([0.4]) == (0.4, 0.4)


def test_rank_correlation_finds_a_monotone_link_and_not_a_reversed_one():
    x = [0.1, 0.4, 0.2, 0.9, 0.5, 0.3, 0.7, 0.8]
    up = stats.rank_correlation(x, [v**3 for v in x])  # monotone: rho 1 whatever the shape
    assert up["rho"] == pytest.approx(1.0) and up["p_value"] < 0.001 and up["n"] == 8
    down = stats.rank_correlation(x, [-v for v in x])
    assert down["rho"] == pytest.approx(-1.0) and down["p_value"] > 0.99  # one-sided
    a, b = [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0]
    assert stats.rank_correlation(a, b)["rho"] == pytest.approx(scipy.stats.spearmanr(a, b)[0])


def test_rank_correlation_rejects_short_or_unequal_input():
    with pytest.raises(ValueError):
        stats.rank_correlation([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        stats.rank_correlation([1.0, 2.0, 3.0], [1.0, 2.0])


def test_sign_test_counts_positive_differences_and_drops_zeros():
    out = stats.sign_test([0.1, 0.2, -0.1, 0.0, 0.3])
    assert (out["n_positive"], out["n"]) == (3, 4)
    assert out["p_value"] == pytest.approx(0.625)  # P(k >= 3 or k <= 1 | n = 4) = 10/16
    assert stats.sign_test([1.0] * 10)["p_value"] == pytest.approx(2 / 2**10)
    assert stats.sign_test([])["p_value"] == 1.0


def test_auroc_interval_is_hanley_mcneil_clipped_to_the_unit_interval():
    low, high = stats.auroc_interval(0.5, 100, 100)
    se = math.sqrt((0.25 + 99 * (0.5 / 1.5 - 0.25) + 99 * (0.5 / 1.5 - 0.25)) / 10_000)
    assert low == pytest.approx(0.5 - 1.959964 * se) and high == pytest.approx(0.5 + 1.959964 * se)
    assert stats.auroc_interval(0.99, 5, 5)[1] == 1.0  # clipped
    narrow, wide = stats.auroc_interval(0.7, 500, 500), stats.auroc_interval(0.7, 20, 20)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
