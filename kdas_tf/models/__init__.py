"""Networks of kdas_tf: CIFAR ResNets, WideResNets, DenseNet, the KDAS add-on operations and the searched students."""

from kdas_tf.models.addons import ConvBNReLU, Pool3x3, Skip, addon_module, addon_op
from kdas_tf.models.architecture import ADDON_OPS, Architecture, as_architecture
from kdas_tf.models.layers import sync_batchnorm
from kdas_tf.models.networks import (SHORTCUT_BEFORE_THE_FLAG, SHORTCUTS, NetworkSpec, check_shortcut, num_stages,
                                     parse_network, same_family, stage_channels)
from kdas_tf.models.param_count import count_parameters, nearest_network
from kdas_tf.models.resnet import ZeroPadShortcut
from kdas_tf.models.search_space import Reach, budget_warning, describe_reach, reachable_sizes, uniform_samples
from kdas_tf.models.student import build_network, build_student

__all__ = [
    "ADDON_OPS", "Architecture", "ConvBNReLU", "NetworkSpec", "Pool3x3", "Reach", "SHORTCUT_BEFORE_THE_FLAG",
    "SHORTCUTS", "Skip", "ZeroPadShortcut", "addon_module", "addon_op", "as_architecture", "budget_warning",
    "build_network", "build_student", "check_shortcut", "count_parameters", "describe_reach", "nearest_network", "num_stages",
    "parse_network", "reachable_sizes", "same_family", "stage_channels", "sync_batchnorm", "uniform_samples",
]
