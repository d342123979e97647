"""Where each dataset's official (train, test) arrays come from; never downloads.

Each reader returns uint8 images [N, H, W, C] and int labels [N] for the
official train and test splits, read into memory once. Missing data raises
DataNotFoundError at once, with one line that names the flag to set and how to
prepare the data on a connected machine.
"""

import gzip
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from kdas_tf.data import tiny_imagenet
from kdas_tf.errors import UserError, one_line

DEFAULT_DATA_DIR = "~/tensorflow_datasets"  # TFDS's own default when data_dir is None
DIGITS_TEST_SIZE = 300
DIGITS_SPLIT_SEED = 0  # fixed: the digits test split is part of the dataset, not of a run
# Where Debian's dataset-fashion-mnist puts the four official IDX files (offline, MIT licence).
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes


class DataNotFoundError(UserError):
    """The dataset is not prepared locally; the message says which flag to set and how to prepare it."""


def _flag(name, value, default=None):
    """How a flag stands, for error messages: '--name=value' or '--name (unset: default)'."""
    if value:
        return f"--{name}={value}"
    return f"--{name} (unset: {default})" if default else f"--{name} (unset)"


def _to_numpy(ds, batch_size=4096):
    """All (image, label) of a TFDS split, in stored order, as uint8 [N, H, W, C] and int32 [N]."""
    images, labels = [], []
    ds = ds.map(lambda ex: (ex["image"], ex["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    for image_batch, label_batch in tfds.as_numpy(ds.batch(batch_size).prefetch(2)):
        images.append(image_batch)
        labels.append(label_batch)
    return np.concatenate(images).astype(np.uint8, copy=False), np.concatenate(labels).astype(np.int32)


def digits():
    """scikit-learn's bundled 8x8 digits (values 0..16 -> 0..255), fixed stratified 1,497 / 300 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    train_x, test_x, train_y, test_y = train_test_split(
        images, bunch.target.astype(np.int32), test_size=DIGITS_TEST_SIZE,
        stratify=bunch.target, random_state=DIGITS_SPLIT_SEED,
    )
    return (train_x, train_y), (test_x, test_y)


def cifar100(data_dir=None):
    """CIFAR-100 through TFDS from data_dir, without download."""
    try:
        train, test = tfds.load(
            "cifar100", split=["train", "test"], data_dir=data_dir, download=False, try_gcs=False
        )
    except AssertionError as error:
        if "could not find data" not in str(error):
            raise
        raise DataNotFoundError(
            f"cifar100 is not prepared in {_flag('data_dir', data_dir, DEFAULT_DATA_DIR)}: "
            "on a connected machine run "
            "python -c \"import tensorflow_datasets as tfds; tfds.load('cifar100', data_dir='DIR')\" "
            "then copy DIR here and pass --data_dir=DIR"
        ) from None
    return _to_numpy(train), _to_numpy(test)


def tinyimagenet(data_dir=None, manual_dir=None):
    """Tiny ImageNet through our TFDS builder: prepared once from the zip in manual_dir into data_dir."""
    builder = tiny_imagenet.TinyImagenet(data_dir=data_dir)
    if not builder.is_prepared():
        zip_path = os.path.join(manual_dir or "", tiny_imagenet.ZIP_NAME)
        if not manual_dir or not tf.io.gfile.exists(zip_path):  # gfile: manual_dir may be gs://
            raise DataNotFoundError(
                f"tinyimagenet is not prepared in {_flag('data_dir', data_dir, DEFAULT_DATA_DIR)} "
                f"and {_flag('manual_dir', manual_dir)} holds no {tiny_imagenet.ZIP_NAME}: download "
                f"http://cs231n.stanford.edu/{tiny_imagenet.ZIP_NAME} on a connected machine, "
                "copy the zip (not extracted) into a directory and pass it as --manual_dir"
            )
        logging.info("Preparing tinyimagenet from %s into %s", zip_path, builder.data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        )
    # The official val split is our test split: the official test split has no labels.
    return _to_numpy(builder.as_dataset(split="train")), _to_numpy(builder.as_dataset(split="validation"))


def fashion_mnist(data_dir=None, manual_dir=None):
    """Fashion-MNIST: TFDS's fashion_mnist when prepared in data_dir, else the official IDX files in manual_dir."""
    try:
        train, test = tfds.load(
            "fashion_mnist", split=["train", "test"], data_dir=data_dir, download=False, try_gcs=False
        )
        return _to_numpy(train), _to_numpy(test)
    except AssertionError as error:
        if "could not find data" not in str(error):
            raise
    directory = manual_dir or FASHION_MNIST_DIR
    missing = [name for names in FASHION_MNIST_FILES.values() for name in names
               if not os.path.exists(os.path.join(directory, name))]
    if missing:
        raise DataNotFoundError(
            f"fashion_mnist is not prepared in {_flag('data_dir', data_dir, DEFAULT_DATA_DIR)} and "
            f"{directory} lacks {', '.join(missing)}: run apt-get install dataset-fashion-mnist (Debian, "
            "offline), or put the four official IDX .gz files in a directory and pass it as --manual_dir"
        )
    splits = []
    for split in ("train", "test"):
        images, labels = (read_idx(os.path.join(directory, name)) for name in FASHION_MNIST_FILES[split])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{directory}: {FASHION_MNIST_FILES[split][0]} holds {images.shape[:1]} images of "
                            f"shape {images.shape[1:]} but {FASHION_MNIST_FILES[split][1]} {labels.shape} labels: "
                            "reinstall the official files")
        if labels.max() >= 10:
            raise UserError(f"{os.path.join(directory, FASHION_MNIST_FILES[split][1])} has label {labels.max()}; "
                            "Fashion-MNIST has 10 classes: reinstall the official files")
        splits.append((images[..., np.newaxis], labels.astype(np.int32)))
    return tuple(splits)


def read_idx(path):
    """An IDX file of unsigned bytes (optionally gzipped) as a uint8 array of the shape its header gives.

    The format: two zero bytes, the type code (0x08: unsigned byte), the number of dimensions, then each
    dimension as a big-endian int32, then the data in row-major order.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            content = f.read()
    except (OSError, EOFError) as error:
        raise UserError(f"{path} cannot be read ({one_line(error)}): reinstall it") from None
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] != IDX_UBYTE:
        raise UserError(f"{path} is not an IDX file of unsigned bytes: reinstall it")
    dims = content[3]
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if len(content) != header + int(np.prod(shape)):
        raise UserError(f"{path} holds {len(content) - header} bytes of data where its header announces "
                        f"{int(np.prod(shape))} for shape {shape}: the file is truncated or corrupt, reinstall it")
    return np.frombuffer(content, np.uint8, offset=header).reshape(shape)
