"""Batched, deterministic input pipelines over in-memory uint8 arrays.

Augmentation (PAPER.md section 5): zero-pad by H/8 pixels (4 for 32x32, 8 for
64x64, 1 for 8x8), random crop back to H x W, optional horizontal flip, then
per-channel normalisation. Every random choice of an epoch (order, crop
offsets, flips) is drawn up front by NumPy from (seed, epoch) and attached to
the example index, so a (seed, epoch) stream is the same in every run and every
process, whatever the thread timing, and an example's crop does not depend on
the batch it lands in. The batch is gathered and augmented as one tensor op.
"""

import dataclasses

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation of one dataset: padding (px) and whether flipping keeps the label."""

    pad: int
    flip: bool


def padding_for(image_size):
    """Crop padding proportional to the CIFAR recipe's 4 px at 32 px."""
    return max(1, image_size // 8)


def epoch_plan(num_examples, *, seed, epoch, pad, flip):
    """NumPy draws of one training epoch, in visiting order: index, dy, dx [N] int, flip [N] bool."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    rng = np.random.default_rng([seed, epoch])
    index = rng.permutation(num_examples)
    # Drawn per example index (not per visit) so the crop belongs to (seed, epoch, index).
    dy = rng.integers(0, 2 * pad + 1, size=num_examples, dtype=np.int32)
    dx = rng.integers(0, 2 * pad + 1, size=num_examples, dtype=np.int32)
    flips = rng.random(num_examples) < 0.5 if flip else np.zeros(num_examples, bool)
    return {
        "index": index.astype(np.int64),
        "dy": dy[index],
        "dx": dx[index],
        "flip": flips[index],
    }


def crop_and_flip(images, dy, dx, flip, pad):
    """Zero-pad images [B, H, W, C] by `pad`, crop at offsets dy, dx [B], mirror where flip [B]."""
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = dy[:, None] + tf.range(height)[None, :]
    columns = tf.range(width)[None, :]
    # A flipped crop reads its columns right to left: one gather does both.
    columns = tf.where(flip[:, None], width - 1 - columns, columns) + dx[:, None]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, columns, axis=2, batch_dims=1)


def normalise(images, mean, std):
    """uint8 images [B, H, W, C] -> float32, per channel (x - mean) / std on the 0..255 scale."""
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (tf.cast(images, tf.float32) - mean) / std


def train_stream(images, labels, plan, batch_size, *, augmentation, mean, std, drop_remainder):
    """The augmented training batches of one epoch plan; images/labels are tensors [N, ...] in memory."""
    pad = augmentation.pad

    def make_batch(draws):
        index = draws["index"]
        batch = crop_and_flip(tf.gather(images, index), draws["dy"], draws["dx"], draws["flip"], pad)
        return {
            "image": normalise(batch, mean, std),
            "label": tf.gather(labels, index),
            "index": index,
        }

    ds = tf.data.Dataset.from_tensor_slices(plan)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(make_batch, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def eval_stream(images, labels, batch_size, *, mean, std):
    """Unaugmented batches in index order (val, test, train_eval)."""

    def make_batch(index):
        return {
            "image": normalise(tf.gather(images, index), mean, std),
            "label": tf.gather(labels, index),
            "index": index,
        }

    num_examples = int(images.shape[0])
    ds = tf.data.Dataset.range(num_examples).batch(batch_size)
    ds = ds.map(make_batch, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)
