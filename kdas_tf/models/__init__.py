"""Networks of kdas_tf: CIFAR ResNets, WideResNets, DenseNet, the KDAS add-on operations and the searched students.

The names below are imported from their modules on first use, so that kdas_tf.config reads the grammars
(networks, architecture) and --help answers without importing Keras.
"""

import importlib

_HOMES = {"ConvBNReLU": "addons", "Pool3x3": "addons", "Skip": "addons", "addon_module": "addons",
          "addon_op": "addons", "ADDON_OPS": "architecture", "Architecture": "architecture",
          "as_architecture": "architecture", "sync_batchnorm": "layers", "NetworkSpec": "networks",
          "SHORTCUTS": "networks", "SHORTCUT_BEFORE_THE_FLAG": "networks", "check_shortcut": "networks",
          "num_stages": "networks", "parse_network": "networks", "same_family": "networks",
          "stage_channels": "networks", "count_parameters": "param_count", "nearest_network": "param_count",
          "ZeroPadShortcut": "resnet", "Reach": "search_space", "budget_warning": "search_space",
          "describe_reach": "search_space", "reachable_sizes": "search_space", "uniform_samples": "search_space",
          "build_network": "student", "build_student": "student"}
__all__ = sorted(_HOMES)


def __getattr__(name):
    """A name of __all__, from its module (imported on first use)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
