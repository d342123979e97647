"""MACs counted analytically (kdas_tf.models.mac_count) against an independent count of the built Keras model:
every layer with a kernel multiplies each kernel element once per output position, a pooling sums its window
once per output value. Checked for every backbone family, each op alone in each stage, and the cost table."""

import functools

import keras
import numpy as np
import pytest

from kdas_tf.models import ADDON_OPS, Architecture, build_student
from kdas_tf.models.mac_count import count_macs, stage_shapes
from kdas_tf.nas.budget import analytic_cost

# Small shapes that still exercise odd sizes (7 -> 4 -> 2 under same-padded strides, 7 -> 3 -> 1 under
# DenseNet's valid 2x2 pools) and every family; (backbone, shortcut, num_classes, input shape).
NETWORKS = [
    ("resnet8", "zero_pad", 10, (8, 8, 1)),
    ("resnet8", "projection", 10, (7, 7, 3)),
    ("resnet14", "zero_pad", 100, (32, 32, 3)),
    ("wrn10_2", "zero_pad", 10, (7, 7, 3)),
    ("densenet10_2", "zero_pad", 10, (7, 7, 1)),
]


def built_macs(model: keras.Model) -> int:
    """The MACs of one image through `model`, from its layers' weights and output shapes alone."""
    total = 0
    for layer in model.layers:
        height_width = layer.output.shape[1:3] if len(layer.output.shape) == 4 else ()
        for part in [layer, *layer._flatten_layers(include_self=False, recursive=True)]:
            kernel = getattr(part, "kernel", None)
            if kernel is not None:  # Conv2D, DepthwiseConv2D and Dense: a kernel element per output position
                total += int(np.prod(height_width)) * int(np.prod(kernel.shape))
        name = type(layer).__name__
        if name == "Pool3x3":
            total += int(np.prod(layer.output.shape[1:])) * 9
        elif name == "AveragePooling2D":
            total += int(np.prod(layer.output.shape[1:])) * int(np.prod(layer.pool_size))
        elif name == "GlobalAveragePooling2D":
            total += int(np.prod(layer.input.shape[1:]))
    return total


@functools.lru_cache(maxsize=None)
def built(arch, shortcut, num_classes, input_shape):
    return build_student(arch, num_classes, input_shape, shortcut=shortcut)


def one_op(backbone, stage, op):
    return str(Architecture(backbone).with_addons([(op if s == stage else "skip",) for s in range(3)]))


@pytest.mark.parametrize("backbone,shortcut,num_classes,input_shape", NETWORKS)
def test_the_backbones_macs_are_the_built_models(backbone, shortcut, num_classes, input_shape):
    model = built(backbone, shortcut, num_classes, input_shape)
    assert count_macs(backbone, num_classes, input_shape, shortcut=shortcut) == built_macs(model)
    ends = [[layer for layer in model.layers if layer.name.startswith(f"stage{s + 1}_")][-1] for s in range(3)]
    assert stage_shapes(backbone, input_shape, shortcut=shortcut) == [tuple(end.output.shape[1:]) for end in ends]


@pytest.mark.parametrize("backbone,shortcut,num_classes,input_shape", NETWORKS)
def test_every_op_in_every_stage_adds_to_the_table_what_the_built_model_counts(backbone, shortcut, num_classes,
                                                                               input_shape):
    cost = analytic_cost("macs", backbone, num_classes, input_shape, shortcut)
    base = built_macs(built(backbone, shortcut, num_classes, input_shape))
    assert cost.base == base
    for stage in range(3):
        for k, op in enumerate(ADDON_OPS):
            arch = one_op(backbone, stage, op)
            measured = built_macs(built(arch, shortcut, num_classes, input_shape))
            assert count_macs(arch, num_classes, input_shape, shortcut=shortcut) == measured, arch
            assert cost.per_stage[stage, k] == measured - base, arch


def test_a_whole_searched_network_is_the_sum_of_its_parts():
    arch = "resnet8:conv3x3+sep5x5,maxpool3x3/skip+sep3x3/avgpool3x3+conv5x5"
    cost = analytic_cost("macs", "resnet8", 10, (8, 8, 1), "zero_pad")
    measured = built_macs(built(arch, "zero_pad", 10, (8, 8, 1)))
    assert count_macs(arch, 10, (8, 8, 1)) == measured == cost.of(arch)
    assert measured > cost.base  # the add-ons cost something


def test_macs_need_a_known_image_size():
    with pytest.raises(ValueError, match="known image shape"):
        count_macs("resnet8", 10, (None, None, 3))
