"""The datasets by name, known before any image is read: the built-ins' tables, the forms of a reference to your
own data (tfds:NAME, folder:PATH, npz:PATH), and the checks of a name and of a validation share.

Pure Python: the configuration checks --dataset and --val_fraction against it without loading anything.
"""

import os

from kdas_tf.errors import UserError

DATASETS = ("digits", "cifar100", "tinyimagenet", "fashion_mnist")
NUM_CLASSES = {"digits": 10, "cifar100": 100, "tinyimagenet": 200, "fashion_mnist": 10}
# Known before any data is read, so entry points can check sizes and budgets first.
IMAGE_SHAPES = {"digits": (8, 8, 1), "cifar100": (32, 32, 3), "tinyimagenet": (64, 64, 3),
                "fashion_mnist": (28, 28, 1)}
# The official training sets' sizes (digits: the 1,497 images its fixed test split leaves), for estimates.
TRAIN_SIZES = {"digits": 1497, "cifar100": 50000, "tinyimagenet": 100000, "fashion_mnist": 60000}
# Mirroring a digit changes what it reads as, so digits are never flipped; a garment, a shoe or a bag
# mirrored is the same class (Fashion-MNIST's shoes face both ways), so clothes are.
FLIP = {"digits": False, "cifar100": True, "tinyimagenet": True, "fashion_mnist": True}
REFERENCE_KINDS = ("tfds", "folder", "npz")


def parse_reference(reference):
    """('tfds' | 'folder' | 'npz', its NAME or PATH), or None for a built-in name."""
    kind, separator, target = reference.partition(":")
    if not separator or kind not in REFERENCE_KINDS:
        return None
    if not target:
        raise UserError(f"--dataset={reference}: give the {'NAME' if kind == 'tfds' else 'PATH'} after '{kind}:'")
    return kind, os.path.expanduser(target) if kind != "tfds" else target


def check_name(name):
    """Raises a UserError unless `name` is a built-in dataset or a reference (tfds:NAME, folder:PATH, npz:PATH)."""
    if name not in DATASETS and parse_reference(name) is None:
        raise UserError(f"--dataset={name}: value should be one of {', '.join(DATASETS)}, or your own data as "
                        "tfds:NAME, folder:PATH or npz:PATH")


def check_val_fraction(val_fraction):
    """Raises unless 0 < val_fraction < 1: both train and val must be non-empty."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1) (exclusive), got {val_fraction}")
