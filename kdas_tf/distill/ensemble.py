"""The teacher: N independently trained backbones whose ensemble distils into the student.

Each member is trained with CE from its own seed and saved as
WORKDIR/teachers/member_{i}/model.keras (kdas_tf.runtime.workdir) once finished; a
finished member is reused, never retrained. The ensemble is one Keras model returning the members'
logits stacked as [N, B, C], so the training step gets them in one call.

Given teachers (--teacher_models, or keras.Models from Python) replace the trained members: each is checked
against the data (input shape, classes) on one batch, fed the images at the scale it was trained on
(--teacher_input), and reported exactly as trained members are. A member whose rows are non-negative and sum
to 1 outputs probabilities; it is used through log(max(p, 1e-7)) as its logits: softmax(log p) = p, so its
argmax (accuracies, oracle mask) and its KD targets are what the model says, at any temperature
(softmax(log p / T) is p^(1/T) renormalised, as for logits), and the floor bounds the log at -16 as a
saturated softmax would. Refusing it would only make the user strip the softmax by hand.
"""

import dataclasses
import glob
import hashlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf import models
from kdas_tf.runtime import storage
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
    storage.claim_workdir(workdir.teachers, ensemble_settings(dataset, network, config, shortcut),
                          unrecorded={"shortcut": models.SHORTCUT_BEFORE_THE_FLAG})
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
    storage.write_json(workdir.teachers_results, report)
    return ensemble, report


