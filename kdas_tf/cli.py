"""Flags shared by the entry points, and the configs they build.

Only entry points (train, teachers, search, ...) import this module: it defines
absl flags, reads them once and hands plain values and frozen configs down.
"""

import logging as pylogging
import os
import sys

import keras
from absl import app, flags, logging

from kdas_tf import data, distribute, losses, models, teacher_outputs, teachers
from kdas_tf.trainer import TrainConfig, TrainingDivergedError

FLAGS = flags.FLAGS


def define_data_flags():
    flags.DEFINE_enum("dataset", "digits", list(data.DATASETS), "Dataset to train and evaluate on.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (prepared CIFAR-100 lives here).")
    flags.DEFINE_string("manual_dir", None, "Directory holding tiny-imagenet-200.zip (TinyImageNet only).")
    flags.DEFINE_float("val_fraction", 0.1, "Share of the training set held out as the validation split.")
    flags.DEFINE_integer("split_seed", 0, "Seed of the train/validation split.")


def define_run_flags():
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, models, summaries and results.")
    flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
    flags.DEFINE_bool("dry_run", False, "Check the flags, print what would run, and stop: nothing is read or written.")


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def define_train_flags():
    """The training recipe of PAPER.md section 5."""
    flags.DEFINE_integer("epochs", 200, "Epochs of the trained network.")
    flags.DEFINE_integer("batch_size", 128, "Global batch size.")
    flags.DEFINE_float("learning_rate", 0.1, "Initial SGD learning rate.")
    flags.DEFINE_list("lr_decay_at", ["0.5", "0.75"], "Fractions of training where the rate drops.")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                      "Compute precision of the trained networks (weights stay float32): mixed_float16 on GPUs "
                      "(with loss scaling), mixed_bfloat16 on TPUs and CPUs with bf16 units (about 1.3x here, "
                      "docs/performance.md).")
    flags.DEFINE_float("lr_decay_factor", 0.1, "Factor applied to the rate at each drop.")
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
    flags.DEFINE_bool("nesterov", True, "Nesterov momentum.")
    flags.DEFINE_float("weight_decay", None, "L2 weight decay on kernels (default: PAPER.md's 1e-4 for ResNets, "
                       "5e-4 for WRN and DenseNet).")
    flags.DEFINE_float("temperature", 4.0, "Distillation temperature T.")
    flags.DEFINE_float("alpha", 0.9, "Weight a of the distillation term.")
    flags.DEFINE_integer("seed", 0, "Seed for initialisation and the augmentation stream.")
    flags.DEFINE_enum(
        "teacher_outputs", "cached", list(teacher_outputs.KINDS),
        "How kd/od get the teachers' targets: 'cached' computes them once per (seed, epoch) into "
        "WORKDIR/teacher_outputs and shares them with every candidate and final training; "
        "'online' runs the teachers inside every training step (no disk).",
    )


def define_teacher_flags():
    flags.DEFINE_string("teacher_network", "resnet32", "Backbone of each teacher member.")
    flags.DEFINE_integer("num_teachers", 5, "Number of teacher members N.")
    flags.DEFINE_integer("teacher_epochs", None, "Epochs per teacher member (default: --epochs).")
    flags.DEFINE_string("teacher_workdir", None, "Work directory whose teachers/ holds the ensemble (default: "
                        "--workdir): runs that share it train the teachers once.")


def load_dataset():
    return data.load(
        FLAGS.dataset, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        val_fraction=FLAGS.val_fraction, split_seed=FLAGS.split_seed,
    )


def make_strategy():
    return distribute.make_strategy(FLAGS.strategy, tpu=FLAGS.tpu)


def default_weight_decay(network):
    """PAPER.md section 5: 1e-4 for ResNets, 5e-4 for the other families."""
    return 1e-4 if models.parse_network(network).family == "resnet" else 5e-4


def train_config(*, network, loss="ce", epochs=None):
    """The TrainConfig the flags describe for training `network` (a backbone name) with `loss`."""
    try:
        decay_at = tuple(float(f) for f in FLAGS.lr_decay_at)
    except ValueError:
        raise ValueError(f"--lr_decay_at takes fractions like 0.5,0.75, got {FLAGS.lr_decay_at}") from None
    return TrainConfig(
        epochs=FLAGS.epochs if epochs is None else epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        lr_decay_at=decay_at,
        lr_decay_factor=FLAGS.lr_decay_factor,
        momentum=FLAGS.momentum,
        nesterov=FLAGS.nesterov,
        weight_decay=default_weight_decay(network) if FLAGS.weight_decay is None else FLAGS.weight_decay,
        loss=losses.check_loss_name(loss),
        temperature=FLAGS.temperature,
        alpha=FLAGS.alpha,
        seed=FLAGS.seed,
    )


def teacher_targets(teacher, loss, dataset):
    """What a `loss` training distils from under --teacher_outputs: a targets source, or None for CE."""
    return teacher_outputs.make(
        FLAGS.teacher_outputs, teacher, loss, dataset,
        member_paths=[teachers.member_model_path(teacher_workdir(), i) for i in range(FLAGS.num_teachers)],
        cache_dir=os.path.join(FLAGS.workdir, "teacher_outputs"),
    )


def teacher_config():
    return train_config(network=FLAGS.teacher_network, loss="ce", epochs=FLAGS.teacher_epochs or FLAGS.epochs)


def refuse_multi_worker(entry):
    """A search or an ensemble is many trainings: across hosts they are spread as trials, not split per step."""
    if FLAGS.strategy == "multi_worker":
        raise ValueError(f"--strategy=multi_worker splits one training over hosts; python -m kdas_tf.{entry} runs "
                         "many: spread a search over hosts with worker hosts (README, Parallel trials), and use "
                         "multi_worker with python -m kdas_tf.train")


def teacher_workdir():
    """Where the teacher ensemble lives: --teacher_workdir, else the run's own --workdir."""
    return FLAGS.teacher_workdir or FLAGS.workdir


def check_workdir():
    """--workdir is set (judged with the other flags, before anything is made)."""
    if not FLAGS.workdir:
        raise ValueError("--workdir is required: the directory where results and checkpoints go")
    return FLAGS.workdir


def require_workdir():
    """--workdir, made if it does not exist yet."""
    os.makedirs(check_workdir(), exist_ok=True)
    return FLAGS.workdir


# Errors a user can fix from the command line: reported in one line, no stack trace.
USER_ERRORS = (ValueError, FileNotFoundError, data.DataNotFoundError, TrainingDivergedError, RuntimeError)


def _quiet_library_info(record):
    """TensorFlow's and KerasTuner's INFO lines (checkpoint sharding, ...) drown the progress lines."""
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= pylogging.WARNING or "/kdas_tf/" in path or "/site-packages/" not in path


def run(main):
    """app.run(main), turning user errors (flags included) into one line on stderr and exit code 2.

    `--verbosity=1` (or higher) shows the stack trace as well.
    """

    def guarded(argv):
        logging.get_absl_handler().addFilter(_quiet_library_info)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}: every option is a --flag")
        try:
            if "precision" in FLAGS:  # before any network is built
                keras.mixed_precision.set_global_policy(FLAGS.precision)
            return main(argv)
        except USER_ERRORS as error:
            if FLAGS.verbosity >= 1:
                logging.exception("stack trace")
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv):
    """absl's parsing, with its errors (unknown flag, bad value, missing flagfile) in our one-line form."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        message = " ".join(str(error).split()).removeprefix("ERROR:: ")
        print(f"error: {message} (--helpshort lists the flags)", file=sys.stderr)
        sys.exit(2)
