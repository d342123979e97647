"""The teacher: N independently trained backbones whose ensemble distils into the student.

Each member is trained with CE from its own seed and saved as
WORKDIR/teachers/member_{i}/model.keras (kdas_tf.runtime.workdir) once finished; a
finished member is reused, never retrained. The ensemble is one Keras model returning the members'
logits stacked as [N, B, C], so the training step gets them in one call.

Your own trained models instead of members: kdas_tf.distill.given_teachers.
"""

import dataclasses
import hashlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf import models
from kdas_tf.runtime import schema, storage
from kdas_tf.errors import UserError
from kdas_tf.distill.trainer import Trainer, build_fresh


def train_member(dataset, *, network, index, config, workdir, strategy, shortcut="zero_pad", run_progress=None):
    """Train member `index` with CE (seed = config.seed + index) unless it is already finished.

    workdir: the run's kdas_tf.runtime.workdir.Workdir (members live in its teacher root).
    shortcut: the ResNets' shortcut (models.build_network). run_progress: the run's progress.RunProgress.
    """
    path = workdir.member_model(index)
    if os.path.exists(path):
        logging.info("teacher member %d: reusing %s", index, path)
        return
    config = dataclasses.replace(config, loss="ce", seed=config.seed + index)
    model = build_fresh(lambda: models.build_network(network, dataset.info.num_classes, dataset.info.image_shape,
                                                     shortcut=shortcut),
                        seed=config.seed, strategy=strategy)
    trainer = Trainer(model, dataset, config, strategy=strategy, workdir=workdir.member(index),
                      logdir=workdir.member_tb(index), name=f"teacher {index}", run_progress=run_progress)
    trainer.fit()
    storage.save_model(model, path)


def train_teachers(dataset, *, network, num_teachers, config, workdir, strategy, shortcut="zero_pad",
                   run_progress=None):
    """Train (or reuse) every member, then return (the ensemble, its report)."""
    settings = ensemble_settings(dataset, network, config, shortcut)
    written = check_teachers(dataset, network=network, num_teachers=num_teachers, config=config, workdir=workdir,
                             shortcut=shortcut)
    storage.record_settings(workdir.teachers, settings, written)
    for index in range(num_teachers):
        train_member(dataset, network=network, index=index, config=config, workdir=workdir, strategy=strategy,
                     shortcut=shortcut, run_progress=run_progress)
    with strategy.scope():
        ensemble = load_ensemble(workdir.member_models(num_teachers))
    report = ensemble_report(ensemble, dataset, batch_size=config.batch_size)
    report["network"] = network
    report["parameters_per_member"] = models.count_parameters(
        models.Architecture.backbone_only(network), dataset.info.num_classes, dataset.info.image_shape,
        shortcut=shortcut,
    )
    # What each member is, as given teachers' reports say it: a file later put in a member's place is refused.
    report["members"] = [{"path": os.path.relpath(path, workdir.teachers), "sha256": storage.content_sha256(path)}
                         for path in workdir.member_models(num_teachers)]
    storage.write_json(workdir.teachers_results, report)
    return ensemble, report


def check_teachers(dataset, *, network, num_teachers, config, workdir, shortcut="zero_pad"):
    """What train_teachers reads back, checked, writing nothing: teachers/settings.json against this run's and each
    finished member's file; returns what settings.json holds. A run calls it before it writes anything."""
    written = storage.check_settings(workdir.teachers, ensemble_settings(dataset, network, config, shortcut),
                                     unrecorded={"shortcut": models.SHORTCUT_BEFORE_THE_FLAG})
    check_members(workdir, num_teachers)
    return written


def check_members(workdir, num_teachers, *, complete=False):
    """Each finished member's file, checked, writing nothing: its archive readable, and its content the one
    teachers/results.json reports (trials, rows and cached targets were made with that one). complete: every
    member must be finished (a job that distils from them and trains none)."""
    paths = workdir.member_models(num_teachers)
    if complete:
        refuse_missing(paths)
    reported = {}
    if os.path.exists(workdir.teachers_results):
        members = schema.read_teacher_report(workdir.teachers_results).get("members", [])
        reported = {member.get("path"): member["sha256"] for member in members}
    for path in filter(os.path.exists, paths):
        storage.check_model_file(path)
        recorded = reported.get(os.path.relpath(path, workdir.teachers))
        found = recorded and storage.content_sha256(path)
        if found != recorded:
            raise UserError(f"{path} is not the member {workdir.teachers_results} reports (sha256 {found[:12]}, "
                            f"reported {recorded[:12]}): what was made so far distilled from the reported one. Put "
                            "its file back, or delete this one and rerun the same command to rebuild the member from "
                            "its checkpoints; to distil from other teachers, use another --workdir")


