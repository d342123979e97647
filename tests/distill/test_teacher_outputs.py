"""Teacher outputs: the cache gives the online losses, and is rebuilt exactly when it must be."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdas_tf import data
from kdas_tf.distill import ensemble, losses, teacher_outputs
from kdas_tf.runtime import storage
from kdas_tf.runtime.workdir import Workdir
from kdas_tf.distill.teacher_outputs import CachedTeacherOutputs, OnlineTeacherOutputs
from kdas_tf.distill.trainer import TrainConfig, Trainer

NUM_TEACHERS = 3
T, ALPHA = 4.0, 0.9
TEACHER_LOGIT_SCALE = 40.0
# float16 targets, shifted so each row's maximum is 0: the top logits keep ~3 significant
# digits, and the loss (alpha * T^2 = 14.4 times a KL) stays within this of float32.
LOSS_TOLERANCE = dict(rtol=2e-3, atol=2e-3)


def tiny_net(seed, logit_scale=1.0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Rescaling(logit_scale)(keras.layers.Dense(10)(x)))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def save_members(workdir, seeds):
    for index, seed in enumerate(seeds):
        # Logits of tens, as trained teachers have: where float16 rounding shows.
        storage.save_model(tiny_net(seed, TEACHER_LOGIT_SCALE), Workdir(workdir).member_model(index))
    return Workdir(workdir).member_models(len(seeds))


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("teachers"))
    paths = save_members(workdir, [10 + i for i in range(NUM_TEACHERS)])
    return workdir, paths, ensemble.load_ensemble(paths)


def cached(members, dataset, cache_dir, loss="od", stored_losses=()):
    _, paths, teacher = members
    return CachedTeacherOutputs(teacher, loss, dataset, member_paths=paths, cache_dir=str(cache_dir),
                                stored_losses=stored_losses)


class BuildCounter:
    def __init__(self, monkeypatch):
        self.count = 0
        build = CachedTeacherOutputs._build

        def counted(source, *args):
            self.count += 1
            return build(source, *args)

        monkeypatch.setattr(CachedTeacherOutputs, "_build", counted)


def numpy_distill_loss(loss, labels, student, member_logits):
    """Float64 reference of L_KD / L_OD from the members' logits [N, B, C]."""
    member_logits = member_logits.astype(np.float64)
    student = student.astype(np.float64)

    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    ce = -log_softmax(student)[np.arange(len(labels)), labels]
    if loss == "kd":
        target, has = member_logits.mean(0), np.ones(len(labels), bool)
    else:
        right = (member_logits.argmax(-1) == labels[None]).astype(np.float64)
        has = right.sum(0) > 0
        target = (right[..., None] * member_logits).sum(0) / np.maximum(right.sum(0), 1)[:, None]
    log_p, log_q = log_softmax(target / T), log_softmax(student / T)
    kd = (1 - ALPHA) * ce + ALPHA * T**2 * (np.exp(log_p) * (log_p - log_q)).sum(-1)
    return np.where(has, kd, ce), has


