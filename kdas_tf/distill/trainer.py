"""The custom training loop: one compiled step under tf.distribute, epochs, checkpoints, summaries.

Split as in the Model Garden's orbit: `_train_step` (one replica's work) runs
inside one tf.function through `strategy.run`; epochs, checkpoints, summaries
and progress lines live outside it. The same loop trains teachers (CE), search
candidates (the search loss) and final models (the final loss).
"""

import gc
import glob
import math
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from kdas_tf import _internals
from kdas_tf.runtime import distribute, progress
from kdas_tf.distill import losses
from kdas_tf.distill.recipe import TrainConfig  # noqa: F401  (the recipe the loop takes, imported from here too)
from kdas_tf.errors import UserError


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite; the last finite checkpoint is kept."""


class UnreadableCheckpointError(UserError):
    """A training's last checkpoint cannot be restored; `directory` holds it."""

    def __init__(self, message, directory):
        super().__init__(message)
        self.directory = directory


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The rate times factor**k after the k-th boundary step.

    Always a schedule, never a bare float, so the optimizer's checkpointed
    variables do not change with the number of drops.
    """

    def __init__(self, initial, boundaries, factor):
        self.initial = float(initial)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)

    def __call__(self, step):
        drops = tf.reduce_sum(tf.cast(tf.cast(step, tf.int64) >= tf.constant(self.boundaries + [2**62], tf.int64), tf.float32))
        return self.initial * tf.pow(self.factor, drops)

    def get_config(self):
        return {"initial": self.initial, "boundaries": self.boundaries, "factor": self.factor}


def check_batch_size(batch_size, num_train):
    """Whole batches only: a training split smaller than a batch would give no step at all, a silent no-op."""
    if num_train < batch_size:
        raise UserError(f"--batch_size={batch_size} is larger than the {num_train} training examples: lower "
                        "--batch_size (or raise --train_examples)")


def learning_rate_schedule(config, steps_per_epoch):
    """Step schedule: the rate multiplied by lr_decay_factor at each fraction of training."""
    total = config.epochs * steps_per_epoch
    boundaries = sorted({max(1, int(round(f * total))) for f in config.lr_decay_at})
    return StepSchedule(config.learning_rate, boundaries, config.lr_decay_factor)


def _decayed_weights(model):
    """Kernels only (conv, dense, depthwise): BN scales and biases are not decayed."""
    return [w for w in model.trainable_weights if len(w.shape) > 1]


def _batch_stats(labels, logits, per_example_loss):
    """Sums over one replica's batch; reduced with SUM across replicas."""
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)
    top1 = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    top5 = tf.cast(tf.math.in_top_k(labels, logits, k=min(5, logits.shape[-1])), tf.float32)
    return {
        "loss": tf.reduce_sum(per_example_loss),
        "top1": tf.reduce_sum(top1),
        "top5": tf.reduce_sum(top5),
        "count": tf.cast(tf.shape(labels)[0], tf.float32),
    }


def _means(totals):
    count = float(totals["count"])
    return {k: float(v) / max(count, 1.0) for k, v in totals.items() if k != "count"}


