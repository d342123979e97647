"""Datasets by reference (npz:PATH, folder:PATH, tfds:NAME) and from NumPy arrays: read exactly, split and
augmented as the built-ins are, sized for the budget from metadata alone, and every bad input refused in one
line that names the file, before anything is written (exit code 2 from the command line)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kdas_tf import assembly, config, data
from kdas_tf.data import transforms
from kdas_tf.errors import UserError
from conftest import ROOT

CLASSES = ("cat", "ant", "bee")  # not sorted: labels are the sorted names' positions, as Keras numbers them


def write_npz(path, num_train=40, num_test=12, shape=(8, 8, 3), num_classes=3, **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (num_train, *shape), dtype=np.uint8),
              "y_train": np.arange(num_train) % num_classes,
              "x_test": rng.integers(0, 256, (num_test, *shape), dtype=np.uint8),
              "y_test": np.arange(num_test) % num_classes}
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


def write_png(path, colour, size=(8, 8), channels=3):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = tf.broadcast_to(tf.constant(colour[:channels], tf.uint8), [*size, channels])
    tf.io.write_file(path, tf.io.encode_png(image))


def write_folder(root, per_class=4, size=(8, 8), classes=CLASSES):
    """root/CLASS/i.png for each of `classes`, class k a flat colour (k * 80, 40, 200 - k * 60) by its position in
    sorted(CLASSES)."""
    for name in classes:
        label = sorted(CLASSES).index(name)
        for i in range(per_class):
            write_png(os.path.join(root, name, f"{i}.png"), (label * 80, 40 + i, 200 - label * 60), size)


def colour_labels(images):
    """The label each flat-colour image was written with (its red channel / 80)."""
    return np.round(images[:, 0, 0, 0] / 80).astype(int)


def make_config(workdir, *args):
    return config.from_args([f"--flagfile={ROOT}/flags/digits.cfg", f"--workdir={workdir}", *args])


def metadata_at_start(workdir, *args):
    """What a job reads first, before its work directory is claimed: the data's classes and image shape."""
    return assembly.data_metadata(make_config(workdir, *args))


def test_npz_is_read_exactly_and_split_like_the_built_ins(tmp_path):
    arrays = write_npz(tmp_path / "d.npz")
    run = make_config(tmp_path / "w", f"--dataset=npz:{tmp_path}/d.npz", "--val_fraction=0.25", "--split_seed=3")
    assert assembly.data_metadata(run) == (3, (8, 8, 3))  # from the headers and labels alone
    dataset = assembly.load_data(run)
    for split in ("train", "val"):
        chosen = dataset.splits[split]
        np.testing.assert_array_equal(chosen.images, arrays["x_train"][chosen.source_index])
        np.testing.assert_array_equal(chosen.labels, arrays["y_train"][chosen.source_index])
    np.testing.assert_array_equal(dataset.splits["test"].images, arrays["x_test"])
    _, expected_val = data.dataset.holdout(40, 0.25, 3)
    np.testing.assert_array_equal(dataset.splits["val"].source_index, expected_val)
    assert dataset.augmentation == transforms.Augmentation(pad=transforms.padding_for(8), flip=True)
    assert dataset.info.mean == pytest.approx(tuple(arrays["x_train"][dataset.splits["train"].source_index]
                                                    .reshape(-1, 3).mean(0)))
    assert not assembly.load_data(make_config(tmp_path / "w", f"--dataset=npz:{tmp_path}/d.npz", "--flip=false")) \
        .augmentation.flip
    assert run.settings()["dataset"] == f"npz:{tmp_path}/d.npz" and run.settings()["flip"] is None


def test_grey_npz_images_get_a_channel_and_a_subset_trains(tmp_path):
    write_npz(tmp_path / "g.npz", shape=(16, 16), num_classes=4, num_train=48)
    dataset = data.load(f"npz:{tmp_path}/g.npz", train_examples=10)
    assert dataset.info.image_shape == (16, 16, 1) and dataset.info.num_classes == 4
    assert dataset.info.num_train == 10 and dataset.augmentation.pad == 2


def test_arrays_from_python_are_checked_like_an_npz():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    labels = np.arange(30) % 5
    dataset = data.from_numpy((images[:24], labels[:24]), (images[24:], labels[24:]), name="mine", flip=False)
    assert (dataset.info.num_classes, dataset.info.image_shape, dataset.info.name) == (5, (8, 8, 1), "mine")
    with pytest.raises(UserError, match="arrays: y_train is float64"):
        data.from_numpy((images[:24], labels[:24] + 0.0), (images[24:], labels[24:]))


