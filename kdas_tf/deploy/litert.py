"""LiteRT (TFLite) exports of a served SavedModel, each checked against it before it is kept.

    tflite       float32, converted from the SavedModel's serving signature
    tflite_int8  full-integer post-training quantisation, calibrated on REPRESENTATIVE_IMAGES training images

Both keep the signature as the SavedModel has it: `images` uint8 [B, H, W, C] in (normalisation inside),
`probabilities` [B, C] float32 and `classes` [B] int64 out. A converted model is run with the LiteRT
interpreter on the whole test split and its classes compared with the SavedModel's; below MIN_AGREEMENT it
is refused (a UserError: nothing is written) unless forced. Every kept format gets a row of the deployment
table (deployment.json and deployment.md beside it): size, test top-1, agreement with the SavedModel, and
the median single-image latency on this CPU, measured in the same process. The table records which split
calibrated the int8 file ("calibration"): never the test split, whose images judge it.
"""

import functools
import os
import platform
import shutil
import time
import warnings

import numpy as np
import tensorflow as tf
from absl import logging

from kdas_tf.deploy.formats import FORMATS, check_formats  # noqa: F401  (serving checks them here)
from kdas_tf.reporting import results
from kdas_tf.runtime import storage
from kdas_tf.errors import UserError
from kdas_tf.runtime.workdir import DEPLOYMENT_JSON, DEPLOYMENT_MD

FILES = {"tflite": "model.tflite", "tflite_int8": "model_int8.tflite"}
# Agreement with the SavedModel's classes on the test split below which a format is refused. Float32 differs
# only in kernel rounding (measured: 100%). int8 measured 99.33% on the digits run's served model and 99.0%
# on the tests' 2-epoch digits model (2 and 3 of 300 test images); 97% leaves room for datasets with more
# classes, whose logits lie closer together, and still refuses a broken calibration.
MIN_AGREEMENT = {"tflite": 0.99, "tflite_int8": 0.97}
REPRESENTATIVE_IMAGES = 300
CALIBRATION_SPLIT, CALIBRATION_SEED = "train", 0
LATENCY_RUNS, LATENCY_WARMUP = 50, 5
SIGNATURE_INPUTS, SIGNATURE_OUTPUTS = {"images"}, {"probabilities", "classes"}
SAVED_MODEL_FILES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")
BATCH = 256


