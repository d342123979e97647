"""The run's configuration: frozen sections, built once (from flags, or by hand in Python), checked once.

    Config(run=RunConfig(workdir="runs/x"), data=DataConfig(dataset="digits"), ...)

Each field is also its command-line flag: `option(...)` records the flag's name (when it differs from the
field's), its help and its choices, so the entry points define their flags from these classes
(`define_flags`), read them back into a Config (`from_flags`) and write a Config as flags for the workers
of a parallel search (`to_flags`). Every value is judged when its section is made, and the sections
against each other when the Config is made, so the Python API and the command lines refuse the same
mistakes with the same one-line messages. Configuration only: names are checked against the grammars of
networks, architectures, losses and datasets, but nothing is loaded, built, counted or read from disk here;
what needs the data's metadata, the teachers' files or a network's size (the budget in parameters, a
reference's classes, the given teachers' hashes) is resolved once by kdas_tf.assembly when a job starts,
before its work directory is claimed.

A work directory's settings.json is `Config.settings()` (with the data's content identity and the given
teachers' hashes added by assembly.run_settings): every field of every section except those marked
`setting=False`, each with the reason a rerun may change it. A new field is a setting unless it says why not.
"""

import dataclasses
import re
import typing

from absl import flags

from kdas_tf.data import catalog
from kdas_tf.deploy.formats import check_formats
from kdas_tf.distill.recipe import (DISTILLING, INPUT_SCALES, LOSSES, PRECISIONS, TEACHER_OUTPUTS, TrainConfig,
                                    check_loss_name)
from kdas_tf.errors import UserError, as_user_error
from kdas_tf.models import networks
from kdas_tf.models.architecture import ADDON_OPS, Architecture
from kdas_tf.nas.controller_config import KINDS as CONTROLLER_KINDS, ControllerConfig, check_cost_exponent
from kdas_tf.runtime import distribute

# The flags defined here belong to the entry point that asks for them, so its --help lists them.
flags.disclaim_key_flags()

# --budget_metric (kdas_tf.models.costs.METRICS) and what --budget may say in each: {suffix: scale to the unit
# the search counts in}, '' for a bare number, 'x' for a multiple of the backbone. Latency counts nanoseconds.
BUDGET_METRICS = ("parameters", "macs", "latency")
BUDGET_UNITS = {"parameters": {"": 1e6, "m": 1e6}, "macs": {"": 1e6, "k": 1e3, "m": 1e6, "g": 1e9},
                "latency": {"": 1e6, "ms": 1e6, "us": 1e3}}
BUDGET_FORMS = {"parameters": "millions of parameters (0.9) or a multiple (2x)",
                "macs": "MACs with a unit (40M, 1.2G, 500k; a bare number is millions) or a multiple of the "
                        "backbone's (2x)",
                "latency": "a latency with a unit (1.5ms, 300us; a bare number is milliseconds) or a multiple of "
                           "the backbone's (2x)"}
LATENCY_FORMATS = ("tflite", "tflite_int8")  # LiteRT formats of kdas_tf.deploy.litert.FORMATS


def option(default, help, *, flag=None, choices=None, setting=True, unrecorded=None):
    """A config field with its flag: `flag` (default: the field's name), help text, enum choices.

    setting=False: a rerun of the same work directory may change it (say why beside it).
    unrecorded: the value a setting added later had in work directories made before it (their settings.json
    lacks it); a rerun with another value is refused like any changed setting. None: they take the rerun's.
    """
    metadata = {"flag": flag, "help": help, "choices": choices, "setting": setting, "unrecorded": unrecorded}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default=tuple(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field):
    return field.metadata["flag"] or field.name


def _at_least_one(section, *names):
    for name in names:
        value = getattr(section, name)
        if value < 1:
            raise UserError(f"--{flag_name(_field(section, name))} must be at least 1, got {value}")


