"""python -m kdas_tf.search: the whole KDAS pipeline in one work directory.

teachers (reused if present) -> architecture search (KerasTuner, resumable)
-> final training of the found architecture and of the plain student with each
L_T -> test evaluation -> SavedModel export -> results.json and results.md.
Rerunning the same command resumes where it stopped; finished steps are read
back from disk, never redone. With --parallel_trials=K the search trains K
candidates at once in worker processes (kdas_tf.parallel); the rest is unchanged.
"""

import os
import sys

import grpc
import keras_tuner
import tensorflow as tf
from absl import flags, logging
from keras_tuner.src.distribute import oracle_client

from kdas_tf import cli, data, export, losses, models, parallel, results, storage, summaries, teachers
from kdas_tf.controller import ControllerConfig
from kdas_tf.oracle import OBJECTIVE, KDASOracle, check_budget
from kdas_tf.train import train_architecture
from kdas_tf.tuner import KDASTuner

FLAGS = flags.FLAGS


def define_search_flags():
    flags.DEFINE_string("backbone", "resnet32", "Student backbone the search adds operations to.")
    flags.DEFINE_string("budget", "2x", "Memory budget M: millions of parameters (0.9) or a multiple of the backbone (2x).")
    flags.DEFINE_integer("rounds", 1, "Search rounds; each starts from the previous round's best.")
    flags.DEFINE_integer("trials_per_round", 20, "Candidates trained per round.")
    flags.DEFINE_integer("ops_per_addon", 2, "Operations per add-on module (L).")
    flags.DEFINE_string("search_loss", "od", "Loss L_S that trains candidates: ce, kd or od.")
    flags.DEFINE_integer("search_epochs", 10, "Epochs of each candidate's training.")
    flags.DEFINE_list("final_loss", ["ce", "kd", "od"], "Losses L_T of the final trainings (found model).")
    flags.DEFINE_list("student_loss", ["ce", "kd", "od"], "Losses for the plain backbone student rows (empty: skip).")
    flags.DEFINE_integer("controller_units", 64, "LSTM units of the controller.")
    flags.DEFINE_float("controller_learning_rate", 3.5e-4, "Adam learning rate of the controller.")
    flags.DEFINE_float("baseline_decay", 0.95, "Decay of the REINFORCE moving-average baseline.")
    flags.DEFINE_float("entropy_weight", 1e-4, "Weight of the controller's entropy bonus.")


def define_parallel_flags():
    flags.DEFINE_integer("parallel_trials", 1, "Candidates trained at once on this host, one worker process each.")
    flags.DEFINE_integer("worker_timeout", 300, "Seconds a worker may go unheard before its trial is re-queued; a "
                         "worker stops when the chief is silent for half of it.")
    flags.DEFINE_integer("cpu_threads", 0, "TensorFlow threads per pool (0: all cores); --parallel_trials gives "
                         "each local worker its share.")
    flags.DEFINE_bool("worker", False, "Run one worker of a parallel search, at the chief named by KERASTUNER_* "
                      "variables (the launchers set this).")


def parse_budget(text, backbone_parameters):
    """--budget in millions ('0.9', '0.9M') or as a multiple of the backbone ('2x') -> parameters."""
    text = str(text).strip().lower()
    try:
        if text.endswith("x"):
            return int(float(text[:-1]) * backbone_parameters)
        return int(float(text.rstrip("m")) * 1e6)
    except (ValueError, OverflowError):
        raise ValueError(f"--budget={text!r} is not a budget: give millions of parameters (0.9) or a multiple (2x)") from None


RECIPE_FLAGS = (
    "epochs", "batch_size", "learning_rate", "lr_decay_at", "lr_decay_factor", "momentum", "nesterov", "precision",
    "weight_decay", "temperature", "alpha", "teacher_epochs", "search_epochs",
    "controller_units", "controller_learning_rate", "baseline_decay", "entropy_weight",
)


def settings():
    """What makes a work directory's results what they are: a rerun must agree."""
    return {
        "dataset": FLAGS.dataset, "val_fraction": FLAGS.val_fraction, "split_seed": FLAGS.split_seed,
        "teacher_network": FLAGS.teacher_network, "num_teachers": FLAGS.num_teachers,
        "teacher_workdir": FLAGS.teacher_workdir,
        "backbone": FLAGS.backbone, "budget": FLAGS.budget, "search_loss": FLAGS.search_loss,
        "ops_per_addon": FLAGS.ops_per_addon, "seed": FLAGS.seed,
        # The recipes: trials or final rows trained with two of them must not compete in one table.
        **{name: FLAGS[name].value for name in RECIPE_FLAGS},
    }


def controller_config():
    return ControllerConfig(
        num_decisions=models.num_stages(FLAGS.backbone) * FLAGS.ops_per_addon,
        num_choices=len(models.ADDON_OPS), units=FLAGS.controller_units,
        learning_rate=FLAGS.controller_learning_rate, baseline_decay=FLAGS.baseline_decay,
        entropy_weight=FLAGS.entropy_weight, seed=FLAGS.seed,
    )


