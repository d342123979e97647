"""SavedModel export for serving: raw uint8 images in, probabilities and classes out.

Normalisation lives inside the graph (the training pipeline's own `normalise`),
so a client sends pixels as they are. The archive is written through
keras.export.ExportArchive, which (unlike tf.saved_model.save of a module
holding a Keras 3 model) also loads in the graph-mode loader that
saved_model_cli and serving systems use. The export is written next to its
destination and renamed into place, so a half-written export never replaces a
good one.

`export_from_workdir` is python -m kdas_tf.export's job: the run's served model,
or any final model, trial or teacher member (a .keras file, or a directory with
model.keras or checkpoints/).
"""

import contextlib
import gc
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf import data, models
from kdas_tf.deploy import litert
from kdas_tf.runtime import schema, storage
from kdas_tf.data.transforms import normalise
from kdas_tf.errors import UserError, one_line
from kdas_tf.runtime.workdir import Workdir, served_model_path

SIGNATURE = "serving_default"
METADATA = "kdas_export.json"  # next to saved_model.pb: what the signature expects, and where it came from


def serving_function(model, mean, std):
    """uint8 images [B, H, W, C] -> {"probabilities": [B, C] float32, "classes": [B] int64}."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)

    def serve(images):
        logits = tf.cast(model(normalise(images, mean, std), training=False), tf.float32)
        return {"probabilities": tf.nn.softmax(logits), "classes": tf.argmax(logits, axis=-1)}

    return serve


def export_saved_model(model, path, *, mean, std, metadata=None, also=None):
    """Write `model` as a SavedModel with a `serving_default` signature at `path`, atomically.

    mean, std: per channel, 0..255 scale (DatasetInfo's). metadata: extra JSON
    values recorded in kdas_export.json. also(directory): writes more beside the
    finished SavedModel before it moves into place (the LiteRT formats); if it
    raises, the old export stays. Returns `path`.
    """
    height, width, channels = model.input_shape[1:]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=serving_function(model, mean, std),
        input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")],
    )
    description = {
        "signature": SIGNATURE,
        "inputs": {"images": {"dtype": "uint8", "shape": [None, height, width, channels]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [None, model.output_shape[-1]]},
                    "classes": {"dtype": "int64", "shape": [None]}},
        "mean": [float(m) for m in np.ravel(mean)],
        "std": [float(s) for s in np.ravel(std)],
        **(metadata or {}),
    }
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        with open(os.path.join(staging, METADATA), "w") as f:
            json.dump(description, f, indent=2)
        if also:
            also(staging)
        _move_into_place(staging, path)
        storage.sync_directory(parent)  # the renames survive a power cut
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful move
    return path


def export_served(model, path, *, dataset, formats=("saved_model",), force=False, metadata=None):
    """Export `model` at `path` in `formats` (kdas_tf.deploy.litert.FORMATS); returns `path`.

    The SavedModel alone is written as export_saved_model writes it. With a LiteRT format the SavedModel is
    converted, each conversion checked against it on `dataset`'s test split (refused below
    litert.MIN_AGREEMENT unless `force`) and the deployment table written beside them; the whole export
    moves into place only once every check passed.
    """
    formats = litert.check_formats(formats)
    info = dataset.info
    if formats == ("saved_model",):
        return export_saved_model(model, path, mean=info.mean, std=info.std, metadata=metadata)
    return export_saved_model(model, path, mean=info.mean, std=info.std,
                              metadata={**(metadata or {}), "formats": list(formats)},
                              also=lambda staging: litert.add_litert_formats(staging, SIGNATURE, dataset, formats,
                                                                             force=force))


def _move_into_place(staging, path):
    """Rename the finished `staging` directory to `path`, replacing what is there.

    A directory cannot be renamed over a non-empty one, so the old export is
    first moved aside (and put back if the second rename fails); between the
    two renames `path` is briefly absent, never half-written.
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(path):
        os.replace(staging, path)
        return
    aside = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
    old = os.path.join(aside, "old")
    os.replace(path, old)
    try:
        os.replace(staging, path)
    except BaseException:
        os.replace(old, path)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


# --- exporting a run's models ----------------------------------------------------------------------


def resolve_model_path(workdir, model):
    """--model as given, or relative to the work directory."""
    if os.path.exists(model):
        return model
    inside = os.path.join(workdir, model)
    if os.path.exists(inside):
        return inside
    raise UserError(f"--model={model!r} exists neither as given nor inside --workdir={workdir}")


def architecture_of(directory, workdir):
    """The architecture string a training directory holds (final/*, search/trial_*, teachers/member_*), or None."""
    for name, read in (("results.json", schema.read_final_row), ("result.json", storage.read_json)):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            arch = read(path).get("architecture")
            if arch:
                return arch
    trial = os.path.join(directory, "trial.json")
    if os.path.exists(trial):
        return storage.read_json(trial)["hyperparameters"]["values"].get("architecture")
    if os.path.basename(os.path.dirname(os.path.abspath(directory))) == "teachers":
        run = Workdir(workdir)
        if os.path.exists(run.teachers_results):
            return schema.read_teacher_report(run.teachers_results)["network"]
        if os.path.exists(run.settings):
            return storage.read_json(run.settings).get("teacher_network")
    return None


