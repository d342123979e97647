"""SavedModel export for serving: raw uint8 images in, probabilities and classes out.

Normalisation lives inside the graph, so a client sends pixels as they are.
The archive is written through keras.export.ExportArchive, which (unlike
tf.saved_model.save of a module holding a Keras 3 model) also loads in the
graph-mode loader that saved_model_cli and serving systems use. The export is
written next to its destination and renamed into place, so a half-written
export never replaces a good one.
"""

import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf


def serving_function(model, mean, std):
    """uint8 images [B, H, W, C] -> {"probabilities": [B, C] float32, "classes": [B] int64}."""
    mean = tf.constant(np.asarray(mean, np.float32))
    std = tf.constant(np.asarray(std, np.float32))

    def serve(images):
        normalised = (tf.cast(images, tf.float32) - mean) / std
        logits = tf.cast(model(normalised, training=False), tf.float32)
        return {"probabilities": tf.nn.softmax(logits), "classes": tf.argmax(logits, axis=-1)}

    return serve


def export_saved_model(model, path, *, mean, std):
    """Write `model` as a SavedModel with a `serving_default` signature at `path`, atomically."""
    height, width, channels = model.input_shape[1:]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serving_function(model, mean, std),
        input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")],
    )
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    archive.write_out(staging, verbose=False)
    previous = None
    if os.path.exists(path):
        previous = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
        os.replace(path, os.path.join(previous, "old"))
    os.replace(staging, path)
    if previous:
        shutil.rmtree(previous, ignore_errors=True)
    return path