def ensemble_settings(dataset, network, config, shortcut):
    """What the members' results depend on; runs sharing them (--teacher_workdir) must agree.

    The validation and training splits enter as digests of their examples: members trained
    on another split have seen this run's validation images.
    """
    val_split = hashlib.sha1(dataset.splits["val"].source_index.tobytes()).hexdigest()[:12]
    # The training images (--train_examples, --final_training=all), since 2026-12-03: older teachers/ take
    # the rerun's.
    train_split = hashlib.sha1(dataset.splits["train"].source_index.tobytes()).hexdigest()[:12]
    return {
        "dataset": dataset.info.name, "val_split": val_split, "train_split": train_split, "teacher_network": network,
        "teacher_epochs": config.epochs, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "lr_decay_at": list(config.lr_decay_at), "weight_decay": config.weight_decay, "seed": config.seed,
        "shortcut": shortcut,
    }


def stack_members(members):
    """One model: images -> the members' logits [N, B, C]."""
    inputs = keras.Input(members[0].input_shape[1:], name="image")
    outputs = keras.ops.stack([member(inputs, training=False) for member in members], axis=0)
    ensemble = keras.Model(inputs, outputs, name=f"ensemble_of_{len(members)}")
    ensemble.trainable = False
    return ensemble


def load_ensemble(member_paths):
    """Load the finished members (their model.keras files) as one ensemble model; call under the strategy's scope."""
    refuse_missing(member_paths)
    members = []
    for index, path in enumerate(member_paths):
        member = storage.load_model(path)
        member.name = f"member_{index}"  # unique names inside the ensemble
        members.append(member)
    return stack_members(members)


def refuse_missing(member_paths):
    """Raises unless every member's model.keras is there: distilling needs the whole ensemble."""
    missing = [i for i, path in enumerate(member_paths) if not os.path.exists(path)]
    if missing:
        raise UserError(
            f"teacher members {missing} are not trained in {os.path.dirname(os.path.dirname(member_paths[0]))}: "
            "run python -m kdas_tf.teachers with the same --workdir first"
        )


@tf.function
def _member_logits(ensemble, images):
    return ensemble(images, training=False)


def _correct_members(ensemble, dataset):
    """Per example, which members are right and which prefix ensembles are: ([N, E] bool, [N, E] bool).

    Row k-1 of the second array is the ensemble of the first k members (mean
    logits), the paper's Table 1 "teacher" as N grows, at no extra forward pass.
    """
    member_correct, ensemble_correct = [], []
    for batch in dataset:
        logits = _member_logits(ensemble, batch["image"])  # [N, B, C]
        labels = tf.cast(batch["label"], tf.int64)[tf.newaxis, :]
        member_correct.append((tf.argmax(logits, -1) == labels).numpy())
        # argmax of the running sum = argmax of the running mean
        ensemble_correct.append((tf.argmax(tf.cumsum(logits, axis=0), -1) == labels).numpy())
    return np.concatenate(member_correct, axis=1), np.concatenate(ensemble_correct, axis=1)


def ensemble_report(ensemble, dataset, *, batch_size):
    """Member, ensemble and oracle accuracy on the test and validation splits, and how many members are right
    per training example. The validation numbers let a study judge teachers without looking at the test split."""
    report = {"num_teachers": None}
    for split, stream in (("test", dataset.test(batch_size)), ("val", dataset.val(batch_size))):
        member_correct, ensemble_correct = _correct_members(ensemble, stream)
        member_accuracy = member_correct.mean(axis=1)
        report["num_teachers"] = int(member_correct.shape[0])
        report.update({
            f"member_{split}_top1": [float(a) for a in member_accuracy],
            f"member_{split}_top1_mean": float(member_accuracy.mean()),
            f"member_{split}_top1_std": float(member_accuracy.std()),
            f"ensemble_{split}_top1": float(ensemble_correct[-1].mean()),
            # accuracy of the ensemble of the first k members, k = 1..N (Table 1)
            f"ensemble_{split}_top1_by_size": [float(a) for a in ensemble_correct.mean(axis=1)],
            f"oracle_{split}_top1": float(member_correct.any(axis=0).mean()),
        })
    train_correct, _ = _correct_members(ensemble, dataset.train_eval(batch_size))
    histogram = np.bincount(train_correct.sum(axis=0), minlength=report["num_teachers"] + 1) / train_correct.shape[1]
    report["member_train_top1_mean"] = float(train_correct.mean())
    # share of training examples that exactly k members classify correctly, k = 0..N
    report["train_members_correct_histogram"] = [float(h) for h in histogram]
    return report


def describe(report):
    """One line for the log: test accuracies and the members-right histogram."""
    histogram = " / ".join(f"{k}:{100 * h:.1f}%" for k, h in enumerate(report["train_members_correct_histogram"]))
    return (
        f"teachers: member {100 * report['member_test_top1_mean']:.2f}% (+-{100 * report['member_test_top1_std']:.2f}), "
        f"ensemble {100 * report['ensemble_test_top1']:.2f}%, oracle {100 * report['oracle_test_top1']:.2f}%; "
        f"training examples by members right {histogram}"
    )
