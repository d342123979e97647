"""WideResNet-d-k (Zagoruyko & Komodakis 2016): pre-activation basic blocks, widths 16k/32k/64k, no dropout."""

from collections.abc import Callable

import keras

from kdas_tf.models.layers import basic_block_macs, batch_norm, batch_norm_params, conv2d, conv_params, relu
from kdas_tf.models.networks import STEM_CHANNELS


def build_features(x, spec, end_of_stage: Callable, shortcut=None) -> keras.KerasTensor:
    """Stem, three stages (add-ons after each, on the residual stream) and the final BN-ReLU.

    shortcut: ignored; WRN keeps the reference code's 1x1 projection (the CIFAR ResNets' option).
    """
    x = conv2d(STEM_CHANNELS, 3, name="stem_conv")(x)
    for stage, channels in enumerate(spec.channels):
        for block in range(spec.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _preact_block(x, channels, strides, name=f"stage{stage + 1}_block{block + 1}")
        x = end_of_stage(x, stage)
    x = batch_norm(name="head_bn")(x)
    return relu("head_relu")(x)


def _preact_block(x, channels: int, strides: int, name: str):
    y = batch_norm(name=f"{name}_bn1")(x)
    y = relu(f"{name}_relu1")(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != channels:
        # As in the reference WRN code, the projection sees the pre-activated input.
        shortcut = conv2d(channels, 1, strides, name=f"{name}_shortcut_conv")(y)
    y = conv2d(channels, 3, strides, name=f"{name}_conv1")(y)
    y = batch_norm(name=f"{name}_bn2")(y)
    y = relu(f"{name}_relu2")(y)
    y = conv2d(channels, 3, name=f"{name}_conv2")(y)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def count_features(spec, input_channels: int, shortcut=None) -> int:
    """Trainable parameters of `build_features`, by the same loop without building anything."""
    total = conv_params(input_channels, STEM_CHANNELS, 3)
    in_channels = STEM_CHANNELS
    for stage, channels in enumerate(spec.channels):
        for block in range(spec.blocks_per_stage):
            total += batch_norm_params(in_channels) + conv_params(in_channels, channels, 3)
            total += batch_norm_params(channels) + conv_params(channels, channels, 3)
            strides = 2 if stage > 0 and block == 0 else 1
            if strides != 1 or in_channels != channels:
                total += conv_params(in_channels, channels, 1)
            in_channels = channels
    return total + batch_norm_params(in_channels)


def count_feature_macs(spec, input_shape, shortcut=None) -> tuple[int, list[tuple[int, int]]]:
    """Multiply-accumulates of `build_features` (kdas_tf.models.mac_count) and each stage's (height, width); WRN
    keeps its projections whatever the shortcut."""
    return basic_block_macs(spec, input_shape, projections=True)
