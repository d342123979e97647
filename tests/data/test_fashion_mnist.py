"""Fashion-MNIST from the official IDX files (what Debian's dataset-fashion-mnist installs), written small here."""

import gzip
import struct

import numpy as np
import pytest

from kdas_tf import data
from kdas_tf.data import sources
from kdas_tf.errors import UserError


def write_idx(path, array):
    """The IDX format written independently of the reader: magic 0x0000 0x08 ndim, big-endian dims, bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    """Official file names, 60 training and 20 test images of 28x28 with labels 0..9."""
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (60, 28, 28)), np.arange(60) % 10),
              "test": (rng.integers(0, 256, (20, 28, 28)), (np.arange(20) * 3) % 10)}
    for split, (images, labels) in arrays.items():
        image_name, label_name = sources.FASHION_MNIST_FILES[split]
        write_idx(str(tmp_path / image_name), images.astype(np.uint8))
        write_idx(str(tmp_path / label_name), labels.astype(np.uint8))
    return tmp_path, arrays


def load(directory, **kwargs):
    # data_dir: an empty TFDS directory, so the IDX files are what is read
    return data.load("fashion_mnist", data_dir=str(directory / "tfds"), manual_dir=str(directory), **kwargs)


def test_the_idx_files_are_read_exactly(idx_dir):
    directory, arrays = idx_dir
    dataset = load(directory, val_fraction=0.1)
    train_images, train_labels = arrays["train"]
    test = dataset.splits["test"]
    np.testing.assert_array_equal(test.images[..., 0], arrays["test"][0])
    np.testing.assert_array_equal(test.labels, arrays["test"][1])
    for split in ("train", "val"):
        chosen = dataset.splits[split]
        np.testing.assert_array_equal(chosen.images[..., 0], train_images[chosen.source_index])
        np.testing.assert_array_equal(chosen.labels, train_labels[chosen.source_index])
    assert dataset.info.image_shape == data.IMAGE_SHAPES["fashion_mnist"] == (28, 28, 1)
    assert (dataset.info.num_train, dataset.info.num_val, dataset.info.num_test) == (54, 6, 20)
    assert dataset.augmentation.pad == 3 and dataset.augmentation.flip  # 28/8 pixels, like CIFAR's 4 of 32


def test_a_training_subset_is_fixed_by_the_split_seed_and_leaves_validation_whole(idx_dir):
    directory, _ = idx_dir
    whole = load(directory)
    subset = load(directory, train_examples=20)
    again = load(directory, train_examples=20)
    assert subset.info.num_train == 20 and subset.info.num_val == whole.info.num_val
    np.testing.assert_array_equal(subset.splits["train"].source_index, again.splits["train"].source_index)
    assert set(subset.splits["train"].source_index) <= set(whole.splits["train"].source_index)
    other = load(directory, train_examples=20, split_seed=1)
    assert not np.array_equal(other.splits["train"].source_index, subset.splits["train"].source_index)
    with pytest.raises(UserError, match="--train_examples=55: fashion_mnist has 54 training images"):
        load(directory, train_examples=55)


def test_missing_files_name_the_package_and_the_flag(tmp_path):
    with pytest.raises(data.DataNotFoundError) as error:
        load(tmp_path)
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message and "--manual_dir" in message
    assert "train-images-idx3-ubyte.gz" in message


def test_a_truncated_or_foreign_file_is_named(idx_dir):
    directory, _ = idx_dir
    path = directory / sources.FASHION_MNIST_FILES["test"][0]
    content = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(content[:-100])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz holds .* truncated or corrupt"):
        load(directory)
    with gzip.open(path, "wb") as f:
        f.write(b"PK\x03\x04" + content[4:])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz is not an IDX file"):
        load(directory)
