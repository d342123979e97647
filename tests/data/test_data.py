"""kdas_tf.data: splits, deterministic augmented epochs (checked against NumPy crops), sources and missing-data errors.

digits is read for real (it ships with scikit-learn); CIFAR-100 comes from
tfds.testing.mock_data; Tiny ImageNet from a small zip in the official layout,
built through our TFDS builder. No test touches the network.
"""

import hashlib
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kdas_tf import data
from kdas_tf.data import transforms


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", split_seed=0)


@pytest.fixture(scope="module")
def noise():
    """Random 8x8 colour images that may be flipped: every random choice of augmentation in play."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(330, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=330)
    return data.from_arrays("noise", 5, images[:300], labels[:300], images[300:], labels[300:], flip=True)


def _collect(ds):
    """All batches of a pipeline, concatenated per key, as NumPy."""
    batches = list(ds.as_numpy_iterator())
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _stream_digest(dataset, seed, epoch):
    digest = hashlib.sha256()
    for batch in dataset.train(64, epoch=epoch, seed=seed).as_numpy_iterator():
        for key in ("image", "label", "index"):
            digest.update(batch[key].tobytes())
    return digest.hexdigest()


def test_digits_info_shapes_dtypes_and_labels(digits):
    info = digits.info
    assert (info.name, info.num_classes, info.image_shape) == ("digits", 10, (8, 8, 1))
    assert (data.NUM_CLASSES["digits"], data.IMAGE_SHAPES["digits"]) == (info.num_classes, info.image_shape)
    assert (info.num_train + info.num_val, info.num_test) == (1497, 300)
    assert info.num_val == round(1497 * 0.1)
    batch = next(iter(digits.train(32, epoch=0, seed=0)))
    assert batch["image"].shape == (32, 8, 8, 1) and batch["image"].dtype == tf.float32
    assert batch["label"].shape == (32,) and batch["label"].dtype == tf.int32
    assert batch["index"].shape == (32,) and batch["index"].dtype == tf.int64
    for split in (digits.val(100), digits.test(100)):
        labels = _collect(split)["label"]
        assert labels.min() >= 0 and labels.max() < 10
    assert set(np.unique(_collect(digits.test(100))["label"])) == set(range(10))


def test_val_is_a_seeded_random_holdout_disjoint_from_train(digits):
    train, val = digits.splits["train"].source_index, digits.splits["val"].source_index
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1497))
    assert not np.array_equal(val, np.arange(1497 - len(val), 1497))  # not a tail slice
    other = data.load("digits", split_seed=1).splits["val"].source_index
    assert not np.array_equal(val, other)
    # The pipelines' index is the position in the split: map it back to the source.
    seen_train = train[_collect(digits.train(64, epoch=0, seed=0, drop_remainder=False))["index"]]
    seen_val = val[_collect(digits.val(64))["index"]]
    assert not set(seen_train) & set(seen_val)


def test_final_training_all_adds_the_validation_images_to_training_in_source_order(digits):
    """--final_training=all: the teachers' and final rows' training split is every official training image once,
    each with its own label, in the source's order; validation and test stay; the normalisation stays."""
    merged = digits.with_validation_trained()
    train, val = digits.splits["train"], digits.splits["val"]
    np.testing.assert_array_equal(merged.splits["train"].source_index, np.arange(1497))
    source = data.load("digits", val_fraction=0.5)  # another holdout of the same official images
    by_position = {}
    for split in ("train", "val"):
        for index, image, label in zip(source.splits[split].source_index, source.splits[split].images,
                                       source.splits[split].labels):
            by_position[int(index)] = (image, label)
    for position, image, label in zip(merged.splits["train"].source_index, merged.splits["train"].images,
                                      merged.splits["train"].labels):
        np.testing.assert_array_equal(image, by_position[int(position)][0])
        assert label == by_position[int(position)][1]
    assert merged.info.num_train == len(train) + len(val) == 1497 and merged.info.num_val == len(val)
    assert merged.splits["val"] is val and merged.splits["test"] is digits.splits["test"]
    assert merged.info.mean == digits.info.mean and merged.trains_on_validation and not digits.trains_on_validation
    assert merged.with_validation_trained() is merged
    seen = merged.splits["train"].source_index[_collect(merged.train(64, epoch=0, seed=0, drop_remainder=False))["index"]]
    assert set(seen) >= set(val.source_index)  # an epoch visits the validation images too


