"""Where a distilling step gets its targets: the teachers run online, or a cache on disk.

A distilling loss needs, per example, the target logits [B, C] and the mask
has_target [B] of losses.distillation_targets. With N teachers beside every
candidate the search pays N forwards per student step; yet the data module's
augmentation is a function of (seed, epoch, index) alone, so the targets of an
epoch are the same for every candidate and every final training with that
seed. CachedTeacherOutputs computes them once per (seed, epoch), stores them
in example-index order ([num_train, C] float16, [num_train] bool) and gathers
each batch's rows by its "index" inside the input pipeline: the compiled step
only reads two more tensors of its batch, and batch size does not matter.

Both sources offer the same two calls, so the Trainer has one compiled step:
`with_targets(stream, epoch, seed)` (the epoch's input pipeline) and
`targets(batch)` (inside the step) -> (target [B, C], has_target [B]).

KD and OD read the same teachers' forward: a cache told every distilling loss of the run
(stored_losses) keeps each one's targets from a single forward per (seed, epoch), so the KD and OD rows
of a run do not each pay for it.
"""

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.distill import losses
from kdas_tf.distill.recipe import TEACHER_OUTPUTS
from kdas_tf.runtime import storage

FORMAT = 2  # bump when the stored layout changes: older caches are then rebuilt
BUILD_BATCH_SIZE = 512


class OnlineTeacherOutputs:
    """The ensemble (images -> [N, B, C]) runs inside the training step."""

    def __init__(self, teacher, loss):
        self.teacher = teacher
        self.loss = loss

    def with_targets(self, stream, epoch, seed):
        return stream

    def targets(self, batch):
        teacher_logits = self.teacher(batch["image"], training=False)
        return losses.distillation_targets(self.loss, batch["label"], teacher_logits)


class CachedTeacherOutputs:
    """Targets of each (seed, epoch) computed once by `teacher`, kept in `cache_dir`, streamed by index.

    The cache is keyed by the content of the member files, the train split
    (its source positions and labels, so val_fraction and split_seed), the
    normalisation and the augmentation; each epoch also by its seed and loss
    (cache_dir/LOSS/seedS_epochE/). A manifest with another key makes the whole
    cache be rebuilt; an epoch whose files do not match its own manifest
    (killed mid-write, corrupted) is rebuilt, never trusted. Epochs are built
    lazily, when a training first reaches them: a 10-epoch search never pays
    for the 200 epochs of a final training, a killed build loses at most one
    epoch, and the first candidate starts training at once. A build stores the
    targets of every loss in `stored_losses` (always `loss`'s) from the one
    forward, for the other sources of the run to read.
    """

    def __init__(self, teacher, loss, dataset, *, member_paths, cache_dir, stored_losses=(),
                 build_batch_size=BUILD_BATCH_SIZE):
        if loss not in losses.DISTILLING:
            raise ValueError(f"loss {loss!r} has no teacher targets to cache: expected 'kd' or 'od'")
        self.teacher = teacher
        self.loss = loss
        self.stored_losses = tuple(name for name in losses.DISTILLING if name == loss or name in stored_losses)
        self.dataset = dataset
        self.cache_dir = cache_dir
        self.build_batch_size = build_batch_size
        self.key = cache_key(member_paths, dataset, getattr(teacher, "member_ids", None))
        self._loaded = {}
        self._target_fn = tf.function(lambda images, labels: _targets(
            self.stored_losses, labels, teacher(images, training=False)))
        self._claim()

    # --- the two calls of a teacher-outputs source -------------------------------------

    def with_targets(self, stream, epoch, seed):
        """The epoch's batches with their rows "target" [B, C] float16 and "has_target" [B] added."""
        target, has_target = self.epoch_targets(epoch, seed)
        with tf.device("/CPU:0"):
            target, has_target = tf.constant(target), tf.constant(has_target)

        def add_targets(batch):
            return {**batch, "target": tf.gather(target, batch["index"]),
                    "has_target": tf.gather(has_target, batch["index"])}

        return stream.map(add_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def targets(self, batch):
        return batch["target"], batch["has_target"]

    # --- the cache ----------------------------------------------------------------------

    def epoch_targets(self, epoch, seed):
        """(target [num_train, C] float16, has_target [num_train] bool) of (seed, epoch): read, or built."""
        name = f"seed{seed}_epoch{epoch:04d}"
        if name not in self._loaded:
            self._loaded.clear()  # one epoch in memory at a time
            arrays = self._read(name, seed, epoch)
            if arrays is None:
                arrays = self._build(name, seed, epoch)
            self._loaded[name] = arrays
        return self._loaded[name]

    def _claim(self):
        """Start a fresh cache unless cache_dir holds one with this key."""
        manifest = os.path.join(self.cache_dir, "manifest.json")
        if _read_json(manifest) == self.key:
            return
        if os.path.isdir(self.cache_dir):
            logging.info("teacher outputs: %s was made for other teachers or data; rebuilding", self.cache_dir)
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        os.makedirs(self.cache_dir, exist_ok=True)
        storage.write_json(manifest, self.key)

    def _epoch_key(self, loss, seed, epoch):
        return {**self.key, "loss": loss, "seed": int(seed), "epoch": int(epoch)}

    def _read(self, name, seed, epoch):
        directory = os.path.join(self.cache_dir, self.loss, name)
        if not os.path.isdir(directory):
            return None
        manifest = _read_json(os.path.join(directory, "manifest.json"))
        try:
            if manifest is None:
                raise ValueError("no readable manifest")
            if manifest["key"] != self._epoch_key(self.loss, seed, epoch):
                raise ValueError("key")
            arrays = []
            for field in ("target", "has_target"):
                path = os.path.join(directory, f"{field}.npy")
                if _sha256(path) != manifest["sha256"][field]:
                    raise ValueError(field)
                arrays.append(np.load(path, mmap_mode="r"))
        except (OSError, KeyError, TypeError, ValueError) as error:
            logging.warning("teacher outputs: %s does not match its manifest (%s); rebuilding it", directory, error)
            shutil.rmtree(directory, ignore_errors=True)
            return None
        return tuple(arrays)

    def _build(self, name, seed, epoch):
        """One forward of the ensemble over the epoch's augmented train images; each stored loss's targets
        are written in index order (an epoch already there, from another process, is kept)."""
        info = self.dataset.info
        arrays = {loss: (np.zeros((info.num_train, info.num_classes), np.float16), np.zeros(info.num_train, bool))
                  for loss in self.stored_losses}
        stream = self.dataset.train(self.build_batch_size, epoch=epoch, seed=seed, drop_remainder=False)
        for batch in stream:
            index = batch["index"].numpy()
            for loss, (batch_target, batch_has_target) in self._target_fn(batch["image"], batch["label"]).items():
                # Softmax ignores a shift: with each row's maximum at 0, float16 is most
                # precise at the top classes, which carry the soft targets.
                batch_target = batch_target - tf.reduce_max(batch_target, axis=-1, keepdims=True)
                arrays[loss][0][index] = batch_target.numpy().astype(np.float16)
                arrays[loss][1][index] = batch_has_target.numpy()
        for loss, (target, has_target) in arrays.items():
            self._write(loss, name, seed, epoch, target, has_target)
        logging.info("teacher outputs: cached %s of %s (%d examples)", name, "+".join(self.stored_losses),
                     info.num_train)
        return arrays[self.loss]

    def _write(self, loss, name, seed, epoch, target, has_target):
        directory = os.path.join(self.cache_dir, loss)
        os.makedirs(directory, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=directory)
        hashes = {}
        for field, array in (("target", target), ("has_target", has_target)):
            path = os.path.join(temporary, f"{field}.npy")
            with storage.writing(os.path.join(directory, name, f"{field}.npy")), open(path, "wb") as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())
            hashes[field] = _sha256(path)
        storage.write_json(os.path.join(temporary, "manifest.json"),
                           {"key": self._epoch_key(loss, seed, epoch), "sha256": hashes})
        try:
            os.rename(temporary, os.path.join(directory, name))  # atomic: the epoch appears whole or not at all
        except OSError:  # there already (another process, or another loss's build): same content
            shutil.rmtree(temporary, ignore_errors=True)
        storage.sync_directory(directory)  # the rename survives a power cut, as the files do


