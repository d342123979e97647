"""Test session setup: two logical CPUs (MirroredStrategy without GPUs) and deterministic ops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from kdas_tf import distribute  # noqa: E402

distribute.split_cpu(2)
# Resume and strategy tests compare weights bit for bit (or nearly): no racy kernels.
tf.config.experimental.enable_op_determinism()
