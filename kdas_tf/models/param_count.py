"""Trainable-parameter counts computed analytically, so the search checks its memory budget before building anything."""

from kdas_tf.models.addons import addon_op_params
from kdas_tf.models.architecture import Architecture, as_architecture
from kdas_tf.models.families import family_module
from kdas_tf.models.networks import check_shortcut, check_task, parse_network, same_family


def count_parameters(arch: Architecture | str, num_classes: int, input_shape=(32, 32, 3), *,
                     shortcut: str = "zero_pad") -> int:
    """Equals the trainable weights of build_student(arch, num_classes, input_shape, shortcut=shortcut), element
    for element."""
    arch = as_architecture(arch)
    check_task(num_classes, input_shape)
    check_shortcut(shortcut)
    spec = parse_network(arch.backbone)
    channels = spec.channels
    total = family_module(spec).count_features(spec, input_shape[-1], shortcut=shortcut)
    for stage, width in zip(arch.addons, channels):
        for ops in stage:
            total += sum(addon_op_params(op, width) for op in ops)
    return total + channels[-1] * num_classes + num_classes


def nearest_network(backbone: str, parameters: int, num_classes: int, input_shape=(32, 32, 3), *,
                    shortcut: str = "zero_pad", deeper: bool = False) -> str:
    """The network of the backbone's family and width whose size is nearest `parameters` (deeper: one deeper
    than the backbone); ties go to the shallower. ValueError for a family without deeper networks."""
    candidates = same_family(backbone)
    if deeper:
        candidates = [name for name in candidates if parse_network(name).depth > parse_network(backbone).depth]
    if not candidates:
        raise ValueError(f"{backbone} has no man-made networks of its family to compare with: they exist for "
                         "ResNets and WideResNets")
    return min(candidates, key=lambda name: abs(count_parameters(
        Architecture.backbone_only(name), num_classes, input_shape, shortcut=shortcut) - parameters))
