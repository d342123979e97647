"""The run's sections but the search's (search_section.py): where it writes, the data, the training recipe, the
networks' build, the teachers, the controller, parallel trials, the export, and what python -m kdas_tf.train
trains. Each judges its own values when it is made, with the one-line message of the flag at fault."""

import dataclasses
import typing

from kdas_tf.config.options import at_least_one, option
from kdas_tf.data import catalog
from kdas_tf.deploy.formats import check_formats
from kdas_tf.distill.recipe import INPUT_SCALES, PRECISIONS, TEACHER_OUTPUTS, TrainConfig, check_loss_name
from kdas_tf.errors import UserError, as_user_error
from kdas_tf.models import networks
from kdas_tf.models.architecture import ADDON_OPS, Architecture
from kdas_tf.nas.controller_config import KINDS as CONTROLLER_KINDS, ControllerConfig
from kdas_tf.runtime import distribute


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where the run writes and what it runs on."""

    # A work directory may be moved or copied and resumed elsewhere.
    workdir: str = option(None, "Directory for checkpoints, models, summaries and results.", setting=False)
    strategy: str = option("default", "tf.distribute strategy.", choices=distribute.STRATEGIES, setting=False)
    tpu: typing.Optional[str] = option(None, "TPU name or address for --strategy=tpu.", setting=False)

    def __post_init__(self):
        if not self.workdir:
            raise UserError("--workdir is required: the directory where results and checkpoints go")
        if self.strategy not in distribute.STRATEGIES:
            raise UserError(f"--strategy={self.strategy!r} is not a strategy: expected one of "
                            f"{', '.join(distribute.STRATEGIES)}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The dataset and its held-out validation split."""

    dataset: str = option("digits", f"Dataset to train and evaluate on: one of {', '.join(catalog.DATASETS)}, or your own "
                          "as tfds:NAME (prepared in --data_dir), folder:PATH (one sub-folder per class; PATH/train "
                          "and PATH/test, or else --test_fraction held out) or npz:PATH (x_train, y_train, x_test, "
                          "y_test).")
    # Where the data lives does not change what it is.
    data_dir: typing.Optional[str] = option(None, "TFDS data directory (prepared CIFAR-100 lives here).",
                                            setting=False)
    manual_dir: typing.Optional[str] = option(
        None, "Directory holding tiny-imagenet-200.zip (TinyImageNet), or Fashion-MNIST's four IDX .gz files "
        "(default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist).", setting=False)
    val_fraction: float = option(0.1, "Share of the training set held out as the validation split.")
    split_seed: int = option(0, "Seed of the train/validation split.")
    final_training: str = option(
        "holdout", "What the teachers and the final rows train on: holdout (the training split without the "
        "validation holdout, as the search's candidates) or all (the whole training split, validation included, "
        "as the paper trains them; the served row is then chosen by loss order, not by validation). The "
        "search's candidates always train without the holdout, which rewards them.",
        choices=("holdout", "all"), unrecorded="holdout")
    train_examples: typing.Optional[int] = option(
        None, "Train on a fixed subset of this many of the training images left after the validation "
        "holdout (seeded by --split_seed); validation and test stay whole. Default: all.")
    image_size: typing.Optional[int] = option(
        None, "folder: and tfds: datasets: resize every image to S x S (needed when their sizes differ).")
    flip: typing.Optional[bool] = option(
        None, "Mirror training images at random (default: on for your own data and the built-ins that keep their "
        "class mirrored; --flip=false for digits, text or anything a mirror changes).")
    tfds_splits: typing.Tuple[str, ...] = option(("train", "test"), "tfds: datasets: the TRAIN,TEST split names.")
    test_fraction: float = option(0.2, "folder: datasets without PATH/train and PATH/test: the share of the images "
                                  "held out as the test split (seeded by --split_seed).")

    def __post_init__(self):
        as_user_error(catalog.check_name, self.dataset)
        as_user_error(catalog.check_val_fraction, self.val_fraction)
        if self.final_training not in ("holdout", "all"):
            raise UserError(f"--final_training={self.final_training!r} is not a choice: expected holdout or all")
        if self.train_examples is not None and self.train_examples < 1:
            raise UserError(f"--train_examples must be at least 1 (or unset: all), got {self.train_examples}")
        if self.image_size is not None and self.image_size < 1:
            raise UserError(f"--image_size must be at least 1 pixel (or unset), got {self.image_size}")
        if len(self.tfds_splits) != 2:
            raise UserError(f"--tfds_splits={','.join(self.tfds_splits)}: give two split names, TRAIN,TEST")
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError(f"--test_fraction must be in (0, 1) (exclusive), got {self.test_fraction}")


