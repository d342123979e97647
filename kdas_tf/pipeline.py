"""The KDAS pipeline as a library: run(config) does what python -m kdas_tf.search does, and returns its results.

    from kdas_tf import config, pipeline
    results = pipeline.run(config.Config(run=config.RunConfig(workdir="runs/x"), ...))

teachers (reused if present) -> architecture search (KerasTuner, resumable) -> final training of the found
architecture and of the plain student with each L_T -> test evaluation -> export (--formats; under a latency
budget, the found network measured: export/latency.json) -> results.json and results.md. Calling it again on the
same work directory resumes where it stopped; finished steps are read back from disk, never redone.
`train_teachers` and `train_one` are the jobs of python -m kdas_tf.teachers and kdas_tf.train. Nothing here reads a
flag. What every process builds from the config (data, budget, teachers, oracle, tuner) comes from kdas_tf.assembly,
which the parallel workers share; whether the search runs here or is served to them (kdas_tf.parallel) is decided
here.
"""

import dataclasses
import os

import tensorflow as tf
from absl import logging

from kdas_tf import assembly, models, parallel
from kdas_tf.deploy import latency_check, latency_table, litert, serving
from kdas_tf.distill import ensemble, finals, given_teachers
from kdas_tf.distill.trainer import check_batch_size
from kdas_tf.errors import UserError, as_user_error
from kdas_tf.nas import summaries
from kdas_tf.parallel import chief, launcher
from kdas_tf.reporting import results
from kdas_tf.runtime import distribute, progress, rows, storage
from kdas_tf.runtime.workdir import SEARCH_PROJECT, Workdir


def _start(config, dataset, *, job, teachers=None):
    """The data, the work directory, the strategy and the given teachers (or None): the start of every job.

    job: 'search' records the config's settings; 'teachers' and 'train' only add to a directory, whose teachers/
    keeps its own settings (ensemble.ensemble_settings) and whose trainings are checked one by one.
    A dataset or teachers given from Python are recorded by what they are: its name, their weights' hashes.
    What the flags, the data and given teachers can refuse is refused before the work directory is claimed. The
    trained teachers the job uses are checked once their directory is held (teachers in --teacher_workdir before
    the work directory is even made), and what the job resumes from in its own directory once that is held, before
    anything is written (assembly.check_teachers, _check_state).
    """
    workdir = Workdir(config.workdir, config.teacher_workdir)
    workdir.check_writable()  # in a second: an unwritable directory is not found after minutes of loading data
    data_given = dataset is not None
    dataset = assembly.start_data(config, dataset)  # missing or unfit data is refused before the directory is claimed
    strategy = distribute.make_strategy(config.run.strategy, tpu=config.run.tpu)
    members = teachers or assembly.teacher_model_files(config)
    given = members and given_teachers.load_given(dataset, members, input_scale=config.teachers.input_scale,
                                                  batch_size=config.recipe.batch_size, strategy=strategy)
    check_batch_size(config.recipe.batch_size, dataset.info.num_train)
    search = job == "search"
    settings = assembly.run_settings(config, dataset) if search else {}
    if search and data_given:
        settings["dataset"] = dataset.info.name
    if search and teachers:
        settings["teacher_models"] = given_teachers.weights_identity(teachers)
    trained_teachers = not given and (job != "train" or config.train.loss != "ce")
    workdir.claim(settings, config.unrecorded_settings(), owner=_owns_workdir(config),
                  check_teachers=(lambda: assembly.check_teachers(config, dataset, workdir, trains=job != "train"))
                  if trained_teachers else None,
                  check_state=lambda: _check_state(config, dataset, workdir, job))
    return dataset, workdir, strategy, given or None


def _check_state(config, dataset, workdir, job):
    """What `job` resumes from in its own directory, read back and checked, writing nothing: a search's state
    (assembly.check_state), a train job's own training (read back if it finished); a teachers job has none."""
    if job == "search":
        assembly.check_state(config, dataset, workdir)
    elif job == "train":
        arch = config.train.parsed()
        finals.read_finished(workdir.train(rows.train_name(arch, config.train.loss)), arch, config.train.loss,
                             config.model.shortcut)


def _owns_workdir(config):
    """Whether this process holds the work directory. A multi-worker task other than the chief writes nothing
    there (distribute.writes_files), so it works under the chief's claim, as a search's worker does."""
    if config.run.strategy != "multi_worker":
        return True
    task = tf.distribute.cluster_resolver.TFConfigClusterResolver()  # TF_CONFIG only: nothing connects yet
    return distribute.is_chief_task(task.task_type, task.task_id, task.cluster_spec().as_dict())


