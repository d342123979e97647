"""python -m kdas_tf.train: train one fixed network or architecture with --loss=ce|kd|od.

Distilling losses read the teacher ensemble from --teacher_workdir (default:
--workdir), as written by python -m kdas_tf.teachers or kdas_tf.search.
"""

import os

import keras
from absl import flags, logging

from kdas_tf import cli, distribute, models, storage, teachers
from kdas_tf.trainer import Trainer

FLAGS = flags.FLAGS


def train_architecture(arch, dataset, config, *, strategy, workdir, logdir=None, teacher=None, name="final"):
    """Train `arch` from scratch with `config`, evaluate on test, save model and results; resumable.

    logdir: where its TensorBoard summaries go, inside the run's one log tree
    (WORKDIR/tb/...), so `tensorboard --logdir WORKDIR` shows every training.
    """
    results_path = os.path.join(workdir, "results.json")
    model_path = os.path.join(workdir, "model.keras")
    if os.path.exists(results_path) and os.path.exists(model_path):
        finished = storage.read_json(results_path)
        if finished.get("architecture") != str(arch) or finished.get("loss") != config.loss:
            raise ValueError(f"{workdir} holds a finished {finished.get('architecture')} trained with "
                             f"{finished.get('loss')}, not {arch} with {config.loss}: move it aside to train this one")
        logging.info("%s: already finished, see %s", name, results_path)
        return finished
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = models.build_student(arch, dataset.info.num_classes, dataset.info.image_shape)
    trainer = Trainer(
        model, dataset, config, strategy=strategy, teacher=teacher, workdir=workdir, logdir=logdir, name=name,
    )
    last = trainer.fit()
    test = trainer.evaluate(dataset.test(config.batch_size))
    results = {
        "architecture": str(arch),
        "loss": config.loss,
        "epochs": config.epochs,
        "parameters": models.count_parameters(arch, dataset.info.num_classes, dataset.info.image_shape),
        "val": last["val"],
        "test": test,
    }
    if distribute.writes_files(strategy):  # not a multi-worker task beside the chief, which writes them
        storage.save_model(model, model_path)
        storage.write_json(results_path, results)
    logging.info("%s: %s test top1 %.2f%% (%d parameters)", name, arch, 100 * test["top1"], results["parameters"])
    return results


def main(_):
    arch = models.Architecture.parse(FLAGS.architecture or FLAGS.network)
    config = cli.train_config(network=arch.backbone, loss=FLAGS.loss)
    if FLAGS.dry_run:
        teachers_from = f", distilled from {FLAGS.num_teachers} teachers in {cli.teacher_workdir()}/teachers"
        print(f"dry run: would train {arch} on {FLAGS.dataset} with {config.loss} for {config.epochs} epochs"
              f"{teachers_from if config.loss != 'ce' else ''}, into {FLAGS.workdir}")
        return
    workdir = cli.require_workdir()
    dataset = cli.load_dataset()
    strategy = cli.make_strategy()
    teacher = None
    if config.loss != "ce":
        with strategy.scope():
            ensemble = teachers.load_ensemble(cli.teacher_workdir(), FLAGS.num_teachers)
        teacher = cli.teacher_targets(ensemble, config.loss, dataset)
    name = f"{str(arch).replace('/', '_').replace(':', '-')}_{config.loss}"
    train_architecture(arch, dataset, config, strategy=strategy, workdir=os.path.join(workdir, "train", name),
                       logdir=os.path.join(workdir, "tb", "train", name), teacher=teacher)


if __name__ == "__main__":
    cli.define_data_flags()
    cli.define_run_flags()
    cli.define_train_flags()
    flags.DEFINE_string("network", "resnet32", "Backbone to train (ignored when --architecture is set).")
    flags.DEFINE_string("architecture", None, "Architecture string, e.g. resnet32:conv3x3+skip/sep5x5/avgpool3x3.")
    flags.DEFINE_string("loss", "ce", "Training loss: ce, kd or od.")
    cli.define_teacher_flags()  # which ensemble kd and od distil from (the search's flagfiles work here too)
    cli.run(main)
