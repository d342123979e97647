"""The teacher ensemble on digits: it beats its members, it is reused, and distillation from it works."""

import dataclasses
import os

import keras
import numpy as np
import pytest

from kdas_tf import data, models
from kdas_tf.runtime import distribute, storage
from kdas_tf.distill import ensemble
from kdas_tf.errors import UserError
from kdas_tf.distill.finals import train_architecture
from kdas_tf.distill.teacher_outputs import OnlineTeacherOutputs
from kdas_tf.runtime.workdir import Workdir
from kdas_tf.distill.trainer import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def ensemble_run(digits, tmp_path_factory):
    workdir = Workdir(str(tmp_path_factory.mktemp("teachers")))
    config = TrainConfig(epochs=8, batch_size=64, learning_rate=0.05)
    strategy = distribute.make_strategy("default")
    teacher, report = ensemble.train_teachers(
        digits, network="resnet8", num_teachers=3, config=config, workdir=workdir, strategy=strategy
    )
    return workdir, config, teacher, report


def test_the_ensemble_beats_its_mean_member(ensemble_run):
    _, _, _, report = ensemble_run
    assert report["member_test_top1_mean"] > 0.85
    assert report["ensemble_test_top1"] > report["member_test_top1_mean"]
    assert report["oracle_test_top1"] >= report["ensemble_test_top1"]
    histogram = report["train_members_correct_histogram"]
    assert len(histogram) == 4 and sum(histogram) == pytest.approx(1.0)
    # Expected share of members right = mean member training accuracy.
    assert sum(k * h for k, h in enumerate(histogram)) / 3 == pytest.approx(report["member_train_top1_mean"])


@pytest.mark.parametrize("split", ["test", "val"])
def test_report_matches_an_independent_count(ensemble_run, digits, split):
    workdir, _, _, report = ensemble_run
    members = [storage.load_model(path) for path in workdir.member_models(3)]
    batches = list(getattr(digits, split)(256).as_numpy_iterator())
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    logits = np.stack([m.predict(images, verbose=0) for m in members]).astype(np.float64)
    member_right = logits.argmax(-1) == labels
    np.testing.assert_allclose(report[f"member_{split}_top1"], member_right.mean(1), atol=1e-9)
    assert report[f"ensemble_{split}_top1"] == pytest.approx((logits.mean(0).argmax(-1) == labels).mean())
    by_size = [(logits[:k].mean(0).argmax(-1) == labels).mean() for k in (1, 2, 3)]
    np.testing.assert_allclose(report[f"ensemble_{split}_top1_by_size"], by_size, atol=1e-9)
    assert report[f"oracle_{split}_top1"] == pytest.approx(member_right.any(0).mean())
    assert storage.read_json(workdir.teachers_results) == report


def test_finished_members_are_reused_not_retrained(ensemble_run, digits):
    workdir, config, _, report = ensemble_run
    paths = workdir.member_models(3)
    stamps = [os.stat(p).st_mtime_ns for p in paths]
    _, again = ensemble.train_teachers(
        digits, network="resnet8", num_teachers=3, config=config, workdir=workdir,
        strategy=distribute.make_strategy("default"),
    )
    assert [os.stat(p).st_mtime_ns for p in paths] == stamps
    assert again["ensemble_test_top1"] == report["ensemble_test_top1"]


def test_members_made_with_another_recipe_shortcut_or_split_are_refused_not_reused(ensemble_run, digits):
    workdir, config, _, _ = ensemble_run
    strategy = distribute.make_strategy("default")
    longer = dataclasses.replace(config, epochs=config.epochs + 1)
    with pytest.raises(ValueError, match="--teacher_epochs was 8, now 9"):
        ensemble.train_teachers(digits, network="resnet8", num_teachers=3, config=longer, workdir=workdir,
                                strategy=strategy)
    with pytest.raises(ValueError, match="--shortcut was 'zero_pad', now 'projection'"):
        ensemble.train_teachers(digits, network="resnet8", num_teachers=3, config=config, workdir=workdir,
                                strategy=strategy, shortcut="projection")
    resplit = data.load("digits", split_seed=1)  # other validation images: the members have seen some
    with pytest.raises(ValueError, match="--val_split was"):
        ensemble.train_teachers(resplit, network="resnet8", num_teachers=3, config=config, workdir=workdir,
                                strategy=strategy)


def test_a_student_distilled_with_oracle_kd_learns(ensemble_run, digits, tmp_path):
    _, config, teacher, _ = ensemble_run
    od = TrainConfig(epochs=8, batch_size=64, learning_rate=0.05, loss="od")
    keras.utils.set_random_seed(3)
    results = train_architecture(
        models.Architecture.parse("resnet8"), digits, od, strategy=distribute.make_strategy("default"),
        workdir=str(tmp_path), targets=OnlineTeacherOutputs(teacher, "od"), name="od student",
    )
    # Ten classes: chance is 10%; a learning student is far above it.
    assert results["test"]["top1"] > 0.85
    assert results["loss"] == "od" and os.path.exists(tmp_path / "model.keras")


def test_missing_members_name_the_command_to_run(tmp_path):
    with pytest.raises(UserError, match="python -m kdas_tf.teachers"):
        ensemble.load_ensemble(Workdir(str(tmp_path)).member_models(2))