def test_train_examples_is_a_seeded_random_draw_that_covers_a_class_ordered_source():
    """--train_examples draws its subset: a source sorted by class (5 x 40 images) still trains on every class."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    images = rng.integers(0, 256, (200, 4, 4), dtype=np.uint8)
    test = (images[:10], labels[:10])

    def subset(split_seed):
        return data.from_numpy((images, labels), test, split_seed=split_seed, train_examples=40).splits

    splits = subset(split_seed=3)
    chosen = splits["train"].source_index
    left_after_val, val = data.dataset.holdout(200, 0.1, 3)
    assert len(chosen) == 40 and set(chosen) <= set(left_after_val)
    np.testing.assert_array_equal(splits["val"].source_index, val)  # validation stays whole
    np.testing.assert_array_equal(splits["train"].labels, labels[chosen])
    assert set(labels[chosen]) == set(range(5))
    assert not np.array_equal(chosen, left_after_val[np.arange(40)])  # not the first 40
    np.testing.assert_array_equal(subset(split_seed=3)["train"].source_index, chosen)
    assert not np.array_equal(subset(split_seed=4)["train"].source_index, chosen)


def test_the_data_identity_changes_with_any_row_or_label_of_a_small_set_and_not_with_the_label_dtype():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8), rng.integers(0, 3, size=40)
    identity = data.content_identity(images[:30], labels[:30], images[30:], labels[30:])
    assert identity.endswith(" of 30+10 images 4x4x1")
    assert data.content_identity(images[:30], labels[:30].astype(np.int32), images[30:], labels[30:]) == identity
    changed = images.copy()
    changed[29, 3, 3, 0] ^= 1  # one bit of the last training image
    assert data.content_identity(changed[:30], labels[:30], changed[30:], labels[30:]) != identity
    relabelled = labels.copy()
    relabelled[35] = (relabelled[35] + 1) % 3  # one test label
    assert data.content_identity(images[:30], labels[:30], images[30:], relabelled[30:]) != identity
    assert data.load("digits").info.identity == data.load("digits", val_fraction=0.2).info.identity  # the source's


def test_a_set_larger_than_the_hashed_bytes_is_hashed_by_every_kth_row(monkeypatch):
    monkeypatch.setattr(data.dataset, "HASHED_BYTES", 10 * 16)  # 10 rows of 4x4x1: 30 rows hashed every 3rd
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8), rng.integers(0, 3, size=40)
    identity = data.content_identity(images[:30], labels[:30], images[30:], labels[30:])
    for row, seen in ((0, True), (1, False), (3, True), (28, False), (27, True)):
        changed = images.copy()
        changed[row] ^= 1
        assert (data.content_identity(changed[:30], labels[:30], changed[30:], labels[30:]) != identity) == seen, row


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1, 1.5])
def test_val_fraction_outside_open_unit_interval_raises(val_fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        data.load("digits", val_fraction=val_fraction)


def test_unknown_dataset_raises_with_choices():
    with pytest.raises(ValueError, match="cifar100"):
        data.load("mnist")


def test_train_stream_is_fixed_by_seed_and_epoch(digits):
    first = _stream_digest(digits, seed=3, epoch=1)
    assert _stream_digest(digits, seed=3, epoch=1) == first
    assert _stream_digest(digits, seed=3, epoch=2) != first
    assert _stream_digest(digits, seed=4, epoch=1) != first


@pytest.mark.slow  # a fresh TensorFlow import
def test_train_stream_is_identical_in_another_process(digits):
    code = (
        f"import sys; sys.path[:0] = [{os.path.dirname(os.path.abspath(__file__))!r}];"
        "from kdas_tf import data; import test_data as t;"
        "print(t._stream_digest(data.load('digits'), seed=3, epoch=1))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == _stream_digest(digits, seed=3, epoch=1)


def test_each_epoch_visits_every_train_example_once_under_its_own_index(digits):
    reference = _collect(digits.train_eval(100))
    np.testing.assert_array_equal(reference["index"], np.arange(digits.info.num_train))
    for epoch in (0, 1):
        seen = _collect(digits.train(64, epoch=epoch, seed=0, augment=False, drop_remainder=False))
        np.testing.assert_array_equal(np.sort(seen["index"]), np.arange(digits.info.num_train))
        np.testing.assert_array_equal(seen["image"], reference["image"][seen["index"]])
        np.testing.assert_array_equal(seen["label"], reference["label"][seen["index"]])
    assert not np.array_equal(seen["index"], reference["index"])  # shuffled


def test_drop_remainder_keeps_only_full_batches(digits):
    sizes = [b["label"].shape[0] for b in digits.train(500, epoch=0, seed=0)]
    assert sizes == [500] * (digits.info.num_train // 500)


def numpy_crop(images, dy, dx, flip, pad):
    """The reference augmentation: zero-pad, slice rows dy.. and columns dx.., mirror where flip."""
    height, width = images.shape[1:3]
    padded = np.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    crops = np.stack([p[y:y + height, x:x + width] for p, y, x in zip(padded, dy, dx)])
    return np.where(np.asarray(flip)[:, None, None, None], crops[:, :, ::-1], crops)


def test_crops_with_different_row_and_column_offsets_match_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(6, 5, 7, 2)).astype(np.int32)  # not square, two channels
    pad = 2
    dy, dx = np.array([0, 4, 1, 3, 0, 2], np.int32), np.array([3, 0, 4, 2, 1, 0], np.int32)
    flip = np.array([False, False, True, False, True, True])
    assert np.all(dy != dx)
    got = transforms.crop_and_flip(tf.constant(images), tf.constant(dy), tf.constant(dx), tf.constant(flip), pad)
    np.testing.assert_array_equal(got, numpy_crop(images, dy, dx, flip, pad))


def test_train_images_are_the_numpy_crop_of_each_example_at_its_planned_offsets(noise):
    augmentation = noise.augmentation
    plan = transforms.epoch_plan(noise.info.num_train, seed=2, epoch=1, pad=augmentation.pad, flip=augmentation.flip)
    assert np.mean(plan["dy"] != plan["dx"]) > 0.5 and 0.3 < np.mean(plan["flip"]) < 0.7
    seen = _collect(noise.train(64, epoch=1, seed=2, drop_remainder=False))
    np.testing.assert_array_equal(seen["index"], plan["index"])
    crops = numpy_crop(noise.splits["train"].images[plan["index"]], plan["dy"], plan["dx"], plan["flip"],
                       augmentation.pad)
    expected = (crops.astype(np.float32) - np.float32(noise.info.mean)) / np.float32(noise.info.std)
    np.testing.assert_allclose(seen["image"], expected, rtol=0, atol=1e-5)


class ReversedVisits:
    """A NumPy generator whose permutation (epoch_plan's visiting order) is reversed; every other draw the same."""

    def __init__(self, rng):
        self._rng = rng

    def permutation(self, n):
        return self._rng.permutation(n)[::-1]

    def __getattr__(self, name):
        return getattr(self._rng, name)


def _images_by_index(stream):
    seen = _collect(stream)
    return seen["index"], seen["image"][np.argsort(seen["index"])]


def test_an_examples_crop_does_not_depend_on_the_visiting_order_or_batch_size(noise, monkeypatch):
    """The crop and flip belong to (seed, epoch, index): not to the position the example is visited at."""
    order, by_index = _images_by_index(noise.train(64, epoch=0, seed=0, drop_remainder=False))
    draw = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed: ReversedVisits(draw(seed)))
    reversed_order, reversed_by_index = _images_by_index(noise.train(100, epoch=0, seed=0, drop_remainder=False))
    np.testing.assert_array_equal(reversed_order, order[::-1])
    np.testing.assert_array_equal(reversed_by_index, by_index)


