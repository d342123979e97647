"""reporting/claims.py: intervals, Welch's test and verdicts against formulas written here in float64 (and
tables of Student's t), on made-up accuracies whose answers are known."""

import math

import numpy as np
import pytest
from scipy import stats

from kdas_tf.reporting import claims

# Student's t quantiles t_{0.975, df} from a printed table (Abramowitz & Stegun 26.10), 3 decimals.
T975 = {2: 4.303, 4: 2.776, 8: 2.306}


def test_the_interval_is_students_t_interval_of_the_mean():
    values = [0.851, 0.857, 0.849, 0.860, 0.853]
    mean, low, high = claims.interval(values)
    half = T975[4] * np.std(values, ddof=1) / math.sqrt(5)
    assert mean == pytest.approx(np.mean(values), abs=1e-12)
    assert (low, high) == pytest.approx((mean - half, mean + half), abs=5e-6)  # the table's 3 decimals
    assert claims.interval([0.9]) == (0.9, 0.9, 0.9)


def welch_by_hand(a, b):
    """Welch's t and its Welch-Satterthwaite degrees of freedom, written from the formulas."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t, df


def test_welchs_t_matches_the_formula_and_its_p_value_brackets_the_tables():
    a = [0.862, 0.858, 0.866, 0.861, 0.864]
    b = [0.851, 0.855, 0.849, 0.853, 0.850, 0.852, 0.856, 0.848, 0.854]
    t, p = claims.compare(a, b)
    t_hand, df = welch_by_hand(a, b)
    assert t == pytest.approx(t_hand, rel=1e-12)
    assert 4 < df < 8 and t > T975[4]  # beyond the 2.5% quantile at fewer degrees of freedom: p < 0.05
    assert p < 0.05 and claims.verdict(t, p) == "holds"
    assert claims.compare(b, a) == pytest.approx((-t, p))
    assert claims.verdict(*claims.compare(b, a)) == "reversed"


def test_a_difference_inside_the_spread_is_not_shown():
    a, b = [0.86, 0.85, 0.87], [0.855, 0.865, 0.850]
    t, p = claims.compare(a, b)
    assert abs(t) < T975[2] and p > 0.05 and claims.verdict(t, p) == "not shown"


def test_a_side_of_one_value_gets_a_one_sample_test_in_the_claims_direction():
    members = [0.860, 0.862, 0.858, 0.861, 0.859]
    ensemble = [0.8706]
    t, p = claims.compare(ensemble, members)  # the ensemble beats its members
    t_hand = (0.8706 - np.mean(members)) / (np.std(members, ddof=1) / math.sqrt(5))
    assert t == pytest.approx(t_hand, rel=1e-12) and claims.verdict(t, p) == "holds"
    assert all(math.isnan(value) for value in claims.compare([0.9], [0.8]))  # no spread, no test
    assert claims.verdict(*claims.compare([0.9], [0.8])) == "not shown"


def test_judge_reports_both_sides_the_difference_and_the_verdict():
    row = claims.judge("OD beats KD", [0.86, 0.87, 0.865], [0.80, 0.81, 0.805])
    assert row["verdict"] == "holds" and row["a"]["n"] == 3 and row["difference"] == pytest.approx(0.06)
    assert row["a"]["interval"][0] < row["a"]["mean"] < row["a"]["interval"][1]


def test_the_differences_interval_is_welchs_and_says_what_could_not_be_seen():
    a = [0.862, 0.858, 0.866, 0.861, 0.864]
    b = [0.851, 0.855, 0.849, 0.853, 0.850, 0.852, 0.856, 0.848, 0.854]
    low, high = claims.difference_interval(a, b)
    _, df = welch_by_hand(a, b)
    scipy_welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)  # scipy's own Welch path
    assert (low, high) == pytest.approx((scipy_welch.low, scipy_welch.high), abs=1e-12)
    standard_error = math.sqrt(np.var(a, ddof=1) / 5 + np.var(b, ddof=1) / 9)
    assert 4 < df < 8 and T975[8] * standard_error < (high - low) / 2 < T975[4] * standard_error  # the tables
    assert low > 0  # p < 0.05 in a's favour (the test above): the interval excludes 0
    members = [0.860, 0.862, 0.858, 0.861, 0.859]
    mean_interval = stats.ttest_1samp(members, 0.8706).confidence_interval(0.95)  # of the members' mean
    assert claims.difference_interval([0.8706], members) == pytest.approx(
        (0.8706 - mean_interval.high, 0.8706 - mean_interval.low), abs=1e-12)
    assert claims.difference_interval([0.9], [0.8]) == pytest.approx((0.1, 0.1))
    row = claims.judge("x", [0.86, 0.85, 0.87], [0.855, 0.865, 0.850])  # not shown: the interval holds 0
    assert row["difference_interval"][0] < 0 < row["difference_interval"][1]


def test_spearman_is_the_rank_correlation():
    rho, _ = claims.spearman([0.1, 0.4, 0.2, 0.9], [10, 30, 20, 5])
    ranks_x, ranks_y = np.array([1, 3, 2, 4]), np.array([2, 4, 3, 1])
    d2 = ((ranks_x - ranks_y) ** 2).sum()
    assert rho == pytest.approx(1 - 6 * d2 / (4 * (16 - 1)))
