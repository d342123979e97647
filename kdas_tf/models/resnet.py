"""CIFAR ResNet-(6n+2) (He et al. 2016): basic blocks, post-activation, 16/32/64 channels, projection shortcuts."""

from collections.abc import Callable

import keras

from kdas_tf.models.layers import batch_norm, batch_norm_params, conv2d, conv_params, relu

STEM_CHANNELS = 16


def stage_channels(spec) -> tuple[int, ...]:
    return (16, 32, 64)


def build_features(x, spec, end_of_stage: Callable) -> keras.KerasTensor:
    """Stem and three stages; `end_of_stage(x, stage)` inserts the add-ons after each stage's last block."""
    x = conv2d(STEM_CHANNELS, 3, name="stem_conv")(x)
    x = batch_norm(name="stem_bn")(x)
    x = relu("stem_relu")(x)
    for stage, channels in enumerate(stage_channels(spec)):
        for block in range(spec.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, channels, strides, name=f"stage{stage + 1}_block{block + 1}")
        x = end_of_stage(x, stage)
    return x


def _basic_block(x, channels: int, strides: int, name: str):
    shortcut = x
    if strides != 1 or x.shape[-1] != channels:
        shortcut = conv2d(channels, 1, strides, name=f"{name}_shortcut_conv")(x)
        shortcut = batch_norm(name=f"{name}_shortcut_bn")(shortcut)
    y = conv2d(channels, 3, strides, name=f"{name}_conv1")(x)
    y = batch_norm(name=f"{name}_bn1")(y)
    y = relu(f"{name}_relu1")(y)
    y = conv2d(channels, 3, name=f"{name}_conv2")(y)
    y = batch_norm(name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return relu(f"{name}_out")(y)


def count_features(spec, input_channels: int) -> int:
    """Trainable parameters of `build_features`, by the same loop without building anything."""
    total = conv_params(input_channels, STEM_CHANNELS, 3) + batch_norm_params(STEM_CHANNELS)
    in_channels = STEM_CHANNELS
    for stage, channels in enumerate(stage_channels(spec)):
        for block in range(spec.blocks_per_stage):
            total += conv_params(in_channels, channels, 3) + conv_params(channels, channels, 3)
            total += 2 * batch_norm_params(channels)
            strides = 2 if stage > 0 and block == 0 else 1
            if strides != 1 or in_channels != channels:
                total += conv_params(in_channels, channels, 1) + batch_norm_params(channels)
            in_channels = channels
    return total
