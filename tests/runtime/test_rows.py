"""runtime/rows.py: final rows combined over seeds, the rule that picks the served row and seed; and the table
cells they make (reporting/results.py)."""

import numpy as np
import pytest

from kdas_tf import config
from kdas_tf.reporting import results
from kdas_tf.runtime.rows import (combine_seeds, final_name, final_rows, row_and_seed, row_kind_and_loss, served_row,
                                   served_seed, serving_decision, train_name)


def seed(val, test, top5=1.0):
    return {"architecture": "resnet8", "loss": "od", "epochs": 2, "parameters": 77754,
            "val": {"top1": val, "top5": top5, "loss": 1.0 - val}, "test": {"top1": test, "top5": top5, "loss": 0.5}}


def test_seeds_combine_into_their_mean_and_population_std():
    seeds = [seed(0.90, 0.80), seed(0.94, 0.86), seed(0.92, 0.83)]
    row = combine_seeds(seeds)
    assert row["val"]["top1"] == pytest.approx(np.mean([0.90, 0.94, 0.92]), abs=1e-12)
    assert row["test"]["top1_std"] == pytest.approx(np.sqrt(np.mean((np.array([0.80, 0.86, 0.83]) - 0.83) ** 2)))
    assert row["val"]["loss"] == pytest.approx(np.mean([0.10, 0.06, 0.08]))
    assert row["seeds"] == seeds and row["architecture"] == "resnet8"
    assert results.accuracy(row, "test") == "83.00 ± 2.45"
    single = combine_seeds([seed(0.9, 0.8)])
    assert results.accuracy(single, "test") == pytest.approx(80.0) and single["test"]["top1_std"] == 0.0


def test_the_served_seed_is_the_best_by_validation_and_the_first_on_ties():
    assert served_seed([seed(0.90, 0.99), seed(0.95, 0.10), seed(0.95, 0.50)]) == 1
    assert served_seed([seed(0.9, 0.1)]) == 0


def test_the_served_rule_ignores_students_and_test_accuracy():
    rows = {"student_od": {"val": {"top1": 1.0}, "test": {"top1": 1.0}, "parameters": 10},
            "kdas_ce": {"val": {"top1": 0.7}, "test": {"top1": 0.9}, "parameters": 20},
            "kdas_kd": {"val": {"top1": 0.8}, "test": {"top1": 0.6}, "parameters": 20}}
    assert served_row(rows) == "kdas_kd"
    assert serving_decision(rows)["decided_by"] == "validation top-1"
    assert served_row({"student_ce": rows["student_od"]}) is None


def test_a_tie_in_validation_goes_to_fewer_parameters_then_to_od_kd_ce():
    tied = {"kdas_ce": {"val": {"top1": 1.0}, "parameters": 20}, "kdas_kd": {"val": {"top1": 1.0}, "parameters": 20},
            "kdas_od": {"val": {"top1": 1.0}, "parameters": 20}}
    for order in (["kdas_ce", "kdas_kd", "kdas_od"], ["kdas_od", "kdas_ce", "kdas_kd"]):  # dict order never decides
        assert served_row({name: tied[name] for name in order}) == "kdas_od"
    decision = serving_decision(tied)
    assert decision["tied_on_validation"] == ["kdas_ce", "kdas_kd", "kdas_od"]
    assert decision["decided_by"] == "loss order od > kd > ce"
    assert served_row({"kdas_ce": tied["kdas_ce"], "kdas_kd": tied["kdas_kd"]}) == "kdas_kd"
    smaller = {**tied, "kdas_ce": {"val": {"top1": 1.0}, "parameters": 19}}
    assert served_row(smaller) == "kdas_ce" and serving_decision(smaller)["decided_by"] == "fewer parameters"


def test_rows_trained_on_validation_are_served_by_loss_order_and_their_first_seed():
    """--final_training=all: validation was trained on, so it measures fit and decides nothing."""
    def trained_on_validation(val):
        return {**seed(val, 0.5), "trained_on_validation": True}

    rows = {"kdas_kd": combine_seeds([trained_on_validation(1.0), trained_on_validation(1.0)]),
            "kdas_od": combine_seeds([trained_on_validation(0.2), trained_on_validation(0.9)]),
            "kdas_ce": combine_seeds([trained_on_validation(0.99)])}
    assert served_row(rows) == "kdas_od"
    assert served_seed(rows["kdas_od"]["seeds"]) == 0
    decision = serving_decision(rows)
    assert decision["decided_by"] == "loss order od > kd > ce" and "--final_training=all" in decision["rule"]
    holdout = {name: combine_seeds([seed(s["val"]["top1"], 0.5) for s in row["seeds"]]) for name, row in rows.items()}
    assert served_row(holdout) == "kdas_kd" and not holdout["kdas_kd"]["trained_on_validation"]


def test_every_planned_row_name_parses_back_to_its_kind_and_loss_and_its_seeds_folders_back_to_it():
    search = config.SearchConfig(backbone="resnet8", student_loss=("ce", "od"), final_loss=("kd",))
    plan = final_rows(search, "resnet8:conv3x3/skip/skip", ["resnet14", "wrn16_2"])
    assert [(row, arch, loss) for row, arch, loss in plan] == [
        ("student_ce", "resnet8", "ce"), ("student_od", "resnet8", "od"),
        ("kdas_kd", "resnet8:conv3x3/skip/skip", "kd"),
        ("manmade_resnet14_kd", "resnet14", "kd"), ("manmade_wrn16_2_kd", "wrn16_2", "kd")]
    assert [row_kind_and_loss(row) for row, _, _ in plan] == [
        ("student", "ce"), ("student", "od"), ("kdas", "kd"), ("manmade", "kd"), ("manmade", "kd")]
    for row, _, _ in plan:
        for seed_index in (0, 1, 12):
            assert row_and_seed(final_name(row, seed_index)) == (row, seed_index)
    assert final_name("kdas_od", 0) == "kdas_od" and final_name("kdas_od", 2) == "kdas_od_seed2"


def test_a_train_jobs_folder_is_its_architecture_made_path_safe_and_its_loss():
    # A two-round architecture: '/' between stages and ':' after the backbone cannot stay in one folder name.
    name = train_name("resnet8:sep3x3+conv5x5,maxpool3x3+sep3x3/skip+skip,skip+skip/conv3x3+skip", "od")
    assert name == "resnet8-sep3x3+conv5x5,maxpool3x3+sep3x3_skip+skip,skip+skip_conv3x3+skip_od"
    assert train_name("resnet14", "ce") == "resnet14_ce"  # a plain network: its name and the loss
