"""results.py: final rows combined over seeds, and the table cells they make."""

import numpy as np
import pytest

from kdas_tf.reporting import results
from kdas_tf.runtime.workdir import served_seed


def seed(val, test, top5=1.0):
    return {"architecture": "resnet8", "loss": "od", "epochs": 2, "parameters": 77754,
            "val": {"top1": val, "top5": top5, "loss": 1.0 - val}, "test": {"top1": test, "top5": top5, "loss": 0.5}}


def test_seeds_combine_into_their_mean_and_population_std():
    seeds = [seed(0.90, 0.80), seed(0.94, 0.86), seed(0.92, 0.83)]
    row = results.combine_seeds(seeds)
    assert row["val"]["top1"] == pytest.approx(np.mean([0.90, 0.94, 0.92]), abs=1e-12)
    assert row["test"]["top1_std"] == pytest.approx(np.sqrt(np.mean((np.array([0.80, 0.86, 0.83]) - 0.83) ** 2)))
    assert row["val"]["loss"] == pytest.approx(np.mean([0.10, 0.06, 0.08]))
    assert row["seeds"] == seeds and row["architecture"] == "resnet8"
    assert results.accuracy(row, "test") == "83.00 ± 2.45"
    single = results.combine_seeds([seed(0.9, 0.8)])
    assert results.accuracy(single, "test") == pytest.approx(80.0) and single["test"]["top1_std"] == 0.0


def test_the_served_seed_is_the_best_by_validation_and_the_first_on_ties():
    assert served_seed([seed(0.90, 0.99), seed(0.95, 0.10), seed(0.95, 0.50)]) == 1
    assert served_seed([seed(0.9, 0.1)]) == 0