@functools.cache  # the fallback's note once per process
def interpreter_class():
    """ai_edge_litert's Interpreter; TensorFlow's deprecated tf.lite.Interpreter if the package is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        logging.warning("ai-edge-litert is not installed: checking the TFLite exports with tf.lite.Interpreter")
        return tf.lite.Interpreter
    return Interpreter


def representative_images(train_images, count=REPRESENTATIVE_IMAGES, seed=CALIBRATION_SEED):
    """A fixed sample of the training split [count, H, W, C] uint8, drawn without replacement."""
    order = np.random.default_rng(seed).permutation(len(train_images))[:count]
    return train_images[np.sort(order)]


def calibration_images(dataset):
    """int8's calibration images [N, H, W, C] uint8, a sample of the training split, and what deployment.json
    records of them."""
    split = dataset.splits[CALIBRATION_SPLIT]
    images = representative_images(split.images)
    return images, {"split": CALIBRATION_SPLIT, "images": len(images), "of": len(split), "seed": CALIBRATION_SEED}


def convert(saved_model_dir, signature, *, representative=None):
    """The SavedModel's `signature` as a .tflite flatbuffer (bytes): float32, or full-integer with
    `representative` uint8 images [N, H, W, C] to calibrate on (the uint8 input stays uint8)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({"images": image[None]} for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    with warnings.catch_warnings():  # int8 calibration runs TensorFlow's deprecated interpreter, which warns
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        return converter.convert()


def tflite_runner(content, signature):
    """The signature runner of a .tflite flatbuffer; its inputs and outputs must carry the SavedModel's names."""
    interpreter = interpreter_class()(model_content=content)
    runner = interpreter.get_signature_runner(signature)
    names = (set(runner.get_input_details()), set(runner.get_output_details()))
    if names != (SIGNATURE_INPUTS, SIGNATURE_OUTPUTS):
        raise RuntimeError(f"the converted signature has inputs, outputs {names}, not the SavedModel's")
    return lambda images: runner(images=images)


def saved_model_runner(saved_model_dir, signature):
    served = tf.saved_model.load(saved_model_dir)
    function = served.signatures[signature]
    return lambda images: {k: v.numpy() for k, v in function(images=tf.constant(images)).items()}


def classes_of(run, images):
    """The `classes` a runner gives for uint8 images [N, H, W, C], in batches: [N] int64."""
    return np.concatenate([run(images[i:i + BATCH])["classes"] for i in range(0, len(images), BATCH)])


def latency_ms(run, image, *, runs=LATENCY_RUNS, warmup=LATENCY_WARMUP):
    """Median milliseconds of one call on one image [1, H, W, C], after `warmup` untimed calls."""
    for _ in range(warmup):
        run(image)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run(image)
        seconds.append(time.perf_counter() - start)
    return 1000 * float(np.median(seconds))


def saved_model_bytes(directory):
    """Bytes of the SavedModel's own files in `directory` (not the other formats written beside it)."""
    total = 0
    for name in SAVED_MODEL_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            total += os.path.getsize(path)
        for root, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def add_litert_formats(directory, signature, dataset, formats, *, force=False):
    """Convert the SavedModel in `directory` to each LiteRT format of `formats`, check each, and write them
    and the deployment table there; the SavedModel itself stays only if `formats` names it.

    dataset: a kdas_tf.data.Dataset (its training split calibrates int8, its test split judges). Returns the
    table's rows. A format below MIN_AGREEMENT raises UserError unless `force`.
    """
    test = dataset.splits["test"]
    reference = saved_model_runner(directory, signature)
    reference_classes = classes_of(reference, test.images)
    rows, calibrated = [], None
    if "saved_model" in formats:
        rows.append(row("saved_model", saved_model_bytes(directory), reference_classes, reference_classes,
                        test.labels, latency_ms(reference, test.images[:1])))
    for name in (f for f in FORMATS if f in formats and f != "saved_model"):
        representative = None
        if name == "tflite_int8":
            representative, calibrated = calibration_images(dataset)
        content = convert(directory, signature, representative=representative)
        run = tflite_runner(content, signature)
        rows.append(row(name, len(content), classes_of(run, test.images), reference_classes, test.labels,
                        latency_ms(run, test.images[:1])))
        refuse_below_agreement(rows[-1], force)
        storage.write_bytes(os.path.join(directory, FILES[name]), content)
    if "saved_model" not in formats:
        remove_saved_model(directory)
    write_table(directory, rows, test_examples=len(test), forced=force, calibration=calibrated)
    return rows


def remove_saved_model(directory):
    """Delete the SavedModel's own files: the conversions' source and reference, when it was not asked for."""
    for name in SAVED_MODEL_FILES:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def row(name, size, classes, reference_classes, labels, latency):
    return {"format": name, "file": FILES.get(name, "saved_model.pb"), "size_kb": size / 1024,
            "test_top1": float(np.mean(classes == labels)),
            "agreement": float(np.mean(classes == reference_classes)),
            "saved_model_test_top1": float(np.mean(reference_classes == labels)),
            "min_agreement": MIN_AGREEMENT.get(name), "latency_ms": latency}


def refuse_below_agreement(checked, force):
    """One line of refusal for a format whose classes agree too rarely with the SavedModel's."""
    threshold = checked["min_agreement"]
    message = (f"--formats={checked['format']}: the LiteRT model agrees with the SavedModel on "
               f"{100 * checked['agreement']:.2f}% of the test split (below {100 * threshold:.0f}%; test top-1 "
               f"{100 * checked['test_top1']:.2f}% against {100 * checked['saved_model_test_top1']:.2f}%)")
    if checked["agreement"] >= threshold:
        return
    if not force:
        raise UserError(message + ": nothing was written; --force_export writes it anyway")
    logging.warning("%s; written anyway (--force_export)", message)


def write_table(directory, rows, *, test_examples, forced, calibration=None):
    """deployment.json (every number, with how it was measured) and deployment.md (the table) in `directory`.

    calibration: what calibrated the int8 file (calibration_images' record), None without one. Files written
    before it was recorded have "representative_images" (a count of training images) instead.
    """
    storage.write_json(os.path.join(directory, DEPLOYMENT_JSON), {
        "rows": rows, "test_examples": test_examples, "forced": forced, "calibration": calibration,
        "latency": {"statistic": "median", "runs": LATENCY_RUNS, "warmup": LATENCY_WARMUP, "batch": 1,
                    "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "interpreter": interpreter_class().__module__,
    })
    storage.write_text(os.path.join(directory, DEPLOYMENT_MD), results.deployment_markdown(rows))
    for entry in rows:
        logging.info("%s: %.1f KB, test top-1 %.2f%%, agreement %.2f%%, %.3f ms per image", entry["format"],
                     entry["size_kb"], 100 * entry["test_top1"], 100 * entry["agreement"], entry["latency_ms"])