def _teachers(config, dataset, strategy, workdir, given=None, run_progress=None):
    """The ensemble and its report: given teachers ((ensemble, members) of _start), else trained members."""
    if run_progress:
        run_progress.start("teachers")
    if given:
        report = given_teachers.report_given(*given, dataset, input_scale=config.teachers.input_scale,
                                             batch_size=config.recipe.batch_size, workdir=workdir)
        logging.info(ensemble.describe(report))
        return given[0], report
    if not all(os.path.exists(path) for path in workdir.member_models(config.teachers.num_teachers)):
        workdir.claim_teachers()  # training them: no other run may read or train them meanwhile
    teacher, report = ensemble.train_teachers(
        dataset, network=config.teachers.network, num_teachers=config.teachers.num_teachers,
        config=config.teacher_train_config(), workdir=workdir, strategy=strategy, shortcut=config.model.shortcut,
        run_progress=run_progress,
    )
    logging.info(ensemble.describe(report))
    return teacher, report


def plan_epochs(config, workdir, teachers_given=False):
    """{step: epochs of training left}, in the order run() takes them, counted from what `workdir` holds.

    Final rows not yet named (man-made networks chosen after the search) count as unfinished; the final
    rows' step recounts exactly when it starts.
    """
    search = config.search
    missing = sum(not os.path.exists(path) for path in workdir.member_models(config.teachers.num_teachers))
    trials_left = max(0, search.num_trials() - len(workdir.trial_results()))
    manmade = [str(index) for index in range(len(search.manmade))]
    return {
        "teachers": 0 if teachers_given else missing * config.teacher_epochs,
        "search": trials_left * search.search_epochs,
        "final rows": _final_epochs_left(config, workdir, rows.final_rows(search, None, manmade)),
        "export": 0,
    }


def _final_epochs_left(config, workdir, plan):
    return config.recipe.epochs * sum(not os.path.exists(workdir.final_results(row, index))
                                      for row, _, _ in plan for index in range(config.search.seeds))


def train_teachers(config, *, dataset=None):
    """Train (or reuse) the teacher ensemble of `config`; returns its report."""
    config.refuse_multi_worker("teachers")
    with assembly.building(config):
        dataset, workdir, strategy, given = _start(config, dataset, job="teachers")
        return _teachers(config, assembly.final_data(config, dataset), strategy, workdir, given)[1]