def shortcut_of(directory, workdir):
    """The ResNets' shortcut a training directory was built with: its results (finals, trials), else the
    settings.json of its teachers/ or run; one made before --shortcut existed means projection."""
    parent = os.path.dirname(os.path.abspath(directory))
    places = [os.path.join(directory, "results.json"), os.path.join(directory, "result.json")]
    if os.path.basename(parent) == "teachers":
        places.append(os.path.join(parent, "settings.json"))
    places.append(Workdir(workdir).settings)
    for path in places:
        if os.path.exists(path):
            recorded = storage.read_json(path)
            if "shortcut" in recorded:
                return recorded["shortcut"]
            if path.endswith("settings.json"):
                return models.SHORTCUT_BEFORE_THE_FLAG
    return "zero_pad"


def load_model_for_export(path, workdir, num_classes, image_shape, architecture=None):
    """A .keras file, a directory with model.keras, or one with checkpoints/ (rebuilt, then restored for data of
    `num_classes` classes and `image_shape` images).

    Returns (model, the file or checkpoint it was loaded from).
    """
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.keras")):
        path = os.path.join(path, "model.keras")
    if os.path.isfile(path) and path.endswith(".keras"):
        return storage.load_model(path), path
    directory = path.rstrip(os.sep)
    if os.path.basename(directory) == "checkpoints":
        directory = os.path.dirname(directory)
    checkpoint = tf.train.latest_checkpoint(os.path.join(directory, "checkpoints"))
    if checkpoint is None:
        raise UserError(f"--model={path!r}: no model.keras and no checkpoints/ with a checkpoint in it")
    architecture = architecture or architecture_of(directory, workdir)
    if not architecture:
        raise UserError(f"--model={path!r}: cannot tell which architecture {checkpoint} holds; pass --architecture")
    shortcut = shortcut_of(directory, workdir)
    model = models.build_student(architecture, num_classes, image_shape, shortcut=shortcut)
    reader, failure = tf.train.Checkpoint(model=model), None
    with _quiet_tensorflow():  # a failed restore's objects are freed here, not with a warning per value at exit
        try:
            status = reader.read(checkpoint)
            status.expect_partial()  # the optimizer's slots are not wanted
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            failure = one_line(str(error).splitlines()[0] if str(error) else repr(error))
        if failure is not None:
            del reader, model
            gc.collect()
    if failure is not None:
        raise UserError(f"checkpoint {checkpoint} does not hold a {architecture} with {shortcut} shortcuts "
                        f"({failure}): pass the right --architecture")
    return model, checkpoint


@contextlib.contextmanager
def _quiet_tensorflow():
    """TensorFlow's Python warnings off: a checkpoint restore that failed logs one for every value left unrestored
    when its objects are freed (dozens of lines after the one-line error)."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


DATA_SETTINGS = ("dataset", "val_fraction", "split_seed", "train_examples")  # they fix the normalisation's mean, std


def recorded_data_settings(workdir, given):
    """--dataset, --val_fraction and --split_seed as the run recorded them (settings.json).

    given: the ones the user set explicitly; one that contradicts the record is refused.
    """
    if not os.path.exists(workdir.settings):
        return given
    recorded = storage.read_json(workdir.settings)
    for key, value in given.items():
        if value != recorded.get(key):
            raise UserError(f"--{key}={value!r} but {workdir.root} was made with {recorded.get(key)!r}: drop the flag")
    return {**given, **{k: recorded[k] for k in DATA_SETTINGS if k in recorded}}


def export_from_workdir(root, *, data_config, given, model=None, architecture=None, output=None,
                        formats=("saved_model",), force=False):
    """Export the run's served model (or `model`) from work directory `root`; returns the output directory.

    data_config: a config.DataConfig (data_dir and manual_dir say where the data is); given: the data
    settings the user set explicitly ({name: value}), checked against the run's record. formats, force:
    as export_served takes them.
    """
    if not root or not os.path.isdir(root):
        raise UserError(f"--workdir={root!r} is not a directory: give a run's work directory")
    workdir = Workdir(root)
    workdir.claim({})  # no search or training may write the models while they are exported
    settings = {k: getattr(data_config, k) for k in DATA_SETTINGS}
    settings.update(recorded_data_settings(workdir, given))
    dataset = data.load(settings["dataset"], data_dir=data_config.data_dir, manual_dir=data_config.manual_dir,
                        val_fraction=settings["val_fraction"], split_seed=settings["split_seed"],
                        train_examples=settings["train_examples"])
    info = dataset.info
    if model:
        source = resolve_model_path(root, model)
        relative = os.path.relpath(os.path.abspath(source), os.path.abspath(root))
        slug = relative.replace(os.sep, "_").removesuffix(".keras").removesuffix("_model").strip("._") or "model"
        output = output or workdir.other_export(slug)
    else:
        source = served_model_path(workdir)
        output = output or workdir.export
    network, loaded_from = load_model_for_export(source, root, info.num_classes, info.image_shape, architecture)
    export_served(network, output, dataset=dataset, formats=formats, force=force, metadata={
        "source": os.path.abspath(loaded_from), "dataset": info.name, "num_classes": info.num_classes,
    })
    logging.info("exported %s -> %s (signature %s: uint8 images %s -> probabilities, classes)",
                 loaded_from, output, SIGNATURE, list(info.image_shape))
    return output