@pytest.mark.parametrize("loss", ["kd", "od"])
def test_cached_targets_give_the_online_losses_on_the_same_batch(members, digits, tmp_path, loss):
    _, _, teacher = members
    online = OnlineTeacherOutputs(teacher, loss)
    source = cached(members, digits, tmp_path, loss)
    student = tiny_net(99)
    stream = source.with_targets(digits.train(64, epoch=2, seed=5), 2, 5)
    masks = []
    for batch in stream.take(4):
        logits = student(batch["image"])
        per_example = {}
        for name, src in (("online", online), ("cached", source)):
            target, has_target = src.targets(batch)
            per_example[name] = losses.distill_to_target(
                batch["label"], logits, target, has_target, temperature=T, alpha=ALPHA
            ).numpy()
        reference, has = numpy_distill_loss(
            loss, batch["label"].numpy(), logits.numpy(), teacher(batch["image"]).numpy()
        )
        np.testing.assert_array_equal(batch["has_target"].numpy(), has)
        np.testing.assert_allclose(per_example["online"], reference, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(per_example["cached"], reference, **LOSS_TOLERANCE)
        masks.append(has)
    if loss == "od":  # random teachers: both branches of L_OD are exercised
        assert 0 < np.concatenate(masks).mean() < 1


def test_a_trainer_fed_from_the_cache_trains_like_one_running_the_teachers(members, digits, tmp_path):
    _, _, teacher = members
    config = TrainConfig(epochs=2, batch_size=64, loss="od", learning_rate=0.05)
    results = {}
    for name, source in (("online", OnlineTeacherOutputs(teacher, "od")), ("cached", cached(members, digits, tmp_path))):
        model = tiny_net(7)
        metrics = Trainer(model, digits, config, targets=source).fit()
        results[name] = (metrics, [np.array(w) for w in model.weights])
    (online, online_weights), (from_cache, cached_weights) = results["online"], results["cached"]
    assert from_cache["train"]["loss"] == pytest.approx(online["train"]["loss"], rel=2e-3)
    for a, b in zip(online_weights, cached_weights):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3)


def test_the_cache_is_reused_until_teachers_split_or_seed_change(members, digits, tmp_path, monkeypatch):
    workdir, _, teacher = members
    builds = BuildCounter(monkeypatch)
    first = cached(members, digits, tmp_path).epoch_targets(0, 0)
    cached(members, digits, tmp_path).epoch_targets(0, 0)  # a new search candidate, a new process
    assert builds.count == 1
    cached(members, digits, tmp_path).epoch_targets(0, 1)  # another augmentation seed
    assert builds.count == 2
    cached(members, data.load("digits", split_seed=1), tmp_path).epoch_targets(0, 0)
    assert builds.count == 3
    cached(members, digits, tmp_path).epoch_targets(0, 0)  # back to the first split: rebuilt
    assert builds.count == 4

    retrained = os.path.join(str(tmp_path), "retrained")
    paths = save_members(retrained, [10, 11, 77])  # member 2 retrained from another seed
    source = CachedTeacherOutputs(
        ensemble.load_ensemble(paths), "od", digits, member_paths=paths, cache_dir=str(tmp_path)
    )
    changed = source.epoch_targets(0, 0)
    assert builds.count == 5
    assert not np.array_equal(np.asarray(first[0]), np.asarray(changed[0]))


def test_a_member_overwritten_at_its_own_path_rebuilds_the_cache(digits, tmp_path, monkeypatch):
    """The key is the members' content: a member retrained and saved over its old file is new teachers."""
    workdir = str(tmp_path / "teachers")
    paths = save_members(workdir, [10, 11])
    builds = BuildCounter(monkeypatch)
    before = np.array(cached((workdir, paths, ensemble.load_ensemble(paths)), digits, tmp_path / "cache")
                      .epoch_targets(0, 0)[0])
    storage.save_model(tiny_net(77, TEACHER_LOGIT_SCALE), paths[1])  # the same path, other weights
    retrained = (workdir, paths, ensemble.load_ensemble(paths))
    after = np.asarray(cached(retrained, digits, tmp_path / "cache").epoch_targets(0, 0)[0])
    assert builds.count == 2 and not np.array_equal(before, after)
    np.testing.assert_array_equal(after, cached(retrained, digits, tmp_path / "fresh").epoch_targets(0, 0)[0])


def epoch_dir(cache_dir, seed=0, epoch=0, loss="od"):
    return os.path.join(str(cache_dir), loss, f"seed{seed}_epoch{epoch:04d}")


