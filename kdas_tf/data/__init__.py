"""Datasets of kdas_tf: load(name) -> Dataset with train / val / test pipelines.

name: a built-in dataset (DATASETS) or a reference to the user's data: tfds:NAME, folder:PATH, npz:PATH
(kdas_tf.data.references); from_numpy makes a Dataset of arrays in memory.

val is held out of the official training set (the search's reward split);
test is the official test split (for Tiny ImageNet, its labelled val split).
Images stay uint8 in memory; pipelines yield {"image", "label", "index"} batches.

The names below are imported from their modules on first use, so that kdas_tf.config reads the catalog (and
--help answers) without importing TensorFlow.
"""

import importlib

_HOMES = {"DATASETS": "catalog", "IMAGE_SHAPES": "catalog", "NUM_CLASSES": "catalog", "TRAIN_SIZES": "catalog",
          "DataNotFoundError": "sources", "Dataset": "dataset", "DatasetInfo": "dataset", "from_arrays": "dataset",
          "split_sizes": "dataset", "content_identity": "dataset", "from_numpy": "loader", "load": "loader", "metadata": "loader",
          "train_label_counts": "loader"}
__all__ = sorted(_HOMES)


def __getattr__(name):
    """A name of __all__, from its module (imported on first use)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
