"""The Fashion-MNIST study's decisions (tools/fashion_mnist_study.py): the pre-registered regime rule, applied
to made-up teacher reports, and the plan it prices."""

import importlib.util
import os

import pytest
from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("fashion_mnist_study", os.path.join(ROOT, "tools", "fashion_mnist_study.py"))
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)


def report(train, member_val, ensemble_val, member_test=0.5, ensemble_test=0.5):
    # The test numbers are there to show the rule never reads them.
    return {"member_train_top1_mean": train, "member_val_top1_mean": member_val, "ensemble_val_top1": ensemble_val,
            "member_test_top1_mean": member_test, "ensemble_test_top1": ensemble_test}


def test_the_largest_validation_gain_among_the_regimes_whose_members_fit():
    reports = {"50k": report(0.90, 0.88, 0.90),  # the largest gain, but its members do not fit
               "20k": report(0.96, 0.87, 0.885), "10k": report(0.97, 0.86, 0.88), "4k": report(0.99, 0.84, 0.85)}
    chosen, why = study.select_regime(reports)
    assert chosen == "10k"
    assert "20k, 10k, 4k" in why and "+2.00 points" in why


def test_no_regime_fits_then_all_compete_and_test_numbers_are_never_read():
    reports = {"50k": report(0.90, 0.88, 0.90, ensemble_test=0.2), "10k": report(0.88, 0.86, 0.87, ensemble_test=0.99)}
    chosen, why = study.select_regime(reports)
    assert chosen == "50k" and "all compared" in why


def test_a_tie_in_gain_goes_to_the_better_ensemble():
    reports = {"20k": report(0.96, 0.87, 0.8805), "10k": report(0.97, 0.875, 0.8850)}  # gains 1.05 and 1.00
    chosen, why = study.select_regime(reports)
    assert chosen == "10k" and "tied" in why


def test_every_regime_costs_the_same_and_the_plan_prices_it():
    assert {images * epochs for images, epochs in study.REGIMES.values()} == {study.IMAGE_EPOCHS}
    runs = study.regime_runs("/tmp/study_runs")
    assert [run.name for run in runs] == list(study.REGIMES)
    assert len({run.seconds for run in runs}) == 1 and runs[0].seconds == pytest.approx(5 * 207)
    assert all("--train_examples=" in " ".join(run.argv) for run in runs)
