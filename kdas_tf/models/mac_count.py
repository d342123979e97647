"""Multiply-accumulates (MACs) of one image's forward pass, counted analytically as the parameters are, so that
--budget_metric=macs is checked before anything is built.

What counts: a convolution's k*k*C_in MACs per output value (a depthwise one's k*k), a dense layer's inputs per
output, and a pooling's window per output value (k*k; at a 'same' padding's border the whole window, as if the
padding were summed too; the global average pool's H*W per channel). What does not: BatchNorm (folded into the
convolution before it in a deployed model), ReLU, residual adds, concatenations and the zero-pad shortcut, which
multiply nothing. So every add-on op's MACs depend only on its stage's shape, and a network's MACs are the
backbone's plus each op's, as its parameters are (kdas_tf.nas.budget's cost tables rely on it).
"""

from kdas_tf.models.addons import addon_op_macs
from kdas_tf.models.architecture import Architecture, as_architecture
from kdas_tf.models.families import family_module
from kdas_tf.models.networks import check_shortcut, check_task, parse_network


def stage_shapes(backbone: str, input_shape, *, shortcut: str = "zero_pad") -> list[tuple[int, int, int]]:
    """(height, width, channels) of the feature map after each stage of `backbone`: where its add-ons run."""
    spec = parse_network(backbone)
    sizes = _feature_macs(spec, input_shape, shortcut)[1]
    return [(height, width, channels) for (height, width), channels in zip(sizes, spec.channels)]


def count_macs(arch: Architecture | str, num_classes: int, input_shape=(32, 32, 3), *,
               shortcut: str = "zero_pad") -> int:
    """MACs of build_student(arch, num_classes, input_shape, shortcut=shortcut) on one image."""
    arch = as_architecture(arch)
    check_task(num_classes, input_shape)
    check_shortcut(shortcut)
    spec = parse_network(arch.backbone)
    total, sizes = _feature_macs(spec, input_shape, shortcut)
    for stage, ((height, width), channels) in enumerate(zip(sizes, spec.channels)):
        for ops in arch.addons[stage]:
            total += sum(addon_op_macs(op, height, width, channels) for op in ops)
    height, width = sizes[-1]
    channels = spec.channels[-1]
    return total + height * width * channels + channels * num_classes  # global average pool, logits


def _feature_macs(spec, input_shape, shortcut):
    if any(not isinstance(size, int) for size in input_shape):
        raise ValueError(f"counting MACs needs a known image shape (height, width, channels), got {input_shape!r}")
    return family_module(spec).count_feature_macs(spec, tuple(input_shape), shortcut=shortcut)
