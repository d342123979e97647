"""The paper's Figure 3 on digits: budgets sharing one ensemble, man-made networks beside them.

Two budgets keep CI's time; the README's three-budget command is the same code with one more search.
"""

import json
import os

import pytest
import tensorflow as tf
from conftest import tiny_config

from kdas_tf import budget_curve, models
from kdas_tf.runtime import storage
from kdas_tf.errors import UserError

pytestmark = pytest.mark.slow


def numbers(point):
    return point["test_top1"], point["val_top1"], point["parameters"]


def numbers_of(row):
    """A row of results.json (or one training's results.json) as a sweep point's test top-1, val top-1, size."""
    return row["test"]["top1"], row["val"]["top1"], row["parameters"]


def test_a_sweep_of_budgets_writes_the_figure_and_table(tmp_path):
    workdir = str(tmp_path / "sweep")
    config = tiny_config(workdir, "--final_loss=od", "--epochs=1")
    points = budget_curve.run(config, budget_curve.parse_budgets("1.3x,2x"))
    found = [p for p in points if p["kind"] == "KDAS"]
    assert [p["budget"] for p in found] == ["1.3x", "2x"]
    backbone = models.count_parameters("resnet8", 10, (8, 8, 1))
    for point, multiple in zip(found, (1.3, 2.0)):
        assert backbone <= point["parameters"] <= int(multiple * backbone)  # each search kept its budget
        summary = json.load(open(os.path.join(workdir, "budgets", f"M{point['budget']}", "results.json")))
        assert point["architecture"] == summary["found_architecture"]
        assert numbers(point) == numbers_of(summary["final"][f"kdas_{point['loss']}"])  # test is test, val is val
    man_made = [p["architecture"] for p in points if p["kind"] == "man-made"]
    assert man_made[0] == "resnet8" and len(man_made) >= 2 and all(a.startswith("resnet") for a in man_made)
    for point in (p for p in points if p["kind"] == "man-made"):  # one seed: its training's own numbers
        trained = json.load(open(os.path.join(workdir, "final", f"{point['architecture']}_od", "results.json")))
        assert numbers(point) == numbers_of(trained)
    # one ensemble for everything: the searches read it, none trained its own
    assert len(os.listdir(os.path.join(workdir, "teachers"))) == 2 + 2  # members, results.json, settings.json
    assert not os.path.exists(os.path.join(workdir, "budgets", "M2x", "teachers"))
    table = open(os.path.join(workdir, "sweep.md")).read()
    assert table.count("| KDAS ") == 2 and table.count("| man-made ") == len(man_made)
    image = tf.io.decode_png(open(os.path.join(workdir, "sweep.png"), "rb").read())
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert storage.read_json(os.path.join(workdir, "sweep.json"))["points"] == points


def test_budgets_are_judged_before_anything_is_trained(tmp_path):
    with pytest.raises(UserError, match="at least two budgets"):
        budget_curve.parse_budgets("0.9")
    with pytest.raises(UserError, match="raise --budget"):
        budget_curve.run(tiny_config(str(tmp_path)), ["2x", "0.01"])
    assert not os.listdir(tmp_path)


def test_similar_networks_are_the_nearest_of_the_family():
    sizes = [models.count_parameters(n, 100) for n in ("resnet44", "resnet110")]
    assert budget_curve.similar_networks("resnet32", [s + 10 for s in sizes], 100, (32, 32, 3)) == [
        "resnet32", "resnet44", "resnet110"]
    assert budget_curve.similar_networks("wrn16_2", [models.count_parameters("wrn28_2", 100)], 100,
                                         (32, 32, 3)) == ["wrn16_2", "wrn28_2"]


def test_nearest_network_is_the_family_member_of_nearest_size_and_deeper_when_asked():
    resnet20 = models.count_parameters("resnet20", 10, (28, 28, 1))
    assert models.nearest_network("resnet8", resnet20 + 10, 10, (28, 28, 1)) == "resnet20"
    assert models.nearest_network("resnet8", 1, 10, (28, 28, 1)) == "resnet8"
    assert models.nearest_network("resnet8", 1, 10, (28, 28, 1), deeper=True) == "resnet14"
    assert models.nearest_network("wrn16_2", models.count_parameters("wrn28_2", 100) - 10, 100) == "wrn28_2"
    with pytest.raises(ValueError, match="ResNets and WideResNets"):
        models.nearest_network("densenet40_12", 10**6, 100)