class Trainer:
    """Trains `model` on `dataset` with `config`, distilling from `targets` unless the loss is CE.

    `model` must be built under `strategy.scope()`. `targets` is a source of
    kdas_tf.distill.teacher_outputs (the teachers online, or their cached outputs):
    `with_targets` adds an epoch's targets to its input stream, `targets(batch)`
    reads them inside the step. With `workdir`, a checkpoint is written every
    epoch and `fit` resumes from the last one. `run_progress` (a progress.RunProgress) counts its epochs
    into the whole run's ETA.
    """

    def __init__(self, model, dataset, config, *, strategy=None, targets=None, workdir=None, logdir=None,
                 name="train", run_progress=None):
        if config.loss != "ce" and targets is None:
            raise ValueError(f"loss {config.loss} distils from teachers, but no targets source was given")
        self.model = model
        self.dataset = dataset
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.targets = targets if config.loss != "ce" else None
        self.name = name
        self.run_progress = run_progress
        check_batch_size(config.batch_size, dataset.info.num_train)
        self.steps_per_epoch = dataset.info.num_train // config.batch_size
        with self.strategy.scope():
            self.optimizer = keras.optimizers.SGD(
                learning_rate=learning_rate_schedule(config, self.steps_per_epoch),
                momentum=config.momentum,
                nesterov=config.nesterov,
            )
            if keras.mixed_precision.global_policy().compute_dtype == "float16":
                # float16 gradients underflow without a loss scale (bfloat16 has float32's range).
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer, epoch=self.epoch)
        self._checkpoint_dir = os.path.join(workdir, "checkpoints") if workdir else None
        self._manager = None
        writes = distribute.writes_files(self.strategy)
        if workdir:
            # Every multi-worker task saves (saving is collective), but only the chief where it is read.
            directory = self._checkpoint_dir if writes else tempfile.mkdtemp(prefix="kdas_tf-worker-checkpoints-")
            self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=2 if writes else 1)
        self._writer = tf.summary.create_file_writer(logdir) if logdir and writes else None
        self._decayed = {id(w) for w in _decayed_weights(model)}
        self._train_step = tf.function(self._distributed_train_step)
        self._eval_step = None  # traced at the first evaluation, for its input's element spec

    # --- compiled steps -------------------------------------------------------------

    def _per_example_loss(self, batch, logits):
        if self.targets is None:
            return losses.cross_entropy(batch["label"], logits)
        target, has_target = self.targets.targets(batch)
        return losses.distill_to_target(
            batch["label"], logits, target, has_target, temperature=self.config.temperature, alpha=self.config.alpha
        )

    def _replica_train_step(self, batch):
        images, labels = batch["image"], batch["label"]
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            per_example = self._per_example_loss(batch, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)
            scaled_loss = self.optimizer.scale_loss(loss)  # the loss itself unless float16 needs a scale
        grads = tape.gradient(scaled_loss, self.model.trainable_variables)
        if self.config.weight_decay:
            # The gradient of 0.5 * weight_decay * |w|^2, added directly rather than
            # differentiated through the tape; summed over replicas by the optimizer,
            # and scaled like the loss's gradients, which the optimizer unscales.
            decay = self.config.weight_decay / replicas * self._loss_scale()
            grads = [g + decay * tf.cast(w, g.dtype) if id(w) in self._decayed else g
                     for g, w in zip(grads, self.model.trainable_variables)]
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return _batch_stats(labels, logits, per_example)

    def _loss_scale(self):
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return tf.cast(self.optimizer.dynamic_scale, tf.float32)
        return 1.0

    def _distributed_train_step(self, batch):
        stats = self.strategy.run(self._replica_train_step, args=(batch,))
        return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in stats.items()}

    def _replica_eval_step(self, batch):
        logits = self.model(batch["image"], training=False)
        return _batch_stats(batch["label"], logits, losses.cross_entropy(batch["label"], logits))

    def _distributed_eval_step(self, batch):
        stats = self.strategy.run(self._replica_eval_step, args=(batch,))
        return {k: self.strategy.reduce("SUM", v, axis=None) for k, v in stats.items()}

    # --- loops ------------------------------------------------------------------------

    def _run(self, step, batches, bar=None):
        totals = None
        for batch in batches:
            stats = step(batch)
            totals = stats if totals is None else {k: totals[k] + stats[k] for k in totals}
            if bar is not None:
                bar.update()
        return totals or {"loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0.0}

    def evaluate(self, dataset):
        """Mean CE loss, top-1 and top-5 accuracy of the model on `dataset`."""
        batches = self.strategy.experimental_distribute_dataset(dataset)
        if self._eval_step is None:  # one trace for every batch size: a split's last batch is smaller
            self._eval_step = _internals.without_retracing_warning(
                tf.function(self._distributed_eval_step, input_signature=[batches.element_spec]))
        return _means(self._run(self._eval_step, batches))

    def restore(self):
        """Resume from the last checkpoint, if any; returns the epoch to start at."""
        directory = self._checkpoint_dir
        path = tf.train.latest_checkpoint(directory) if directory else None
        if path is None and directory and glob.glob(os.path.join(directory, "*.index")):
            # TensorFlow ignores a corrupt 'checkpoint' file; training from scratch would overwrite the saves.
            raise UnreadableCheckpointError(
                f"{directory} holds checkpoints, but its 'checkpoint' file names none (it is corrupt): move "
                f"{directory} aside to train from scratch, or use another --workdir", directory)
        if path:
            try:
                self._checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, AssertionError, ValueError, IndexError) as error:  # IndexError: a short file
                raise UnreadableCheckpointError(
                    f"checkpoint {path} is corrupt or does not fit this model ({type(error).__name__}): "
                    f"delete {directory} to train from scratch, or use another --workdir", directory
                ) from error
            logging.info("%s: resumed from %s at epoch %d", self.name, path, int(self.epoch.numpy()))
        return int(self.epoch.numpy())

    def tracing_count(self):
        """How many times the training step has been traced: once, unless a batch's shapes or types change."""
        return self._train_step.experimental_get_tracing_count()

    def train_epoch(self, epoch, *, steps=None, bar=None):
        """One pass over the (seed, epoch) training stream, or its first `steps` batches; mean metrics."""
        stream = self.dataset.train(self.config.batch_size, epoch=epoch, seed=self.config.seed)
        if self.targets is not None:
            stream = self.targets.with_targets(stream, epoch, self.config.seed)
        if steps is not None:
            stream = stream.take(steps)
        return _means(self._run(self._train_step, self.strategy.experimental_distribute_dataset(stream), bar))

    def fit(self):
        """Train to config.epochs (resuming if possible); returns the last epoch's metrics."""
        start = self.restore()
        config = self.config
        if self.run_progress:
            self.run_progress.skipped(start)
        metrics = {}
        session_start = time.time()
        for epoch in range(start, config.epochs):
            epoch_start = time.time()
            learning_rate = self.current_learning_rate()  # the rate this epoch starts with, not the next one's
            with progress.epoch_bar(self.steps_per_epoch, f"{self.name} epoch {epoch + 1}/{config.epochs}") as bar:
                train = self.train_epoch(epoch, bar=bar)
            seconds = time.time() - epoch_start
            if not math.isfinite(train["loss"]):
                raise TrainingDivergedError(
                    f"{self.name}: the training loss became {train['loss']} at epoch {epoch + 1}; "
                    f"lower --learning_rate (now {config.learning_rate}) and rerun: "
                    "training resumes from the last finite checkpoint"
                )
            val = self.evaluate(self.dataset.val(config.batch_size))
            metrics = {"epoch": epoch + 1, "train": train, "val": val, "learning_rate": learning_rate,
                       "images_per_second": self.steps_per_epoch * config.batch_size / max(seconds, 1e-9)}
            self._write_summaries(epoch + 1, metrics)
            self.epoch.assign(epoch + 1)
            if self._manager:
                self._manager.save(checkpoint_number=epoch + 1)
            done = epoch + 1 - start
            eta = (time.time() - session_start) / done * (config.epochs - epoch - 1)
            if self.run_progress:
                self.run_progress.epoch_done()
            logging.info(
                "%s epoch %d/%d  loss %.4f  top1 %.2f%%  val top1 %.2f%%  lr %.4g  %.0f img/s  ETA %s%s",
                self.name, epoch + 1, config.epochs, train["loss"], 100 * train["top1"],
                100 * val["top1"], learning_rate, metrics["images_per_second"], progress.duration(eta),
                f"  ({self.run_progress.eta_text()})" if self.run_progress else "",
            )
        if self._manager and self._manager.directory != self._checkpoint_dir:
            shutil.rmtree(self._manager.directory, ignore_errors=True)  # a non-chief worker's throwaway saves
        if not metrics:
            metrics = {"epoch": start, "val": self.evaluate(self.dataset.val(config.batch_size))}
        return metrics

    def current_learning_rate(self):
        return float(self.optimizer.learning_rate)

    def _write_summaries(self, step, metrics):
        if not self._writer:
            return
        with self._writer.as_default(step=step):
            for split in ("train", "val"):
                for key, value in metrics[split].items():
                    tf.summary.scalar(f"{split}/{key}", value)
            tf.summary.scalar("learning_rate", metrics["learning_rate"])
            tf.summary.scalar("images_per_second", metrics["images_per_second"])
        self._writer.flush()


def build_fresh(build, *, seed, strategy):
    """`build()` on a clean slate: every training (teacher, trial, final row, bench) starts here.

    Keras' session is reset (its name counters and caches; the global dtype
    policy, which clear_session also resets, is kept), the steps traced for
    earlier networks are freed, and the seed is set, so a network's initial
    weights depend on `seed` alone, whatever was trained before it.
    """
    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    _internals.release_traced_steps()
    gc.collect()
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        return build()