def run(config, *, dataset=None, teachers=None, role=None):
    """The whole KDAS pipeline in config.run.workdir; returns the results (also in results.json).

    dataset: a kdas_tf.data.Dataset to use instead of loading config.data's (data.from_numpy makes one of
    arrays); its classes and image shape size the budget. teachers: keras.Models to distil from instead of
    training members (as --teacher_models; one process only, since parallel workers could not load them);
    they are frozen (trainable=False) as part of the ensemble. role: this process's part, 'single' or 'chief'
    (parallel.role; the search command passes the one it dispatched on), by default read from KerasTuner's
    variables as that command does.
    """
    config.refuse_multi_worker("search")
    info = (dataset.info.num_classes, dataset.info.image_shape) if dataset is not None else None
    # M, resolved once for the whole run. Nothing is written before the claim: a latency table is measured (or
    # read) here and kept, the same table, once the directory is held (assembly.make_oracle's cost_model).
    cost = assembly.cost_model(config, *(info or ()), missing="measure")
    budget, backbone_cost = assembly.budget(config, *(info or ()), cost=cost)
    if role is None:
        role = parallel.role(os.environ, worker=False, parallel_trials=config.parallel.parallel_trials)
    if role not in ("single", "chief"):
        raise UserError(f"this process's part in the search is {role!r}: a worker runs python -m kdas_tf.search "
                        "with KerasTuner's variables set (README, Parallel trials), not pipeline.run")
    is_chief = role == "chief"
    if is_chief and teachers:
        raise UserError("teachers given as keras.Models cannot reach parallel workers: save them (.keras) and "
                        "pass their paths as --teacher_models, or run with parallel_trials=1")
    if is_chief:
        launcher.share_gpus_with_workers()
    with assembly.building(config):
        dataset, workdir, strategy, given = _start(config, dataset, job="search", teachers=teachers)
        run_progress = progress.RunProgress(plan_epochs(config, workdir, teachers_given=bool(given)))
        final_data = assembly.final_data(config, dataset)  # the teachers' and final rows'; the search's is dataset
        teacher, teacher_report = _teachers(config, final_data, strategy, workdir, given, run_progress)
        run_progress.start("search")
        search_epochs = run_progress.epochs_left["search"]
        oracle = _search(config, dataset, strategy, teacher, workdir, budget, serve=is_chief,
                         run_progress=run_progress)
        if is_chief:  # the workers trained the search's epochs
            run_progress.epoch_done(search_epochs)
        best = oracle.best_trial()
        if best is None:
            raise UserError(f"no search trial finished in {workdir.search}: see the trial messages there")
        found = models.Architecture.parse(best.hyperparameters.values["architecture"])
        logging.info("search: best %s with val top1 %.2f%%", found, 100 * best.score)
        if not _search_result_written(workdir, found, len(oracle.trials)):  # a finished run's rerun adds no event
            summaries.write_search_result(
                workdir.tb("search"), best_architecture=str(found), best_reward=best.score,
                parameters=best.hyperparameters.values["parameters"], budget=budget, trials=len(oracle.trials),
                metric=config.search.budget_metric, cost=oracle.cost(found),
                soft_reward=oracle.reward(best) if oracle.cost_exponent else None,
            )
        finished = train_final_rows(config, final_data, strategy, teacher, workdir, found, run_progress)
        decision = rows.serving_decision(finished)
        served = decision["row"]
        seed = rows.served_seed(finished[served]["seeds"])
        run_progress.start("export")
        kept = latency_check.read_kept(workdir.found_latency)  # read before the export replaces export/
        serving.export_served(storage.load_model(workdir.final_model(served, seed)), workdir.export,
                              dataset=dataset, formats=config.export.formats, force=config.export.force_export)
    latency = _found_latency(config, dataset.info, workdir, found, finished[served]["architecture"], budget, kept)
    summary = results.collect(
        teacher_report=teacher_report, oracle=oracle, found=best, rows=finished, budget=budget,
        backbone_parameters=oracle.parameters(oracle.backbone), search_loss=config.search.search_loss,
        exported=served, exported_seed=seed, serving=decision, budget_metric=config.search.budget_metric,
        backbone_cost=backbone_cost, latency=latency,
    )
    storage.write_json(workdir.results, summary)
    table = results.table2_markdown(summary)
    storage.write_text(workdir.results_table, table)
    logging.info("results in %s:\n%s", workdir.root, table)
    return summary


def _found_latency(config, info, workdir, found, served_architecture, budget, kept):
    """--budget_metric=latency: the found network's latency predicted and measured here once it is exported
    (deploy.latency_check.found_latency), kept in export/latency.json; None under another metric.

    The served model's --latency_format file is timed when the export has it; otherwise the found architecture,
    converted untrained. kept: the record beside the export this one replaced (reused if it measured the same).
    """
    if config.search.budget_metric != "latency":
        return None
    target = assembly.latency_target(config, info.num_classes, info.image_shape)
    exported = os.path.join(workdir.export, litert.FILES[target.format])
    served_file = served_architecture == str(found) and os.path.exists(exported)
    record = latency_check.found_latency(latency_table.load(workdir.latency_table), target, found, budget_ns=budget,
                                         exported=exported if served_file else None, kept=kept)
    storage.write_json(workdir.found_latency, record)
    logging.info("%s", results.latency_line(record))
    return record


def _search_result_written(workdir, found, trials):
    """Whether tb/search already holds this search's result: its results.json records the same found network
    and number of trials (a finished run rerun; a search given more rounds or trials writes its new result)."""
    try:
        previous = storage.read_json(workdir.results)
    except (OSError, ValueError):
        return False
    return previous.get("found_architecture") == str(found) and len(previous.get("trials", ())) == trials


def _search(config, dataset, strategy, teacher, workdir, budget, *, serve=False, run_progress=None):
    """The architecture search, resumed where it stopped; returns the oracle (trials, controller state).

    serve: serve the oracle to worker processes (kdas_tf.parallel.chief) instead of training here.
    """
    oracle = assembly.build_oracle(config, dataset.info, workdir, budget)
    if serve:
        return chief.run(config, oracle, workdir.root, SEARCH_PROJECT)
    targets = assembly.targets_for(config, workdir, teacher, config.search.search_loss, dataset)
    tuner = assembly.build_tuner(config, oracle, dataset, strategy, targets, workdir, run_progress=run_progress)
    tuner.oracle.verbose = 0
    tuner.search()
    return oracle