def _targets(stored_losses, labels, teacher_logits):
    return {loss: losses.distillation_targets(loss, labels, teacher_logits) for loss in stored_losses}


def cache_key(member_paths, dataset, member_ids=None):
    """What the cached targets depend on (JSON-able): teachers, train split, augmentation."""
    info = dataset.info
    train = dataset.splits["train"]
    split = hashlib.sha256()
    split.update(np.ascontiguousarray(train.source_index, np.int64).tobytes())
    split.update(np.ascontiguousarray(train.labels, np.int32).tobytes())
    return {
        "format": FORMAT,
        # Given teachers carry their own ids (a SavedModel is a directory; a Python model has no file).
        "teachers": list(member_ids) if member_ids else [_sha256(path) for path in member_paths],
        "dataset": info.name,
        "num_train": info.num_train,
        "num_classes": info.num_classes,
        "train_split_sha256": split.hexdigest(),
        "mean": list(info.mean),
        "std": list(info.std),
        "augmentation": {"pad": dataset.augmentation.pad, "flip": dataset.augmentation.flip},
    }


def make(kind, teacher, loss, dataset, *, member_paths, cache_dir, stored_losses=()):
    """The teacher-outputs source `kind` (--teacher_outputs) for `loss`; None for CE.

    stored_losses: the run's other distilling losses, whose targets a cache build keeps as well.
    """
    if kind not in TEACHER_OUTPUTS:
        raise ValueError(f"--teacher_outputs={kind!r} is not a choice: expected one of "
                         f"{', '.join(TEACHER_OUTPUTS)}")
    if loss == "ce":
        return None
    if kind == "online":
        return OnlineTeacherOutputs(teacher, loss)
    return CachedTeacherOutputs(teacher, loss, dataset, member_paths=member_paths, cache_dir=cache_dir,
                                stored_losses=stored_losses)


def _sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


