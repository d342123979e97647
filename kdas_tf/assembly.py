"""What a run's processes build from its config: shared by the pipeline and the parallel workers below it.

The config says what the user asked for; here it meets the data, the networks and the disk, once per job:
the data (and its metadata, before any image is read), the budget M and what it counts (parameters, MACs, or a
latency table measured once), the teachers' files and their hashes, the precision and BatchNorm of every network
built, the teachers to distil from, the targets a loss distils from, and the search's KDASOracle and the KDASTuner
that trains its candidates. The pipeline
decides whether the tuner runs the search here or the oracle is served to workers (kdas_tf.parallel), each
of which builds the same tuner around KerasTuner's client.
"""

import contextlib
import glob
import os

import keras

from kdas_tf import _internals, data, models
from kdas_tf.data import label_checks
from kdas_tf.deploy import latency_table
from kdas_tf.distill import ensemble, given_teachers, teacher_outputs
from kdas_tf.errors import as_user_error
from kdas_tf.nas import summaries
from kdas_tf.nas.budget import analytic_cost, resolve_budget
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.nas.tuner import KDASTuner, read_tuner_file
from kdas_tf.runtime import storage
from kdas_tf.runtime.workdir import SEARCH_PROJECT, Workdir, finished_rows


def data_metadata(config):
    """(num_classes, image_shape) of config.data: the built-in tables, or a reference's cheap metadata (its
    headers, labels or first image; a bad file is refused in one line), before any image is read."""
    section = config.data
    return data.metadata(section.dataset, data_dir=section.data_dir, image_size=section.image_size,
                         tfds_splits=tuple(section.tfds_splits))


def load_data(config):
    """config.data's dataset in memory, split; DataNotFoundError (a UserError) says how to prepare it."""
    section = config.data
    return data.load(section.dataset, data_dir=section.data_dir, manual_dir=section.manual_dir,
                     val_fraction=section.val_fraction, split_seed=section.split_seed,
                     train_examples=section.train_examples, image_size=section.image_size, flip=section.flip,
                     tfds_splits=tuple(section.tfds_splits), test_fraction=section.test_fraction)


def final_data(config, dataset):
    """What the teachers and the final rows train on (--final_training): `dataset` itself, or with its
    validation split added to training."""
    return dataset.with_validation_trained() if config.data.final_training == "all" else dataset


def start_data(config, dataset=None):
    """The data of a job as it starts: `dataset` (given from Python) or config.data's, loaded; refused where its
    validation split is too small to reward a search (data.label_checks)."""
    given = dataset is not None
    dataset = dataset if given else load_data(config)
    info, section = dataset.info, config.data
    whole = None if given or section.train_examples else info.num_train + info.num_val
    label_checks.check_validation_split(info.num_val, info.num_classes, num_examples=whole,
                                        val_fraction=None if given else section.val_fraction)
    return dataset


def describe_data(config, num_classes):
    """The dry run's lines on config.data: its classes, training images per class and validation split, with the
    warnings and refusals of data.label_checks, from the data's metadata."""
    section = config.data
    counts, num_examples = data.train_label_counts(section.dataset, data_dir=section.data_dir,
                                                   tfds_splits=tuple(section.tfds_splits),
                                                   test_fraction=section.test_fraction, split_seed=section.split_seed)
    lines = [f"  data: {num_classes} classes; training images per class (before the validation holdout): "
             + (label_checks.histogram(counts) if counts is not None else "known once the images are read")]
    rare = counts is not None and label_checks.rare_warning(section.dataset, counts)
    if rare:
        lines.append(f"  warning: {rare}")
    if num_examples:
        num_val = data.split_sizes(num_examples, section.val_fraction)[1]
        label_checks.check_validation_split(num_val, num_classes, val_fraction=section.val_fraction,
                                            num_examples=num_examples)
        lines.append(f"  {label_checks.reward_line(num_val, num_classes)}")
    return lines


def budget(config, num_classes=None, image_shape=None, *, cost=None):
    """(M, the backbone's cost) in --budget_metric's unit (parameters, MACs, nanoseconds): --budget resolved for the
    data's classes and image shape (default: config.data's metadata); refused in one line where the backbone alone
    does not fit. cost: the run's cost_model (default: made here)."""
    if num_classes is None:
        num_classes, image_shape = data_metadata(config)
    cost = cost or cost_model(config, num_classes, image_shape)
    return as_user_error(resolve_budget, config.search.budget_form(), config.search.backbone, num_classes,
                        image_shape, config.model.shortcut, cost=cost)


