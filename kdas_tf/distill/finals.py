"""A final training: one architecture trained from scratch with one loss L_T, tested, saved; resumable.

The pipeline's final rows (the found model and the plain student with each L_T) and python -m
kdas_tf.train both come here. A finished directory is read back, never retrained, and a directory that
finished another architecture or loss is refused rather than reused.
"""

import os

from absl import logging

from kdas_tf.runtime import distribute, schema, storage
from kdas_tf import models
from kdas_tf.errors import UserError
from kdas_tf.distill.trainer import Trainer, build_fresh


def read_finished(workdir, arch, loss, shortcut):
    """The results of the training in `workdir` if it finished (results.json and model.keras), else None; writes
    nothing. A finished training of another architecture, loss or shortcut is refused, not reused."""
    results_path = os.path.join(workdir, "results.json")
    if not (os.path.exists(results_path) and os.path.exists(os.path.join(workdir, "model.keras"))):
        return None
    finished = schema.read_final_row(results_path)
    made = (finished.get("architecture"), finished.get("loss"),
            finished.get("shortcut", models.SHORTCUT_BEFORE_THE_FLAG))
    if made != (str(arch), loss, shortcut):
        raise UserError(f"{workdir} holds a finished {made[0]} ({made[2]} shortcuts) trained with {made[1]}, "
                        f"not {arch} ({shortcut} shortcuts) with {loss}: move it aside to train this one")
    return finished


def train_architecture(arch, dataset, config, *, strategy, workdir, logdir=None, targets=None, name="final",
                       shortcut="zero_pad", run_progress=None):
    """Train `arch` from scratch with `config`, evaluate on test, save model and results; returns the results.

    workdir: the training's own directory (checkpoints/, model.keras, results.json).
    logdir: where its TensorBoard summaries go, inside the run's one log tree
    (WORKDIR/tb/...), so `tensorboard --logdir WORKDIR` shows every training.
    targets: the teacher-outputs source a kd/od training distils from.
    shortcut: the ResNets' shortcut (models.build_student), recorded in results.json.
    run_progress: the run's progress.RunProgress, which counts its epochs.
    """
    results_path = os.path.join(workdir, "results.json")
    model_path = os.path.join(workdir, "model.keras")
    finished = read_finished(workdir, arch, config.loss, shortcut)
    if finished:
        logging.info("%s: already finished, see %s", name, results_path)
        return finished
    info = dataset.info
    model = build_fresh(lambda: models.build_student(arch, info.num_classes, info.image_shape, shortcut=shortcut),
                        seed=config.seed, strategy=strategy)
    trainer = Trainer(model, dataset, config, strategy=strategy, targets=targets, workdir=workdir, logdir=logdir,
                      name=name, run_progress=run_progress)
    last = trainer.fit()
    test = trainer.evaluate(dataset.test(config.batch_size))
    results = {
        "architecture": str(arch),
        "loss": config.loss,
        "epochs": config.epochs,
        "shortcut": shortcut,
        "parameters": models.count_parameters(arch, info.num_classes, info.image_shape, shortcut=shortcut),
        "train_images": info.num_train,
        "trained_on_validation": dataset.trains_on_validation,
        "val": last["val"],
        "test": test,
    }
    if distribute.writes_files(strategy):  # not a multi-worker task beside the chief, which writes them
        storage.save_model(model, model_path)
        storage.write_json(results_path, results)
    logging.info("%s: %s test top1 %.2f%% (%d parameters)", name, arch, 100 * test["top1"], results["parameters"])
    return results
