"""A ratio's median over turns, the interval that holds the true median, and the verdict against a target.

Each turn of the bench gives one ratio (a measurement over its reference, timed back to back), so a row is a
small sample of ratios whose distribution is unknown and often skewed: a turn that another process disturbs
is an outlier on one side. The interval is the distribution-free confidence interval of the median from
order statistics (the sign test's): the k-th smallest and k-th largest ratios, with the largest k whose
coverage 1 - 2 * P(Binomial(n, 1/2) < k) is still at least 95%. For 6 to 8 turns it is the min-max; more
turns narrow it by dropping extremes; 5 turns give the min-max at 93.8%, fewer turns less (one reading, 0%),
and the coverage is reported with every interval. A bootstrap was not taken: with 5 to 20 turns it resamples
so few distinct values that its 95% interval of a median covers less than it says.

pyperf (PyPI) calibrates loops and summarises values (mean and std, median and MAD), but it runs each
benchmark alone, in worker processes of its own (20 by default), each of which would build and trace
its TensorFlow step again; and it has no notion of a measurement paired with its reference turn by turn,
which is what lets the bench's ratios hold under load. What the bench needs from it is the above, a few
lines of NumPy, so the bench does not depend on it.
"""

import math

import numpy as np

CONFIDENCE = 0.95
SENSES = (">=", "<=")


def coverage(n, k):
    """P(k-th smallest <= true median <= k-th largest) of n independent values: 1 - 2 P(Binomial(n, 1/2) < k)."""
    return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0**n


def median_interval(values, confidence=CONFIDENCE):
    """(median, low, high, coverage) of `values` (at least one): the order-statistic interval of the median."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    if n == 0:
        raise ValueError("no values to summarise")
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(n, k + 1) >= confidence:
        k += 1
    return float(np.median(ordered)), float(ordered[k - 1]), float(ordered[n - k]), coverage(n, k)


def verdict(low, high, sense, target):
    """'met' when the whole interval lies on the target's side, 'missed' when it lies wholly on the other side,
    'undecided' when it straddles the target; None for a row without a target."""
    if target is None:
        return None
    if sense not in SENSES:
        raise ValueError(f"sense must be one of {SENSES}, got {sense!r}")
    good, bad = (low >= target, high < target) if sense == ">=" else (high <= target, low > target)
    return "met" if good else ("missed" if bad else "undecided")


def summarise(values, references, sense=None, target=None):
    """A row from its turns: the measurement's and the reference's value in each turn (paired by position).

    The ratio is the median of the per-turn ratios, not the ratio of the medians: a turn's measurement is
    only ever divided by the reference timed beside it.
    """
    if len(values) != len(references):
        raise ValueError(f"{len(values)} measurements but {len(references)} references: turns are paired")
    ratios = [value / reference for value, reference in zip(values, references)]
    ratio, low, high, covered = median_interval(ratios)
    return {
        "value": float(np.median(values)), "reference_value": float(np.median(references)),
        "ratio": ratio, "interval": [low, high], "coverage": covered, "turns": len(ratios),
        "ratios": [float(r) for r in ratios],
        "target": None if target is None else f"{sense} {target}", "verdict": verdict(low, high, sense, target),
    }