@pytest.mark.parametrize("layout", ["train_test", "one_folder"])
def test_folder_of_class_folders(tmp_path, layout):
    if layout == "train_test":
        write_folder(tmp_path / "train")
        write_folder(tmp_path / "test", per_class=2)
    else:
        write_folder(tmp_path, per_class=5)
    run = make_config(tmp_path / "w", f"--dataset=folder:{tmp_path}", "--test_fraction=0.2")
    assert assembly.data_metadata(run) == (3, (8, 8, 3))
    dataset = assembly.load_data(run)
    for split in ("train", "val", "test"):
        chosen = dataset.splits[split]
        np.testing.assert_array_equal(colour_labels(chosen.images), chosen.labels)
    sizes = (dataset.info.num_train + dataset.info.num_val, dataset.info.num_test)
    assert sizes == ((12, 6) if layout == "train_test" else (12, 3))
    if layout == "one_folder":  # the test split is seeded by --split_seed
        other = data.load(f"folder:{tmp_path}", split_seed=1)
        assert not np.array_equal(other.splits["test"].images, dataset.splits["test"].images)
        again = assembly.load_data(run)
        np.testing.assert_array_equal(again.splits["test"].images, dataset.splits["test"].images)


def test_a_test_folder_without_a_class_labels_its_images_by_the_training_folders_classes(tmp_path):
    """test/ lacks bee, the middle class: its cat images are class 2, as in train/, not 1 as test/ alone would say."""
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "test", per_class=2, classes=("cat", "ant"))
    label_of = {name: i for i, name in enumerate(sorted(os.listdir(tmp_path / "train")))}
    dataset = data.load(f"folder:{tmp_path}")
    test = dataset.splits["test"]
    written_in = [sorted(CLASSES)[code] for code in colour_labels(test.images)]  # the folder each image came from
    assert sorted(written_in) == ["ant", "ant", "cat", "cat"] and dataset.info.num_classes == 3
    np.testing.assert_array_equal(test.labels, [label_of[name] for name in written_in])


def test_folder_images_of_mixed_sizes_and_modes_are_resized_with_image_size(tmp_path):
    write_folder(tmp_path, per_class=3, size=(12, 10))
    write_png(str(tmp_path / "cat" / "big.png"), (0, 40, 200), size=(20, 20))
    write_png(str(tmp_path / "cat" / "grey.png"), (0, 0, 0), size=(9, 9), channels=1)
    with pytest.raises(UserError, match=r"big.png is 20x20, the first image 12x10: pass --image_size"):
        data.load(f"folder:{tmp_path}")
    run = make_config(tmp_path / "w", f"--dataset=folder:{tmp_path}", "--image_size=16")
    assert assembly.data_metadata(run)[1] == (16, 16, 3)
    dataset = assembly.load_data(run)
    assert dataset.info.image_shape == (16, 16, 3) and dataset.augmentation.pad == 2
    assert dataset.info.num_train + dataset.info.num_val + dataset.info.num_test == 11


@pytest.fixture
def mock_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=30):
        yield str(tmp_path / "tfds")


def test_tfds_by_name_with_its_splits_and_a_size(mock_tfds, tmp_path):
    run = make_config(tmp_path / "w", "--dataset=tfds:mnist", f"--data_dir={mock_tfds}")
    assert assembly.data_metadata(run) == (10, (28, 28, 1))  # the builder's info
    dataset = assembly.load_data(run)
    assert (dataset.info.num_train + dataset.info.num_val, dataset.info.num_test) == (30, 30)
    assert dataset.augmentation == transforms.Augmentation(pad=3, flip=True)
    resized = make_config(tmp_path / "w", "--dataset=tfds:mnist", f"--data_dir={mock_tfds}", "--image_size=16",
                          "--tfds_splits=test,train", "--flip=false")
    assert assembly.data_metadata(resized)[1] == (16, 16, 1)
    dataset = assembly.load_data(resized)
    assert dataset.info.image_shape == (16, 16, 1) and not dataset.augmentation.flip


def test_tfds_unknown_or_unprepared_names_what_to_do(tmp_path):
    with pytest.raises(UserError, match="tensorflow-datasets has no dataset 'no_such_set'"):
        metadata_at_start(tmp_path / "w", "--dataset=tfds:no_such_set")
    with pytest.raises(data.DataNotFoundError, match="mnist is not prepared in --data_dir=.* --data_dir=DIR"):
        data.load("tfds:mnist", data_dir=str(tmp_path / "empty"))


def corrupt(path):
    with open(path, "wb") as f:
        f.write(b"\x89PNG not really")