def test_one_forward_per_epoch_serves_kd_and_od(members, digits, tmp_path, monkeypatch):
    both = ("kd", "od")
    alone = {loss: [np.array(a) for a in cached(members, digits, tmp_path / loss, loss).epoch_targets(1, 3)]
             for loss in both}
    builds = BuildCounter(monkeypatch)
    shared = tmp_path / "shared"
    for loss in both:  # the KD rows of a run, then its OD rows: the teachers run once
        target, has_target = cached(members, digits, shared, loss, both).epoch_targets(1, 3)
        np.testing.assert_array_equal(np.asarray(target), alone[loss][0])
        np.testing.assert_array_equal(np.asarray(has_target), alone[loss][1])
    assert builds.count == 1
    # A cache that kept OD alone (a run that distils with OD only) serves OD; KD's epoch is built beside it.
    od_only = tmp_path / "od"
    kept = os.path.getmtime(os.path.join(epoch_dir(od_only, 3, 1), "target.npy"))
    cached(members, digits, od_only, "kd", both).epoch_targets(1, 3)
    assert builds.count == 2 and os.path.getmtime(os.path.join(epoch_dir(od_only, 3, 1), "target.npy")) == kept
    cached(members, digits, od_only, "od", both).epoch_targets(1, 3)
    assert builds.count == 2


@pytest.mark.parametrize("damage", ["truncated", "bytes_changed", "no_manifest", "garbled_manifest"])
def test_a_corrupt_or_partial_epoch_is_rebuilt_not_trusted(members, digits, tmp_path, monkeypatch, damage):
    good_target, good_mask = (np.array(a) for a in cached(members, digits, tmp_path).epoch_targets(0, 0))
    target_file = os.path.join(epoch_dir(tmp_path), "target.npy")
    manifest = os.path.join(epoch_dir(tmp_path), "manifest.json")
    if damage == "truncated":  # a disk that filled up mid-write
        with open(target_file, "r+b") as f:
            f.truncate(os.path.getsize(target_file) // 2)
    elif damage == "bytes_changed":  # same size, other values
        array = np.load(target_file)
        np.save(target_file, array + np.float16(1.0))
    elif damage == "no_manifest":  # a build killed before its manifest was written
        os.remove(manifest)
    else:
        with open(manifest, "w") as f:
            f.write('{"key": ')
    builds = BuildCounter(monkeypatch)
    target, mask = cached(members, digits, tmp_path).epoch_targets(0, 0)
    assert builds.count == 1
    np.testing.assert_array_equal(np.asarray(target), good_target)
    np.testing.assert_array_equal(np.asarray(mask), good_mask)
    cached(members, digits, tmp_path).epoch_targets(0, 0)
    assert builds.count == 1  # the rebuilt epoch is trusted again


def test_a_cache_without_its_manifest_is_started_afresh(members, digits, tmp_path, monkeypatch):
    cached(members, digits, tmp_path).epoch_targets(0, 0)
    os.remove(os.path.join(str(tmp_path), "manifest.json"))
    builds = BuildCounter(monkeypatch)
    cached(members, digits, tmp_path).epoch_targets(0, 0)
    assert builds.count == 1
    assert not any(name.startswith(".tmp-") for name in os.listdir(str(tmp_path)))


def test_an_unknown_kind_names_the_flag(members, digits, tmp_path):
    with pytest.raises(ValueError, match="--teacher_outputs='disk'.*online, cached"):
        teacher_outputs.make("disk", members[2], "od", digits, member_paths=members[1], cache_dir=str(tmp_path))
    assert teacher_outputs.make("cached", members[2], "ce", digits, member_paths=members[1], cache_dir="x") is None


def test_the_batch_carries_float16_targets_gathered_by_index(members, digits, tmp_path):
    source = cached(members, digits, tmp_path, "kd")
    target, _ = source.epoch_targets(3, 0)
    batch = next(iter(source.with_targets(digits.train(32, epoch=3, seed=0), 3, 0)))
    assert batch["target"].dtype == tf.float16 and batch["has_target"].dtype == tf.bool
    np.testing.assert_array_equal(batch["target"].numpy(), np.asarray(target)[batch["index"].numpy()])
    assert batch["has_target"].numpy().all()  # KD distils every example
