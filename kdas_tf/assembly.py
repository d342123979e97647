"""The search step of the pipeline: a KDASOracle and the KDASTuner that trains its candidates.

In one process the tuner runs the search loop itself; with --parallel_trials (or a chief address in
KerasTuner's variables) the oracle is served to worker processes instead (kdas_tf.parallel.chief), each
of which builds the same tuner around KerasTuner's client (kdas_tf.parallel.worker).
"""

from kdas_tf.nas import summaries
from kdas_tf.distill import teacher_outputs
from kdas_tf.nas.oracle import KDASOracle
from kdas_tf.parallel import chief
from kdas_tf.nas.tuner import KDASTuner
from kdas_tf.runtime.workdir import SEARCH_PROJECT


def targets_for(config, workdir, ensemble, loss, dataset):
    """What a `loss` training distils from under --teacher_outputs: a targets source, or None for CE."""
    return teacher_outputs.make(
        config.teachers.outputs, ensemble, loss, dataset,
        member_paths=config.teachers.member_paths(workdir), cache_dir=workdir.teacher_outputs,
        stored_losses=config.search.distilling_losses(),
    )


def make_oracle(config, info, budget, *, logdir=None, oracle_class=KDASOracle):
    """The search's oracle as `config` describes it, for data of `info`'s classes and image shape.

    logdir: where the controller's summaries go (None: nowhere, e.g. to read a finished search).
    """
    search = config.search
    return oracle_class(
        backbone=search.backbone, num_classes=info.num_classes, input_shape=info.image_shape, budget=budget,
        rounds=search.rounds, trials_per_round=search.trials_per_round, ops_per_addon=search.ops_per_addon,
        controller=config.controller_config(), seed=config.recipe.seed, logdir=logdir,
        shortcut=config.model.shortcut,
    )


def build_oracle(config, info, workdir, budget):
    """The search's KDASOracle; its search space goes to the HParams dashboard of the trials' logs."""
    oracle = make_oracle(config, info, budget, logdir=workdir.tb("controller"))
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


def run(config, dataset, strategy, ensemble, workdir, budget, *, parallel=False, run_progress=None):
    """The architecture search, resumed where it stopped; returns the oracle (trials, controller state)."""
    oracle = build_oracle(config, dataset.info, workdir, budget)
    if parallel:
        return chief.run(config, oracle, workdir.root, SEARCH_PROJECT)
    targets = targets_for(config, workdir, ensemble, config.search.search_loss, dataset)
    tuner = build_tuner(config, oracle, dataset, strategy, targets, workdir, run_progress=run_progress)
    tuner.oracle.verbose = 0
    tuner.search()
    return oracle