def test_augmentation_pads_proportionally_and_never_flips_digits(digits):
    assert [transforms.padding_for(s) for s in (8, 32, 64)] == [1, 4, 8]
    assert digits.augmentation == transforms.Augmentation(pad=1, flip=False)
    plan = transforms.epoch_plan(1000, seed=0, epoch=0, pad=4, flip=True)
    assert plan["dy"].min() == 0 and plan["dy"].max() == 8 and 0.4 < plan["flip"].mean() < 0.6
    assert not transforms.epoch_plan(1000, seed=0, epoch=0, pad=1, flip=False)["flip"].any()


def test_normalised_train_split_has_zero_mean_unit_std(digits):
    images = _collect(digits.train_eval(500))["image"]
    assert abs(images.mean()) < 1e-4 and abs(images.std() - 1.0) < 1e-4
    augmented = _collect(digits.train(500, epoch=0, seed=0))["image"]
    assert abs(augmented.mean()) < 0.2  # zero padding shifts it a little


def test_cifar100_through_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=200):
        dataset = data.load("cifar100", data_dir=str(tmp_path))
    info = dataset.info
    assert (info.num_classes, info.image_shape) == (100, (32, 32, 3))
    assert (data.NUM_CLASSES["cifar100"], data.IMAGE_SHAPES["cifar100"]) == (info.num_classes, info.image_shape)
    assert (info.num_train, info.num_val, info.num_test) == (180, 20, 200)
    assert dataset.augmentation == transforms.Augmentation(pad=4, flip=True)
    batch = next(iter(dataset.train(64, epoch=0, seed=0)))
    assert batch["image"].shape == (64, 32, 32, 3)
    labels = _collect(dataset.test(64))["label"]
    assert labels.min() >= 0 and labels.max() < 100