def ensemble_settings(dataset, network, config, shortcut):
    """What the members' results depend on; runs sharing them (--teacher_workdir) must agree.

    The validation split enters as a digest of its examples: members trained
    on another split have seen this run's validation images.
    """
    val_split = hashlib.sha1(dataset.splits["val"].source_index.tobytes()).hexdigest()[:12]
    return {
        "dataset": dataset.info.name, "val_split": val_split, "teacher_network": network,
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
    missing = [i for i, path in enumerate(member_paths) if not os.path.exists(path)]
    if missing:
        raise UserError(
            f"teacher members {missing} are not trained in {os.path.dirname(os.path.dirname(member_paths[0]))}: "
            "run python -m kdas_tf.teachers with the same --workdir first"
        )
    members = []
    for index, path in enumerate(member_paths):
        member = storage.load_model(path)
        member.name = f"member_{index}"  # unique names inside the ensemble
        members.append(member)
    return stack_members(members)


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
    """Member, ensemble and oracle test accuracy, and how many members are right per training example."""
    member_correct, ensemble_correct = _correct_members(ensemble, dataset.test(batch_size))
    member_accuracy = member_correct.mean(axis=1)
    train_correct, _ = _correct_members(ensemble, dataset.train_eval(batch_size))
    num_members = member_correct.shape[0]
    histogram = np.bincount(train_correct.sum(axis=0), minlength=num_members + 1) / train_correct.shape[1]
    return {
        "num_teachers": int(num_members),
        "member_test_top1": [float(a) for a in member_accuracy],
        "member_test_top1_mean": float(member_accuracy.mean()),
        "member_test_top1_std": float(member_accuracy.std()),
        "ensemble_test_top1": float(ensemble_correct[-1].mean()),
        # test accuracy of the ensemble of the first k members, k = 1..N (Table 1)
        "ensemble_test_top1_by_size": [float(a) for a in ensemble_correct.mean(axis=1)],
        "oracle_test_top1": float(member_correct.any(axis=0).mean()),
        "member_train_top1_mean": float(train_correct.mean()),
        # share of training examples that exactly k members classify correctly, k = 0..N
        "train_members_correct_histogram": [float(h) for h in histogram],
    }


def describe(report):
    """One line for the log: test accuracies and the members-right histogram."""
    histogram = " / ".join(f"{k}:{100 * h:.1f}%" for k, h in enumerate(report["train_members_correct_histogram"]))
    return (
        f"teachers: member {100 * report['member_test_top1_mean']:.2f}% (+-{100 * report['member_test_top1_std']:.2f}), "
        f"ensemble {100 * report['ensemble_test_top1']:.2f}%, oracle {100 * report['oracle_test_top1']:.2f}%; "
        f"training examples by members right {histogram}"
    )


# --- given teachers -------------------------------------------------------------------------------

INPUT_SCALES = ("standardised", "pixels", "unit")
PROBABILITY_FLOOR = 1e-7


def expand_model_paths(patterns):
    """--teacher_models' paths with globs expanded (sorted, each once); a pattern that names nothing is refused."""
    paths = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not os.path.exists(matches[0]):
            raise UserError(f"--teacher_models: {pattern} names no file: give .keras files or SavedModel "
                            "directories (or a glob that matches some)")
        paths.extend(matches)
    return list(dict.fromkeys(paths))


def content_sha256(path, chunk=1 << 20):
    """sha256 of a file, or of a directory's files (relative paths and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    for file in files:
        digest.update(os.path.relpath(file, path).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(paths):
    """[{path, sha256}] of given teacher files: part of the settings, so other teachers are refused on a rerun."""
    return [{"path": os.path.abspath(path), "sha256": content_sha256(path)} for path in paths]


def weights_identity(models_):
    """[{model, sha256}] of keras.Models given from Python: each weight's path, shape and values.

    Not model.to_json(): it holds the trainable flags, which the ensemble turns off.
    """
    identity = []
    for model in models_:
        digest = hashlib.sha256()
        for weight in model.weights:
            digest.update(f"{weight.path}{tuple(weight.shape)}".encode())
            digest.update(np.asarray(weight.numpy()).tobytes())
        identity.append({"model": model.name, "sha256": digest.hexdigest()})
    return identity


class TeacherInput(keras.layers.Layer):
    """Standardised images [B, H, W, C] back to what a given member takes: pixels (0..255) or unit (0..1)."""

    def __init__(self, mean, std, scale, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std, self.scale = tuple(mean), tuple(std), scale

    def call(self, images):
        if self.scale == "standardised":
            return images
        pixels = images * keras.ops.convert_to_tensor(self.std) + keras.ops.convert_to_tensor(self.mean)
        return pixels if self.scale == "pixels" else pixels / 255.0


class ProbabilitiesAsLogits(keras.layers.Layer):
    """A member's probabilities [B, C] as logits: log(max(p, 1e-7)) (the module docstring says why)."""

    def call(self, probabilities):
        return keras.ops.log(keras.ops.maximum(keras.ops.cast(probabilities, "float32"), PROBABILITY_FLOOR))


def load_member(path):
    """A given teacher file: a .keras model (safe mode: no code from it runs) or a SavedModel directory."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise UserError(f"{path} is a directory without saved_model.pb: give a .keras file or a SavedModel")
        try:
            layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
        except (ValueError, OSError) as error:
            raise UserError(f"{path} is not a readable SavedModel with a serving_default signature "
                            f"({' '.join(str(error).split())[:200]})") from None
        return layer
    if not path.endswith(".keras"):
        raise UserError(f"{path}: a given teacher is a .keras file or a SavedModel directory")
    return storage.load_model(path)


def _single_output(outputs, name):
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise UserError(f"{name} has {len(outputs)} outputs ({', '.join(outputs)}): a teacher has one, [B, classes]")
        outputs = next(iter(outputs.values()))
    return outputs


def check_member(member, name, images, num_classes):
    """Raises unless `member` maps images [B, H, W, C] to [B, num_classes]; True if its rows are probabilities."""
    declared = getattr(member, "input_shape", None)  # a SavedModel declares its shape by failing the call
    if declared is not None and not (len(declared) == images.shape.rank and all(
            d is None or d == n for d, n in zip(declared[1:], images.shape[1:]))):
        raise UserError(f"{name} does not take this data's images {tuple(images.shape[1:])}: it takes "
                        f"{tuple(declared[1:])}")
    try:
        outputs = _single_output(member(images), name)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        raise UserError(f"{name} does not take this data's images {tuple(images.shape[1:])}: "
                        f"{' '.join(str(error).split())[:200]}") from None
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim != 2 or outputs.shape[1] != num_classes:
        raise UserError(f"{name} outputs {outputs.shape[1:]} per image; the data has {num_classes} classes")
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


def given_ensemble(members, names, identity, dataset, *, input_scale, batch_size):
    """The ensemble [N, B, C] of given members (keras.Models or TFSMLayers), checked; and their descriptions."""
    info = dataset.info
    scale = TeacherInput(info.mean, info.std, input_scale, name="teacher_input")
    images = next(iter(dataset.train_eval(min(batch_size, info.num_train))))["image"]
    inputs = keras.Input(info.image_shape, name="image")
    member_logits, described = [], []
    for index, (member, name) in enumerate(zip(members, names)):
        probabilities = check_member(member, name, scale(images), info.num_classes)
        outputs = _single_output(member(scale(inputs)), name)
        if probabilities:
            logging.warning("teacher %s outputs probabilities (rows sum to 1): distilling from log(max(p, %g)) as "
                            "its logits", name, PROBABILITY_FLOOR)
            outputs = ProbabilitiesAsLogits(name=f"logits_{index}")(outputs)
        member_logits.append(keras.ops.cast(outputs, "float32"))
        parameters = sum(int(np.prod(w.shape)) for w in member.weights)
        described.append({**identity[index], "parameters": parameters,
                          "outputs": "probabilities" if probabilities else "logits"})
    ensemble = keras.Model(inputs, keras.ops.stack(member_logits, axis=0), name=f"ensemble_of_{len(members)}")
    ensemble.trainable = False
    # The teacher-output cache's key: what each member is and the scale it is fed at.
    ensemble.member_ids = tuple(f"{entry['sha256']}:{input_scale}" for entry in identity)
    return ensemble, described


def report_given(teacher, members, dataset, *, input_scale, batch_size, workdir):
    """The report of given teachers (load_given's ensemble and members), as trained members get; written to
    teachers/results.json."""
    report = ensemble_report(teacher, dataset, batch_size=batch_size)
    report["network"] = "given model"
    report["members"] = members
    report["teacher_input"] = input_scale
    report["parameters_per_member"] = int(np.mean([member["parameters"] for member in members]))
    storage.write_json(workdir.teachers_results, report)
    return report


def load_given(dataset, members, *, input_scale, batch_size, strategy):
    """File paths (--teacher_models) or keras.Models as one checked ensemble; returns (it, member descriptions)."""
    from_files = all(isinstance(member, str) for member in members)
    identity = model_identity(members) if from_files else weights_identity(members)
    with strategy.scope():
        loaded = [load_member(member) for member in members] if from_files else list(members)
        for index, member in enumerate(loaded if from_files else ()):
            member.name = f"member_{index}"  # files may hold models of one name; the ensemble needs unique ones
        names = list(members) if from_files else [model.name for model in members]
        return given_ensemble(loaded, names, identity, dataset, input_scale=input_scale, batch_size=batch_size)
