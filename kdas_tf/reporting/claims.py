"""A paper's claim judged on repeated trainings: each side's mean with a 95% interval, Welch's t-test, a verdict.

A claim says that side `a` beats side `b` (higher accuracy). Each side is a list of one number per training
(seeds, searches); a side of one number is a fixed reference (the ensemble of one set of teachers), against
which the other side gets a one-sample t-test. The verdict is "holds" only when the test rejects equality at
`alpha` in the claim's direction, "reversed" when it does so against it, and "not shown" otherwise: a
difference inside the trainings' spread is reported with its interval, never as a win.
"""

import numpy as np
from scipy import stats

ALPHA = 0.05


def interval(values, confidence=0.95):
    """(mean, low, high): Student's t interval of the mean of `values`; one value: (it, it, it)."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)


def compare(a, b):
    """(t, two-sided p) of mean(a) > mean(b): Welch's test, or a one-sample test against a side of one value.

    Two sides of one value each, or sides without spread, have no test: (nan, nan).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) > 1 and len(b) > 1:
        result = stats.ttest_ind(a, b, equal_var=False)
        return float(result.statistic), float(result.pvalue)
    if len(a) > 1:
        result = stats.ttest_1samp(a, b[0])
        return float(result.statistic), float(result.pvalue)
    if len(b) > 1:
        result = stats.ttest_1samp(b, a[0])  # b below a's value is a above b
        return -float(result.statistic), float(result.pvalue)
    return float("nan"), float("nan")


def difference_interval(a, b, confidence=0.95):
    """(low, high): the interval of mean(a) - mean(b), Welch's (Welch-Satterthwaite degrees of freedom), or the
    one-sample interval when a side is one value; a difference this study could not tell from zero lies in it.
    Two sides of one value each: (difference, difference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    difference = float(a.mean() - b.mean())
    va = a.var(ddof=1) / len(a) if len(a) > 1 else 0.0
    vb = b.var(ddof=1) / len(b) if len(b) > 1 else 0.0
    if va + vb == 0:
        return difference, difference
    parts = [(v, len(x) - 1) for v, x in ((va, a), (vb, b)) if len(x) > 1]
    df = (va + vb) ** 2 / sum(v ** 2 / dof for v, dof in parts)
    half = stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(va + vb)
    return float(difference - half), float(difference + half)


def verdict(t, p, alpha=ALPHA):
    """'holds' (p < alpha, a above b), 'reversed' (p < alpha, a below b) or 'not shown'."""
    if not np.isfinite(p) or p >= alpha:
        return "not shown"
    return "holds" if t > 0 else "reversed"


def judge(claim, a, b):
    """One row of a claims table: {claim, a: (mean, low, high, n), b: ..., difference, its interval, t, p,
    verdict}."""
    t, p = compare(a, b)

    def side(values):
        mean, low, high = interval(values)
        return {"mean": mean, "interval": [low, high], "n": len(values)}

    return {
        "claim": claim,
        "a": side(a),
        "b": side(b),
        "difference": float(np.mean(a) - np.mean(b)),
        "difference_interval": list(difference_interval(a, b)),
        "t": t, "p": p, "verdict": verdict(t, p),
    }


def spearman(x, y):
    """Spearman's rank correlation of two equal-length lists, and its p-value."""
    result = stats.spearmanr(x, y)
    return float(result[0]), float(result[1])
