"""Given teachers: your trained models as the ensemble's members instead of members trained here.

Given teachers (--teacher_models, or keras.Models from Python) replace the trained members: each is checked
against the data (input shape, classes) on one batch, fed the images at the scale it was trained on
(--teacher_input), and reported exactly as trained members are. A member whose rows are non-negative and sum
to 1 outputs probabilities; it is used through log(max(p, 1e-7)) as its logits: softmax(log p) = p, so its
argmax (accuracies, oracle mask) and its KD targets are what the model says, at any temperature
(softmax(log p / T) is p^(1/T) renormalised, as for logits), and the floor bounds the log at -16 as a
saturated softmax would. Refusing it would only make the user strip the softmax by hand.

Before the work directory is claimed, each member is also judged on the first CHECK_IMAGES validation images
(whole batches; all of them if fewer): non-finite outputs are refused, and so is the wrong scale. With
gain(s) = its accuracy fed scale s - 1/K and e = three standard errors of a guess's accuracy on those n images
(3 sqrt(p (1 - p) / n), p = 1/K), another scale s is the one that fits when gain(s) > e (it does not guess),
gain(s) > 2 gain(--teacher_input) and accuracy(s) - accuracy(--teacher_input) > e (the gap is no noise). The
run is refused naming the scale rather than fed it: --teacher_input is a setting of the work directory and keys
the cached teacher outputs, so the scale stays what the command line says. A member that guesses at every
scale is only warned about. Two members of one content (a file named twice, or a copy) are refused: the
ensemble would weigh one model twice.
"""

import glob
import hashlib
import os
import re
import zipfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.distill.ensemble import ensemble_report
from kdas_tf.distill.recipe import INPUT_SCALES
from kdas_tf.errors import UserError, one_line
from kdas_tf.runtime import storage


PROBABILITY_FLOOR = 1e-7
CHECK_IMAGES = 256  # validation images each member is judged on before the run (whole batches: at least these)


def expand_model_paths(patterns):
    """--teacher_models' paths with globs expanded (sorted); a pattern that names nothing is refused."""
    paths = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not os.path.exists(matches[0]):
            raise UserError(f"--teacher_models: {pattern} names no file: give .keras files or SavedModel "
                            "directories (or a glob that matches some)")
        paths.extend(matches)
    return paths


def model_identity(paths):
    """[{path, sha256}] of given teacher files: part of the settings, so other teachers are refused on a rerun."""
    return [{"path": os.path.abspath(path), "sha256": storage.content_sha256(path)} for path in paths]


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


def refuse_copies(identity, names, *, what="--teacher_models:"):
    """Raises if two members have one content hash: a file named twice, or a copy, weighs one model twice."""
    first = {}
    for entry, name in zip(identity, names):
        if entry["sha256"] in first:
            raise UserError(f"{what} {first[entry['sha256']]} and {name} are the same model (identical content, "
                            f"sha256 {entry['sha256'][:12]}): give each teacher once")
        first[entry["sha256"]] = name


def load_member(path):
    """A given teacher file: a .keras model (safe mode: no code from it runs) or a SavedModel directory."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise UserError(f"{path} is a directory without saved_model.pb: give a .keras file or a SavedModel")
        try:
            layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
        except (ValueError, OSError) as error:
            raise UserError(f"{path} is not a readable SavedModel with a serving_default signature "
                            f"({one_line(error)})") from None
        return layer
    if not path.endswith(".keras"):
        raise UserError(f"{path}: a given teacher is a .keras file or a SavedModel directory")
    import kdas_tf.models  # noqa: F401  (registers kdas_tf's add-on layers: a member trained by kdas_tf loads)

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} {_why_unreadable(error)}") from None


def _why_unreadable(error):
    """What stopped a .keras file from loading, and what to do: it is the user's own file, with no checkpoints."""
    text = str(error)
    export = "export it as a SavedModel (model.export(DIR)) and pass DIR"
    if "Lambda" in text and "safe_mode" in text:
        return ("holds a Lambda layer, which safe mode refuses (loading it would run Python code from the file): "
                f"rebuild the model without it (Keras layers, or a registered custom layer), or {export}")
    custom = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if custom:
        return (f"uses {custom[1]}, a custom object Keras cannot rebuild here: decorate it with "
                f"@keras.saving.register_keras_serializable() in an importable module, or {export}")
    if isinstance(error, (zipfile.BadZipFile, KeyError, OSError)) or "File not found" in text:
        return ("is damaged (not a complete .keras archive: truncated, or overwritten while saving): save the "
                "model again, or copy the file again")
    return f"cannot be loaded in safe mode ({one_line(error)}): {export}"


