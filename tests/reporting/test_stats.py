"""A row's median, its order-statistic interval and the verdict against a target (kdas_tf.reporting.stats)."""

import math

import pytest

from kdas_tf.reporting import stats


def test_the_interval_is_the_min_max_up_to_8_turns_and_drops_extremes_beyond():
    assert stats.median_interval([3, 1, 2, 5, 4, 7, 6]) == (4.0, 1.0, 7.0, pytest.approx(1 - 2 / 2**7))
    # 12 turns: the 3rd smallest and 3rd largest, covering 1 - 2 * (1 + 12 + 66) / 4096 of the time
    median, low, high, covered = stats.median_interval([10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 100])
    assert (median, low, high) == (6.5, 3.0, 10.0)
    assert covered == pytest.approx(1 - 2 * 79 / 4096) and covered >= stats.CONFIDENCE
    assert stats.coverage(12, 4) < stats.CONFIDENCE  # the 4th would no longer cover 95%


def test_too_few_turns_give_the_min_max_with_the_coverage_it_has():
    assert stats.median_interval([2.0, 1.0, 3.0, 5.0, 4.0]) == (3.0, 1.0, 5.0, pytest.approx(0.9375))
    assert stats.median_interval([1.3]) == (1.3, 1.3, 1.3, 0.0)
    with pytest.raises(ValueError):
        stats.median_interval([])


@pytest.mark.parametrize("low, high, sense, target, expected", [
    (0.95, 1.2, ">=", 0.9, "met"), (0.9, 1.2, ">=", 0.9, "met"), (0.5, 0.89, ">=", 0.9, "missed"),
    (0.85, 1.2, ">=", 0.9, "undecided"),
    (1.0, 1.15, "<=", 1.15, "met"), (1.16, 1.3, "<=", 1.15, "missed"), (1.1, 1.2, "<=", 1.15, "undecided"),
    (0.1, 9.0, None, None, None),
])
def test_a_verdict_reads_the_whole_interval_against_the_target(low, high, sense, target, expected):
    assert stats.verdict(low, high, sense, target) == expected


def test_a_row_divides_each_turn_by_its_own_reference_and_takes_the_median_of_those_ratios():
    # Load doubles every other turn for both: the paired ratios are all 2, the ratio of medians would not be.
    values, references = [200, 100, 200, 100, 200, 100], [100, 50, 100, 50, 100, 50]
    row = stats.summarise(values, references, ">=", 1.9)
    assert row["ratios"] == [2.0] * 6 and row["ratio"] == 2.0 and row["interval"] == [2.0, 2.0]
    assert (row["value"], row["reference_value"], row["turns"], row["verdict"]) == (150.0, 75.0, 6, "met")
    assert row["target"] == ">= 1.9" and math.isclose(row["coverage"], 1 - 2 / 64)
    with pytest.raises(ValueError, match="paired"):
        stats.summarise([1, 2], [1])