def _field(section, name):
    return next(f for f in dataclasses.fields(section) if f.name == name)


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
        _at_least_one(self, "num_teachers")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--teacher_epochs must be at least 1 (or unset: --epochs), got {self.epochs}")
        if self.outputs not in TEACHER_OUTPUTS:
            raise UserError(f"--teacher_outputs={self.outputs!r} is not a choice: expected one of "
                            f"{', '.join(TEACHER_OUTPUTS)}")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The architecture search and the final rows trained from what it finds."""

    backbone: str = option("resnet32", "Student backbone the search adds operations to.")
    budget: str = option("2x", "Budget M in --budget_metric's unit: millions of parameters (0.9 or 0.9M), MACs in "
                         "millions or billions (40M, 1.2G), latency in milliseconds or microseconds (1.5ms, 300us), "
                         "or a multiple of the backbone's (2x).")
    # Directories made before it counted parameters.
    budget_metric: str = option(
        "parameters", "What --budget bounds: parameters (the paper's memory budget), macs (multiply-accumulates of "
        "one image) or latency (one image through the deployed LiteRT model, predicted from a table of the backbone "
        "and each op measured on this machine once, or given with --latency_table).", choices=BUDGET_METRICS,
        unrecorded="parameters")
    # Directories made before it rewarded the validation top-1 alone.
    cost_exponent: float = option(
        0.0, "Exponent w of MnasNet's soft objective: the controller is rewarded, and each round's and the search's "
        "best network chosen, by val top-1 x (cost / budget)^w, the cost in --budget_metric's unit. 0: the "
        "paper's reward, val top-1 alone; MnasNet's -0.07 prefers the cheaper of two networks unless the dearer "
        "one is clearly more accurate (README, Budgets). From -1 to 0; the --budget mask still binds.",
        unrecorded=0.0)
    # The latency table kept in the work directory records them too, and refuses a run of others.
    latency_format: str = option("tflite_int8", "--budget_metric=latency: the LiteRT format the table is measured "
                                 "in, as --formats exports it: tflite (float32) or tflite_int8.",
                                 choices=LATENCY_FORMATS)
    latency_threads: int = option(1, "--budget_metric=latency: the LiteRT interpreter's threads in the table's "
                                  "measurements.")
    # Where a table was given from does not change it: the work directory keeps the table it searched with.
    latency_table: typing.Optional[str] = option(
        None, "--budget_metric=latency: a table measured on the target device (python -m kdas_tf.latency "
        "--export_table=FILE there) instead of measuring one on this machine.", setting=False)
    # A finished search may be extended by more rounds or trials, and more final rows added to it.
    rounds: int = option(1, "Search rounds; each starts from the previous round's best.", setting=False)
    trials_per_round: int = option(20, "Candidates trained per round.", setting=False)
    ops_per_addon: int = option(2, "Operations per add-on module (L).")
    search_loss: str = option("od", "Loss L_S that trains candidates: ce, kd or od.")
    search_epochs: int = option(10, "Epochs of each candidate's training.")
    final_loss: typing.Tuple[str, ...] = option(("ce", "kd", "od"), "Losses L_T of the final trainings (found model).",
                                                setting=False)
    student_loss: typing.Tuple[str, ...] = option(
        ("ce", "kd", "od"), "Losses for the plain backbone student rows (empty: skip).", setting=False)
    manmade: typing.Tuple[str, ...] = option(
        (), "Man-made networks trained beside the found model with each --final_loss (Table 2's rows of similar "
        "size): names (resnet56), or 'auto' for the network of the backbone's family nearest the found "
        "model's size, deeper than the backbone.", setting=False)
    # More seeds may be added to a finished run: the first ones are read back.
    seeds: int = option(1, "Trainings of every final and plain-student row, from seeds --seed, --seed+1, ...: "
                        "the tables show their mean and standard deviation.", setting=False)
    # Recorded resolved (Config.settings), so that a directory made before it (whose controller took --seed)
    # resumes only with the seed it was searched with.
    search_seed: typing.Optional[int] = option(
        None, "Seed of the search's controller and oracle (default: --seed). Independent searches that share "
        "one teacher ensemble (--teacher_workdir, whose members were trained from --seed) differ by it.",
        setting=False)
    # Only printed: what the run is compared with, not how it runs.
    paper_found: typing.Optional[float] = option(
        None, "Millions of parameters of the network the paper found with this setting, printed by --dry_run "
        "beside the size the search is likely to find (the paper flagfiles set it).", setting=False)

    def __post_init__(self):
        as_user_error(Architecture.backbone_only, self.backbone)
        if self.budget_metric not in BUDGET_METRICS:
            raise UserError(f"--budget_metric={self.budget_metric!r}: expected one of {', '.join(BUDGET_METRICS)}")
        self.budget_form()
        self._check_latency_flags()
        as_user_error(check_cost_exponent, self.cost_exponent)
        _at_least_one(self, "rounds", "trials_per_round", "ops_per_addon", "search_epochs", "seeds")
        as_user_error(check_loss_name, self.search_loss, "--search_loss")
        if not self.final_loss:
            raise UserError(f"--final_loss is empty: give at least one of {', '.join(LOSSES)}")
        for flag in ("final_loss", "student_loss"):
            for loss in getattr(self, flag):
                as_user_error(check_loss_name, loss, f"--{flag}")
        for network in self.manmade:
            if network != "auto":
                as_user_error(networks.parse_network, network)
        if "auto" in self.manmade and not networks.same_family(self.backbone):
            raise UserError(f"--manmade=auto: {self.backbone} has no deeper networks of its family to compare "
                            "with (ResNets and WideResNets have); name the networks instead")

    def distilling_losses(self):
        """The run's losses that read teacher targets (search and final rows), each once."""
        return tuple(loss for loss in DISTILLING
                     if loss in (self.search_loss, *self.final_loss, *self.student_loss))

    def num_trials(self):
        """The whole search's trials, every round's."""
        return self.rounds * self.trials_per_round

    def budget_form(self):
        """--budget as written: ('multiple', 2.0) for '2x'; ('millions', 0.9) for parameters' '0.9' or '0.9M';
        ('absolute', n) for MACs (40M, 1.2G: n MACs) and latency (1.5ms, 300us: n nanoseconds). Resolved once a job
        knows the data's classes and image shape (kdas_tf.nas.budget.resolve_budget)."""
        text = str(self.budget).strip().lower()
        match = re.fullmatch(r"((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)", text)
        units = BUDGET_UNITS[self.budget_metric]
        if match is None or (match[2] not in units and match[2] != "x") or not 0 < float(match[1]) < float("inf"):
            raise UserError(f"--budget={text!r} is not a budget: give {BUDGET_FORMS[self.budget_metric]}")
        value = float(match[1])
        if match[2] == "x":
            return "multiple", value
        if self.budget_metric == "parameters":
            return "millions", value
        return "absolute", value * units[match[2]]

    def _check_latency_flags(self):
        if self.latency_threads < 1:
            raise UserError(f"--latency_threads={self.latency_threads}: give the interpreter's threads, 1 or more")
        if self.latency_format not in LATENCY_FORMATS:
            raise UserError(f"--latency_format={self.latency_format!r}: expected one of {', '.join(LATENCY_FORMATS)}")
        if self.latency_table and self.budget_metric != "latency":
            raise UserError(f"--latency_table is a latency budget's table: it needs --budget_metric=latency, not "
                            f"{self.budget_metric}")


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
        _at_least_one(self, "worker_timeout")


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


