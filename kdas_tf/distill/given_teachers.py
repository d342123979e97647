"""Given teachers: your trained models as the ensemble's members instead of members trained here.

Given teachers (--teacher_models, or keras.Models from Python) replace the trained members: each is checked
against the data (input shape, classes) on one batch, fed the images at the scale it was trained on
(--teacher_input), and reported exactly as trained members are. A member whose rows are non-negative and sum
to 1 outputs probabilities; it is used through log(max(p, 1e-7)) as its logits: softmax(log p) = p, so its
argmax (accuracies, oracle mask) and its KD targets are what the model says, at any temperature
(softmax(log p / T) is p^(1/T) renormalised, as for logits), and the floor bounds the log at -16 as a
saturated softmax would. Refusing it would only make the user strip the softmax by hand.
"""

import glob
import hashlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.distill.ensemble import ensemble_report
from kdas_tf.distill.recipe import INPUT_SCALES
from kdas_tf.errors import UserError
from kdas_tf.runtime import storage


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