# (what to write, the reference, the message: it names the file)
BAD_NPZ = {
    "missing_file": ({}, "npz:{d}/none.npz", r"{d}/none.npz does not exist"),
    "float_labels": ({"y_train": np.linspace(0, 2, 40)}, "npz:{d}/d.npz", r"{d}/d.npz: y_train is float64"),
    "negative_label": ({"y_test": -np.ones(12, int)}, "npz:{d}/d.npz", r"{d}/d.npz: y_test has label -1"),
    "test_label_out_of_range": ({"y_test": np.full(12, 7)}, "npz:{d}/d.npz",
                                r"{d}/d.npz: y_test has label 7 but the training labels are 0..2"),
    "empty_class": ({"y_train": np.arange(40) % 2 * 2}, "npz:{d}/d.npz", r"{d}/d.npz: class 1 of 0..2 has no training"),
    "float_images": ({"x_test": np.zeros((12, 8, 8, 3), np.float32)}, "npz:{d}/d.npz",
                     r"{d}/d.npz: x_test is float32 .* must be uint8"),
    "lengths_differ": ({"y_train": np.arange(39) % 3}, "npz:{d}/d.npz",
                       r"{d}/d.npz: x_train holds 40 images but y_train 39 labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_refused_in_one_line_naming_the_file(tmp_path, case):
    override, reference, message = BAD_NPZ[case]
    write_npz(tmp_path / "d.npz", **override)
    with pytest.raises(UserError) as error:
        metadata_at_start(tmp_path / "w", f"--dataset={reference.format(d=tmp_path)}")
    assert error.match(message.format(d=tmp_path)) and "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "w")


def test_an_npz_without_its_arrays_or_not_a_zip(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(UserError, match=r"d.npz lacks x_train, y_train, x_test, y_test"):
        data.metadata(f"npz:{tmp_path}/d.npz")
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"e.npz is not a readable .npz file"):
        data.metadata(f"npz:{tmp_path}/e.npz")


def test_bad_folders_are_refused_naming_the_folder_or_file(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(UserError, match=r"none has no class folders"):
        data.metadata(f"folder:{tmp_path}/none")
    with pytest.raises(UserError, match=r"nowhere is not a directory"):
        data.metadata(f"folder:{tmp_path}/nowhere")
    write_folder(tmp_path / "f")
    (tmp_path / "f" / "empty").mkdir()
    with pytest.raises(UserError, match=r"f/empty holds no image"):
        metadata_at_start(tmp_path / "w", f"--dataset=folder:{tmp_path}/f")
    os.rmdir(tmp_path / "f" / "empty")
    corrupt(tmp_path / "f" / "bee" / "2.png")
    run = make_config(tmp_path / "w", f"--dataset=folder:{tmp_path}/f")  # the first image is fine: sized
    with pytest.raises(UserError, match=r"f/bee/2.png is not a readable image") as error:
        assembly.load_data(run)
    # TensorFlow's text cleaned by errors.one_line: the cause, without the function, device and op around it.
    assert "\n" not in str(error.value) and not re.search(r"\{\{|device:|\[Op:|name:", str(error.value)), error.value
    write_folder(tmp_path / "g" / "train")
    write_png(str(tmp_path / "g" / "test" / "dog" / "0.png"), (0, 0, 0))
    with pytest.raises(UserError, match=r"g/test/dog is a class that .*g/train lacks"):
        data.metadata(f"folder:{tmp_path}/g")


def test_unknown_forms_list_the_choices(tmp_path):
    with pytest.raises(UserError, match="--dataset=csv:x: value should be one of .* tfds:NAME, folder:PATH or npz:PATH"):
        make_config(tmp_path / "w", "--dataset=csv:x")
    with pytest.raises(UserError, match="--dataset=npz:: give the PATH"):
        make_config(tmp_path / "w", "--dataset=npz:")


@pytest.mark.slow  # three TensorFlow imports
def test_the_command_line_exits_2_naming_the_file_and_writes_nothing(tmp_path):
    write_npz(tmp_path / "d.npz", y_train=np.arange(40) % 2 * 2)
    write_folder(tmp_path / "f")
    corrupt(tmp_path / "f" / "ant" / "3.png")
    cases = {f"npz:{tmp_path}/d.npz": "d.npz: class 1 of 0..2 has no training example",
             f"folder:{tmp_path}/f": "f/ant/3.png is not a readable image",
             "tfds:mnist": "mnist is not prepared in --data_dir="}
    for index, (reference, message) in enumerate(cases.items()):
        workdir = tmp_path / f"w{index}"
        out = subprocess.run([sys.executable, "-m", "kdas_tf.search", "--flagfile=flags/digits.cfg",
                              f"--workdir={workdir}", f"--dataset={reference}", f"--data_dir={tmp_path}/tfds"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and lines[-1].startswith("error: ") and message in lines[-1], out.stderr
        assert not os.path.exists(workdir)