def _single_output(outputs, name):
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise UserError(f"{name} has {len(outputs)} outputs ({', '.join(outputs)}): a teacher has one, [B, classes]")
        outputs = next(iter(outputs.values()))
    return outputs


def check_member(member, name, images, num_classes):
    """Raises unless `member` maps images [B, H, W, C] to finite [B, num_classes]; True if its rows are
    probabilities."""
    declared = getattr(member, "input_shape", None)  # a SavedModel declares its shape by failing the call
    if declared is not None and not (len(declared) == images.shape.rank and all(
            d is None or d == n for d, n in zip(declared[1:], images.shape[1:]))):
        raise UserError(f"{name} does not take this data's images {tuple(images.shape[1:])}: it takes "
                        f"{tuple(declared[1:])}")
    try:
        outputs = _single_output(member(images), name)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        shape = ", ".join(str(size) for size in images.shape[1:])
        raise UserError(f"{name} does not take this data's images (float32 [B, {shape}]): {one_line(error)}") from None
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim != 2 or outputs.shape[1] != num_classes:
        raise UserError(f"{name} outputs {outputs.shape[1:]} per image; the data has {num_classes} classes")
    if not np.all(np.isfinite(outputs)):
        weights = [np.asarray(w) for w in member.weights]
        broken = sum(int(np.sum(~np.isfinite(w))) for w in weights)
        raise UserError(f"{name} outputs NaN or infinity on this data's images ({broken} of its "
                        f"{sum(w.size for w in weights)} weights are not finite): give a teacher that trained "
                        "without diverging")
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


def check_scale(member, name, batches, info, input_scale):
    """Refuses a member that is clearly better fed another scale than --teacher_input (the module docstring gives
    the rule): a Keras model with its own Rescaling layer fed standardised images, say."""
    labels = np.concatenate([batch["label"].numpy() for batch in batches])

    def accuracy(scale):
        feed = TeacherInput(info.mean, info.std, scale)
        right = [np.argmax(np.asarray(_single_output(member(feed(batch["image"])), name)), -1)
                 == batch["label"].numpy() for batch in batches]
        return float(np.mean(np.concatenate(right)))

    chance = 1.0 / info.num_classes
    noise = 3 * np.sqrt(chance * (1 - chance) / len(labels))  # three standard errors of a guess's accuracy
    chosen = accuracy(input_scale)
    if chosen - chance > (1 - chance) / 2:
        return  # no other scale can double its gain over chance
    others = {scale: accuracy(scale) for scale in INPUT_SCALES if scale != input_scale}
    best = max(others, key=others.get)
    if others[best] - chance > max(noise, 2 * (chosen - chance)) and others[best] - chosen > noise:
        raise UserError(f"{name} scores {chosen:.1%} on {len(labels)} validation images fed "
                        f"--teacher_input={input_scale} (chance {chance:.1%}) but {others[best]:.1%} fed {best}: "
                        f"pass --teacher_input={best}")
    if max(chosen, others[best]) - chance <= noise:
        logging.warning("teacher %s scores %.1f%% on %d validation images (chance %.1f%%), and no better at another "
                        "--teacher_input: is it trained on this data, with these labels?", name, 100 * chosen,
                        len(labels), 100 * chance)


def given_ensemble(members, names, identity, dataset, *, input_scale, batch_size):
    """The ensemble [N, B, C] of given members (keras.Models or TFSMLayers), checked; and their descriptions."""
    info = dataset.info
    scale = TeacherInput(info.mean, info.std, input_scale, name="teacher_input")
    size = min(batch_size, CHECK_IMAGES, info.num_val)
    batches = list(dataset.val(size).take(-(-min(CHECK_IMAGES, info.num_val) // size)))
    inputs = keras.Input(info.image_shape, name="image")
    member_logits, described = [], []
    for index, (member, name) in enumerate(zip(members, names)):
        probabilities = check_member(member, name, scale(batches[0]["image"]), info.num_classes)
        check_scale(member, name, batches, info, input_scale)
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
    names = list(members) if from_files else [model.name for model in members]
    refuse_copies(identity, names, what="--teacher_models:" if from_files else "teachers")
    with strategy.scope():
        loaded = [load_member(member) for member in members] if from_files else list(members)
        for index, member in enumerate(loaded if from_files else ()):
            member.name = f"member_{index}"  # files may hold models of one name; the ensemble needs unique ones
        return given_ensemble(loaded, names, identity, dataset, input_scale=input_scale, batch_size=batch_size)
