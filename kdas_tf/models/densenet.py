"""DenseNet-L-k (Huang et al. 2017), the original variant: no bottleneck, no compression, 16 stem channels."""

from collections.abc import Callable

import keras

from kdas_tf.models.layers import batch_norm, batch_norm_params, conv2d, conv_macs, conv_params, relu
from kdas_tf.models.networks import STEM_CHANNELS

NUM_BLOCKS = 3
TRANSITION_POOL = 2  # a 2x2 average pool, stride 2, valid padding


def build_features(x, spec, end_of_stage: Callable, shortcut=None) -> keras.KerasTensor:
    """Stem, three dense blocks with add-ons after each (before the transition), and the final BN-ReLU.

    shortcut: ignored; DenseNet has no residual shortcuts (the CIFAR ResNets' option).
    """
    x = conv2d(STEM_CHANNELS, 3, name="stem_conv")(x)
    for stage in range(NUM_BLOCKS):
        for layer in range(spec.blocks_per_stage):
            name = f"stage{stage + 1}_layer{layer + 1}"
            y = batch_norm(name=f"{name}_bn")(x)
            y = relu(f"{name}_relu")(y)
            y = conv2d(spec.width, 3, name=f"{name}_conv")(y)
            x = keras.layers.Concatenate(name=f"{name}_concat")([x, y])
        x = end_of_stage(x, stage)
        if stage < NUM_BLOCKS - 1:
            name = f"transition{stage + 1}"
            x = batch_norm(name=f"{name}_bn")(x)
            x = relu(f"{name}_relu")(x)
            x = conv2d(x.shape[-1], 1, name=f"{name}_conv")(x)
            x = keras.layers.AveragePooling2D(TRANSITION_POOL, name=f"{name}_pool")(x)
    x = batch_norm(name="head_bn")(x)
    return relu("head_relu")(x)


def count_features(spec, input_channels: int, shortcut=None) -> int:
    """Trainable parameters of `build_features`, by the same loop without building anything."""
    total = conv_params(input_channels, STEM_CHANNELS, 3)
    channels = STEM_CHANNELS
    for stage in range(NUM_BLOCKS):
        for _ in range(spec.blocks_per_stage):
            total += batch_norm_params(channels) + conv_params(channels, spec.width, 3)
            channels += spec.width
        if stage < NUM_BLOCKS - 1:
            total += batch_norm_params(channels) + conv_params(channels, channels, 1)
    return total + batch_norm_params(channels)


def count_feature_macs(spec, input_shape, shortcut=None) -> tuple[int, list[tuple[int, int]]]:
    """Multiply-accumulates of `build_features` (kdas_tf.models.mac_count) and each stage's (height, width)."""
    height, width, channels = input_shape
    total = conv_macs(height, width, channels, STEM_CHANNELS, 3)
    channels, sizes = STEM_CHANNELS, []
    for stage in range(NUM_BLOCKS):
        for _ in range(spec.blocks_per_stage):
            total += conv_macs(height, width, channels, spec.width, 3)
            channels += spec.width
        sizes.append((height, width))
        if stage < NUM_BLOCKS - 1:
            total += conv_macs(height, width, channels, channels, 1)
            height, width = height // TRANSITION_POOL, width // TRANSITION_POOL
            total += height * width * channels * TRANSITION_POOL * TRANSITION_POOL  # the pool's window sums
    return total, sizes
