"""Which module builds and counts each family of backbones: the step from a parsed name to its network."""

from types import ModuleType

from kdas_tf.models import densenet, resnet, wide_resnet
from kdas_tf.models.networks import NetworkSpec

FAMILIES: dict[str, ModuleType] = {"resnet": resnet, "wrn": wide_resnet, "densenet": densenet}


def family_module(spec: NetworkSpec) -> ModuleType:
    """The module with the family's build_features(x, spec, end_of_stage, shortcut) and count_features."""
    return FAMILIES[spec.family]
