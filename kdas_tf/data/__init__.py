"""Datasets of kdas_tf: load(name) -> Dataset with train / val / test pipelines.

val is held out of the official training set (the search's reward split);
test is the official test split (for Tiny ImageNet, its labelled val split).
Images stay uint8 in memory; pipelines yield {"image", "label", "index"} batches.
"""

from kdas_tf.data import sources
from kdas_tf.data.dataset import Dataset, DatasetInfo, check_val_fraction, from_arrays
from kdas_tf.data.sources import DataNotFoundError

DATASETS = ("digits", "cifar100", "tinyimagenet", "fashion_mnist")
NUM_CLASSES = {"digits": 10, "cifar100": 100, "tinyimagenet": 200, "fashion_mnist": 10}
# Known before any data is read, so entry points can check sizes and budgets first.
IMAGE_SHAPES = {"digits": (8, 8, 1), "cifar100": (32, 32, 3), "tinyimagenet": (64, 64, 3),
                "fashion_mnist": (28, 28, 1)}
# Mirroring a digit changes what it reads as, so digits are never flipped; a garment, a shoe or a bag
# mirrored is the same class (Fashion-MNIST's shoes face both ways), so clothes are.
FLIP = {"digits": False, "cifar100": True, "tinyimagenet": True, "fashion_mnist": True}

__all__ = ["DATASETS", "IMAGE_SHAPES", "NUM_CLASSES", "DataNotFoundError", "Dataset", "DatasetInfo", "from_arrays", "load"]


def load(name, *, data_dir=None, manual_dir=None, val_fraction=0.1, split_seed=0, train_examples=None):
    """Reads dataset `name` into memory and splits it; raises DataNotFoundError if not prepared.

    data_dir: TFDS data directory (cifar100, tinyimagenet, fashion_mnist); manual_dir: the
    directory holding tiny-imagenet-200.zip (only needed until prepared), or Fashion-MNIST's
    four IDX files (default: Debian's dataset-fashion-mnist folder); val_fraction in (0, 1) of
    the official training set is held out as val by a permutation seeded with split_seed;
    train_examples: a fixed subset of the rest to train on (default: all of it).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    check_val_fraction(val_fraction)  # before reading any data
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
        val_fraction=val_fraction, split_seed=split_seed, flip=FLIP[name], train_examples=train_examples,
    )
