"""The Dataset value: train / val / test splits in memory, and their tf.data pipelines.

`from_arrays` turns a source's official (train, test) arrays into our three
splits: val is a seeded random subset of the official training set (some
sources are ordered by class, so a tail slice would miss classes), disjoint
from train; the official test split stays the test split. Normalisation
statistics come from the train split only.
"""

import dataclasses
import hashlib

import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.data import label_checks, transforms
from kdas_tf.data.catalog import check_val_fraction
from kdas_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What models, export and reports need to know about a dataset; mean/std per channel, 0..255 scale."""

    name: str
    num_classes: int
    image_shape: tuple  # (H, W, C)
    num_train: int
    num_val: int
    num_test: int
    mean: tuple
    std: tuple
    identity: str = ""  # the source arrays' content_identity: what a work directory records of its data


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split in memory: images [N, H, W, C] uint8, labels [N] int32, source_index [N] int64.

    source_index is the example's position in the source's official split, so
    train and val can be checked disjoint; the pipelines' `index` is the
    position in this split.
    """

    images: np.ndarray
    labels: np.ndarray
    source_index: np.ndarray

    def __len__(self):
        return len(self.labels)


class Dataset:
    """Splits of one dataset and the batched pipelines over them.

    Every element is {"image": float32 [B, H, W, C] normalised, "label": int32
    [B], "index": int64 [B]}, index being the stable position in its split.
    """

    def __init__(self, info, train, val, test, augmentation, *, trains_on_validation=False):
        self.info = info
        self.splits = {"train": train, "val": val, "test": test}
        self.augmentation = augmentation
        self.trains_on_validation = trains_on_validation
        self._tensors = {}

    def with_validation_trained(self):
        """These splits with the validation images added to training, in the source's order (--final_training=all:
        the teachers' and final rows' data, as the paper trains on the whole training set). Validation stays,
        for evaluation only: a network trained on it is not judged by it. The normalisation stays the
        training split's, so that teachers and the search's candidates see images alike."""
        if self.trains_on_validation:
            return self
        train, val = self.splits["train"], self.splits["val"]
        order = np.argsort(np.concatenate([train.source_index, val.source_index]), kind="stable")
        merged = Split(images=np.concatenate([train.images, val.images])[order],
                       labels=np.concatenate([train.labels, val.labels])[order],
                       source_index=np.concatenate([train.source_index, val.source_index])[order])
        info = dataclasses.replace(self.info, num_train=len(merged))
        return Dataset(info, merged, val, self.splits["test"], self.augmentation, trains_on_validation=True)

    def _split_tensors(self, split):
        """Images and labels as tensors, made once: the pipelines gather batches from them."""
        if split not in self._tensors:
            with tf.device("/CPU:0"):
                self._tensors[split] = (
                    tf.constant(self.splits[split].images),
                    tf.constant(self.splits[split].labels),
                )
        return self._tensors[split]

    def train(self, batch_size, *, epoch, seed, augment=True, drop_remainder=True):
        """Shuffled (and augmented) train batches; identical for the same (seed, epoch)."""
        augmentation = self.augmentation if augment else transforms.Augmentation(pad=0, flip=False)
        plan = transforms.epoch_plan(
            self.info.num_train, seed=seed, epoch=epoch, pad=augmentation.pad, flip=augmentation.flip
        )
        images, labels = self._split_tensors("train")
        return transforms.train_stream(
            images, labels, plan, batch_size, augmentation=augmentation,
            mean=self.info.mean, std=self.info.std, drop_remainder=drop_remainder,
        )

    def _eval(self, split, batch_size):
        images, labels = self._split_tensors(split)
        return transforms.eval_stream(images, labels, batch_size, mean=self.info.mean, std=self.info.std)

    def val(self, batch_size):
        """The held-out validation split (the search's reward), in index order."""
        return self._eval("val", batch_size)

    def test(self, batch_size):
        """The official test split, in index order."""
        return self._eval("test", batch_size)

    def train_eval(self, batch_size):
        """The train split without augmentation, in index order (teacher agreement, cached outputs)."""
        return self._eval("train", batch_size)


def channel_stats(images, chunk=2048):
    """Per-channel mean and std of uint8 images [N, H, W, C] on the 0..255 scale, exactly.

    Sums along a row are exact in int32 (W * 255^2 < 2^31 for W < 33k), the
    rest in float64; TensorFlow makes it a second for Tiny ImageNet, where
    NumPy's float or histogram passes take several seconds and gigabytes.
    """
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        block = tf.cast(images[start : start + chunk], tf.int32)
        for moment, accumulator in ((block, total), (block * block, total_sq)):
            row_sums = tf.cast(tf.reduce_sum(moment, axis=2), tf.float64)
            accumulator += tf.reduce_sum(row_sums, axis=[0, 1]).numpy()
    count = images.size / images.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel stays finite
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


