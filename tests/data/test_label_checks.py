"""A dataset's labels judged before a run: one class refused wherever data enters (npz, folder, arrays), the
training images per class said by the dry run and the log with a warning for a class of a handful, and a
validation split under 10 images per class refused by the dry run and before a job claims its work directory."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from kdas_tf import assembly, config, data, dry_run, pipeline
from kdas_tf.data import label_checks
from kdas_tf.errors import UserError
from conftest import ROOT


def write_npz(path, train_labels, num_test=12):
    rng = np.random.default_rng(0)
    train_labels = np.asarray(train_labels)
    np.savez(path, x_train=rng.integers(0, 256, (len(train_labels), 8, 8), dtype=np.uint8), y_train=train_labels,
             x_test=rng.integers(0, 256, (num_test, 8, 8), dtype=np.uint8), y_test=train_labels[:num_test])
    return f"npz:{path}"


def make_config(workdir, *args):
    return config.from_args([f"--flagfile={ROOT}/flags/digits.cfg", f"--workdir={workdir}", *args])


def test_one_class_is_refused_in_one_line_wherever_the_data_enters(tmp_path):
    reference = write_npz(tmp_path / "one.npz", np.zeros(40, int))
    message = r"has 1 class \(every training label is 0\): a classifier needs at least two, labelled 0..K-1"
    with pytest.raises(UserError, match=f"one.npz {message}"):
        assembly.data_metadata(make_config(tmp_path / "w", f"--dataset={reference}"))  # the dry run, the budget
    with pytest.raises(UserError, match=f"one.npz {message}"):
        data.load(reference)
    images = np.zeros((40, 8, 8), np.uint8)
    with pytest.raises(UserError, match=f"mine {message}"):
        data.from_numpy((images, np.zeros(40, int)), (images[:4], np.zeros(4, int)), name="mine")
    os.makedirs(tmp_path / "folder" / "only")
    tf.io.write_file(str(tmp_path / "folder" / "only" / "a.png"), tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)))
    with pytest.raises(UserError, match=f"folder {message}"):
        data.metadata(f"folder:{tmp_path / 'folder'}")


def test_the_dry_run_and_the_log_say_the_classes_and_warn_of_a_class_of_a_handful(tmp_path, caplog):
    """Labels 0..10 meant as 0..9: the eleventh class of three stray labels is named, in the dry run and the log."""
    caplog.set_level(logging.INFO, logger="absl")  # a test before may have left absl at WARNING
    labels = np.arange(300) % 10
    labels[[5, 17, 29]] = 10
    reference = write_npz(tmp_path / "eleven.npz", labels)
    plan = dry_run.describe_plan(make_config(tmp_path / "w", f"--dataset={reference}", "--val_fraction=0.4"))
    counts = np.bincount(labels)
    listed = ", ".join(f"{label}: {count}" for label, count in enumerate(counts))
    assert f"  data: 11 classes; training images per class (before the validation holdout): {listed}\n" in plan
    warning = (f"{reference}: 1 of 11 classes have only a handful of training images: class 10 (3), where the median "
               "class has 30; are those labels meant (class ids 0..10)?")
    assert f"  warning: {warning}\n" in plan
    assert "  validation split 120 images (10.9 per class): the reward moves in steps of 0.833 points\n" in plan
    assert not os.path.exists(tmp_path / "w")
    dataset = data.load(reference, val_fraction=0.4)
    train_counts = np.bincount(dataset.splits["train"].labels, minlength=11)
    assert (f"{reference}: training images per class: "
            + ", ".join(f"{label}: {count}" for label, count in enumerate(train_counts))) in caplog.text
    assert "classes have only a handful of training images: class 10 (" in caplog.text
    caplog.clear()
    data.load(write_npz(tmp_path / "ten.npz", np.arange(300) % 10))
    assert "training images per class: 0: " in caplog.text and "handful" not in caplog.text


@pytest.mark.parametrize("num_examples,num_classes", [(1497, 10), (50000, 100), (360, 3), (137, 2)])
def test_the_validation_split_refused_below_10_images_per_class_and_the_share_suggested_suffices(
        num_examples, num_classes):
    needed = 10 * num_classes
    label_checks.check_validation_split(needed, num_classes, val_fraction=0.5, num_examples=num_examples)
    with pytest.raises(UserError, match=rf"holds out {needed - 1} validation images for {num_classes} classes: the "
                                        rf"search's reward \(validation top-1\) would move in steps of "
                                        rf"{100 / (needed - 1):.3g} points; hold out at least 10 per class "
                                        rf"\({needed} images: --val_fraction=(\S+) or more\)") as error:
        label_checks.check_validation_split(needed - 1, num_classes, val_fraction=0.01, num_examples=num_examples)
    share = float(error.value.args[0].rsplit("--val_fraction=", 1)[1].split()[0])
    assert data.split_sizes(num_examples, share)[1] >= needed  # the share it names is enough
    assert data.split_sizes(num_examples, share - 0.01)[1] < needed or share == 0.01  # and whole percents tight


def test_a_tiny_validation_split_is_refused_by_the_dry_run_and_before_the_work_directory_is_claimed(tmp_path):
    run = make_config(tmp_path / "w", "--val_fraction=0.001")
    message = (r"--val_fraction=0.001 holds out 1 validation image for 10 classes: the search's reward \(validation "
               r"top-1\) would move in steps of 100 points; hold out at least 10 per class \(100 images: "
               r"--val_fraction=0.07 or more\)")
    with pytest.raises(UserError, match=message):
        dry_run.describe_plan(run)
    with pytest.raises(UserError, match=message):
        pipeline.train_teachers(run)
    assert not os.path.exists(tmp_path / "w" / "settings.json") and not os.path.exists(tmp_path / "w" / "teachers")
    digits = data.load("digits")
    arrays = data.from_numpy((digits.splits["train"].images, digits.splits["train"].labels),
                             (digits.splits["test"].images, digits.splits["test"].labels), val_fraction=0.05)
    with pytest.raises(UserError, match=r"the validation split holds 67 images for 10 classes: .* hold "
                                        r"out at least 10 per class \(100 images: a larger val_fraction\)"):
        pipeline.run(make_config(tmp_path / "arrays"), dataset=arrays)
    assert not os.path.exists(tmp_path / "arrays" / "settings.json")
    assert dry_run.describe_plan(make_config(tmp_path / "w", "--val_fraction=0.07"))  # the share it names suffices