def test_cifar100_missing_data_names_data_dir_flag(tmp_path):
    with pytest.raises(data.DataNotFoundError) as error:
        data.load("cifar100", data_dir=str(tmp_path))
    message = str(error.value)
    assert "--data_dir" in message and "tfds.load('cifar100'" in message and "\n" not in message


# Tiny ImageNet: a 3-class zip in the official layout; class k is a flat colour.
WNIDS = ("n02", "n01", "n03")  # not sorted in wnids.txt, as in the official file
COLOURS = {"n01": (200, 30, 30), "n02": (30, 200, 30), "n03": (30, 30, 200)}


def _jpeg(colour, grayscale=False):
    image = tf.broadcast_to(tf.constant(colour, tf.uint8), [64, 64, 3])
    if grayscale:
        image = tf.image.rgb_to_grayscale(image)
    return tf.io.encode_jpeg(image, quality=95).numpy()


def _write_tiny_imagenet_zip(path):
    root = "tiny-imagenet-200"
    annotations = []
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/wnids.txt", "\n".join(WNIDS) + "\n")
        archive.writestr(f"{root}/words.txt", "".join(f"{w}\tthing\n" for w in WNIDS))
        for wnid in WNIDS:
            archive.writestr(f"{root}/train/{wnid}/{wnid}_boxes.txt", "")
            for i in range(4):
                archive.writestr(f"{root}/train/{wnid}/images/{wnid}_{i}.JPEG", _jpeg(COLOURS[wnid]))
        for i, wnid in enumerate(WNIDS * 2):
            archive.writestr(f"{root}/val/images/val_{i}.JPEG", _jpeg(COLOURS[wnid], grayscale=i == 0))
            annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        archive.writestr(f"{root}/val/val_annotations.txt", "\n".join(annotations) + "\n")
        archive.writestr(f"{root}/test/images/test_0.JPEG", _jpeg((0, 0, 0)))


def test_tinyimagenet_built_from_manual_zip(tmp_path):
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    _write_tiny_imagenet_zip(manual_dir / "tiny-imagenet-200.zip")
    dataset = data.load(
        "tinyimagenet", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual_dir), val_fraction=0.25
    )
    info = dataset.info
    assert (info.num_classes, info.image_shape) == (200, (64, 64, 3))
    assert (data.NUM_CLASSES["tinyimagenet"], data.IMAGE_SHAPES["tinyimagenet"]) == (info.num_classes, info.image_shape)
    assert (info.num_train, info.num_val, info.num_test) == (9, 3, 6)
    assert dataset.augmentation == transforms.Augmentation(pad=8, flip=True)
    # Labels are sorted-wnid positions and follow val_annotations.txt.
    sorted_wnids = sorted(WNIDS)
    for split in ("train", "val", "test"):
        images, labels = dataset.splits[split].images, dataset.splits[split].labels
        for image, label in zip(images, labels):
            colour = COLOURS[sorted_wnids[label]]
            if image.std(axis=-1).max() > 0:  # the grayscale one has equal channels
                np.testing.assert_allclose(image.mean(axis=(0, 1)), colour, atol=6)
    assert sorted(np.bincount(dataset.splits["test"].labels)) == [2, 2, 2]
    batch = next(iter(dataset.train(4, epoch=0, seed=0)))
    assert batch["image"].shape == (4, 64, 64, 3)
    # Prepared once: the manual zip is no longer needed.
    again = data.load("tinyimagenet", data_dir=str(tmp_path / "tfds"), val_fraction=0.25)
    np.testing.assert_array_equal(again.splits["test"].images, dataset.splits["test"].images)


def test_tinyimagenet_without_zip_names_manual_dir_flag(tmp_path):
    with pytest.raises(data.DataNotFoundError) as error:
        data.load("tinyimagenet", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path))
    message = str(error.value)
    assert "--manual_dir" in message and "tiny-imagenet-200.zip" in message and "\n" not in message