# The sections of a search (python -m kdas_tf.search and its parallel workers).
SEARCH_SECTIONS = ("run", "data", "recipe", "model", "teachers", "search", "controller", "parallel", "export")
SECTIONS = {"run": RunConfig, "data": DataConfig, "recipe": RecipeConfig, "model": ModelConfig,
            "teachers": TeacherConfig, "search": SearchConfig, "controller": ControllerSettings,
            "parallel": ParallelConfig, "export": ExportConfig, "train": TrainJob}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: every section, checked against the others."""

    run: RunConfig
    data: DataConfig = DataConfig()
    recipe: RecipeConfig = RecipeConfig()
    model: ModelConfig = ModelConfig()
    teachers: TeacherConfig = TeacherConfig()
    search: SearchConfig = SearchConfig()
    controller: ControllerSettings = ControllerSettings()
    parallel: ParallelConfig = ParallelConfig()
    export: ExportConfig = ExportConfig()
    train: TrainJob = TrainJob()

    def __post_init__(self):
        self.recipe.train_config(network=self.teachers.network, epochs=self.teacher_epochs)

    @property
    def workdir(self):
        return self.run.workdir

    @property
    def teacher_workdir(self):
        """Where the teacher ensemble lives: --teacher_workdir, else the run's own --workdir."""
        return self.teachers.workdir or self.run.workdir

    @property
    def teacher_epochs(self):
        return self.teachers.epochs or self.recipe.epochs

    def teacher_train_config(self):
        return self.recipe.train_config(network=self.teachers.network, epochs=self.teacher_epochs)

    def train_config(self, loss, *, epochs=None):
        """The recipe for the search's candidates and final rows (weight decay of the student's family)."""
        return self.recipe.train_config(network=self.search.backbone, loss=loss, epochs=epochs)

    def controller_config(self):
        num_decisions = networks.num_stages(self.search.backbone) * self.search.ops_per_addon
        return self.controller.controller_config(num_decisions=num_decisions, seed=self.search_seed)

    @property
    def search_seed(self):
        """The seed of the search's controller and oracle: --search_seed, else --seed."""
        return self.recipe.seed if self.search.search_seed is None else self.search.search_seed

    def refuse_multi_worker(self, entry):
        """A search or an ensemble is many trainings: across hosts they are spread as trials, not split per step."""
        if self.run.strategy == "multi_worker":
            raise UserError(f"--strategy=multi_worker splits one training over hosts; python -m kdas_tf.{entry} "
                            "runs many: spread a search over hosts with worker hosts (README, Parallel trials), "
                            "and use multi_worker with python -m kdas_tf.train")

    def settings(self):
        """What makes a work directory's results what they are, keyed by flag: a rerun must agree."""
        settings = {flag_name(f): _plain(getattr(section, f.name))
                    for name, section in self._sections() if name != "train"
                    for f in dataclasses.fields(section) if f.metadata["setting"]}
        settings["search_seed"] = self.search_seed
        return settings

    def unrecorded_settings(self):
        """{flag: value} of the settings added later, as work directories made before them were made."""
        unrecorded = {flag_name(f): f.metadata["unrecorded"] for name, section in self._sections() if name != "train"
                      for f in dataclasses.fields(section) if f.metadata["unrecorded"] is not None}
        return {**unrecorded, "search_seed": self.recipe.seed}  # before it, the controller took --seed

    def _sections(self):
        return [(name, getattr(self, name)) for name in SECTIONS]


