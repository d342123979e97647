"""python -m kdas_tf.search: the whole KDAS pipeline in one work directory.

teachers (reused if present) -> architecture search (KerasTuner, resumable)
-> final training of the found architecture and of the plain student with each
L_T -> test evaluation -> SavedModel export -> results.json and results.md.
Rerunning the same command resumes where it stopped; finished steps are read
back from disk, never redone.
"""

import os

from absl import flags, logging

from kdas_tf import cli, export, models, results, storage, teachers
from kdas_tf.controller import ControllerConfig
from kdas_tf.oracle import KDASOracle
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


def parse_budget(text, backbone_parameters):
    """--budget in millions ('0.9', '0.9M') or as a multiple of the backbone ('2x') -> parameters."""
    text = str(text).strip().lower()
    try:
        if text.endswith("x"):
            return int(float(text[:-1]) * backbone_parameters)
        return int(float(text.rstrip("m")) * 1e6)
    except ValueError:
        raise ValueError(f"--budget={text!r} is not a budget: give millions of parameters (0.9) or a multiple (2x)") from None


def settings():
    """What makes a work directory's results what they are: a rerun must agree."""
    return {
        "dataset": FLAGS.dataset, "val_fraction": FLAGS.val_fraction, "split_seed": FLAGS.split_seed,
        "teacher_network": FLAGS.teacher_network, "num_teachers": FLAGS.num_teachers,
        "backbone": FLAGS.backbone, "budget": FLAGS.budget, "search_loss": FLAGS.search_loss,
        "ops_per_addon": FLAGS.ops_per_addon, "seed": FLAGS.seed,
    }


def run_search(dataset, strategy, teacher, workdir, budget):
    """The architecture search; returns the oracle (trials and controller state)."""
    info = dataset.info
    oracle = KDASOracle(
        backbone=FLAGS.backbone, num_classes=info.num_classes, input_shape=info.image_shape, budget=budget,
        rounds=FLAGS.rounds, trials_per_round=FLAGS.trials_per_round, ops_per_addon=FLAGS.ops_per_addon,
        controller=ControllerConfig(
            num_decisions=models.num_stages(FLAGS.backbone) * FLAGS.ops_per_addon,
            num_choices=len(models.ADDON_OPS), units=FLAGS.controller_units,
            learning_rate=FLAGS.controller_learning_rate, baseline_decay=FLAGS.baseline_decay,
            entropy_weight=FLAGS.entropy_weight, seed=FLAGS.seed,
        ),
        seed=FLAGS.seed, logdir=os.path.join(workdir, "tb", "controller"),
    )
    search_config = cli.train_config(loss=FLAGS.search_loss, epochs=FLAGS.search_epochs)
    tuner = KDASTuner(
        oracle, dataset=dataset, config=search_config, strategy=strategy,
        teacher=cli.teacher_targets(teacher, search_config.loss, dataset, teacher_workdir=workdir),
        logdir=os.path.join(workdir, "tb", "trials"), directory=workdir, project_name="search",
    )
    tuner.oracle.verbose = 0
    tuner.search()
    return oracle


def main(_):
    workdir = cli.require_workdir()
    storage.claim_workdir(workdir, settings())
    dataset = cli.load_dataset()
    info = dataset.info
    backbone = models.Architecture.backbone_only(FLAGS.backbone)
    backbone_parameters = models.count_parameters(backbone, info.num_classes, info.image_shape)
    budget = parse_budget(FLAGS.budget, backbone_parameters)
    strategy = cli.make_strategy()

    teacher, teacher_report = teachers.train_teachers(
        dataset, network=FLAGS.teacher_network, num_teachers=FLAGS.num_teachers,
        config=cli.teacher_config(), workdir=workdir, strategy=strategy,
    )
    logging.info(teachers.describe(teacher_report))
    oracle = run_search(dataset, strategy, teacher, workdir, budget)
    best = oracle.get_best_trials(1)
    if not best or best[0].score is None:
        raise RuntimeError(f"no search trial finished in {workdir}/search: see the trial messages there")
    found = models.Architecture.parse(best[0].hyperparameters.values["architecture"])
    logging.info("search: best %s with val top1 %.2f%%", found, 100 * best[0].score)

    rows = {}
    for role, arch, losses in (("student", backbone, FLAGS.student_loss), ("kdas", found, FLAGS.final_loss)):
        for loss in losses:
            config = cli.train_config(loss=loss)
            rows[f"{role}_{loss}"] = train_architecture(
                arch, dataset, config, strategy=strategy, workdir=os.path.join(workdir, "final", f"{role}_{loss}"),
                teacher=cli.teacher_targets(teacher, loss, dataset, teacher_workdir=workdir), name=f"{role} {loss}",
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
    cli.run(main)