HASHED_BYTES = 256 * 2**20  # of one image array: hashed whole up to this size, else every k-th row to stay under it


def content_identity(train_images, train_labels, test_images, test_labels):
    """'sha256:<16 hex> of N+M images HxWxC': the source arrays as a work directory records them (settings.json).

    Shapes and labels are hashed whole, and so is an image array of up to HASHED_BYTES (every built-in
    dataset's but Tiny ImageNet's training images, 1.2 GB); a larger one by every k-th row from the first, the
    smallest k that keeps it under HASHED_BYTES, so any set costs about a second. Changed rows between the hashed
    ones of such a set go unseen; a change of size, labels or of any row of a smaller set does not.
    """
    digest = hashlib.sha256()
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        labels = np.asarray(labels, np.int64)  # the same labels saved as int32 or int64 are the same data
        digest.update(f"{images.dtype.str}{images.shape}".encode())
        digest.update(labels.tobytes())
        rows = images[::max(1, -(-images.nbytes // HASHED_BYTES))]
        for start in range(0, len(rows), 4096):
            digest.update(np.ascontiguousarray(rows[start:start + 4096]).tobytes())
    shape = "x".join(str(d) for d in np.shape(train_images)[1:])
    return f"sha256:{digest.hexdigest()[:16]} of {len(train_labels)}+{len(test_labels)} images {shape}"


def split_sizes(num_examples, val_fraction, train_examples=None):
    """(train, val) sizes of an official training set of `num_examples` (holdout, then --train_examples)."""
    num_val = min(max(1, round(num_examples * val_fraction)), num_examples - 1)
    num_train = num_examples - num_val
    return (min(train_examples, num_train) if train_examples else num_train), num_val


def holdout(num_examples, val_fraction, split_seed):
    """Seeded random (train, val) positions of the official training set, each sorted."""
    check_val_fraction(val_fraction)
    num_val = num_examples - split_sizes(num_examples, val_fraction)[0]
    order = np.random.default_rng(split_seed).permutation(num_examples)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def from_arrays(name, num_classes, train_images, train_labels, test_images, test_labels,
                *, val_fraction=0.1, split_seed=0, flip=True, train_examples=None):
    """A Dataset from a source's official arrays: uint8 images [N, H, W, C], int labels [N].

    train_examples: train on a fixed subset of this many of the training images left after the
    validation holdout (seeded by split_seed); validation and test stay whole.
    """
    train_pos, val_pos = holdout(len(train_labels), val_fraction, split_seed)
    if train_examples is not None:
        if not 0 < train_examples <= len(train_pos):
            raise UserError(f"--train_examples={train_examples}: {name} has {len(train_pos)} training images "
                            "after the validation holdout; give a number from 1 to that")
        subset = np.random.default_rng([split_seed, 1]).permutation(len(train_pos))[:train_examples]
        train_pos = np.sort(train_pos[subset])

    def make_split(images, labels, positions):
        return Split(
            images=np.ascontiguousarray(images[positions], dtype=np.uint8),
            labels=np.asarray(labels[positions], np.int32),
            source_index=positions.astype(np.int64),
        )

    label_checks.check_classes(name, num_classes)
    train = make_split(train_images, train_labels, train_pos)
    val = make_split(train_images, train_labels, val_pos)
    test = make_split(test_images, test_labels, np.arange(len(test_labels)))
    mean, std = channel_stats(train.images)
    image_shape = tuple(int(d) for d in train.images.shape[1:])
    info = DatasetInfo(
        name=name, num_classes=num_classes, image_shape=image_shape,
        num_train=len(train), num_val=len(val), num_test=len(test), mean=mean, std=std,
        identity=content_identity(train_images, train_labels, test_images, test_labels),
    )
    augmentation = transforms.Augmentation(pad=transforms.padding_for(image_shape[0]), flip=flip)
    logging.info(
        "%s: %d train / %d val / %d test, %s, %d classes, pad %d, flip %s",
        name, info.num_train, info.num_val, info.num_test, image_shape, num_classes,
        augmentation.pad, flip,
    )
    counts = np.bincount(train.labels, minlength=num_classes)
    logging.info("%s: training images per class: %s; %s", name, label_checks.histogram(counts),
                 label_checks.reward_line(info.num_val, num_classes))
    rare = label_checks.rare_warning(name, counts)
    if rare:
        logging.warning(rare)
    return Dataset(info, train, val, test, augmentation)