def cost_model(config, num_classes=None, image_shape=None, *, missing="keep"):
    """What --budget_metric counts of the search's networks (a models.costs.AdditiveCost): parameters and MACs
    counted; latency from its table: --latency_table, else the one kept in the work directory, else measured here
    (about a minute; missing: 'keep' keeps it there, 'measure' keeps nothing, 'refuse' refuses, as
    deploy.latency_table.resolve says)."""
    if num_classes is None:
        num_classes, image_shape = data_metadata(config)
    search = config.search
    if search.budget_metric != "latency":
        return as_user_error(analytic_cost, search.budget_metric, search.backbone, num_classes, image_shape,
                             config.model.shortcut)
    target = latency_target(config, num_classes, image_shape)
    workdir = Workdir(config.workdir)
    if missing == "keep":
        workdir.check_writable()  # before a minute of measuring
    table = latency_table.resolve(target, workdir.latency_table, search.latency_table, missing=missing)
    return latency_table.as_cost(table)


def latency_target(config, num_classes, image_shape):
    """What --budget_metric=latency's table prices: the search's backbone on the data's images, as deployed."""
    search = config.search
    return latency_table.Target(search.backbone, num_classes, tuple(image_shape), config.model.shortcut,
                                search.latency_format, search.latency_threads)


def teacher_model_files(config):
    """--teacher_models with each glob expanded (sorted); a path that names nothing is refused."""
    return given_teachers.expand_model_paths(config.teachers.models)


def member_paths(config, workdir):
    """The members' files: --teacher_models, else the trained members of `workdir` (a runtime.workdir.Workdir)."""
    return teacher_model_files(config) or workdir.member_models(config.teachers.num_teachers)


def run_settings(config, dataset=None):
    """What a work directory records of this run (settings.json): the config's settings, the loaded `dataset` by
    its content (data.content_identity) and given teachers by their files' content hashes, so other data or
    teachers at the same paths are refused on a rerun."""
    settings = config.settings()
    if dataset is not None and dataset.info.identity:  # every dataset made by kdas_tf.data has one
        settings[storage.DATA_SETTING] = dataset.info.identity
    if config.teachers.models:
        settings["teacher_models"] = given_teachers.model_identity(teacher_model_files(config))
    return settings


def check_teachers(config, dataset, workdir, *, trains=True):
    """Read back, and check, the trained teachers a job uses, writing nothing: each finished member's file, and,
    where the job trains the missing ones (a search, python -m kdas_tf.teachers), teachers/settings.json against
    this config; a job that only distils from them (python -m kdas_tf.train) needs every member. Workdir.claim
    calls it before anything is written."""
    teachers = config.teachers
    if trains:  # on the data they are trained on (--final_training)
        ensemble.check_teachers(final_data(config, dataset), network=teachers.network,
                                num_teachers=teachers.num_teachers, config=config.teacher_train_config(),
                                workdir=workdir, shortcut=config.model.shortcut)
    else:
        ensemble.check_members(workdir, teachers.num_teachers, complete=True)


def check_state(config, dataset, workdir):
    """Read back, and check, every state file a search run resumes from in its own directory, writing nothing:
    each finished final row, the search's state and trials (its teachers: check_teachers). Workdir.claim calls
    it under the lock and before anything is written, so a refused run leaves the directory as it was."""
    finished_rows(workdir)
    if os.path.exists(workdir.search_state):
        info = dataset.info
        oracle = make_oracle(config, info.num_classes, info.image_shape,  # no logdir: it writes nothing
                             budget(config, info.num_classes, info.image_shape)[0])
        _internals.set_project_dir(oracle, workdir.root, SEARCH_PROJECT)
        oracle.reload()
        for path in glob.glob(os.path.join(workdir.search, "*.json")):
            if path != workdir.search_state:
                read_tuner_file(path)


@contextlib.contextmanager
def precision(policy):
    """The compute precision of every network built inside; the caller's policy is restored after."""
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