def _plain(value):
    """A setting as JSON records it; lists as their flag's strings, as settings.json always held them."""
    return [str(v) for v in value] if isinstance(value, tuple) else value


# --- flags ------------------------------------------------------------------------------------------


def define_flags(*sections, flag_values=flags.FLAGS):
    """Define the flags of `sections` (names of SECTIONS, or other dataclasses of `option` fields)."""
    for section in sections:
        section = SECTIONS.get(section, section)
        for field in dataclasses.fields(section):
            _define(field, section, flag_values)


def _define(field, section, flag_values):
    name, help, default = flag_name(field), field.metadata["help"], field.default
    kind = _kind(section, field)
    if field.metadata["choices"]:
        flags.DEFINE_enum(name, default, list(field.metadata["choices"]), help, flag_values=flag_values)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help, flag_values=flag_values)
    elif kind is int:
        flags.DEFINE_integer(name, default, help, flag_values=flag_values)
    elif kind is float:
        flags.DEFINE_float(name, default, help, flag_values=flag_values)
    elif kind is tuple:
        flags.DEFINE_list(name, [str(v) for v in default], help, flag_values=flag_values)
    else:
        flags.DEFINE_string(name, default, help, flag_values=flag_values)


def _kind(section, field):
    """bool, int, float, str or tuple: the flag type of a field, from its annotation."""
    hint = typing.get_type_hints(section)[field.name]
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return tuple if typing.get_origin(hint) is tuple else hint


def _from_flag(section, field, value):
    if _kind(section, field) is not tuple:
        return value
    element = typing.get_args(typing.get_type_hints(section)[field.name])[0]
    try:
        return tuple(element(v) for v in value)
    except ValueError:
        raise UserError(f"--{flag_name(field)} takes a comma-separated list of {element.__name__}s "
                        f"(like {','.join(str(v) for v in field.default)}), got {','.join(value)}") from None


def section_from_flags(section, flag_values=flags.FLAGS):
    """The section (a name of SECTIONS, or a dataclass of `option` fields) from the flags, which must be defined."""
    section = SECTIONS.get(section, section)
    return section(**{f.name: _from_flag(section, f, flag_values[flag_name(f)].value)
                      for f in dataclasses.fields(section)})


def from_flags(flag_values=flags.FLAGS):
    """The Config the parsed flags describe; sections whose flags are not defined keep their defaults."""
    present = {name for name, section in SECTIONS.items()
               if all(flag_name(f) in flag_values for f in dataclasses.fields(section))}
    return Config(**{name: section_from_flags(name, flag_values) for name in SECTIONS if name in present})


def from_args(args, sections=tuple(SECTIONS)):
    """The Config that command-line `args` describe, e.g. ["--flagfile=flags/digits.cfg", "--workdir=runs/x"].

    Parsed with flag values of its own: the process's flags are neither read nor changed. Bad values give
    the same one-line UserError as the command lines.
    """
    flag_values = flags.FlagValues()
    define_flags(*sections, flag_values=flag_values)
    try:
        flag_values(["kdas_tf", *args])
    except flags.Error as error:
        raise UserError(" ".join(str(error).split())) from None
    return from_flags(flag_values)


def flag_argument(name, value):
    """Flag `name` set to `value` as a command line says it: --name / --noname, lists comma-separated."""
    if isinstance(value, bool):
        return f"--{'' if value else 'no'}{name}"
    if isinstance(value, (tuple, list)):
        return f"--{name}={','.join(str(v) for v in value)}"
    return f"--{name}={value}"


def to_flags(config, names=tuple(SECTIONS)):
    """The named sections of `config` as command-line flags ('--name=value'), the inverse of from_flags."""
    arguments = []
    for name in names:
        section = getattr(config, name)
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            if value is not None:  # unset: the flag's default is None too
                arguments.append(flag_argument(flag_name(field), value))
    return arguments