_RECIPE = TrainConfig()  # PAPER.md section 5's recipe: the flags' defaults


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """The training recipe of PAPER.md section 5, shared by teachers, candidates and final rows (its defaults are
    TrainConfig's)."""

    epochs: int = option(_RECIPE.epochs, "Epochs of the trained network.")
    batch_size: int = option(_RECIPE.batch_size, "Global batch size.")
    learning_rate: float = option(_RECIPE.learning_rate, "Initial SGD learning rate.")
    lr_decay_at: typing.Tuple[float, ...] = option(_RECIPE.lr_decay_at, "Fractions of training where the rate drops.")
    lr_decay_factor: float = option(_RECIPE.lr_decay_factor, "Factor applied to the rate at each drop.")
    momentum: float = option(_RECIPE.momentum, "SGD momentum.")
    nesterov: bool = option(_RECIPE.nesterov, "Nesterov momentum.")
    weight_decay: typing.Optional[float] = option(
        None, "L2 weight decay on kernels (default: PAPER.md's 1e-4 for ResNets, 5e-4 for WRN and DenseNet).")
    temperature: float = option(_RECIPE.temperature, "Distillation temperature T.")
    alpha: float = option(_RECIPE.alpha, "Weight a of the distillation term.")
    seed: int = option(_RECIPE.seed, "Seed for initialisation and the augmentation stream.")
    precision: str = option(
        "float32", "Compute precision of the trained networks (weights stay float32): mixed_float16 on GPUs "
        "(with loss scaling), mixed_bfloat16 on TPUs and CPUs with bf16 units (about 1.3x here, "
        "docs/performance.md).", choices=PRECISIONS)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision={self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.train_config(network="resnet8")  # every range check of the recipe, by TrainConfig

    def train_config(self, *, network, loss="ce", epochs=None):
        """The TrainConfig for training `network` (a backbone name, which picks the default weight decay)."""
        weight_decay = self.weight_decay
        if weight_decay is None:  # PAPER.md section 5: 1e-4 for ResNets, 5e-4 for the other families
            weight_decay = 1e-4 if networks.parse_network(network).family == "resnet" else 5e-4
        return as_user_error(
            TrainConfig, epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, lr_decay_at=tuple(self.lr_decay_at),
            lr_decay_factor=self.lr_decay_factor, momentum=self.momentum, nesterov=self.nesterov,
            weight_decay=weight_decay, loss=loss, temperature=self.temperature, alpha=self.alpha, seed=self.seed,
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """How every network of the run is built: teachers, candidates, final rows (PAPER.md section 3)."""

    shortcut: str = option(
        "zero_pad", "Shortcut of the CIFAR ResNets where a stage halves the resolution and widens: zero_pad (He et "
        "al.'s option A, no parameters; its counts fit the paper's) or projection (1x1 conv + BN). WideResNet "
        "and DenseNet ignore it.", choices=networks.SHORTCUTS, unrecorded=networks.SHORTCUT_BEFORE_THE_FLAG)
    # Work directories made before the flag synchronised already (the layer did it whenever k > 1).
    sync_batchnorm: bool = option(
        True, "With more than one replica (--strategy=mirrored on k devices, multi_worker, tpu), BatchNorm "
        "normalises over the global batch, as one device would; --nosync_batchnorm: over each replica's "
        "batch / k images. One replica: no effect.", unrecorded=True)

    def __post_init__(self):
        if self.shortcut not in networks.SHORTCUTS:
            raise UserError(f"--shortcut={self.shortcut!r}: expected one of {', '.join(networks.SHORTCUTS)}")


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The ensemble: N members of one backbone, trained here (or in a shared work directory)."""

    network: str = option("resnet32", "Backbone of each teacher member.", flag="teacher_network")
    num_teachers: int = option(5, "Number of teacher members N.")
    epochs: typing.Optional[int] = option(None, "Epochs per teacher member (default: --epochs).",
                                          flag="teacher_epochs")
    workdir: typing.Optional[str] = option(
        None, "Work directory whose teachers/ holds the ensemble (default: --workdir): runs that share it "
        "train the teachers once.", flag="teacher_workdir")
    # Cached and online targets are equal within float16 (tested): switching is safe.
    outputs: str = option(
        "cached", "How kd/od get the teachers' targets: 'cached' computes them once per (seed, epoch) into "
        "WORKDIR/teacher_outputs and shares them with every candidate and final training; 'online' runs the "
        "teachers inside every training step (no disk).", flag="teacher_outputs", choices=TEACHER_OUTPUTS,
        setting=False)
    # assembly.run_settings adds each file's content hash: a rerun with other teachers at the same paths is refused.
    # Directories made before the flag distilled from trained members: given ones are refused there.
    models: typing.Tuple[str, ...] = option(
        (), "Your trained models as the ensemble members instead of training them: .keras files or SavedModel "
        "directories, or globs (--teacher_network, --num_teachers and --teacher_epochs are then ignored).",
        flag="teacher_models", unrecorded=[])
    input_scale: str = option(
        "standardised", "What --teacher_models take as input: standardised (per channel (x - mean) / std of the "
        "training split, what kdas_tf's own networks take), pixels (0..255, e.g. a model with its own Rescaling "
        "layer: the Keras convention) or unit (pixels / 255). Each model is first scored on validation images at "
        "every scale: one clearly better at another scale than this one stops the run, naming the scale that "
        "fits (README, Your teachers).", flag="teacher_input", choices=INPUT_SCALES)

    def __post_init__(self):
        if self.input_scale not in INPUT_SCALES:
            raise UserError(f"--teacher_input={self.input_scale!r}: expected one of "
                            f"{', '.join(INPUT_SCALES)}")
        as_user_error(networks.parse_network, self.network)
        at_least_one(self, "num_teachers")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--teacher_epochs must be at least 1 (or unset: --epochs), got {self.epochs}")
        if self.outputs not in TEACHER_OUTPUTS:
            raise UserError(f"--teacher_outputs={self.outputs!r} is not a choice: expected one of "
                            f"{', '.join(TEACHER_OUTPUTS)}")



@dataclasses.dataclass(frozen=True)
class ControllerSettings:
    """What chooses the add-ons: the LSTM controller and its hyper-parameters (PAPER.md section 4, ours)."""

    kind: str = option("lstm", "What samples the add-ons: the REINFORCE-trained LSTM, or uniform choices under the "
                       "same budget, trials and reward (random search, the baseline of a NAS result).",
                       flag="controller", choices=CONTROLLER_KINDS)
    units: int = option(64, "LSTM units of the controller.", flag="controller_units")
    # Defaults measured to learn within a search's 100 trials: docs/controller.md.
    learning_rate: float = option(5e-3, "Adam learning rate of the controller.", flag="controller_learning_rate")
    baseline_decay: float = option(0.8, "Decay of the REINFORCE moving-average baseline.")
    entropy_weight: float = option(1e-4, "Weight of the controller's entropy bonus.")

    def __post_init__(self):
        self.controller_config(num_decisions=1, seed=0)

    def controller_config(self, *, num_decisions, seed):
        return as_user_error(
            ControllerConfig, num_decisions=num_decisions, num_choices=len(ADDON_OPS), units=self.units,
            learning_rate=self.learning_rate, baseline_decay=self.baseline_decay,
            entropy_weight=self.entropy_weight, seed=seed, kind=self.kind)


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """Parallel trials on KerasTuner's distributed mode (kdas_tf.parallel): the same search, its trials spread
    over processes. Not a setting: a worker's fewer threads sum in another order, so rewards agree only up to
    floating point (docs/performance.md measures it)."""

    parallel_trials: int = option(1, "Candidates trained at once on this host, one worker process each.",
                                  setting=False)
    worker_timeout: int = option(300, "Seconds a worker may go unheard before its trial is re-queued; a worker "
                                 "stops when the chief is silent for half of it.", setting=False)
    cpu_threads: int = option(0, "TensorFlow threads per pool (0: all cores); --parallel_trials gives each local "
                              "worker its share.", setting=False)

    def __post_init__(self):
        if self.parallel_trials < 1:
            raise UserError(f"--parallel_trials={self.parallel_trials}: give the number of trials to train at "
                            "once, 1 or more")
        at_least_one(self, "worker_timeout")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What the served model is exported as (kdas_tf.deploy.serving.export_served); never changes a result."""

    # An export's formats say how the model is shipped, not what it is: a rerun may add one.
    formats: typing.Tuple[str, ...] = option(
        ("saved_model",), "Formats of the export: saved_model, tflite (float32 LiteRT), tflite_int8 (full-integer, "
        "calibrated on 300 training images). Each LiteRT file is checked against the SavedModel on the test "
        "split and written with deployment.json/.md (size, test top-1, agreement, latency).", setting=False)
    force_export: bool = option(False, "Write a LiteRT export even when its classes agree with the SavedModel's "
                                "on fewer test images than its threshold (99% float, 97% int8).", setting=False)

    def __post_init__(self):
        as_user_error(check_formats, self.formats)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """What python -m kdas_tf.train trains: a backbone or an architecture string, with one loss."""

    network: str = option("resnet32", "Backbone to train (ignored when --architecture is set).")
    architecture: typing.Optional[str] = option(
        None, "Architecture string, e.g. resnet32:conv3x3+skip/sep5x5/avgpool3x3.")
    loss: str = option("ce", "Training loss: ce, kd or od.")

    def __post_init__(self):
        self.parsed()
        as_user_error(check_loss_name, self.loss)

    def parsed(self):
        return as_user_error(Architecture.parse, self.architecture or self.network)