def check_flags():
    """Judge every flag that can be judged without data, before anything is written or trained.

    A mistake found after hours of teacher training, or after settings.json
    recorded it, would cost the run; here it costs a second. Returns
    (budget, backbone_parameters) in parameters.
    """
    cli.check_workdir()
    cli.refuse_multi_worker("search")
    data.check_val_fraction(FLAGS.val_fraction)
    num_classes, image_shape = data.NUM_CLASSES[FLAGS.dataset], data.IMAGE_SHAPES[FLAGS.dataset]
    models.parse_network(FLAGS.teacher_network)
    backbone = models.Architecture.backbone_only(FLAGS.backbone)
    backbone_parameters = models.count_parameters(backbone, num_classes, image_shape)
    budget = check_budget(backbone, parse_budget(FLAGS.budget, backbone_parameters), num_classes, image_shape)
    for name in ("num_teachers", "rounds", "trials_per_round", "ops_per_addon", "search_epochs",
                 "worker_timeout"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be at least 1, got {FLAGS[name].value}")
    if FLAGS.teacher_epochs is not None and FLAGS.teacher_epochs < 1:
        raise ValueError(f"--teacher_epochs must be at least 1 (or unset: --epochs), got {FLAGS.teacher_epochs}")
    if not FLAGS.final_loss:
        raise ValueError(f"--final_loss is empty: give at least one of {', '.join(losses.LOSSES)}")
    losses.check_loss_name(FLAGS.search_loss, "--search_loss")
    for flag in ("final_loss", "student_loss"):
        for loss in FLAGS[flag].value:
            losses.check_loss_name(loss, f"--{flag}")
    cli.teacher_config()  # the recipe's values (--epochs, --learning_rate, ...)
    cli.train_config(network=FLAGS.backbone)
    controller_config()
    return budget, backbone_parameters


def describe_plan(budget, backbone_parameters):
    """What the command would do, for --dry_run: every step with its size."""
    teacher_config, final_config = cli.teacher_config(), cli.train_config(network=FLAGS.backbone)
    return "\n".join([
        f"dry run of {FLAGS.workdir} on {FLAGS.dataset} (strategy {FLAGS.strategy}):",
        f"  teachers: {FLAGS.num_teachers} x {FLAGS.teacher_network}, {teacher_config.epochs} epochs each, "
        f"in {cli.teacher_workdir()}/teachers (finished members are reused)",
        f"  search: {FLAGS.rounds} round(s) x {FLAGS.trials_per_round} trials of {FLAGS.backbone} "
        f"({backbone_parameters / 1e6:.3f}M) + {FLAGS.ops_per_addon} ops per stage, budget {budget / 1e6:.3f}M, "
        f"trained with {FLAGS.search_loss} for {FLAGS.search_epochs} epochs each",
        f"  final: the found model with {', '.join(FLAGS.final_loss)}; {FLAGS.backbone} with "
        f"{', '.join(FLAGS.student_loss) or 'nothing'}; {final_config.epochs} epochs each",
        f"  then: test evaluation, SavedModel in {FLAGS.workdir}/export, results.json and results.md",
    ])


def build_oracle(info, workdir, budget):
    """The search's KDASOracle; its search space goes to the HParams dashboard of the trials' logs."""
    oracle = KDASOracle(
        backbone=FLAGS.backbone, num_classes=info.num_classes, input_shape=info.image_shape, budget=budget,
        rounds=FLAGS.rounds, trials_per_round=FLAGS.trials_per_round, ops_per_addon=FLAGS.ops_per_addon,
        controller=controller_config(),
        seed=FLAGS.seed, logdir=os.path.join(workdir, "tb", "controller"),
    )
    summaries.write_search_space(os.path.join(workdir, "tb", "trials"), num_stages=oracle.num_stages,
                                 ops_per_addon=oracle.ops_per_addon)
    return oracle


def build_tuner(oracle, dataset, strategy, teacher, workdir, tuner_class=KDASTuner, **kwargs):
    return tuner_class(
        oracle, dataset=dataset, config=cli.train_config(network=FLAGS.backbone, loss=FLAGS.search_loss,
                                                          epochs=FLAGS.search_epochs),
        strategy=strategy, teacher=cli.teacher_targets(teacher, FLAGS.search_loss, dataset),
        logdir=os.path.join(workdir, "tb", "trials"), directory=workdir,
        project_name="search", **kwargs,
    )


def run_search(dataset, strategy, teacher, workdir, budget):
    """The architecture search in this process; returns the oracle (trials and controller state)."""
    oracle = build_oracle(dataset.info, workdir, budget)
    tuner = build_tuner(oracle, dataset, strategy, teacher, workdir)
    tuner.oracle.verbose = 0
    tuner.search()
    return oracle


def gpu_ids():
    """The GPUs this host may give its workers: CUDA_VISIBLE_DEVICES's entries, else 0..n-1."""
    count = len(tf.config.list_physical_devices("GPU"))
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def local_workers(prefix):
    return parallel.worker_processes(prefix, FLAGS.parallel_trials, argv=sys.argv[1:], gpus=gpu_ids(),
                                     cpu_count=len(os.sched_getaffinity(0)))


def run_parallel_search(dataset, workdir, budget):
    """The search served to --parallel_trials local workers (and any remote ones); returns the oracle."""
    oracle = parallel.open_oracle(build_oracle(dataset.info, workdir, budget), workdir, "search")
    if oracle.search_finished():
        return oracle
    bind, port = parallel.chief_address(os.environ)
    return parallel.run_chief(oracle, local_workers(parallel.LOCAL_PREFIX), bind=bind, port=port,
                              timeout=FLAGS.worker_timeout)


def run_worker(dataset, strategy, workdir):
    """One worker: train the trials the chief hands out until it says the search is over."""
    parallel.die_with_launcher()
    parallel.tag_log_lines(os.environ[parallel.TUNER_ID])
    parallel.wait_for_chief(oracle_client.TIMEOUT)  # the chief serves once the teachers exist
    teacher = None
    if FLAGS.search_loss != "ce":
        with strategy.scope():
            teacher = teachers.load_ensemble(cli.teacher_workdir(), FLAGS.num_teachers)
    # The chief holds the real oracle; this one only names the objective for KerasTuner's client.
    oracle = keras_tuner.Oracle(objective=keras_tuner.Objective(OBJECTIVE, "max"), max_trials=1)
    tuner = build_tuner(oracle, dataset, strategy, teacher, workdir, parallel.WorkerTuner, timeout=FLAGS.worker_timeout)
    try:
        tuner.search()
    except grpc.RpcError as error:
        raise RuntimeError(f"the chief stopped answering ({error.code()}): the search ended or the chief died; "
                           "rerun the chief's command to resume") from None


def main(_):
    parallel.set_cpu_threads(FLAGS.cpu_threads)
    role = parallel.role(os.environ, worker=FLAGS.worker, parallel_trials=FLAGS.parallel_trials)
    if role == "worker_host":
        return parallel.run_worker_host(local_workers(os.environ[parallel.TUNER_ID]))
    if role == "chief":
        parallel.share_gpus_with_workers()
    budget, backbone_parameters = check_flags()
    if FLAGS.dry_run:
        print(describe_plan(budget, backbone_parameters))
        return
    dataset = cli.load_dataset()  # missing data is reported before the work directory is claimed
    workdir = cli.require_workdir()
    storage.claim_workdir(workdir, settings())
    strategy = cli.make_strategy()
    if role == "worker":
        return run_worker(dataset, strategy, workdir)
    info = dataset.info
    backbone = models.Architecture.backbone_only(FLAGS.backbone)

    teacher, teacher_report = teachers.train_teachers(
        dataset, network=FLAGS.teacher_network, num_teachers=FLAGS.num_teachers,
        config=cli.teacher_config(), workdir=cli.teacher_workdir(), strategy=strategy,
    )
    logging.info(teachers.describe(teacher_report))
    if role == "chief":
        oracle = run_parallel_search(dataset, workdir, budget)
    else:
        oracle = run_search(dataset, strategy, teacher, workdir, budget)  # unused by a ce search
    best = oracle.best_trial()
    if best is None:
        raise RuntimeError(f"no search trial finished in {workdir}/search: see the trial messages there")
    found = models.Architecture.parse(best.hyperparameters.values["architecture"])
    logging.info("search: best %s with val top1 %.2f%%", found, 100 * best.score)
    summaries.write_search_result(
        os.path.join(workdir, "tb", "search"), best_architecture=str(found), best_reward=best.score,
        parameters=best.hyperparameters.values["parameters"], budget=budget, trials=len(oracle.trials),
    )

    rows = {}
    for kind, arch, row_losses in (("student", backbone, FLAGS.student_loss), ("kdas", found, FLAGS.final_loss)):
        for loss in row_losses:
            config = cli.train_config(network=FLAGS.backbone, loss=loss)
            row = f"{kind}_{loss}"
            rows[row] = train_architecture(
                arch, dataset, config, strategy=strategy, workdir=os.path.join(workdir, "final", row),
                logdir=os.path.join(workdir, "tb", "final", row),
                teacher=cli.teacher_targets(teacher, loss, dataset), name=f"{kind} {loss}",
            )
    served = max((k for k in rows if k.startswith("kdas_")), key=lambda k: rows[k]["val"]["top1"])
    model = storage.load_model(os.path.join(workdir, "final", served, "model.keras"))
    export.export_saved_model(model, os.path.join(workdir, "export"), mean=info.mean, std=info.std)

    summary = results.collect(
        teacher_report=teacher_report, oracle=oracle, found=found, rows=rows, budget=budget,
        backbone_parameters=backbone_parameters, search_loss=FLAGS.search_loss, exported=served,
    )
    storage.write_json(os.path.join(workdir, "results.json"), summary)
    table = results.table2_markdown(summary)
    storage.write_text(os.path.join(workdir, "results.md"), table)
    logging.info("results in %s:\n%s", workdir, table)


if __name__ == "__main__":
    cli.define_data_flags()
    cli.define_run_flags()
    cli.define_train_flags()
    cli.define_teacher_flags()
    define_search_flags()
    define_parallel_flags()
    cli.run(main)