@contextlib.contextmanager
def building(config):
    """Every network built inside is built as `config` says: its precision and its BatchNorm synchronisation."""
    with precision(config.recipe.precision), models.sync_batchnorm(config.model.sync_batchnorm):
        yield


def load_teachers(config, dataset, workdir, strategy):
    """The finished ensemble, to distil from: --teacher_models, else the trained members of the work directory."""
    if config.teachers.models:
        return given_teachers.load_given(dataset, teacher_model_files(config), input_scale=config.teachers.input_scale,
                                         batch_size=config.recipe.batch_size, strategy=strategy)[0]
    with strategy.scope():
        return ensemble.load_ensemble(workdir.member_models(config.teachers.num_teachers))


def targets_for(config, workdir, teacher, loss, dataset):
    """What a `loss` training distils from under --teacher_outputs: a targets source, or None for CE."""
    # The search's training split and the final rows' (--final_training=all) each keep their own cache.
    cache_dir = workdir.teacher_outputs + ("_with_validation" if dataset.trains_on_validation else "")
    return teacher_outputs.make(
        config.teachers.outputs, teacher, loss, dataset,
        member_paths=member_paths(config, workdir), cache_dir=cache_dir,
        stored_losses=config.search.distilling_losses(),
    )


def policy_medians(config, num_classes, image_shape, memory_budget, samples=25, *, cost=None):
    """[(round, architecture)]: each round's candidate of median size among `samples` drawn from the controller's
    policy as a new search starts it (the budget's mask included), the next round grown on it as the search grows
    its round's best. What the dry run says a found network is likely to cost, in the budget's metric."""
    oracle = make_oracle(config, num_classes, image_shape, memory_budget, cost=cost)
    rounds, medians = oracle.search_rounds, []
    for round_index in range(config.search.rounds):
        backbone = rounds.backbone()
        drawn = [backbone.with_addons(rounds.stage_ops(rounds.controller.sample())) for _ in range(samples)]
        median = sorted(drawn, key=oracle.cost)[len(drawn) // 2]
        medians.append((round_index, median))
        if round_index + 1 < config.search.rounds:
            rounds.start_next(str(median))
    return medians


def make_oracle(config, num_classes, image_shape, memory_budget, *, logdir=None, oracle_class=KDASOracle, cost=None):
    """The search's oracle as `config` describes it, for data of `num_classes` classes and `image_shape` images.

    logdir: where the controller's summaries go (None: nowhere, e.g. to read a finished search). cost: what the
    budget counts (cost_model's; default: made here).
    """
    search = config.search
    return oracle_class(
        backbone=search.backbone, num_classes=num_classes, input_shape=image_shape, budget=memory_budget,
        rounds=search.rounds, trials_per_round=search.trials_per_round, ops_per_addon=search.ops_per_addon,
        controller=config.controller_config(), seed=config.search_seed, logdir=logdir,
        shortcut=config.model.shortcut, cost=cost or cost_model(config, num_classes, image_shape),
        cost_exponent=search.cost_exponent,
    )


def build_oracle(config, info, workdir, memory_budget):
    """The search's KDASOracle; a new search's space goes to the HParams dashboard of the trials' logs (a search
    begun wrote it when it began: its state is read, and checked, after this)."""
    oracle = make_oracle(config, info.num_classes, info.image_shape, memory_budget, logdir=workdir.tb("controller"))
    if not os.path.exists(workdir.search_state):
        summaries.write_search_space(workdir.tb("trials"), num_stages=oracle.num_stages,
                                     ops_per_addon=oracle.ops_per_addon)
    return oracle


def build_tuner(config, oracle, dataset, strategy, targets, workdir, tuner_class=KDASTuner, **kwargs):
    """The tuner that trains each candidate with L_S for --search_epochs, in WORKDIR/search."""
    search = config.search
    return tuner_class(
        oracle, dataset=dataset, config=config.train_config(search.search_loss, epochs=search.search_epochs),
        strategy=strategy, targets=targets, logdir=workdir.tb("trials"), shortcut=config.model.shortcut,
        directory=workdir.root, project_name=SEARCH_PROJECT, rounds=search.rounds,
        parallel_trials=config.parallel.parallel_trials, **kwargs,
    )
