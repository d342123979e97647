"""Datasets of kdas_tf: load(name) -> Dataset with train / val / test pipelines.

name: a built-in dataset (DATASETS) or a reference to the user's data: tfds:NAME, folder:PATH, npz:PATH
(kdas_tf.data.references); from_numpy makes a Dataset of arrays in memory.

val is held out of the official training set (the search's reward split);
test is the official test split (for Tiny ImageNet, its labelled val split).
Images stay uint8 in memory; pipelines yield {"image", "label", "index"} batches.
"""

import numpy as np

from kdas_tf.data import references, sources
from kdas_tf.data.catalog import (DATASETS, FLIP, IMAGE_SHAPES, NUM_CLASSES, TRAIN_SIZES, check_name,
                                  check_val_fraction)
from kdas_tf.data.dataset import Dataset, DatasetInfo, content_identity, from_arrays, split_sizes
from kdas_tf.data.sources import DataNotFoundError

__all__ = ["DATASETS", "IMAGE_SHAPES", "NUM_CLASSES", "TRAIN_SIZES", "DataNotFoundError", "Dataset", "DatasetInfo",
           "content_identity", "from_arrays", "from_numpy", "load", "metadata", "split_sizes"]


def metadata(name, *, data_dir=None, image_size=None, tfds_splits=("train", "test")):
    """(num_classes, (H, W, C)) before any data is read: the built-in tables, or a reference's cheap metadata."""
    check_name(name)
    if name in DATASETS:
        return NUM_CLASSES[name], IMAGE_SHAPES[name]
    return references.metadata(name, data_dir=data_dir, image_size=image_size, tfds_splits=tuple(tfds_splits))


def load(name, *, data_dir=None, manual_dir=None, val_fraction=0.1, split_seed=0, train_examples=None,
         image_size=None, flip=None, tfds_splits=("train", "test"), test_fraction=0.2):
    """Reads dataset `name` into memory and splits it; raises DataNotFoundError if not prepared.

    data_dir: TFDS data directory (cifar100, tinyimagenet, fashion_mnist); manual_dir: the
    directory holding tiny-imagenet-200.zip (only needed until prepared), or Fashion-MNIST's
    four IDX files (default: Debian's dataset-fashion-mnist folder); val_fraction in (0, 1) of
    the official training set is held out as val by a permutation seeded with split_seed;
    train_examples: a fixed subset of the rest to train on (default: all of it).
    References only: image_size resizes to S x S (folder, tfds); flip: mirror in augmentation (default: the
    built-in's rule, on for references); tfds_splits: the (train, test) split names; test_fraction: the share
    of a folder without train/ and test/ held out as test, seeded by split_seed.
    """
    check_name(name)
    check_val_fraction(val_fraction)  # before reading any data
    if name not in DATASETS:
        metadata(name, data_dir=data_dir, image_size=image_size, tfds_splits=tuple(tfds_splits))
        (train_x, train_y), (test_x, test_y), num_classes = references.read(
            name, data_dir=data_dir, image_size=image_size, tfds_splits=tuple(tfds_splits),
            test_fraction=test_fraction, split_seed=split_seed)
        return from_arrays(name, num_classes, train_x, train_y, test_x, test_y, val_fraction=val_fraction,
                           split_seed=split_seed, flip=True if flip is None else flip, train_examples=train_examples)
    if name == "digits":
        (train_x, train_y), (test_x, test_y) = sources.digits()
    elif name == "cifar100":
        (train_x, train_y), (test_x, test_y) = sources.cifar100(data_dir)
    elif name == "fashion_mnist":
        (train_x, train_y), (test_x, test_y) = sources.fashion_mnist(data_dir, manual_dir)
    else:
        (train_x, train_y), (test_x, test_y) = sources.tinyimagenet(data_dir, manual_dir)
    return from_arrays(
        name, NUM_CLASSES[name], train_x, train_y, test_x, test_y,
        val_fraction=val_fraction, split_seed=split_seed, flip=FLIP[name] if flip is None else flip,
        train_examples=train_examples,
    )


def from_numpy(train, test, *, name="arrays", val_fraction=0.1, split_seed=0, flip=True, train_examples=None):
    """A Dataset of arrays in memory, checked as an npz is: train, test = (images, labels) with images uint8
    [N, H, W] or [N, H, W, C] and integer labels 0..K-1 [N]; K and the shape come from the arrays."""
    (train_x, train_y), (test_x, test_y) = train, test
    arrays = {"x_train": np.asarray(train_x), "y_train": np.asarray(train_y),
              "x_test": np.asarray(test_x), "y_test": np.asarray(test_y)}
    references.check_shapes(name, {key: (a.shape, a.dtype) for key, a in arrays.items()})
    num_classes = references.check_labels(name, arrays["y_train"].reshape(-1), arrays["y_test"].reshape(-1))
    images = [a[..., None] if a.ndim == 3 else a for a in (arrays["x_train"], arrays["x_test"])]
    return from_arrays(name, num_classes, images[0], arrays["y_train"].reshape(-1), images[1],
                       arrays["y_test"].reshape(-1), val_fraction=val_fraction, split_seed=split_seed, flip=flip,
                       train_examples=train_examples)