def _manmade_networks(config, found_parameters, info):
    """--manmade's networks, 'auto' resolved against the found model's size; each once, in order."""
    search = config.search
    names = [as_user_error(models.nearest_network, search.backbone, found_parameters, info.num_classes,
                           info.image_shape, shortcut=config.model.shortcut, deeper=True) if name == "auto" else name
             for name in search.manmade]
    return list(dict.fromkeys(names))


def train_final_rows(config, dataset, strategy, teacher, workdir, found, run_progress=None):
    """The plain backbone with each --student_loss, the found architecture and each --manmade network with each
    --final_loss, every row trained --seeds times (seeds --seed, --seed+1, ...); returns {row: its seeds
    combined (runtime.rows.combine_seeds)}. Rows: student_LOSS, kdas_LOSS, manmade_NETWORK_LOSS."""
    info = dataset.info
    found_parameters = models.count_parameters(found, info.num_classes, info.image_shape,
                                               shortcut=config.model.shortcut)
    plan = rows.final_rows(config.search, found, _manmade_networks(config, found_parameters, info))
    if run_progress:
        run_progress.start("final rows", _final_epochs_left(config, workdir, plan))
    trained = {}
    for row, arch, loss in plan:
        arch = models.as_architecture(arch)
        trained[row] = train_seeds(config, arch, loss, dataset, strategy, teacher, workdir, row,
                                   network=arch.backbone, run_progress=run_progress)
    return trained


def train_seeds(config, arch, loss, dataset, strategy, teacher, workdir, row, *, network=None, run_progress=None):
    """Row `row` of `workdir`: `arch` trained with `loss` from each of --seeds seeds; returns them combined.

    network: the backbone whose family picks the default weight decay (default: the search's backbone).
    """
    targets = assembly.targets_for(config, workdir, teacher, loss, dataset)
    recipe = config.recipe.train_config(network=network or config.search.backbone, loss=loss)
    seeds = []
    for index in range(config.search.seeds):
        seeds.append(finals.train_architecture(
            arch, dataset, dataclasses.replace(recipe, seed=recipe.seed + index), strategy=strategy,
            workdir=workdir.final(row, index), logdir=workdir.tb("final", rows.final_name(row, index)),
            name=row.replace("_", " ") + (f" seed {index}" if index else ""), targets=targets,
            shortcut=config.model.shortcut, run_progress=run_progress,
        ))
    return rows.combine_seeds(seeds)


def train_one(config, *, dataset=None):
    """python -m kdas_tf.train's job: config.train's network or architecture with its loss; returns its results."""
    arch = config.train.parsed()
    train_config = config.recipe.train_config(network=arch.backbone, loss=config.train.loss)
    with assembly.building(config):
        dataset, workdir, strategy, given = _start(config, dataset, job="train")
        dataset = assembly.final_data(config, dataset)
        targets = None
        if train_config.loss != "ce":
            teacher = given[0] if given else assembly.load_teachers(config, dataset, workdir, strategy)
            targets = assembly.targets_for(config, workdir, teacher, train_config.loss, dataset)
        name = rows.train_name(arch, train_config.loss)
        return finals.train_architecture(arch, dataset, train_config, strategy=strategy, workdir=workdir.train(name),
                                         logdir=workdir.tb("train", name), targets=targets,
                                         shortcut=config.model.shortcut)


def measure_latency(config, *, export_table=None, check=0, check_rounds=None, seed=0):
    """python -m kdas_tf.latency's job: (the latency table, the check of its predictions or None).

    The table: measured here and written to `export_table` (to be given elsewhere as --latency_table), else the
    run's (--latency_table, the one its work directory keeps, or measured here and kept there). check=N: N
    networks of up to `check_rounds` rounds (default --rounds) sampled across the range, measured whole against
    the table's prediction (deploy.latency_check).
    """
    search = config.search
    num_classes, image_shape = assembly.data_metadata(config)
    target = assembly.latency_target(config, num_classes, image_shape)
    if export_table:
        table = latency_table.measure_table(target)
        storage.write_json(export_table, table)
    else:
        table = latency_table.resolve(target, Workdir(config.workdir).latency_table, search.latency_table)
    if not check:
        return table, None
    networks = latency_check.sample_architectures(table, check, rounds=check_rounds or search.rounds,
                                                  ops_per_addon=search.ops_per_addon, seed=seed)
    return table, latency_check.check_table(table, target, networks)
